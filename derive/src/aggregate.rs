//! `#[derive(Aggregate)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, LitInt, LitStr, Path, Type};

use crate::attrs::Errors;

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let ident = &input.ident;
    if !matches!(input.data, Data::Struct(_)) {
        return Err(syn::Error::new_spanned(
            ident,
            "`Aggregate` is derived for the aggregate's state struct; commands and events are separate enums",
        ));
    }
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&input.generics, "`Aggregate` does not support generic types"));
    }
    let mut errors = Errors::default();
    let mut name = ident.to_string();
    let (mut command, mut event, mut error): (Option<Type>, Option<Type>, Option<Type>) = (None, None, None);
    let mut snapshot_every: Option<u64> = None;
    let mut snapshot_version: Option<u32> = None;
    let (mut handle, mut apply): (Option<Path>, Option<Path>) = (None, None);
    let mut seen = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("aggregate")) {
        seen = true;
        let parsed = attr.parse_nested_meta(|meta| {
            let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
            match key.as_str() {
                "name" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    let v = lit.value();
                    if v.is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
                        return Err(syn::Error::new_spanned(lit, "aggregate names are 1 to 255 characters, no control characters"));
                    }
                    name = v;
                }
                "command" => command = Some(meta.value()?.parse()?),
                "event" => event = Some(meta.value()?.parse()?),
                "error" => error = Some(meta.value()?.parse()?),
                "snapshot_every" => {
                    let lit: LitInt = meta.value()?.parse().map_err(|e| {
                        syn::Error::new(e.span(), "`snapshot_every` takes a number of events, like `snapshot_every = 50` (0: never)")
                    })?;
                    snapshot_every = Some(lit.base10_parse()?);
                }
                "snapshot_version" => {
                    let lit: LitInt = meta.value()?.parse()?;
                    let v: u32 = lit.base10_parse()?;
                    if v == 0 || v > i32::MAX as u32 {
                        return Err(syn::Error::new_spanned(lit, "snapshot versions start at 1"));
                    }
                    snapshot_version = Some(v);
                }
                "handle" => handle = Some(meta.value()?.parse()?),
                "apply" => apply = Some(meta.value()?.parse()?),
                _ => {
                    return Err(meta.error(format!(
                        "unknown `aggregate` attribute `{key}`; expected `name`, `command`, `event`, `error`, \
                         `snapshot_every`, `snapshot_version`, `handle` or `apply`"
                    )))
                }
            }
            Ok(())
        });
        errors.push_result(parsed);
    }
    if !seen {
        errors.push(syn::Error::new_spanned(
            ident,
            "add `#[aggregate(command = ..., event = ..., error = ...)]` naming the aggregate's types",
        ));
    } else {
        for (missing, what) in
            [(command.is_none(), "command"), (event.is_none(), "event"), (error.is_none(), "error")]
        {
            if missing {
                errors.push(syn::Error::new_spanned(
                    ident,
                    format!("missing `{what} = Type` in `#[aggregate(...)]`"),
                ));
            }
        }
    }
    errors.finish()?;
    let (command, event, error) = (command.unwrap(), event.unwrap(), error.unwrap());
    let every = match snapshot_every {
        Some(n) => quote!(#n),
        None => quote!(::factum::DEFAULT_SNAPSHOT_EVERY),
    };
    let version = snapshot_version.unwrap_or(1);
    // Without `handle = path`, the struct's inherent `handle` is called. It is named from
    // a module that imports the struct but not the trait, so that a missing inherent method
    // is a compile error rather than a call back into the trait method.
    let inherent_handle = handle.is_none().then(|| {
        quote! {
            #[inline]
            pub(super) fn handle(state: &#ident, command: &Cmd) -> ::core::result::Result<::std::vec::Vec<Ev>, Err> {
                #ident::handle(state, command)
            }
        }
    });
    let inherent_apply = apply.is_none().then(|| {
        quote! {
            #[inline]
            pub(super) fn apply(state: &mut #ident, event: &Ev) {
                #ident::apply(state, event)
            }
        }
    });
    let inherent = (handle.is_none() || apply.is_none()).then(|| {
        quote! {
            #[allow(dead_code)]
            mod __factum_inherent {
                use super::#ident;
                type Cmd = <#ident as ::factum::Aggregate>::Command;
                type Ev = <#ident as ::factum::Aggregate>::Event;
                type Err = <#ident as ::factum::Aggregate>::Error;
                #inherent_handle
                #inherent_apply
            }
        }
    });
    let handle = handle.map_or_else(|| quote!(__factum_inherent::handle), |p| quote!(#p));
    let apply = apply.map_or_else(|| quote!(__factum_inherent::apply), |p| quote!(#p));
    Ok(quote! {
        const _: () = {
            #inherent

            #[automatically_derived]
            impl ::factum::Aggregate for #ident {
                const TYPE: &'static str = #name;
                const SNAPSHOT_EVERY: u64 = #every;
                const SNAPSHOT_VERSION: u32 = #version;
                type Command = #command;
                type Event = #event;
                type Error = #error;

                fn handle(&self, command: &#command) -> ::core::result::Result<::std::vec::Vec<#event>, #error> {
                    #handle(self, command)
                }

                fn apply(&mut self, event: &#event) {
                    #apply(self, event)
                }
            }

            #[automatically_derived]
            impl ::factum::AggregateCommand for #command {
                type Aggregate = #ident;
            }
        };
    })
}
