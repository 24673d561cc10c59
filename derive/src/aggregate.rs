//! `#[derive(Aggregate)]`.
//!
//! Every attribute mistake is reported, and the impl is still emitted (with what was
//! given, defaults for what was rejected and a stand-in for a missing type), so that a
//! mistake in the attribute is one error, not one more at every use of the aggregate.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Ident, LitInt, Path, Type};

use crate::attrs::{
    checked_string, parse_keys, schema_version, unknown_key, unreachable_body, valid_name, value, Errors,
    Once,
};

/// The keys of `#[aggregate(...)]`.
#[derive(Default)]
struct Attrs {
    name: Once<String>,
    command: Once<Type>,
    event: Once<Type>,
    error: Once<Type>,
    snapshot_every: Once<u64>,
    snapshot_version: Once<u32>,
    handle: Once<Path>,
    apply: Once<Path>,
}

const EXPECTED: &str =
    "`name`, `command`, `event`, `error`, `snapshot_every`, `snapshot_version`, `handle` or `apply`";

impl Attrs {
    fn parse(input: &DeriveInput, errors: &mut Errors) -> Option<Attrs> {
        let mut attrs = Attrs::default();
        let mut seen = false;
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("aggregate")) {
            seen = true;
            parse_keys(attr, errors, |key, meta| match key {
                "name" => attrs.name.set(meta, "aggregate", || {
                    let hint = "`name` takes a string, like `name = \"Order\"`";
                    let invalid = "aggregate names are 1 to 255 characters, no control characters";
                    Ok(checked_string(meta, hint, valid_name, invalid)?.value())
                }),
                "command" | "event" | "error" => {
                    let slot = match key {
                        "command" => &mut attrs.command,
                        "event" => &mut attrs.event,
                        _ => &mut attrs.error,
                    };
                    slot.set(meta, "aggregate", || {
                        value(
                            meta,
                            &format!(
                                "`{key}` takes the aggregate's {key} type, like `{key} = Order{}`",
                                title(key)
                            ),
                        )
                    })
                }
                "snapshot_every" => attrs.snapshot_every.set(meta, "aggregate", || {
                    let hint =
                        "`snapshot_every` takes a number of events, like `snapshot_every = 50` (0: never)";
                    value::<LitInt>(meta, hint)?.base10_parse().map_err(|e| syn::Error::new(e.span(), hint))
                }),
                "snapshot_version" => attrs.snapshot_version.set(meta, "aggregate", || {
                    schema_version(meta, "snapshot versions start at 1, like `snapshot_version = 2`")
                }),
                "handle" => attrs.handle.set(meta, "aggregate", || {
                    value(meta, "`handle` names a function, like `handle = decide`")
                }),
                "apply" => attrs.apply.set(meta, "aggregate", || {
                    value(meta, "`apply` names a function, like `apply = evolve`")
                }),
                _ => Err(unknown_key(meta, "`aggregate` attribute", EXPECTED)),
            });
        }
        seen.then_some(attrs)
    }
}

/// `command` → `Command`.
fn title(key: &str) -> String {
    let mut chars = key.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let ident = &input.ident;
    let mut errors = Errors::default();
    if !matches!(input.data, Data::Struct(_)) {
        errors.push(syn::Error::new_spanned(
            ident,
            "`Aggregate` is derived for the aggregate's state struct; commands and events are separate enums",
        ));
        return errors.into_compile_errors();
    }
    if !input.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(&input.generics, "`Aggregate` does not support generic types"));
        return errors.into_compile_errors();
    }
    let attrs = match Attrs::parse(input, &mut errors) {
        Some(attrs) => {
            let missing: Vec<String> =
                [(&attrs.command, "command"), (&attrs.event, "event"), (&attrs.error, "error")]
                    .into_iter()
                    .filter(|(slot, _)| !slot.given())
                    .map(|(_, what)| format!("`{what} = Type`"))
                    .collect();
            if let Some((last, rest)) = missing.split_last() {
                let list =
                    if rest.is_empty() { last.clone() } else { format!("{} and {last}", rest.join(", ")) };
                errors.push(syn::Error::new_spanned(ident, format!("missing {list} in `#[aggregate(...)]`")));
            }
            attrs
        }
        None => {
            errors.push(syn::Error::new_spanned(
                ident,
                "add `#[aggregate(command = ..., event = ..., error = ...)]` naming the aggregate's types",
            ));
            Attrs::default()
        }
    };
    let errors = errors.into_compile_errors();
    let imp = generate(ident, &attrs);
    quote!(#errors #imp)
}

