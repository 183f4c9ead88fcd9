//! `#[derive(StableHash)]`: a hash that is the same on every machine, build
//! and run.
//!
//! Stages: [`ast`] builds the model (the container attribute, and the fields
//! of the struct or of every variant, keeping the syn nodes for spans),
//! [`check`] validates it, [`expand`] generates field-by-field hashing.
//! Every error of every stage is collected and reported in one build; on
//! error the impls are still emitted, with an empty body, so the errors do
//! not cascade.

mod ast;
mod check;
mod expand;

use proc_macro2::TokenStream;
use syn::DeriveInput;

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    crate::common::staged(
        input,
        ast::Container::from_syn,
        check::check,
        expand::impl_stable_hash,
        expand::fallback,
    )
}
