//! Code generation: the `Checkpointed` impl, or a fallback impl on error.
//!
//! Each state field goes through [`state_code`], one branch per mode, which
//! gives its descriptor, its snapshot write, its restore read and its
//! assignment; the impl is straight-line code around those pieces.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::ast::{Container, Field, StateMode};
use super::attr::MigrateFrom;
use crate::common::{Params, mentions_any, param_names, respan, wrap_const};

/// The generated pieces for one state field.
struct StateCode {
    /// An expression giving its `StateDescriptor`.
    descriptor: TokenStream,
    /// A statement writing it into `__writer`.
    write: TokenStream,
    /// A statement reading it from `__state` into a local.
    read: TokenStream,
    /// A statement moving the local into the field.
    assign: TokenStream,
    /// The where-clause predicate the generated code needs when the field's
    /// type mentions a type parameter.
    bound: TokenStream,
    /// For keyed fields, what the keyed states' shared code needs.
    keyed: Option<KeyedCode>,
    /// With `migrate_from(..)`: the statement recording its version in
    /// `__writer` (after the field, or after all keyed states, is written).
    version: Option<TokenStream>,
}

/// What a keyed state adds to the code all keyed states share.
struct KeyedCode {
    /// Its `(name, &dyn KeyedState)` pair in the writer's list.
    write: TokenStream,
    /// The statement binding the field.
    bind: TokenStream,
    /// Its `(name, &mut dyn KeyedState)` pair (the local) in the restore's
    /// list.
    restore: TokenStream,
}

