//! `#[derive(DomainEvent)]`.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, LitInt, LitStr, Path};

use crate::attrs::{valid_topic, Errors};

struct VariantSpec {
    ident: syn::Ident,
    name: String,
    version: u32,
    topic: Option<String>,
    upcast: Option<Path>,
}

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "`DomainEvent` can only be derived for an enum: put each event in a variant",
        ));
    };
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&input.generics, "`DomainEvent` does not support generic enums"));
    }
    let mut errors = Errors::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        errors.push(syn::Error::new_spanned(attr, "put `#[event(...)]` on the variants, not on the enum"));
    }
    let mut specs = Vec::new();
    let mut names: HashMap<String, syn::Ident> = HashMap::new();
    for variant in &data.variants {
        let mut spec = VariantSpec {
            ident: variant.ident.clone(),
            name: variant.ident.to_string(),
            version: 1,
            topic: None,
            upcast: None,
        };
        let mut name_span = None;
        for attr in variant.attrs.iter().filter(|a| a.path().is_ident("event")) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    let lit: LitStr = meta.value()?.parse()?;
                    let value = lit.value();
                    if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
                        return Err(syn::Error::new_spanned(lit, "event names are 1 to 255 characters, no control characters"));
                    }
                    spec.name = value;
                    name_span = Some(lit);
                } else if meta.path.is_ident("version") {
                    let lit: LitInt = meta.value()?.parse()?;
                    let v: u32 = lit.base10_parse()?;
                    if v == 0 || v > i32::MAX as u32 {
                        return Err(syn::Error::new_spanned(lit, "event schema versions start at 1"));
                    }
                    spec.version = v;
                } else if meta.path.is_ident("topic") {
                    let lit: LitStr = meta.value()?.parse()?;
                    if !valid_topic(&lit.value()) {
                        return Err(syn::Error::new_spanned(
                            lit,
                            "a topic is dot-separated words of ASCII letters, digits, '_' or '-', like \"order.lifecycle.placed\"",
                        ));
                    }
                    spec.topic = Some(lit.value());
                } else if meta.path.is_ident("upcast") {
                    spec.upcast = Some(meta.value()?.parse()?);
                } else {
                    let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
                    return Err(meta.error(format!(
                        "unknown `event` attribute `{key}`; expected `name`, `version`, `topic` or `upcast`"
                    )));
                }
                Ok(())
            });
            errors.push_result(parsed);
        }
        if spec.upcast.is_some() && spec.version == 1 {
            errors.push(syn::Error::new_spanned(
                &variant.ident,
                "`upcast` needs `version` above 1: it turns older stored versions into this one",
            ));
        }
        if let Some(first) = names.get(&spec.name) {
            let span_of: TokenStream = match &name_span {
                Some(lit) => quote!(#lit),
                None => {
                    let ident = &variant.ident;
                    quote!(#ident)
                }
            };
            errors.push(syn::Error::new_spanned(
                span_of,
                format!(
                    "event name {:?} is already used by variant `{first}`; names must be unique",
                    spec.name
                ),
            ));
        } else {
            names.insert(spec.name.clone(), variant.ident.clone());
        }
        specs.push(spec);
    }
    errors.finish()?;

    let ident = &input.ident;
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
                #path(schema_version, payload).map_err(|reason| ::factum::EventCodecError::Upcast {
                    event_type: ::std::string::ToString::to_string(#n),
                    from: schema_version,
                    reason: ::std::string::ToString::to_string(&reason),
                })?
            },
            None => quote! {
                return ::core::result::Result::Err(::factum::EventCodecError::Upcast {
                    event_type: ::std::string::ToString::to_string(#n),
                    from: schema_version,
                    reason: ::std::string::ToString::to_string("no upcaster is declared for this event"),
                })
            },
        };
        quote! {
            #n => {
                if schema_version > #current {
                    return ::core::result::Result::Err(::factum::EventCodecError::NewerSchema {
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
    Ok(quote! {
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
                fn to_payload(&self) -> ::core::result::Result<::factum::__private::serde_json::Value, ::factum::EventCodecError> {
                    let value = ::factum::__private::serde_json::to_value(self)
                        .map_err(|e| ::factum::__private::malformed(::factum::DomainEvent::event_type(self), e))?;
                    ::core::result::Result::Ok(::factum::__private::variant_payload(value))
                }
                fn from_stored(
                    event_type: &str,
                    schema_version: u32,
                    payload: ::factum::__private::serde_json::Value,
                ) -> ::core::result::Result<Self, ::factum::EventCodecError> {
                    match event_type {
                        #(#arms_from)*
                        other => ::core::result::Result::Err(::factum::EventCodecError::UnknownEventType {
                            event_type: ::std::string::ToString::to_string(other),
                        }),
                    }
                }
                fn from_json(
                    event_type: &str,
                    schema_version: u32,
                    json: &str,
                ) -> ::core::result::Result<Self, ::factum::EventCodecError> {
                    match event_type {
                        #(#arms_json)*
                        _ => ::factum::__private::parse_then_from_stored(event_type, schema_version, json),
                    }
                }
            }
        };
    })
}
