//! `#[derive(Process)]`: the `factum::process::Process` impl of a process manager's state,
//! from `#[process(...)]` and the struct's inherent `correlate`, `handle` and `apply`.
//!
//! The inherent functions are called from a module that does not import the trait, so
//! a missing one is a compile error naming it, never a call back into the trait.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{Data, DeriveInput, ExprArray, LitInt, LitStr, Type};

use crate::attrs::{
    checked_string, parse_keys, schema_version, unknown_key, valid_name, value, Errors, Once,
};

/// The keys of `#[process(...)]`.
#[derive(Default)]
struct Attrs {
    name: Once<String>,
    event: Once<Type>,
    aggregate_types: Once<Vec<String>>,
    event_types: Once<Vec<String>>,
    topics: Once<Vec<String>>,
    snapshot_every: Once<u64>,
    snapshot_version: Once<u32>,
}

const EXPECTED: &str = "`name`, `event`, `aggregate_types`, `event_types`, `topics`, `snapshot_every` or \
                        `snapshot_version`";

/// A list of strings: `["a", "b"]`.
fn strings(meta: &syn::meta::ParseNestedMeta<'_>, hint: &str) -> syn::Result<Vec<String>> {
    let array: ExprArray = value(meta, hint)?;
    array
        .elems
        .iter()
        .map(|e| match e {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) if valid_name(&s.value()) => {
                Ok(s.value())
            }
            other => Err(syn::Error::new_spanned(other, hint)),
        })
        .collect()
}

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let ident = &input.ident;
    let mut errors = Errors::default();
    if !matches!(input.data, Data::Struct(_)) || !input.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            ident,
            "`Process` is derived for a process's state struct, without generic parameters",
        ));
        return errors.into_compile_errors();
    }
    let mut attrs = Attrs::default();
    let mut seen = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("process")) {
        seen = true;
        parse_keys(attr, &mut errors, |key, meta| match key {
            "name" => attrs.name.set(meta, "process", || {
                let hint = "`name` takes a string, like `name = \"ship_deadline\"`";
                let invalid = "process names are 1 to 255 characters, no control characters";
                Ok(checked_string(meta, hint, valid_name, invalid)?.value())
            }),
            "event" => attrs.event.set(meta, "process", || {
                value(
                    meta,
                    "`event` takes the type of the events the process listens to, like `event = OrderEvent`",
                )
            }),
            "aggregate_types" => attrs.aggregate_types.set(meta, "process", || {
                strings(meta, "`aggregate_types` takes a list of names, like `aggregate_types = [\"Order\"]`")
            }),
            "event_types" => attrs.event_types.set(meta, "process", || {
                strings(meta, "`event_types` takes a list of names, like `event_types = [\"OrderPlaced\"]`")
            }),
            "topics" => attrs.topics.set(meta, "process", || {
                strings(meta, "`topics` takes a list of patterns, like `topics = [\"order.#\"]`")
            }),
            "snapshot_every" => attrs.snapshot_every.set(meta, "process", || {
                let hint = "`snapshot_every` takes a number of steps, like `snapshot_every = 50` (0: never)";
                value::<LitInt>(meta, hint)?.base10_parse().map_err(|e| syn::Error::new(e.span(), hint))
            }),
            "snapshot_version" => attrs.snapshot_version.set(meta, "process", || {
                schema_version(meta, "snapshot versions start at 1, like `snapshot_version = 2`")
            }),
            _ => Err(unknown_key(meta, "`process` attribute", EXPECTED)),
        });
    }
    if !seen || !attrs.name.given() || !attrs.event.given() {
        errors.push(syn::Error::new_spanned(
            ident,
            "add `#[process(name = \"...\", event = EventType)]`: the process's name and the events it listens to",
        ));
    }
    let (Some(name), Some(event)) = (attrs.name.get(), attrs.event.get()) else {
        return errors.into_compile_errors();
    };
    let list = |v: &Once<Vec<String>>| {
        let items: Vec<LitStr> =
            v.get().into_iter().flatten().map(|s| LitStr::new(s, proc_macro2::Span::call_site())).collect();
        quote!(::std::vec::Vec::<&'static str>::from([#(#items),*]))
    };
    let (types, events, topics) =
        (list(&attrs.aggregate_types), list(&attrs.event_types), list(&attrs.topics));
    let every = attrs
        .snapshot_every
        .get()
        .map_or_else(|| quote!(::factum::aggregate::DEFAULT_SNAPSHOT_EVERY), |n| quote!(#n));
    let version = attrs.snapshot_version.get().copied().unwrap_or(1);
    let errors = errors.into_compile_errors();
    let span = ident.span();
    let correlate = quote_spanned!(span=> State::correlate(event));
    let handle = quote_spanned!(span=> State::handle(state, input));
    let apply = quote_spanned!(span=> State::apply(state, input));
    quote! {
        #errors
        const _: () = {
            #[allow(dead_code)]
            mod __factum_process {
                use super::#ident as State;
                type Ev = <State as ::factum::process::Process>::Event;
                type Input = ::factum::process::Input<Ev>;

                #[inline]
                pub(super) fn correlate(
                    event: &::factum::process::Received<Ev>,
                ) -> ::core::result::Result<::core::option::Option<::std::string::String>, ::std::string::String> {
                    #correlate
                }

                #[inline]
                pub(super) fn handle(state: &State, input: &Input) -> ::factum::process::Decision {
                    #handle
                }

                #[inline]
                pub(super) fn apply(state: &mut State, input: &Input) {
                    #apply
                }
            }

            #[automatically_derived]
            impl ::factum::process::Process for #ident {
                const NAME: &'static str = #name;
                const SNAPSHOT_EVERY: u64 = #every;
                const SNAPSHOT_VERSION: u32 = #version;
                type Event = #event;

                fn subscription() -> ::factum::process::Subscription {
                    ::factum::process::Subscription::new()
                        .aggregate_types(#types)
                        .event_types(#events)
                        .topics(#topics)
                }

                fn correlate(
                    event: &::factum::process::Received<Self::Event>,
                ) -> ::core::result::Result<::core::option::Option<::std::string::String>, ::std::string::String> {
                    __factum_process::correlate(event)
                }

                fn handle(&self, input: &::factum::process::Input<Self::Event>) -> ::factum::process::Decision {
                    __factum_process::handle(self, input)
                }

                fn apply(&mut self, input: &::factum::process::Input<Self::Event>) {
                    __factum_process::apply(self, input)
                }
            }
        };
    }
}
