//! Validation of the model: an enum's variant index must fit the `u32` that
//! is hashed for it. That every field type has a stable hash is checked by
//! the compiler, through hashing calls that `expand` spans at the field type.

use super::ast::{Container, Data};
use crate::common::Errors;

pub(crate) fn check(container: &Container<'_>, errors: &mut Errors) {
    if let Data::Enum(variants) = &container.data {
        if variants.len() > u32::MAX as usize {
            errors.spanned(container.ident, "too many variants for StableHash");
        }
    }
}