/// The `Migrations<item>` expression of `migrate_from(V1, .., Vn)`: for each
/// older version, a closure that decodes it and converts it step by step
/// (`From`, or the named function) up to the current `item`.
fn migrations(m: &MigrateFrom, item: &TokenStream, p: &TokenStream) -> TokenStream {
    let versions = &m.versions;
    let mut chain = quote!(#p::Migrations::<#item>::new());
    for (i, older) in versions.iter().enumerate() {
        let steps = versions[i..].iter().enumerate().map(|(k, step)| {
            let from = &step.ty;
            let target = match versions.get(i + k + 1) {
                Some(next) => next.ty.to_token_stream(),
                None => item.clone(),
            };
            let convert = match &step.convert {
                Some(path) => quote_spanned!(path.span()=> #path),
                // Every token spanned at the older type: a missing `From`
                // is reported there.
                None => respan(
                    quote!(<#target as #p::core::convert::From<#from>>::from),
                    from.span(),
                ),
            };
            quote!(let __v: #target = #convert(__v);)
        });
        let ty = &older.ty;
        let from = quote_spanned!(ty.span()=> from::<#ty>);
        chain = quote!(#chain.#from(|__v: #ty| -> #item { #(#steps)* __v }));
    }
    chain
}

fn state_code(field: &Field<'_>, mode: StateMode, index: usize, p: &TokenStream) -> StateCode {
    let ty = field.ty;
    let ident = field.ident;
    let name = &field.name.value;
    let local = format_ident!("__state_{}", index);
    // Spanned at the field type: a type that does not fit the mode is
    // reported there, with the runtime trait's `on_unimplemented` message.
    let span = ty.span();
    match mode {
        StateMode::Split | StateMode::Union => {
            let mode_variant = match mode {
                StateMode::Split => quote!(Split),
                _ => quote!(Union),
            };
            let ops = quote_spanned!(span=> #p::list_ops::<#ty>());
            let mode = quote!(#p::StateMode::#mode_variant);
            let descriptor = quote!((#ops.descriptor)(#name, #mode));
            let (descriptor, read) = match &field.migrate_from {
                None => (
                    descriptor,
                    quote!(let #local = (#ops.read)(__state, #name)?;),
                ),
                Some(m) => {
                    let item = quote_spanned!(span=> <#ty as #p::ListState>::Item);
                    let migrations = migrations(m, &item, p);
                    (
                        quote! {
                            #descriptor.with_type_check(|__name, __recorded| {
                                #p::check_item_type::<#item>(__name, __recorded, #p::core::option::Option::Some(&#migrations))
                            })
                        },
                        quote! {
                            let #local = #p::RestoredState::list_with::<#ty>(
                                __state, #name, &#migrations,
                            )?;
                        },
                    )
                }
            };
            StateCode {
                descriptor,
                write: quote!((#ops.write)(__writer, #name, #mode, &self.#ident)?;),
                read,
                assign: quote!(self.#ident = #local;),
                bound: quote_spanned!(span=> #ty: #p::ListState),
                keyed: None,
                version: version_statement(field),
            }
        }
        StateMode::Broadcast => {
            let ops = quote_spanned!(span=> #p::broadcast_ops::<#ty>());
            let descriptor = quote!((#ops.descriptor)(#name));
            let (descriptor, read) = match &field.migrate_from {
                None => (
                    descriptor,
                    quote!(let #local = (#ops.read)(__state, #name)?;),
                ),
                Some(m) => {
                    let migrations = migrations(m, &ty.to_token_stream(), p);
                    (
                        quote! {
                            #descriptor.with_type_check(|__name, __recorded| {
                                #p::check_item_type::<#ty>(__name, __recorded, #p::core::option::Option::Some(&#migrations))
                            })
                        },
                        quote! {
                            let #local = #p::RestoredState::broadcast_with::<#ty>(
                                __state, #name, &#migrations,
                            )?;
                        },
                    )
                }
            };
            StateCode {
                descriptor,
                write: quote!((#ops.write)(__writer, #name, &self.#ident)?;),
                read,
                // A broadcast state the checkpoint lacks keeps the constructed value.
                assign: quote! {
                    if let #p::core::option::Option::Some(__value) = #local {
                        self.#ident = __value;
                    }
                },
                bound: quote_spanned!(span=> #ty: #p::Serialize + #p::DeserializeOwned),
                keyed: None,
                version: version_statement(field),
            }
        }
        StateMode::Keyed => {
            let ops = quote_spanned!(span=> #p::keyed_ops::<#ty>());
            // Filled with the other keyed states, in one pass.
            let descriptor = quote!((#ops.descriptor)(#name));
            let (descriptor, read) = match &field.migrate_from {
                None => (descriptor, quote!(let mut #local = (#ops.new)();)),
                Some(m) => {
                    let value = quote_spanned!(span=> <#ty as #p::MigrateValues>::Value);
                    let migrations = migrations(m, &value, p);
                    (
                        quote! {
                            #descriptor.with_type_check(|__name, __recorded| {
                                #p::check_keyed_type::<#ty>(__name, __recorded, |__state| {
                                    #p::MigrateValues::set_migrations(__state, #migrations)
                                })
                            })
                        },
                        quote! {
                            let mut #local = (#ops.new)();
                            #p::MigrateValues::set_migrations(&mut #local, #migrations);
                        },
                    )
                }
            };
            StateCode {
                descriptor,
                // Keyed states are written together, key group by key group.
                write: quote!(),
                read,
                assign: quote!(self.#ident = #local;),
                bound: quote_spanned!(span=> #ty: #p::KeyedState + #p::core::default::Default),
                keyed: Some(KeyedCode {
                    write: quote!((#name, (#ops.as_dyn)(&self.#ident))),
                    bind: quote!((#ops.bind)(&mut self.#ident, #name, __assigner, __range)?;),
                    restore: quote!((#name, (#ops.as_dyn_mut)(&mut #local))),
                }),
                version: version_statement(field),
            }
        }
    }
}

/// `__writer.version(name, n)?;` for a field with `migrate_from(..)` of
/// `n - 1` older versions.
fn version_statement(field: &Field<'_>) -> Option<TokenStream> {
    let m = field.migrate_from.as_ref()?;
    let name = &field.name.value;
    let version = m.versions.len() as u32 + 1;
    Some(quote!(__writer.version(#name, #version)?;))
}

pub(crate) fn impl_checkpointed(c: &Container<'_>) -> TokenStream {
    let krate = &c.krate;
    let p = quote!(#krate::__private);
    let ident = c.ident;

    let params = param_names(c.generics, Params::Types);
    let mut generics = c.generics.clone();
    let mut descriptors = Vec::new();
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    let mut assigns = Vec::new();
    let mut keyed_entries = Vec::new();
    let mut keyed_binds = Vec::new();
    let mut keyed_restores = Vec::new();
    let mut keyed_versions = Vec::new();
    for (index, (field, mode)) in c
        .fields
        .iter()
        .filter_map(|f| Some((f, f.state_mode()?)))
        .enumerate()
    {
        let code = state_code(field, mode, index, &p);
        if mentions_any(field.ty.to_token_stream(), &params) {
            let bound = code.bound;
            generics
                .make_where_clause()
                .predicates
                .push(syn::parse_quote!(#bound));
        }
        descriptors.push(code.descriptor);
        writes.push(code.write);
        if let Some(keyed) = code.keyed {
            keyed_entries.push(keyed.write);
            keyed_binds.push(keyed.bind);
            keyed_restores.push(keyed.restore);
            keyed_versions.extend(code.version);
        } else {
            writes.extend(code.version);
        }
        reads.push(code.read);
        assigns.push(code.assign);
    }
    let on_restore = c.on_restore.as_ref().map(|method| {
        quote_spanned! {method.span()=>
            self.#method(&#p::RestoredState::context(__state));
        }
    });

    let write_keyed = (!keyed_entries.is_empty()).then(|| {
        quote! {
            __writer.keyed(&[#(#keyed_entries),*])?;
            #(#keyed_versions)*
        }
    });
    let restore_keyed = (!keyed_restores.is_empty()).then(|| {
        quote! {
            #p::RestoredState::keyed_states(__state, &mut [#(#keyed_restores),*])?;
        }
    });
    let bind_keyed = (!keyed_binds.is_empty()).then(|| {
        quote! {
            fn bind_keyed(
                &mut self,
                __assigner: #p::KeyGroupAssigner,
                __range: #p::KeyGroupRange,
            ) -> #p::core::result::Result<(), #p::StateError> {
                #(#keyed_binds)*
                #p::core::result::Result::Ok(())
            }
        }
    });

    let (impl_g, ty_g, where_c) = generics.split_for_impl();
    let body = quote! {
        #[automatically_derived]
        impl #impl_g #p::Checkpointed for #ident #ty_g #where_c {
            fn state_descriptors() -> #p::Vec<#p::StateDescriptor> {
                #p::Vec::<#p::StateDescriptor>::from([#(#descriptors),*])
            }

            fn write_snapshot(
                &self,
                __writer: &mut #p::SnapshotWriter<'_>,
            ) -> #p::core::result::Result<(), #p::StateError> {
                #(#writes)*
                #write_keyed
                #p::core::result::Result::Ok(())
            }

            #bind_keyed

            fn restore(
                &mut self,
                __state: &mut #p::RestoredState<'_>,
            ) -> #p::core::result::Result<(), #p::StateError> {
                // Decode everything first: on error the operator is untouched.
                #(#reads)*
                #restore_keyed
                #(#assigns)*
                #on_restore
                #p::core::result::Result::Ok(())
            }
        }
    };
    wrap_const(body)
}

/// A minimal impl emitted next to the errors, so that uses of the type do
/// not add "trait not implemented" errors to the real ones.
pub(crate) fn fallback(c: &Container<'_>) -> TokenStream {
    let krate = &c.krate;
    let p = quote!(#krate::__private);
    let ident = c.ident;
    let (impl_g, ty_g, where_c) = c.generics.split_for_impl();
    wrap_const(quote! {
        #[automatically_derived]
        impl #impl_g #p::Checkpointed for #ident #ty_g #where_c {
            fn state_descriptors() -> #p::Vec<#p::StateDescriptor> {
                #p::core::unreachable!()
            }
            fn write_snapshot(
                &self,
                _: &mut #p::SnapshotWriter<'_>,
            ) -> #p::core::result::Result<(), #p::StateError> {
                #p::core::unreachable!()
            }
            fn restore(
                &mut self,
                _: &mut #p::RestoredState<'_>,
            ) -> #p::core::result::Result<(), #p::StateError> {
                #p::core::unreachable!()
            }
        }
    })
}
