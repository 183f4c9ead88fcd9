//! `#[derive(Checkpointed)]`: operator state.
//!
//! Stages: [`attr`] reads `#[state(..)]` and `#[checkpointed(..)]` into typed
//! values, [`ast`] builds the model (keeping the syn nodes for spans),
//! [`check`] validates it, [`expand`] generates the impl. Every error of
//! every stage is collected and reported in one build; on error a fallback
//! impl is emitted so the errors do not cascade.

mod ast;
mod attr;
mod check;
mod expand;

use proc_macro2::TokenStream;
use syn::DeriveInput;

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    crate::common::staged(
        input,
        ast::Container::from_syn,
        check::check,
        expand::impl_checkpointed,
        expand::fallback,
    )
}
