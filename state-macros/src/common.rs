//! Pieces shared by the derives: the runtime crate path attribute, error
//! collection, which generic parameters a type mentions, and the `const _`
//! wrapper.

use proc_macro2::TokenStream;
use quote::quote;

/// Collects errors so that all of them are reported in one build.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn spanned(&mut self, tokens: impl quote::ToTokens, msg: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, msg));
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The default path of the runtime crate.
pub(crate) fn default_crate_path() -> syn::Path {
    syn::parse_quote!(::state_runtime)
}

/// Parses `crate = path` or `crate = "path"` inside a container attribute.
pub(crate) fn parse_crate_path(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<syn::Path> {
    let value = meta.value()?;
    let expected = |e: syn::Error| {
        syn::Error::new(
            e.span(),
            "expected the runtime crate's path, e.g. `crate = my_crate::runtime`",
        )
    };
    if value.peek(syn::LitStr) {
        let s: syn::LitStr = value.parse()?;
        s.parse().map_err(expected)
    } else {
        value.parse().map_err(expected)
    }
}

/// Reads the container attribute `#[<name>(crate = path)]`, reporting anything
/// else as an unknown option.
pub(crate) fn crate_path_attr(
    attrs: &[syn::Attribute],
    name: &str,
    errors: &mut Errors,
) -> syn::Path {
    let mut path = default_crate_path();
    for attr in attrs.iter().filter(|a| a.path().is_ident(name)) {
        let res = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                path = parse_crate_path(&meta)?;
                Ok(())
            } else {
                Err(meta.error(format!(
                    "unknown option in #[{name}(...)]: expected `crate = path`"
                )))
            }
        });
        if let Err(e) = res {
            errors.push(e);
        }
    }
    path
}

/// Wraps generated items in `const _: () = { ... };`.
pub(crate) fn wrap_const(body: TokenStream) -> TokenStream {
    quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #body
        };
    }
}

/// The driver every derive shares: `parse` the input into a model, `check`
/// the model, both collecting errors; then `expand` it, or emit every error
/// with the `fallback` impl (so that uses of the type do not add errors of
/// their own).
pub(crate) fn staged<'a, M>(
    input: &'a syn::DeriveInput,
    parse: impl FnOnce(&'a syn::DeriveInput, &mut Errors) -> M,
    check: impl FnOnce(&M, &mut Errors),
    expand: impl FnOnce(&M) -> TokenStream,
    fallback: impl FnOnce(&M) -> TokenStream,
) -> TokenStream {
    let mut errors = Errors::default();
    let model = parse(input, &mut errors);
    check(&model, &mut errors);
    match errors.finish() {
        Ok(()) => expand(&model),
        Err(e) => {
            let compile_errors = e.to_compile_error();
            let fallback = fallback(&model);
            quote::quote! {
                #compile_errors
                #fallback
            }
        }
    }
}

/// The tokens of `tokens` with every span set to `span`, so that an error about
/// them (for example an unmet trait bound in `<T as path::Trait>`) points at
/// the user's code rather than at the derive.
pub(crate) fn respan(tokens: impl quote::ToTokens, span: proc_macro2::Span) -> TokenStream {
    tokens
        .to_token_stream()
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// Which generic parameters [`param_names`] lists.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Params {
    /// Type parameters only: a field whose type mentions one gets a where
    /// bound (`Checkpointed`).
    Types,
    /// Type, const and lifetime parameters: a key type that mentions none can
    /// be checked outside the impl's generics (`Keyed`).
    All,
}

/// The names of `generics`' parameters of the kinds `which`.
pub(crate) fn param_names(generics: &syn::Generics, which: Params) -> Vec<String> {
    generics
        .params
        .iter()
        .filter_map(|p| match p {
            syn::GenericParam::Type(t) => Some(t.ident.to_string()),
            syn::GenericParam::Const(c) if which == Params::All => Some(c.ident.to_string()),
            syn::GenericParam::Lifetime(l) if which == Params::All => {
                Some(l.lifetime.ident.to_string())
            }
            _ => None,
        })
        .collect()
}

/// Whether `tokens` name any of `names` (an identifier anywhere inside,
/// groups included).
pub(crate) fn mentions_any(tokens: TokenStream, names: &[String]) -> bool {
    !names.is_empty()
        && tokens.into_iter().any(|tt| match tt {
            proc_macro2::TokenTree::Ident(i) => names.iter().any(|n| i == n),
            proc_macro2::TokenTree::Group(g) => mentions_any(g.stream(), names),
            _ => false,
        })
}
