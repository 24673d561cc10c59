//! `#[derive(Command)]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, Ident};

use crate::attrs::Errors;

/// The enum- or struct-level `#[command(id = field)]`, if any.
fn container_id(input: &DeriveInput, errors: &mut Errors) -> Option<Ident> {
    let mut id = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("command")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("id") {
                id = Some(meta.value()?.parse::<Ident>()?);
                Ok(())
            } else {
                let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
                Err(meta.error(format!("unknown `command` attribute `{key}`; expected `id = field`")))
            }
        });
        errors.push_result(parsed);
    }
    id
}

/// The field of `fields` marked `#[command(id)]`, or named `default`: a pattern binding
/// it to `__factum_id` and nothing else.
fn id_pattern(
    fields: &Fields,
    default: Option<&Ident>,
    owner: &dyn quote::ToTokens,
    errors: &mut Errors,
) -> Option<TokenStream> {
    let mut marked = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("command")) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("id") {
                    Ok(())
                } else {
                    let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
                    Err(meta.error(format!("unknown `command` field attribute `{key}`; expected `id`")))
                }
            });
            if errors.push_result(parsed).is_some() {
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
    if let Some(name) = default {
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

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
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
                    let pattern = id_pattern(&v.fields, default.as_ref(), &v.ident, &mut errors)?;
                    let variant = &v.ident;
                    Some(quote!(#ident::#variant #pattern))
                })
                .collect()
        }
        Data::Struct(data) => id_pattern(&data.fields, default.as_ref(), ident, &mut errors)
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
    errors.finish()?;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        const _: () = {
            #[automatically_derived]
            impl #impl_generics ::factum::Command for #ident #ty_generics #where_clause {
                fn aggregate_id(&self) -> &str {
                    match self {
                        #(#arms => ::core::convert::AsRef::<str>::as_ref(__factum_id),)*
                    }
                }
            }
        };
    })
}
