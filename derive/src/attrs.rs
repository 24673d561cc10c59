//! Attribute parsing shared by the derives: errors are collected, not returned at the
//! first one, so that one expansion reports every misuse at once and a mistake in one
//! key never makes the keys after it look missing.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Path, Token};

/// Accumulates errors; they are emitted together, beside a fallback impl.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(e) => e.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Whether nothing was reported.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// One `compile_error!` per error, or nothing.
    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.0.map(syn::Error::into_compile_error).unwrap_or_default()
    }
}

/// A key's name as written (a path such as `a::b` is kept whole).
pub(crate) fn key_name(path: &Path) -> String {
    match path.get_ident() {
        Some(ident) => ident.to_string(),
        None => path.to_token_stream().to_string().replace(' ', ""),
    }
}

/// Parses the keys of `#[attr(key = value, flag, list(...))]`, calling `each` with each
/// key's name. An error from `each` (an unknown key, a bad value) is recorded and the
/// rest of that key is skipped, so the keys after it are still parsed. An attribute that
/// is not a list at all is recorded too.
pub(crate) fn parse_keys(
    attr: &Attribute,
    errors: &mut Errors,
    mut each: impl FnMut(&str, &ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    let mut found = Errors::default();
    let parsed = attr.parse_nested_meta(|meta| {
        if let Err(error) = each(&key_name(&meta.path), &meta) {
            found.push(error);
            skip_value(meta.input)?;
        }
        Ok(())
    });
    if let Some(e) = found.0 {
        errors.push(e);
    }
    if let Err(e) = parsed {
        errors.push(e);
    }
}

/// Skips what is left of one key: up to the next top-level comma or the end.
fn skip_value(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// Parses `= value` after a key, replacing syn's error for a value of the wrong kind
/// with `hint` (which says what to write), spanned on the value.
pub(crate) fn value<T: Parse>(meta: &ParseNestedMeta<'_>, hint: &str) -> syn::Result<T> {
    let input = meta.value().map_err(|e| syn::Error::new(e.span(), hint))?;
    input.parse().map_err(|e| syn::Error::new(e.span(), hint))
}

/// A schema version: an integer from 1 to `i32::MAX`, else an error on the number saying `hint`.
pub(crate) fn schema_version(meta: &ParseNestedMeta<'_>, hint: &str) -> syn::Result<u32> {
    let lit: syn::LitInt = value(meta, hint)?;
    match lit.base10_parse::<u32>() {
        Ok(v) if v >= 1 && v <= i32::MAX as u32 => Ok(v),
        _ => Err(syn::Error::new_spanned(lit, hint)),
    }
}

/// A string value that `valid` accepts, else an error on the string saying `invalid`.
pub(crate) fn checked_string(
    meta: &ParseNestedMeta<'_>,
    hint: &str,
    valid: fn(&str) -> bool,
    invalid: &str,
) -> syn::Result<syn::LitStr> {
    let lit: syn::LitStr = value(meta, hint)?;
    if !valid(&lit.value()) {
        return Err(syn::Error::new_spanned(lit, invalid));
    }
    Ok(lit)
}

/// The error for a key that is not one of `expected`.
/// `what` is like "`aggregate` attribute".
pub(crate) fn unknown_key(meta: &ParseNestedMeta<'_>, what: &str, expected: &str) -> syn::Error {
    syn::Error::new_spanned(
        &meta.path,
        format!("unknown {what} `{}`; expected {expected}", key_name(&meta.path)),
    )
}

/// A key that may be given once: a second occurrence is an error on that occurrence.
#[derive(Default)]
pub(crate) enum Once<T> {
    /// Not given.
    #[default]
    Absent,
    /// Given, but its value was rejected (already reported).
    Invalid,
    /// Given.
    Set(T),
}

impl<T> Once<T> {
    /// Records the key's value, parsed by `parse`; a repeated key is an error and its
    /// value is not parsed.
    pub(crate) fn set(
        &mut self,
        meta: &ParseNestedMeta<'_>,
        attribute: &str,
        parse: impl FnOnce() -> syn::Result<T>,
    ) -> syn::Result<()> {
        if !matches!(self, Once::Absent) {
            return Err(syn::Error::new_spanned(
                &meta.path,
                format!("duplicate `{attribute}` attribute `{}`", key_name(&meta.path)),
            ));
        }
        match parse() {
            Ok(v) => {
                *self = Once::Set(v);
                Ok(())
            }
            Err(e) => {
                *self = Once::Invalid;
                Err(e)
            }
        }
    }

    /// The value, if one was given and accepted.
    pub(crate) fn get(&self) -> Option<&T> {
        match self {
            Once::Set(v) => Some(v),
            Once::Absent | Once::Invalid => None,
        }
    }

    /// Whether the key was written at all (valid or not).
    pub(crate) fn given(&self) -> bool {
        !matches!(self, Once::Absent)
    }
}

/// Whether `topic` is dot-separated words of ASCII letters, digits, `_` and `-` (the
/// same rule the store applies at run time).
pub(crate) fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 255
        && topic
            .split('.')
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
}

/// Whether `name` is a valid stored name (aggregate type or event type).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(char::is_control)
}

/// The body of a fallback impl's methods: the impl exists only so that a derive that
/// reported an error does not also cause "trait not implemented" errors at every use;
/// the crate does not compile, so this never runs.
pub(crate) fn unreachable_body() -> TokenStream {
    quote::quote!(::core::unreachable!("factum: this impl stands in for a derive that reported an error"))
}
