//! The model of a `#[derive(Checkpointed)]` input. It keeps references to
//! the syn nodes so that `check` and `expand` can point at them.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, Generics, Ident, Path, Type};

use super::attr::{ContainerAttr, FieldAttr, MigrateFrom, ModeKind};
use crate::common::Errors;

pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) krate: Path,
    pub(crate) on_restore: Option<Ident>,
    /// Empty when the input is not a struct with named fields (an error).
    pub(crate) fields: Vec<Field<'a>>,
}

/// How a field takes part in checkpoints.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum StateMode {
    Split,
    Union,
    Broadcast,
    /// Keyed state, stored by key group.
    Keyed,
}

pub(crate) enum FieldMode {
    /// A state, with its mode.
    State(StateMode),
    /// `#[state(skip)]`: left untouched by restore.
    Skip,
    /// No mode given (an error, reported by `check`).
    Missing,
}

/// A state's name: the `name = "..."` literal, or the field's name.
pub(crate) struct StateName {
    pub(crate) value: String,
    pub(crate) span: Span,
    pub(crate) explicit: bool,
}

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) mode: FieldMode,
    pub(crate) name: StateName,
    /// `migrate_from(..)`: the older versions of its item type.
    pub(crate) migrate_from: Option<MigrateFrom>,
}

impl<'a> Container<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput, errors: &mut Errors) -> Self {
        let attr = ContainerAttr::from_attrs(&input.attrs, errors);
        let fields = match &input.data {
            Data::Struct(s) => match &s.fields {
                Fields::Named(named) => named
                    .named
                    .iter()
                    .map(|f| Field::from_syn(f, errors))
                    .collect(),
                Fields::Unnamed(unnamed) => {
                    errors.spanned(
                        unnamed,
                        "Checkpointed needs a struct with named fields: a state is named after its field",
                    );
                    Vec::new()
                }
                Fields::Unit => {
                    errors.spanned(
                        &input.ident,
                        "Checkpointed needs a struct with named fields, not a unit struct",
                    );
                    Vec::new()
                }
            },
            Data::Enum(e) => {
                errors.spanned(
                    e.enum_token,
                    "Checkpointed can only be derived for a struct with named fields, not an enum",
                );
                Vec::new()
            }
            Data::Union(u) => {
                errors.spanned(
                    u.union_token,
                    "Checkpointed can only be derived for a struct with named fields, not a union",
                );
                Vec::new()
            }
        };
        Container {
            ident: &input.ident,
            generics: &input.generics,
            krate: attr.krate,
            on_restore: attr.on_restore,
            fields,
        }
    }
}

impl<'a> Field<'a> {
    fn from_syn(field: &'a syn::Field, errors: &mut Errors) -> Self {
        let ident = field.ident.as_ref().expect("named field");
        let attr = FieldAttr::from_attrs(&field.attrs, errors);
        let mode = match attr.mode {
            None => FieldMode::Missing,
            Some(m) => match m.kind {
                ModeKind::Split => FieldMode::State(StateMode::Split),
                ModeKind::Union => FieldMode::State(StateMode::Union),
                ModeKind::Broadcast => FieldMode::State(StateMode::Broadcast),
                ModeKind::Keyed => FieldMode::State(StateMode::Keyed),
                ModeKind::Skip => FieldMode::Skip,
            },
        };
        // A broken `#[state(..)]` has already been reported.
        let mode = match mode {
            FieldMode::Missing if attr.broken => FieldMode::Skip,
            other => other,
        };
        let name = match attr.name {
            Some(lit) => StateName {
                value: lit.value(),
                span: lit.span(),
                explicit: true,
            },
            None => StateName {
                value: ident.unraw().to_string(),
                span: ident.span(),
                explicit: false,
            },
        };
        Field {
            ident,
            ty: &field.ty,
            mode,
            name,
            migrate_from: attr.migrate_from,
        }
    }

    /// The state mode, for fields that are state.
    pub(crate) fn state_mode(&self) -> Option<StateMode> {
        match self.mode {
            FieldMode::State(m) => Some(m),
            _ => None,
        }
    }
}
