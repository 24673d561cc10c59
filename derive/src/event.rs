//! `#[derive(DomainEvent)]`.
//!
//! Every attribute mistake is reported, including serde attributes that would break the
//! stored form; the impl is then still emitted, with bodies that never run, so that the
//! enum's uses do not add "not a `DomainEvent`" errors.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, Data, DeriveInput, LitStr, Path, Variant};

use crate::attrs::{
    checked_string, key_name, parse_keys, schema_version, unknown_key, unreachable_body, valid_name,
    valid_topic, value, Errors, Once,
};

struct VariantSpec {
    ident: syn::Ident,
    name: String,
    version: u32,
    topic: Option<String>,
    upcast: Option<Path>,
}

/// The keys of a variant's `#[event(...)]`.
#[derive(Default)]
struct VariantAttrs {
    name: Once<LitStr>,
    version: Once<u32>,
    topic: Once<String>,
    upcast: Once<Path>,
}

impl VariantAttrs {
    fn parse(variant: &Variant, errors: &mut Errors) -> VariantAttrs {
        let mut attrs = VariantAttrs::default();
        for attr in variant.attrs.iter().filter(|a| a.path().is_ident("event")) {
            parse_keys(attr, errors, |key, meta| {
                match key {
                "name" => attrs.name.set(meta, "event", || {
                    let hint = "`name` takes a string, like `name = \"order.placed\"`";
                    checked_string(meta, hint, valid_name, "event names are 1 to 255 characters, no control characters")
                }),
                "version" => attrs.version.set(meta, "event", || {
                    schema_version(meta, "event schema versions start at 1, like `version = 2`")
                }),
                "topic" => attrs.topic.set(meta, "event", || {
                    let hint = "`topic` takes a string, like `topic = \"order.lifecycle.placed\"`";
                    let invalid = "a topic is dot-separated words of ASCII letters, digits, '_' or '-', like \"order.lifecycle.placed\"";
                    Ok(checked_string(meta, hint, valid_topic, invalid)?.value())
                }),
                "upcast" => attrs.upcast.set(meta, "event", || {
                    value(meta, "`upcast` names a function, like `upcast = upcast_placed`")
                }),
                _ => Err(unknown_key(meta, "`event` attribute", "`name`, `version`, `topic` or `upcast`")),
            }
            });
        }
        attrs
    }
}

/// What `#[event(name = ...)]` to suggest instead of a serde rename.
fn suggest_name(rename: Option<&LitStr>) -> String {
    match rename {
        Some(lit) => format!("#[event(name = {:?})]", lit.value()),
        None => "#[event(name = \"...\")]".to_owned(),
    }
}

