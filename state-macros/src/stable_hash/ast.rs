//! The model of a `#[derive(StableHash)]` input: the fields of the struct,
//! or of every variant, in declaration order. It keeps references to the syn
//! nodes so that `check` and `expand` can point at them.

use syn::{DeriveInput, Generics, Ident, Path, Type};

use crate::common::{Errors, crate_path_attr};

pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    /// From `#[stable_hash(crate = path)]`.
    pub(crate) krate: Path,
    pub(crate) data: Data<'a>,
}

pub(crate) enum Data<'a> {
    Struct(Style, Vec<Field<'a>>),
    Enum(Vec<Variant<'a>>),
    /// A union (an error, reported while parsing).
    Union,
}

pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) style: Style,
    pub(crate) fields: Vec<Field<'a>>,
}

/// How a struct or variant writes its fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Style {
    /// `{ a, b }`
    Named,
    /// `(a, b)`
    Unnamed,
    /// No fields, no brackets.
    Unit,
}

pub(crate) struct Field<'a> {
    /// `None` for positional fields.
    pub(crate) ident: Option<&'a Ident>,
    pub(crate) ty: &'a Type,
}

impl<'a> Container<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput, errors: &mut Errors) -> Self {
        let krate = crate_path_attr(&input.attrs, "stable_hash", errors);
        let data = match &input.data {
            syn::Data::Struct(s) => {
                let (style, fields) = fields_from_syn(&s.fields);
                Data::Struct(style, fields)
            }
            syn::Data::Enum(e) => Data::Enum(
                e.variants
                    .iter()
                    .map(|v| {
                        let (style, fields) = fields_from_syn(&v.fields);
                        Variant {
                            ident: &v.ident,
                            style,
                            fields,
                        }
                    })
                    .collect(),
            ),
            syn::Data::Union(u) => {
                errors.spanned(
                    u.union_token,
                    "StableHash cannot be derived for a union: its active field is unknown",
                );
                Data::Union
            }
        };
        Container {
            ident: &input.ident,
            generics: &input.generics,
            krate,
            data,
        }
    }

    /// Every field of the struct or of every variant, in declaration order.
    pub(crate) fn all_fields(&self) -> Box<dyn Iterator<Item = &Field<'a>> + '_> {
        match &self.data {
            Data::Struct(_, fields) => Box::new(fields.iter()),
            Data::Enum(variants) => Box::new(variants.iter().flat_map(|v| &v.fields)),
            Data::Union => Box::new(std::iter::empty()),
        }
    }
}

fn fields_from_syn(fields: &syn::Fields) -> (Style, Vec<Field<'_>>) {
    let style = match fields {
        syn::Fields::Named(_) => Style::Named,
        syn::Fields::Unnamed(_) => Style::Unnamed,
        syn::Fields::Unit => Style::Unit,
    };
    let fields = fields
        .iter()
        .map(|f| Field {
            ident: f.ident.as_ref(),
            ty: &f.ty,
        })
        .collect();
    (style, fields)
}
