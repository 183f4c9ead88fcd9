//! Validation of the model: there is a key, and every variant of an enum
//! has one, of the same types as the first variant's. The key type's traits
//! (`StateKey`, `Eq`, `Clone`) are checked by the compiler through bounds
//! that `expand` spans at the key field's type.

use quote::quote;
use syn::Type;

use super::ast::{Container, Data, Variant};
use crate::common::Errors;

pub(crate) fn check(container: &Container<'_>, errors: &mut Errors) {
    match &container.data {
        Data::Struct(fields) => {
            if fields.keys.is_empty() {
                errors.spanned(
                    container.ident,
                    "`#[derive(Keyed)]` needs a key: mark the field that keys the state with `#[key]` (several `#[key]` fields make a tuple key)",
                );
            }
        }
        Data::Enum(variants) => {
            if variants.is_empty() {
                errors.spanned(
                    container.ident,
                    "`#[derive(Keyed)]` needs a key, and an enum without variants has none",
                );
            }
            let mut first: Option<&Variant<'_>> = None;
            for v in variants {
                let vid = v.ident;
                if v.fields.keys.is_empty() {
                    errors.spanned(
                        vid,
                        format!(
                            "variant `{vid}` has no `#[key]` field: every variant of a keyed enum marks its key with `#[key]`"
                        ),
                    );
                    continue;
                }
                match first {
                    None => first = Some(v),
                    Some(first) => check_same_key(first, v, errors),
                }
            }
        }
        // Reported while parsing.
        Data::Union => {}
    }
}

fn type_string(ty: &Type) -> String {
    quote!(#ty).to_string()
}

/// Every variant must have the same key types as the first one.
fn check_same_key(first: &Variant<'_>, variant: &Variant<'_>, errors: &mut Errors) {
    let first_vid = first.ident;
    let vid = variant.ident;
    let expected = first.fields.types();
    let found = variant.fields.types();
    let show = |types: &[&Type]| {
        if types.len() == 1 {
            type_string(types[0])
        } else {
            format!(
                "({})",
                types
                    .iter()
                    .map(|t| type_string(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    if expected.len() != found.len() {
        errors.push(syn::Error::new(
            vid.span(),
            format!(
                "variant `{vid}` has key `{}`, but variant `{first_vid}` has key `{}`: every variant must have the same key type",
                show(&found),
                show(&expected)
            ),
        ));
        return;
    }
    for (e, f) in expected.iter().zip(&found) {
        if type_string(e) != type_string(f) {
            errors.spanned(
                f,
                format!(
                    "variant `{vid}` has key type `{}`, but variant `{first_vid}` has `{}`: every variant must have the same key type",
                    type_string(f),
                    type_string(e)
                ),
            );
        }
    }
}
