//! Validation of the model: every field has a mode, names are unique. Type requirements (a `split`
//! field must be a collection of serde items) are checked by the compiler
//! through trait bounds that `expand` spans at the field type.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::ast::{Container, FieldMode};
use crate::common::Errors;

pub(crate) fn check(container: &Container<'_>, errors: &mut Errors) {
    let mut names: HashMap<&str, &syn::Ident> = HashMap::new();
    for field in &container.fields {
        match field.mode {
            FieldMode::Missing => errors.spanned(
                field.ident,
                format!(
                    "field `{}` has no state mode: add #[state(split)], #[state(union)], #[state(broadcast)], #[state(keyed)] or #[state(skip)]",
                    field.ident
                ),
            ),
            FieldMode::Skip => {
                if field.name.explicit {
                    errors.push(syn::Error::new(
                        field.name.span,
                        "a `skip` field is not state, so it has no state name",
                    ));
                }
                if let Some(m) = &field.migrate_from {
                    errors.push(syn::Error::new(
                        m.span,
                        "a `skip` field is not state, so it has no older versions to migrate from",
                    ));
                }
            }
            FieldMode::State(..) => {}
        }
        if field.state_mode().is_none() {
            continue;
        }
        match names.entry(&field.name.value) {
            Entry::Occupied(first) => errors.push(syn::Error::new(
                field.name.span,
                format!(
                    "duplicate state name `{}`: field `{}` already uses it",
                    field.name.value,
                    first.get()
                ),
            )),
            Entry::Vacant(v) => {
                v.insert(field.ident);
            }
        }
    }
}
