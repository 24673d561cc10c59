//! `#[derive(Command)]`.
//!
//! Every attribute mistake is reported; the impl is then still emitted, with a body that
//! never runs, so that the command's uses do not add "not a `Command`" errors.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Attribute, Data, DeriveInput, Fields, Ident};

use crate::attrs::{parse_keys, unknown_key, unreachable_body, value, Errors, Once};

/// The enum- or struct-level `#[command(id = field)]`.
fn container_id(input: &DeriveInput, errors: &mut Errors) -> Once<Ident> {
    let mut id = Once::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("command")) {
        parse_keys(attr, errors, |key, meta| match key {
            "id" => id.set(meta, "command", || {
                value(meta, "`id` names the field that holds the aggregate id, like `id = order_id`")
            }),
            _ => Err(unknown_key(meta, "`command` attribute", "`id = field`")),
        });
    }
    id
}

/// Whether the field's `#[command(...)]` attributes mark it as the id.
fn marks_id(attr: &Attribute, errors: &mut Errors) -> bool {
    let mut id = false;
    parse_keys(attr, errors, |key, meta| match key {
        "id" => {
            id = true;
            Ok(())
        }
        _ => Err(unknown_key(meta, "`command` field attribute", "`id`")),
    });
    id
}

/// The field of `fields` marked `#[command(id)]`, or named `default`: a pattern binding
/// it to `__factum_id` and nothing else.
fn id_pattern(
    fields: &Fields,
    default: &Once<Ident>,
    owner: &dyn quote::ToTokens,
    errors: &mut Errors,
) -> Option<TokenStream> {
    let mut marked = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("command")) {
            if marks_id(attr, errors) {
                marked.push((index, field, attr));
            }
        }
    }
    if marked.len() > 1 {
        errors.push(syn::Error::new_spanned(
            marked[1].2,
            "only one field can be the aggregate id: remove the second `#[command(id)]`",
        ));
        return None;
    }
    let binding = format_ident!("__factum_id");
    if let Some((index, field, _)) = marked.first() {
        return Some(match &field.ident {
            Some(name) => quote!({ #name: #binding, .. }),
            None => {
                let index = syn::Index::from(*index);
                quote!({ #index: #binding, .. })
            }
        });
    }
    if let Once::Invalid = default {
        // `#[command(id = ...)]` was rejected: that is the mistake, already reported.
        return None;
    }
    if let Once::Set(name) = default {
        if fields.iter().any(|f| f.ident.as_ref() == Some(name)) {
            return Some(quote!({ #name: #binding, .. }));
        }
        errors.push(syn::Error::new_spanned(
            owner,
            format!("this has no field `{name}` to use as the aggregate id; add it or mark another field with `#[command(id)]`"),
        ));
        return None;
    }
    errors.push(syn::Error::new_spanned(
        owner,
        "no aggregate id: mark the field with `#[command(id)]`, or name it once with `#[command(id = field)]` on the type",
    ));
    None
}

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let default = container_id(input, &mut errors);
    let ident = &input.ident;
    let arms: Vec<TokenStream> = match &input.data {
        Data::Enum(data) => {
            if data.variants.is_empty() {
                errors.push(syn::Error::new_spanned(ident, "a command enum needs at least one variant"));
            }
            data.variants
                .iter()
                .filter_map(|v| {
                    let pattern = id_pattern(&v.fields, &default, &v.ident, &mut errors)?;
                    let variant = &v.ident;
                    Some(quote!(#ident::#variant #pattern))
                })
                .collect()
        }
        Data::Struct(data) => id_pattern(&data.fields, &default, ident, &mut errors)
            .map(|pattern| quote!(#ident #pattern))
            .into_iter()
            .collect(),
        Data::Union(_) => {
            errors.push(syn::Error::new_spanned(
                ident,
                "`Command` can be derived for an enum or a struct, not a union",
            ));
            Vec::new()
        }
    };
    let body = if errors.is_empty() {
        quote! {
            match self {
                #(#arms => ::core::convert::AsRef::<str>::as_ref(__factum_id),)*
            }
        }
    } else {
        unreachable_body()
    };
    let errors = errors.into_compile_errors();
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #errors

        const _: () = {
            #[automatically_derived]
            impl #impl_generics ::factum::Command for #ident #ty_generics #where_clause {
                fn aggregate_id(&self) -> &str {
                    #body
                }
            }
        };
    }
}
