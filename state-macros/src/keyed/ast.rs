//! The model of a `#[derive(Keyed)]` input: the `#[key]` fields of the
//! struct, or of every variant. It keeps references to the syn nodes so that
//! `check` and `expand` can point at them.

use syn::spanned::Spanned;
use syn::{DeriveInput, Fields, Generics, Ident, Path, Type};

use super::attr::{ContainerAttr, is_key};
use crate::common::Errors;

pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) krate: Path,
    pub(crate) data: Data<'a>,
}

pub(crate) enum Data<'a> {
    Struct(KeyFields<'a>),
    Enum(Vec<Variant<'a>>),
    /// A union (an error, reported while parsing).
    Union,
}

pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) fields: KeyFields<'a>,
}

/// The key fields of one struct or variant, in field order.
pub(crate) struct KeyFields<'a> {
    /// Whether the fields are named (`{ a, b }`) or positional (`(a, b)`).
    pub(crate) named: bool,
    /// Number of fields, for positional patterns.
    pub(crate) arity: usize,
    pub(crate) keys: Vec<KeyField<'a>>,
}

/// One `#[key]` field.
pub(crate) struct KeyField<'a> {
    /// `name` for named fields, `index` for tuple fields.
    pub(crate) member: syn::Member,
    pub(crate) ty: &'a Type,
}

impl<'a> Container<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput, errors: &mut Errors) -> Self {
        let attr = ContainerAttr::from_attrs(&input.attrs, errors);
        let data = match &input.data {
            syn::Data::Struct(s) => Data::Struct(KeyFields::from_syn(&s.fields, errors)),
            syn::Data::Enum(e) => Data::Enum(
                e.variants
                    .iter()
                    .map(|v| Variant {
                        ident: &v.ident,
                        fields: KeyFields::from_syn(&v.fields, errors),
                    })
                    .collect(),
            ),
            syn::Data::Union(u) => {
                errors.spanned(
                    u.union_token,
                    "`Keyed` cannot be derived for a union: its active field, and so its key, is unknown",
                );
                Data::Union
            }
        };
        Container {
            ident: &input.ident,
            generics: &input.generics,
            krate: attr.krate,
            data,
        }
    }

    /// The key types: the struct's, or those of the first variant with a key
    /// (`check` makes sure every variant has the same). Empty when there is
    /// no key (an error).
    pub(crate) fn key_types(&self) -> Vec<&'a Type> {
        let fields = match &self.data {
            Data::Struct(fields) => Some(fields),
            Data::Enum(variants) => variants
                .iter()
                .map(|v| &v.fields)
                .find(|f| !f.keys.is_empty()),
            Data::Union => None,
        };
        fields.map(KeyFields::types).unwrap_or_default()
    }
}

impl<'a> KeyFields<'a> {
    /// Reads the `#[key]` markers of `fields`, reporting malformed ones.
    fn from_syn(fields: &'a Fields, errors: &mut Errors) -> Self {
        let mut keys = Vec::new();
        for (index, field) in fields.iter().enumerate() {
            if !is_key(&field.attrs, errors) {
                continue;
            }
            let member = match &field.ident {
                Some(ident) => syn::Member::Named(ident.clone()),
                None => syn::Member::Unnamed(syn::Index {
                    index: index as u32,
                    span: field.ty.span(),
                }),
            };
            keys.push(KeyField {
                member,
                ty: &field.ty,
            });
        }
        KeyFields {
            named: matches!(fields, Fields::Named(_)),
            arity: fields.len(),
            keys,
        }
    }

    /// The key fields' types, in field order.
    pub(crate) fn types(&self) -> Vec<&'a Type> {
        self.keys.iter().map(|k| k.ty).collect()
    }
}
