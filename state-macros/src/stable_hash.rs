//! `#[derive(StableHash)]`: parse the container attribute, check the shape,
//! generate field-by-field hashing.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::common::{Errors, crate_path_attr, respan, wrap_const};

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let krate = crate_path_attr(&input.attrs, "stable_hash", &mut errors);
    let ident = &input.ident;

    // Every field's type, for `INDIRECT`.
    let mut field_types: Vec<&syn::Type> = Vec::new();
    let (body, prefetch) = match &input.data {
        Data::Struct(s) => {
            field_types.extend(s.fields.iter().map(|f| &f.ty));
            let (pat, writes, prefetches) = destructure(&s.fields, &krate);
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
        Data::Enum(e) => {
            if e.variants.len() > u32::MAX as usize {
                errors.spanned(ident, "too many variants for StableHash");
            }
            let mut arms = Vec::new();
            let mut prefetch_arms = Vec::new();
            for (idx, v) in e.variants.iter().enumerate() {
                let idx = idx as u32;
                let vid = &v.ident;
                field_types.extend(v.fields.iter().map(|f| &f.ty));
                let (pat, writes, prefetches) = destructure(&v.fields, &krate);
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
            let scrutinee = if e.variants.is_empty() {
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
        Data::Union(u) => {
            errors.spanned(
                u.union_token,
                "StableHash cannot be derived for a union: its active field is unknown",
            );
            (quote!(), quote!())
        }
    };

    let mut generics = input.generics.clone();
    for tp in generics.type_params_mut() {
        tp.bounds
            .push(syn::parse_quote!(#krate::__private::StableHash));
    }
    let (impl_g, ty_g, where_c) = generics.split_for_impl();

    let result = errors.finish();
    let (body, prefetch, indirect) = if result.is_err() {
        (quote!(let _ = __hasher;), quote!(), quote!(false))
    } else {
        // Spanned like the hashing calls, so that a field type without a
        // stable hash is reported once, at the field.
        let indirect = field_types.iter().map(|ty| {
            let krate = respan(&krate, ty.span());
            quote_spanned!(ty.span()=> <#ty as #krate::__private::StableHash>::INDIRECT)
        });
        (body, prefetch, quote!(false #(|| #indirect)*))
    };
    let impls = quote! {
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
    };
    let compile_errors = result.err().map(|e| e.to_compile_error());
    let wrapped = wrap_const(impls);
    quote! {
        #compile_errors
        #wrapped
    }
}

/// A pattern binding every field, one hashing call per field in order, and
/// one prefetch call per field. Each call is spanned at the field's type, so
/// a type without a stable hash is reported there.
fn destructure(
    fields: &Fields,
    krate: &syn::Path,
) -> (TokenStream, Vec<TokenStream>, Vec<TokenStream>) {
    let names: Vec<_> = (0..fields.len())
        .map(|i| format_ident!("__f{}", i))
        .collect();
    let (writes, prefetches) = names
        .iter()
        .zip(fields.iter())
        .map(|(n, f)| {
            let ty = &f.ty;
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
    let pat = match fields {
        Fields::Named(named) => {
            let idents = named.named.iter().map(|f| f.ident.as_ref().expect("named"));
            quote!({ #(#idents: #names),* })
        }
        Fields::Unnamed(_) => quote!(( #(#names),* )),
        Fields::Unit => quote!(),
    };
    (pat, writes, prefetches)
}
