//! Derive macros for `state-runtime`. Use them through `state_runtime`
//! (`use state_runtime::prelude::*;`), which re-exports them; the generated code
//! names the runtime as `::state_runtime` (override with `crate = path`).
//!
//! Every derive follows the same stages: parse the input into a model
//! (reporting all attribute errors at once, with spans), check it, then
//! generate code. On error, the `compile_error!`s come with a minimal impl of
//! the trait so that one mistake does not cascade into many.

mod common;
mod keyed;
mod stable_hash;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `state_runtime::StableHash` (and `StateKey`): a 64-bit hash that
/// is the same on every machine, build and run.
///
/// Structs hash their fields in declaration order; enums hash the variant's
/// declaration index as `u32`, then its fields. Names are not hashed. See
/// `state_runtime::hash` for the byte-for-byte specification.
///
/// Container attribute: `#[stable_hash(crate = path)]` names the runtime crate
/// when it is not reachable as `::state_runtime`.
#[proc_macro_derive(StableHash, attributes(stable_hash))]
pub fn derive_stable_hash(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    stable_hash::expand(&input).into()
}

/// Derives `state_runtime::Keyed` for an event type: the key of the keyed
/// state the event updates.
///
/// * `#[key]` on one field: the key is that field (`key()` returns `&T`, no
///   clone);
/// * `#[key]` on several fields: the key is the tuple of their types in field
///   order (`key()` returns the tuple of references);
/// * enums: every variant marks its key field(s) with `#[key]`, all of the
///   same type(s).
///
/// The key type must implement `StateKey` (derive `StableHash` for your own
/// key types), `Eq` and `Clone`; the derive adds these bounds spanned at the
/// key field, so a missing one is reported there.
///
/// Container attribute: `#[keyed(crate = path)]` names the runtime crate
/// when it is not reachable as `::state_runtime`.
///
/// Compile errors, all reported at once: no `#[key]`, a variant without a
/// key or with a key of another type, unions, `#[key(...)]` with options,
/// unknown `#[keyed(...)]` options.
///
/// (This crate cannot depend on the runtime; the runnable examples are on
/// `state_runtime::Keyed`.)
///
/// ```ignore
/// use state_runtime::prelude::*;
///
/// #[derive(Keyed)]
/// struct Purchase {
///     #[key]
///     customer: u32,
///     cents: i64,
/// }
///
/// assert_eq!(*Purchase { customer: 4, cents: 1 }.key(), 4);
/// ```
#[proc_macro_derive(Keyed, attributes(key, keyed))]
pub fn derive_keyed(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    keyed::expand(&input).into()
}