/// Reports serde attributes that break the stored form: a payload is the variant's
/// content alone, and it is decoded through the variant's Rust name. `on_enum` tells
/// the enum's attributes from a variant's.
fn check_serde(attrs: &[Attribute], on_enum: bool, errors: &mut Errors) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        // serde reports its own syntax errors: skip what does not parse.
        let mut found = Vec::new();
        let _ = attr.parse_nested_meta(|meta| {
            let key = key_name(&meta.path);
            let rename = if key == "rename" && !on_enum && meta.input.peek(syn::Token![=]) {
                meta.value()?.parse::<LitStr>().ok()
            } else {
                None
            };
            let input = meta.input;
            while !input.is_empty() && !input.peek(syn::Token![,]) {
                input.parse::<proc_macro2::TokenTree>()?;
            }
            let message = match (key.as_str(), on_enum) {
                ("rename", false) => Some(format!(
                    "do not rename event variants with serde: the stored payload is decoded through \
                     the variant's Rust name; name the stored event with `{}` instead",
                    suggest_name(rename.as_ref())
                )),
                ("rename_all", true) => Some(
                    "do not rename an event enum's variants with serde: the stored payload is decoded \
                     through each variant's Rust name; name stored events with `#[event(name = \"...\")]` instead"
                        .to_owned(),
                ),
                ("tag" | "untagged", true) | ("untagged", false) => Some(format!(
                    "`#[serde({key})]` is not supported on events: the payload is stored as the variant's \
                     content alone (serde's default, externally tagged form), and its name as the event type"
                )),
                _ => None,
            };
            if let Some(message) = message {
                found.push(syn::Error::new_spanned(&meta.path, message));
            }
            Ok(())
        });
        for error in found {
            errors.push(error);
        }
    }
}

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let ident = &input.ident;
    let generic = !input.generics.params.is_empty();
    if generic {
        errors.push(syn::Error::new_spanned(&input.generics, "`DomainEvent` does not support generic enums"));
    }
    let Data::Enum(data) = &input.data else {
        errors.push(syn::Error::new_spanned(
            ident,
            "`DomainEvent` can only be derived for an enum: put each event in a variant",
        ));
        return with_fallback(ident, generic, errors);
    };
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        errors.push(syn::Error::new_spanned(attr, "put `#[event(...)]` on the variants, not on the enum"));
    }
    check_serde(&input.attrs, true, &mut errors);
    let mut specs = Vec::new();
    let mut names: HashMap<String, syn::Ident> = HashMap::new();
    for variant in &data.variants {
        check_serde(&variant.attrs, false, &mut errors);
        let attrs = VariantAttrs::parse(variant, &mut errors);
        let spec = VariantSpec {
            ident: variant.ident.clone(),
            name: attrs.name.get().map_or_else(|| variant.ident.to_string(), LitStr::value),
            version: attrs.version.get().copied().unwrap_or(1),
            topic: attrs.topic.get().cloned(),
            upcast: attrs.upcast.get().cloned(),
        };
        // Only a version given as 1 (or not given) is a mistake here, not one rejected.
        if attrs.upcast.given() && spec.version == 1 && !matches!(attrs.version, Once::Invalid) {
            errors.push(syn::Error::new_spanned(
                &variant.ident,
                "`upcast` needs `version` above 1: it turns older stored versions into this one",
            ));
        }
        if let Some(first) = names.get(&spec.name) {
            let message = format!(
                "event name {:?} is already used by variant `{first}`; names must be unique",
                spec.name
            );
            errors.push(match attrs.name.get() {
                Some(lit) => syn::Error::new_spanned(lit, message),
                None => syn::Error::new_spanned(&variant.ident, message),
            });
        } else {
            names.insert(spec.name.clone(), variant.ident.clone());
        }
        specs.push(spec);
    }
    if !errors.is_empty() {
        return with_fallback(ident, generic, errors);
    }

    let arms_type = specs.iter().map(|s| {
        let (v, n) = (&s.ident, &s.name);
        quote!(#ident::#v { .. } => #n)
    });
    let arms_version = specs.iter().map(|s| {
        let (v, n) = (&s.ident, s.version);
        quote!(#ident::#v { .. } => #n)
    });
    let arms_topic = specs.iter().map(|s| {
        let v = &s.ident;
        match &s.topic {
            Some(t) => quote!(#ident::#v { .. } => ::core::option::Option::Some(#t)),
            None => quote!(#ident::#v { .. } => ::core::option::Option::None),
        }
    });
    let arms_from = specs.iter().map(|s| {
        let (n, current) = (&s.name, s.version);
        let variant = s.ident.to_string();
        let upcast = match &s.upcast {
            Some(path) => quote! {
                #path(schema_version, payload).map_err(|reason| ::factum::aggregate::EventCodecError::Upcast {
                    event_type: ::std::string::ToString::to_string(#n),
                    from: schema_version,
                    reason: ::std::string::ToString::to_string(&reason),
                })?
            },
            None => quote! {
                return ::core::result::Result::Err(::factum::aggregate::EventCodecError::Upcast {
                    event_type: ::std::string::ToString::to_string(#n),
                    from: schema_version,
                    reason: ::std::string::ToString::to_string("no upcaster is declared for this event"),
                })
            },
        };
        quote! {
            #n => {
                if schema_version > #current {
                    return ::core::result::Result::Err(::factum::aggregate::EventCodecError::NewerSchema {
                        event_type: ::std::string::ToString::to_string(#n),
                        stored: schema_version,
                        supported: #current,
                    });
                }
                let payload = if schema_version < #current { #upcast } else { payload };
                ::factum::__private::decode_variant(#variant, payload)
                    .map_err(|e| ::factum::__private::malformed(#n, e))
            }
        }
    });
    // From JSON text: a current-version payload decodes straight into the variant; an
    // older one is parsed and upcast as in `from_stored`.
    let arms_json = specs.iter().map(|s| {
        let (n, current) = (&s.name, s.version);
        let variant = s.ident.to_string();
        quote! {
            #n if schema_version == #current => ::factum::__private::decode_variant_json(#variant, json)
                .map_err(|e| ::factum::__private::malformed(#n, e)),
        }
    });
    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::factum::DomainEvent for #ident {
                fn event_type(&self) -> &'static str {
                    match self { #(#arms_type,)* }
                }
                fn schema_version(&self) -> u32 {
                    match self { #(#arms_version,)* }
                }
                fn topic(&self) -> ::core::option::Option<&'static str> {
                    match self { #(#arms_topic,)* }
                }
                fn to_payload(&self) -> ::core::result::Result<::factum::__private::serde_json::Value, ::factum::aggregate::EventCodecError> {
                    let value = ::factum::__private::serde_json::to_value(self)
                        .map_err(|e| ::factum::__private::malformed(::factum::DomainEvent::event_type(self), e))?;
                    ::core::result::Result::Ok(::factum::__private::variant_payload(value))
                }
                fn to_json(&self) -> ::core::result::Result<::std::boxed::Box<::factum::__private::serde_json::value::RawValue>, ::factum::aggregate::EventCodecError> {
                    let text = ::factum::__private::serde_json::to_string(self)
                        .map_err(|e| ::factum::__private::malformed(::factum::DomainEvent::event_type(self), e))?;
                    ::factum::__private::variant_payload_text(::factum::DomainEvent::event_type(self), &text)
                }
                fn from_stored(
                    event_type: &str,
                    schema_version: u32,
                    payload: ::factum::__private::serde_json::Value,
                ) -> ::core::result::Result<Self, ::factum::aggregate::EventCodecError> {
                    match event_type {
                        #(#arms_from)*
                        other => ::core::result::Result::Err(::factum::aggregate::EventCodecError::UnknownEventType {
                            event_type: ::std::string::ToString::to_string(other),
                        }),
                    }
                }
                fn from_json(
                    event_type: &str,
                    schema_version: u32,
                    json: &str,
                ) -> ::core::result::Result<Self, ::factum::aggregate::EventCodecError> {
                    match event_type {
                        #(#arms_json)*
                        _ => ::factum::__private::parse_then_from_stored(event_type, schema_version, json),
                    }
                }
            }
        };
    }
}

/// The errors, and an impl whose methods never run, so that the enum's uses as an event
/// do not add "not a `DomainEvent`" errors (none for a generic type, whose bounds are
/// unknown).
fn with_fallback(ident: &syn::Ident, generic: bool, errors: Errors) -> TokenStream {
    let errors = errors.into_compile_errors();
    if generic {
        return errors;
    }
    let body = unreachable_body();
    quote! {
        #errors

        const _: () = {
            #[automatically_derived]
            impl ::factum::DomainEvent for #ident {
                fn event_type(&self) -> &'static str {
                    #body
                }
                fn schema_version(&self) -> u32 {
                    #body
                }
                fn to_payload(
                    &self,
                ) -> ::core::result::Result<::factum::__private::serde_json::Value, ::factum::aggregate::EventCodecError> {
                    #body
                }
                fn from_stored(
                    _: &str,
                    _: u32,
                    _: ::factum::__private::serde_json::Value,
                ) -> ::core::result::Result<Self, ::factum::aggregate::EventCodecError> {
                    #body
                }
            }
        };
    }
}
