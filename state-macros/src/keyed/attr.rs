//! Attributes: `#[keyed(..)]` on the container and the `#[key]` marker on
//! fields. Malformed ones are errors spanned at the attribute.

use syn::{Attribute, Path};

use crate::common::{Errors, crate_path_attr};

/// Everything in the container's `#[keyed(..)]` attributes.
pub(crate) struct ContainerAttr {
    pub(crate) krate: Path,
}

impl ContainerAttr {
    pub(crate) fn from_attrs(attrs: &[Attribute], errors: &mut Errors) -> Self {
        ContainerAttr {
            krate: crate_path_attr(attrs, "keyed", errors),
        }
    }
}

/// Whether a field's attributes mark it as a key field. `#[key(..)]` with
/// options and a repeated `#[key]` are reported; the field is a key field
/// all the same, so that no second error follows.
pub(crate) fn is_key(attrs: &[Attribute], errors: &mut Errors) -> bool {
    let mut marked = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("key")) {
        if attr.meta.require_path_only().is_err() {
            errors.spanned(
                &attr.meta,
                "unknown option: `#[key]` takes no options (it marks the field as the key)",
            );
        }
        if marked {
            errors.spanned(attr, "duplicate `#[key]` on the same field");
        }
        marked = true;
    }
    marked
}
