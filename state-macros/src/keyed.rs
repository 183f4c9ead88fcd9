//! `#[derive(Keyed)]`: parse the `#[key]` fields into a model, check that
//! every variant has a key of the same type, generate `key()`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Type};

use crate::common::{Errors, Params, crate_path_attr, mentions_any, param_names, wrap_const};

/// One `#[key]` field.
struct KeyField<'a> {
    /// `name` for named fields, `index` for tuple fields.
    member: syn::Member,
    ty: &'a Type,
}

/// The key fields of one struct or variant, in field order.
struct KeyFields<'a> {
    /// Whether the fields are named (`{ a, b }`) or positional (`(a, b)`).
    named: bool,
    /// Number of fields, for positional patterns.
    arity: usize,
    keys: Vec<KeyField<'a>>,
}

/// Parses the `#[key]` markers of `fields`, reporting malformed ones.
fn key_fields<'a>(fields: &'a Fields, errors: &mut Errors) -> KeyFields<'a> {
    let mut keys = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        let mut marked = false;
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("key")) {
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
        if marked {
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
    }
    KeyFields {
        named: matches!(fields, Fields::Named(_)),
        arity: fields.len(),
        keys,
    }
}

fn type_string(ty: &Type) -> String {
    quote!(#ty).to_string()
}

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let krate = crate_path_attr(&input.attrs, "keyed", &mut errors);
    let ident = &input.ident;

    // The key types (from the struct, or the first variant with a key), and
    // the body of `key()`.
    let mut key_types: Option<Vec<&Type>> = None;
    let body = match &input.data {
        Data::Struct(s) => {
            let kf = key_fields(&s.fields, &mut errors);
            if kf.keys.is_empty() {
                errors.spanned(
                    ident,
                    "`#[derive(Keyed)]` needs a key: mark the field that keys the state with `#[key]` (several `#[key]` fields make a tuple key)",
                );
            }
            let refs = kf.keys.iter().map(|k| {
                let m = &k.member;
                quote!(&self.#m)
            });
            let body = tuple_or_single(refs.collect());
            key_types = Some(kf.keys.iter().map(|k| k.ty).collect());
            body
        }
        Data::Enum(e) => {
            if e.variants.is_empty() {
                errors.spanned(
                    ident,
                    "`#[derive(Keyed)]` needs a key, and an enum without variants has none",
                );
            }
            let mut first: Option<(&syn::Ident, Vec<&Type>)> = None;
            let mut arms = Vec::new();
            for v in &e.variants {
                let kf = key_fields(&v.fields, &mut errors);
                let vid = &v.ident;
                if kf.keys.is_empty() {
                    errors.spanned(
                        vid,
                        format!(
                            "variant `{vid}` has no `#[key]` field: every variant of a keyed enum marks its key with `#[key]`"
                        ),
                    );
                    continue;
                }
                let types: Vec<&Type> = kf.keys.iter().map(|k| k.ty).collect();
                match &first {
                    None => first = Some((vid, types)),
                    Some((first_vid, expected)) => {
                        check_same_key(first_vid, expected, vid, &types, &mut errors)
                    }
                }
                arms.push(variant_arm(vid, &kf));
            }
            key_types = first.map(|(_, t)| t);
            quote! {
                match self {
                    #(#arms)*
                }
            }
        }
        Data::Union(u) => {
            errors.spanned(
                u.union_token,
                "`Keyed` cannot be derived for a union: its active field, and so its key, is unknown",
            );
            quote!()
        }
    };

    let result = errors.finish();
    let key_types = match (&result, key_types) {
        (Ok(()), Some(types)) if !types.is_empty() => types,
        _ => {
            // Minimal impl with a unit key, so that one mistake does not
            // cascade into "`Keyed` is not implemented" errors.
            let compile_errors = result.err().map(|e| e.to_compile_error());
            let (impl_g, ty_g, where_c) = input.generics.split_for_impl();
            let fallback = wrap_const(quote! {
                #[automatically_derived]
                impl #impl_g #krate::__private::Keyed for #ident #ty_g #where_c {
                    type Key = ();
                    type KeyRef<'__key> = () where Self: '__key;
                    fn key(&self) -> Self::KeyRef<'_> {}
                }
            });
            return quote! {
                #compile_errors
                #fallback
            };
        }
    };

    // A key type that names none of the input's generics is checked by an
    // assertion spanned at the field type, so that a key type without
    // `StableHash` / `StateKey` / `Eq` / `Clone` is reported at the field.
    // The impl gets the same bounds as where-clauses (plain ones for key types
    // that use the generics; for the others behind a `for<'_>` binder, which
    // keeps rustc from reporting a "trivially false" bound a second time at
    // the derive).
    let single = key_types.len() == 1;
    let assert_fn = if single {
        quote!(assert_state_key)
    } else {
        quote!(assert_key_part)
    };
    let mut generics = input.generics.clone();
    let generic_names = param_names(&input.generics, Params::All);
    let mut assertions = Vec::new();
    {
        let where_clause = generics.make_where_clause();
        for ty in &key_types {
            let bounds = if single {
                quote!(#krate::__private::StateKey + ::core::cmp::Eq + ::core::clone::Clone)
            } else {
                quote!(#krate::__private::StableHash + ::core::cmp::Eq + ::core::clone::Clone)
            };
            if mentions_any(quote!(#ty), &generic_names) {
                where_clause
                    .predicates
                    .push(syn::parse_quote!(#ty: #bounds));
            } else {
                where_clause
                    .predicates
                    .push(syn::parse_quote!(for<'__key_bound> #ty: #bounds));
                let span = ty.span();
                assertions.push(quote_spanned!(span=> #krate::__private::#assert_fn::<#ty>();));
            }
        }
    }
    let (impl_g, ty_g, where_c) = generics.split_for_impl();
    let (key_ty, key_ref) = if single {
        let ty = key_types[0];
        (quote!(#ty), quote!(&'__key #ty))
    } else {
        (
            quote!(( #(#key_types,)* )),
            quote!(( #(&'__key #key_types,)* )),
        )
    };
    wrap_const(quote! {
        #[automatically_derived]
        impl #impl_g #krate::__private::Keyed for #ident #ty_g #where_c {
            type Key = #key_ty;
            type KeyRef<'__key> = #key_ref where Self: '__key;
            #[inline]
            fn key(&self) -> Self::KeyRef<'_> {
                #body
            }
        }

        #[allow(dead_code)]
        fn __keyed_key_type_assertions() {
            #(#assertions)*
        }
    })
}

/// `(a, b)` for several expressions, `a` for one.
fn tuple_or_single(exprs: Vec<TokenStream>) -> TokenStream {
    if exprs.len() == 1 {
        exprs.into_iter().next().expect("one")
    } else {
        quote!(( #(#exprs,)* ))
    }
}

/// `Self::V { a: __key0, .. } => __key0,` or `Self::V(_, __key0, ..) => ...`.
fn variant_arm(vid: &syn::Ident, kf: &KeyFields<'_>) -> TokenStream {
    let names: Vec<_> = (0..kf.keys.len())
        .map(|i| format_ident!("__key{}", i))
        .collect();
    let pat = if kf.named {
        let members = kf.keys.iter().map(|k| &k.member);
        quote!({ #(#members: #names,)* .. })
    } else {
        let slots = (0..kf.arity).map(|i| {
            match kf.keys.iter().position(
                |k| matches!(&k.member, syn::Member::Unnamed(idx) if idx.index as usize == i),
            ) {
                Some(p) => {
                    let n = &names[p];
                    quote!(#n)
                }
                None => quote!(_),
            }
        });
        quote!(( #(#slots),* ))
    };
    let value = tuple_or_single(names.iter().map(|n| quote!(#n)).collect());
    quote!(Self::#vid #pat => #value,)
}

/// Every variant must have the same key types as the first one.
fn check_same_key(
    first_vid: &syn::Ident,
    expected: &[&Type],
    vid: &syn::Ident,
    found: &[&Type],
    errors: &mut Errors,
) {
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
                show(found),
                show(expected)
            ),
        ));
        return;
    }
    for (e, f) in expected.iter().zip(found) {
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
