//! `#[derive(Keyed)]`: the key of the keyed state an event updates.
//!
//! Stages: [`attr`] reads `#[keyed(..)]` and the `#[key]` markers, [`ast`]
//! builds the model (the key fields of the struct or of every variant,
//! keeping the syn nodes for spans), [`check`] validates it (there is a key,
//! every variant has one of the same type), [`expand`] generates the impl.
//! Every error of every stage is collected and reported in one build; on
//! error a fallback impl is emitted so the errors do not cascade.

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
        expand::impl_keyed,
        expand::fallback,
    )
}
