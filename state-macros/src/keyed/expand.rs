//! Code generation: the `Keyed` impl, or a fallback impl on error.
//!
//! `key()` borrows the key field(s): `&self.field` for a struct, one match
//! arm per variant for an enum. The key types get their bounds both as
//! where-clauses of the impl and, when they name none of the input's
//! generics, as assertions spanned at the field type.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::ast::{Container, Data, KeyFields};
use crate::common::{Params, mentions_any, param_names, wrap_const};

pub(crate) fn impl_keyed(c: &Container<'_>) -> TokenStream {
    let krate = &c.krate;
    let ident = c.ident;
    // Not empty: `check` reported a missing key.
    let key_types = c.key_types();
    let body = match &c.data {
        Data::Struct(kf) => {
            let refs = kf.keys.iter().map(|k| {
                let m = &k.member;
                quote!(&self.#m)
            });
            tuple_or_single(refs.collect())
        }
        Data::Enum(variants) => {
            let arms = variants.iter().map(|v| variant_arm(v.ident, &v.fields));
            quote! {
                match self {
                    #(#arms)*
                }
            }
        }
        // Reported while parsing: never expanded.
        Data::Union => quote!(),
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
    let mut generics = c.generics.clone();
    let generic_names = param_names(c.generics, Params::All);
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

/// A minimal impl with a unit key, emitted next to the errors so that one
/// mistake does not cascade into "`Keyed` is not implemented" errors.
pub(crate) fn fallback(c: &Container<'_>) -> TokenStream {
    let krate = &c.krate;
    let ident = c.ident;
    let (impl_g, ty_g, where_c) = c.generics.split_for_impl();
    wrap_const(quote! {
        #[automatically_derived]
        impl #impl_g #krate::__private::Keyed for #ident #ty_g #where_c {
            type Key = ();
            type KeyRef<'__key> = () where Self: '__key;
            fn key(&self) -> Self::KeyRef<'_> {}
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
