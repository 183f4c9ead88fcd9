//! Attributes: `#[state(..)]` on fields and `#[checkpointed(..)]` on the
//! container, parsed into typed values. Unknown words are errors spanned at
//! the word.

use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, LitStr, Path, Token, Type};

use crate::common::{Errors, default_crate_path, parse_crate_path};

/// A mode word in `#[state(..)]`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ModeKind {
    Split,
    Union,
    Broadcast,
    /// Keyed state.
    Keyed,
    Skip,
}

impl ModeKind {
    fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "split" => ModeKind::Split,
            "union" => ModeKind::Union,
            "broadcast" => ModeKind::Broadcast,
            "keyed" => ModeKind::Keyed,
            "skip" => ModeKind::Skip,
            _ => return None,
        })
    }

    pub(crate) fn word(self) -> &'static str {
        match self {
            ModeKind::Split => "split",
            ModeKind::Union => "union",
            ModeKind::Broadcast => "broadcast",
            ModeKind::Keyed => "keyed",
            ModeKind::Skip => "skip",
        }
    }
}

/// A mode as written in `#[state(..)]`.
pub(crate) struct Mode {
    pub(crate) kind: ModeKind,
}

/// One older version in `migrate_from(..)`: its type, and the function that
/// converts it into the next version (`From` when absent).
pub(crate) struct OlderVersion {
    pub(crate) ty: Type,
    pub(crate) convert: Option<Path>,
}

impl syn::parse::Parse for OlderVersion {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        let ty: Type = input.parse()?;
        let convert = if input.peek(Token![=>]) {
            input.parse::<Token![=>]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(OlderVersion { ty, convert })
    }
}

/// `migrate_from(V1, V2 => upgrade)`: the older versions, oldest first.
pub(crate) struct MigrateFrom {
    /// The `migrate_from` word, for errors.
    pub(crate) span: proc_macro2::Span,
    pub(crate) versions: Vec<OlderVersion>,
}

/// Everything in a field's `#[state(..)]` attributes.
#[derive(Default)]
pub(crate) struct FieldAttr {
    pub(crate) mode: Option<Mode>,
    pub(crate) name: Option<LitStr>,
    pub(crate) migrate_from: Option<MigrateFrom>,
    /// Whether an error was reported for these attributes (so a missing
    /// mode is not reported again).
    pub(crate) broken: bool,
}

const FIELD_EXPECTED: &str = "expected `split`, `union`, `broadcast`, `keyed`, `skip`, `name = \"...\"` or `migrate_from(OldType, ..)`";

impl FieldAttr {
    pub(crate) fn from_attrs(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = FieldAttr::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("state")) {
            let res = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    let lit: LitStr = meta.value()?.parse()?;
                    if out.name.is_some() {
                        return Err(syn::Error::new_spanned(
                            &lit,
                            "duplicate `name` in #[state(...)]",
                        ));
                    } else if lit.value().is_empty() {
                        return Err(syn::Error::new_spanned(
                            &lit,
                            "a state name cannot be empty",
                        ));
                    } else {
                        out.name = Some(lit);
                    }
                    return Ok(());
                }
                if meta.path.is_ident("migrate_from") {
                    let span = syn::spanned::Spanned::span(&meta.path);
                    if !meta.input.peek(syn::token::Paren) {
                        return Err(meta.error(
                            "expected `migrate_from(OldType, ..)`: the item types of the older versions, oldest first",
                        ));
                    }
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let list = Punctuated::<OlderVersion, Token![,]>::parse_terminated(&content)?;
                    if list.is_empty() {
                        return Err(syn::Error::new(
                            span,
                            "`migrate_from()` needs at least one older type, oldest first",
                        ));
                    }
                    if out.migrate_from.is_some() {
                        return Err(syn::Error::new(
                            span,
                            "duplicate `migrate_from` in #[state(...)]: list every older version in one",
                        ));
                    }
                    out.migrate_from = Some(MigrateFrom {
                        span,
                        versions: list.into_iter().collect(),
                    });
                    return Ok(());
                }
                let word = meta.path.get_ident().map(Ident::to_string);
                let Some(kind) = word.as_deref().and_then(ModeKind::from_word) else {
                    let shown = word.unwrap_or_else(|| "this".to_owned());
                    return Err(
                        meta.error(format!("unknown state option `{shown}`: {FIELD_EXPECTED}"))
                    );
                };
                let span = syn::spanned::Spanned::span(&meta.path);
                if let Some(prev) = &out.mode {
                    return Err(syn::Error::new(
                        span,
                        format!(
                            "a field has one state mode, but this one also has `{}`",
                            prev.kind.word()
                        ),
                    ));
                }
                out.mode = Some(Mode { kind });
                Ok(())
            });
            if let Err(e) = res {
                out.broken = true;
                errors.push(e);
            }
        }
        out
    }
}

/// Everything in the container's `#[checkpointed(..)]` attributes.
pub(crate) struct ContainerAttr {
    pub(crate) krate: Path,
    pub(crate) on_restore: Option<Ident>,
}

impl ContainerAttr {
    pub(crate) fn from_attrs(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = ContainerAttr {
            krate: default_crate_path(),
            on_restore: None,
        };
        for attr in attrs.iter().filter(|a| a.path().is_ident("checkpointed")) {
            let res = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("crate") {
                    out.krate = parse_crate_path(&meta)?;
                } else if meta.path.is_ident("on_restore") {
                    let value = meta.value()?;
                    let method: Ident = if value.peek(LitStr) {
                        value.parse::<LitStr>()?.parse()?
                    } else {
                        value.parse()?
                    };
                    if out.on_restore.is_some() {
                        errors.spanned(&method, "duplicate `on_restore` in #[checkpointed(...)]");
                    }
                    out.on_restore = Some(method);
                } else {
                    return Err(meta.error(
                        "unknown option in #[checkpointed(...)]: expected `crate = path` or `on_restore = method`",
                    ));
                }
                Ok(())
            });
            if let Err(e) = res {
                errors.push(e);
            }
        }
        out
    }
}