/// The impls. What the attribute did not give validly is a default (name, snapshot
/// settings) or, for a missing type, a stand-in: the impl exists either way, so the
/// aggregate's uses type-check and only the attribute's own mistakes are reported.
fn generate(ident: &Ident, attrs: &Attrs) -> TokenStream {
    let name = attrs.name.get().cloned().unwrap_or_else(|| ident.to_string());
    let every = attrs
        .snapshot_every
        .get()
        .map_or_else(|| quote!(::factum::aggregate::DEFAULT_SNAPSHOT_EVERY), |n| quote!(#n));
    let version = attrs.snapshot_version.get().copied().unwrap_or(1);
    let missing = quote!(__FactumMissing);
    let command = attrs.command.get().map_or_else(|| missing.clone(), ToTokens::to_token_stream);
    let event = attrs.event.get().map_or_else(|| missing.clone(), ToTokens::to_token_stream);
    let error = attrs.error.get().map_or_else(|| missing.clone(), ToTokens::to_token_stream);
    let all_types =
        attrs.command.get().is_some() && attrs.event.get().is_some() && attrs.error.get().is_some();

    let check = all_types.then(|| check_module(ident, attrs));
    let handle = match (&attrs.handle, all_types) {
        (Once::Absent, true) => quote!(__factum_check::handle(self, command)),
        (Once::Set(path), true) => quote_spanned!(path.span()=> <_ as __factum_check::HandleMustReturn<
            ::core::result::Result<::std::vec::Vec<#event>, #error>, #command,
        >>::into_expected(#path(self, command))),
        _ => unreachable_body(),
    };
    let apply = match (&attrs.apply, all_types) {
        (Once::Absent, true) => quote!(__factum_check::apply(self, event)),
        (Once::Set(path), true) => quote_spanned!(path.span()=> #path(self, event)),
        _ => unreachable_body(),
    };
    let stand_in = (!all_types).then(stand_in);
    let aggregate_command = attrs.command.get().map(|command| {
        quote! {
            #[automatically_derived]
            impl ::factum::aggregate::AggregateCommand for #command {
                type Aggregate = #ident;
            }
        }
    });
    quote! {
        const _: () = {
            #stand_in
            #check

            #[automatically_derived]
            impl ::factum::Aggregate for #ident {
                const TYPE: &'static str = #name;
                const SNAPSHOT_EVERY: u64 = #every;
                const SNAPSHOT_VERSION: u32 = #version;
                type Command = #command;
                type Event = #event;
                type Error = #error;

                fn handle(
                    &self,
                    command: &Self::Command,
                ) -> ::core::result::Result<::std::vec::Vec<Self::Event>, Self::Error> {
                    #handle
                }

                fn apply(&mut self, event: &Self::Event) {
                    #apply
                }
            }

            #aggregate_command
        };
    }
}

/// The functions that check the struct's `handle` and `apply`, in a module that imports
/// the struct (as `State`) but not `factum::Aggregate`, so that they never call back into
/// the trait methods.
///
/// `handle`'s result must be `HandleMustReturn<Expected>`, implemented only for
/// `Expected`: a wrong return type is an error that names the function, what it returns
/// and what it must return. The inherent functions (those not named by `handle = path`
/// or `apply = path`) are called spanned on the struct's name; when the struct has none,
/// a trait of the module provides them (inherent functions come first) with an error that
/// says what to write.
fn check_module(ident: &Ident, attrs: &Attrs) -> TokenStream {
    let span = ident.span();
    let body = unreachable_body();
    let (what, signature) = match &attrs.handle {
        Once::Set(path) => {
            let name = crate::attrs::key_name(path);
            (
                format!("`{name}`"),
                format!("fn {name}(state: &{ident}, command: &{{Command}}) -> {{Expected}}"),
            )
        }
        _ => (format!("`{ident}::handle`"), "fn handle(&self, command: &{Command}) -> {Expected}".to_owned()),
    };
    let message = format!("{what} returns `{{Self}}`, but `{ident}`'s `handle` must return `{{Expected}}`");
    let label = format!("{what} must return `{{Expected}}`");
    let note = format!(
        "the decision takes the state and a command, and returns the events to record or the domain error: \
         `{signature}`"
    );
    let returns = quote! {
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
        pub(super) trait HandleMustReturn<Expected, Command> {
            fn into_expected(self) -> Expected;
        }

        impl<T, C> HandleMustReturn<T, C> for T {
            #[inline]
            fn into_expected(self) -> T {
                self
            }
        }
    };
    let handle = matches!(attrs.handle, Once::Absent).then(|| {
        let message = format!("`{ident}` has no inherent `handle` function");
        let label = format!("`#[derive(Aggregate)]` calls `{ident}::handle` to decide on a command");
        let note = format!(
            "write `impl {ident} {{{{ fn handle(&self, command: &{{Command}}) -> {{Expected}} {{{{ ... }}}} }}}}`, \
             or name another function with `#[aggregate(handle = path)]`"
        );
        let call = quote_spanned!(span=> <_ as HandleMustReturn<Expected, Cmd>>::into_expected(
            State::handle(state, command)
        ));
        quote! {
            #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
            trait DefinesHandle<Command, Expected> {}

            trait NoInherentHandle {
                fn handle(_: &Self, _: &Cmd) -> Expected
                where
                    Self: DefinesHandle<Cmd, Expected>,
                {
                    #body
                }
            }

            impl NoInherentHandle for State {}

            #[inline]
            pub(super) fn handle(state: &State, command: &Cmd) -> Expected {
                #call
            }
        }
    });
    let apply = matches!(attrs.apply, Once::Absent).then(|| {
        let message = format!("`{ident}` has no inherent `apply` function");
        let label = format!("`#[derive(Aggregate)]` calls `{ident}::apply` to fold an event into the state");
        let note = format!(
            "write `impl {ident} {{{{ fn apply(&mut self, event: &{{Event}}) {{{{ ... }}}} }}}}`, \
             or name another function with `#[aggregate(apply = path)]`"
        );
        let call = quote_spanned!(span=> State::apply(state, event));
        quote! {
            #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
            trait DefinesApply<Event> {}

            trait NoInherentApply {
                fn apply(_: &mut Self, _: &Ev)
                where
                    Self: DefinesApply<Ev>,
                {
                    #body
                }
            }

            impl NoInherentApply for State {}

            #[inline]
            pub(super) fn apply(state: &mut State, event: &Ev) {
                #call
            }
        }
    });
    quote! {
        #[allow(dead_code)]
        mod __factum_check {
            use super::#ident as State;
            type Cmd = <State as ::factum::Aggregate>::Command;
            type Ev = <State as ::factum::Aggregate>::Event;
            type Expected = ::core::result::Result<
                ::std::vec::Vec<Ev>,
                <State as ::factum::Aggregate>::Error,
            >;
            #returns
            #handle
            #apply
        }
    }
}

/// An uninhabited type standing in for a type missing from `#[aggregate(...)]`.
fn stand_in() -> TokenStream {
    let body = unreachable_body();
    quote! {
        #[derive(::core::fmt::Debug)]
        enum __FactumMissing {}

        impl ::core::fmt::Display for __FactumMissing {
            fn fmt(&self, _: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match *self {}
            }
        }

        impl ::std::error::Error for __FactumMissing {}

        impl ::factum::Command for __FactumMissing {
            fn aggregate_id(&self) -> &str {
                match *self {}
            }
        }

        impl ::factum::DomainEvent for __FactumMissing {
            fn event_type(&self) -> &'static str {
                match *self {}
            }
            fn schema_version(&self) -> u32 {
                match *self {}
            }
            fn to_payload(
                &self,
            ) -> ::core::result::Result<::factum::__private::serde_json::Value, ::factum::aggregate::EventCodecError> {
                match *self {}
            }
            fn from_stored(
                _: &str,
                _: u32,
                _: ::factum::__private::serde_json::Value,
            ) -> ::core::result::Result<Self, ::factum::aggregate::EventCodecError> {
                #body
            }
        }
    }
}
