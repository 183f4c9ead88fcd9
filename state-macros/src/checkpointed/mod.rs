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

use crate::common::Errors;

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let container = ast::Container::from_syn(input, &mut errors);
    check::check(&container, &mut errors);
    match errors.finish() {
        Ok(()) => expand::impl_checkpointed(&container),
        Err(e) => {
            let compile_errors = e.to_compile_error();
            let fallback = expand::fallback(&container);
            quote::quote! {
                #compile_errors
                #fallback
            }
        }
    }
}
