//! Code generation: the `StableHash` and `StateKey` impls, or the same
//! impls with an empty body on error.
//!
//! Structs hash their fields in declaration order; enums hash the variant's
//! declaration index as `u32`, then its fields. Every hashing call is
//! spanned at the field's type, so a type without a stable hash is reported
//! there.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::ast::{Container, Data, Field, Style};
use crate::common::{respan, wrap_const};

pub(crate) fn impl_stable_hash(c: &Container<'_>) -> TokenStream {
    let krate = &c.krate;
    let ident = c.ident;
    let (body, prefetch) = match &c.data {
        Data::Struct(style, fields) => {
            let (pat, writes, prefetches) = destructure(*style, fields, krate);
            (
                quote! {
                    let #ident #pat = self;
                    #(#writes)*
                },
                quote! {
                    let #ident #pat = self;
                    #(#prefetches)*
                },
            )
        }
        Data::Enum(variants) => {
            let mut arms = Vec::new();
            let mut prefetch_arms = Vec::new();
            for (idx, v) in variants.iter().enumerate() {
                let idx = idx as u32;
                let vid = v.ident;
                let (pat, writes, prefetches) = destructure(v.style, &v.fields, krate);
                arms.push(quote! {
                    #ident::#vid #pat => {
                        #krate::__private::StableHasher::write_u32(__hasher, #idx);
                        #(#writes)*
                    }
                });
                prefetch_arms.push(quote! {
                    #ident::#vid #pat => { #(#prefetches)* }
                });
            }
            // A reference to a value of an enum without variants is still
            // inhabited for the exhaustiveness check: match the place.
            let scrutinee = if variants.is_empty() {
                quote!(*self)
            } else {
                quote!(self)
            };
            (
                quote! {
                    match #scrutinee {
                        #(#arms)*
                    }
                },
                quote! {
                    match #scrutinee {
                        #(#prefetch_arms)*
                    }
                },
            )
        }
        // Reported while parsing: never expanded.
        Data::Union => (quote!(), quote!()),
    };
    // Spanned like the hashing calls, so that a field type without a stable
    // hash is reported once, at the field.
    let indirect = c.all_fields().map(|f| {
        let ty = f.ty;
        let krate = respan(krate, ty.span());
        quote_spanned!(ty.span()=> <#ty as #krate::__private::StableHash>::INDIRECT)
    });
    impls(c, body, prefetch, quote!(false #(|| #indirect)*))
}

/// The impls with an empty body, emitted next to the errors so that uses of
/// the type do not add "trait not implemented" errors to the real ones.
pub(crate) fn fallback(c: &Container<'_>) -> TokenStream {
    impls(c, quote!(let _ = __hasher;), quote!(), quote!(false))
}

/// `StableHash` (with the given bodies of `stable_hash_into` and `prefetch`,
/// and value of `INDIRECT`) and `StateKey`, every type parameter bounded by
/// `StableHash`.
fn impls(
    c: &Container<'_>,
    body: TokenStream,
    prefetch: TokenStream,
    indirect: TokenStream,
) -> TokenStream {
    let krate = &c.krate;
    let ident = c.ident;
    let mut generics = c.generics.clone();
    for tp in generics.type_params_mut() {
        tp.bounds
            .push(syn::parse_quote!(#krate::__private::StableHash));
    }
    let (impl_g, ty_g, where_c) = generics.split_for_impl();
    wrap_const(quote! {
        #[automatically_derived]
        impl #impl_g #krate::__private::StableHash for #ident #ty_g #where_c {
            #[allow(unused_variables)]
            fn stable_hash_into(&self, __hasher: &mut #krate::__private::StableHasher) {
                #body
            }
            const INDIRECT: bool = #indirect;
            #[inline(always)]
            #[allow(unused_variables)]
            fn prefetch(&self) {
                #prefetch
            }
        }
        #[automatically_derived]
        impl #impl_g #krate::__private::StateKey for #ident #ty_g #where_c {}
    })
}

/// A pattern binding every field, one hashing call per field in order, and
/// one prefetch call per field. Each call is spanned at the field's type, so
/// a type without a stable hash is reported there.
fn destructure(
    style: Style,
    fields: &[Field<'_>],
    krate: &syn::Path,
) -> (TokenStream, Vec<TokenStream>, Vec<TokenStream>) {
    let names: Vec<_> = (0..fields.len())
        .map(|i| format_ident!("__f{}", i))
        .collect();
    let (writes, prefetches) = names
        .iter()
        .zip(fields)
        .map(|(n, f)| {
            let ty = f.ty;
            let krate = respan(krate, ty.span());
            (
                quote_spanned! {ty.span()=>
                    <#ty as #krate::__private::StableHash>::stable_hash_into(#n, __hasher);
                },
                quote_spanned! {ty.span()=>
                    <#ty as #krate::__private::StableHash>::prefetch(#n);
                },
            )
        })
        .unzip();
    let pat = match style {
        Style::Named => {
            let idents = fields.iter().map(|f| f.ident.expect("named"));
            quote!({ #(#idents: #names),* })
        }
        Style::Unnamed => quote!(( #(#names),* )),
        Style::Unit => quote!(),
    };
    (pat, writes, prefetches)
}
