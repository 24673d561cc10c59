//! Extractors that answer with [`ApiError`], the request-context middleware, and the
//! serde helpers that make a body mean what its schema says.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use factum::trace::{TraceParent, TraceState};
use factum::Metadata;
use serde::de::{DeserializeOwned, Deserializer, Error as _, Unexpected, Visitor};
use serde::Deserialize;
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use super::{ApiError, CORRELATION_HEADER, IDEMPOTENCY_HEADER, USER_HEADER};
use crate::validate::check_id;

/// A JSON object body; malformed JSON is 400, a wrong shape (not an object, missing or
/// unknown fields, wrong types) 422, a missing `Content-Type: application/json` 415, an
/// oversize body 413.
///
/// serde's derived struct deserializers also take a JSON array, field by field in order;
/// the body is read as a [`Value`] first and refused unless it is an object, so that
/// `["ada", "Ada", "ada@example.com"]` is the 422 its schema promises.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let value = match Json::<Value>::from_request(req, state).await {
            Ok(Json(value)) => value,
            Err(rejection) => {
                let code = match &rejection {
                    JsonRejection::JsonDataError(_) => "invalid_body",
                    JsonRejection::JsonSyntaxError(_) => "malformed_json",
                    JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
                    _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    _ => "unreadable_body",
                };
                return Err(ApiError::new(rejection.status(), code, rejection.body_text()));
            }
        };
        if !value.is_object() {
            return Err(invalid_body(format!("the body must be a JSON object, not {}", kind(&value))));
        }
        serde_json::from_value(value).map(ApiJson).map_err(|e| invalid_body(e.to_string()))
    }
}

fn invalid_body(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// For an optional field whose schema is a string: absent is `None`, `null` is refused
/// like any other non-string. Use with `#[serde(default, deserialize_with = "present")]`.
pub(super) fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

/// An integer field as JSON Schema's `integer` means it: any number with no fractional
/// part, so `2.0` is 2, while `2.5` and numbers outside `i64` are refused.
pub(super) fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Integer;
    impl Visitor<'_> for Integer {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            // 2^63 is exact as an f64; every integral f64 below it and at or above -2^63 fits.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
                Ok(v as i64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }
    deserializer.deserialize_any(Integer).map_err(D::Error::custom)
}

/// The `{id}` (or `{name}`) path segment, checked to be an id (letters, digits, `-`, `_`;
/// 1 to 64).
pub(super) struct Id(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params =
            Path::<BTreeMap<String, String>>::from_request_parts(parts, state).await.map_err(path_error)?;
        let id = params.0.get("id").or_else(|| params.0.get("name")).cloned().unwrap_or_default();
        check_id(&id)
            .map_err(|why| ApiError::bad_request("invalid_id", format!("invalid id {id:?}: {why}")))?;
        Ok(Id(id))
    }
}

pub(super) fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", e.body_text())
}

pub(super) fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", e.body_text())
}

/// What the request-context middleware puts in the request's extensions.
#[derive(Clone, Debug)]
pub(super) struct Context {
    pub(super) correlation_id: Uuid,
    user_id: Option<String>,
    /// The command's id, from the request's `Idempotency-Key`: a command sent again
    /// with the same key runs once, and the repeat answers what the first run did.
    pub(super) command_id: Option<Uuid>,
}

impl Context {
    /// Event metadata for one command of this request: its correlation id, a fresh
    /// causation id (the command's id), the user, and where it came from.
    pub(super) fn metadata(&self) -> Metadata {
        let mut metadata = Metadata {
            correlation_id: Some(self.correlation_id),
            causation_id: Some(Uuid::now_v7()),
            user_id: self.user_id.clone(),
            ..Metadata::default()
        };
        metadata.custom.insert("source".into(), Value::from("http"));
        metadata
    }
}

/// Whether an `Idempotency-Key` is 1 to 255 visible ASCII characters.
fn valid_key(key: &[u8]) -> bool {
    (1..=255).contains(&key.len()) && key.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The command id of an `Idempotency-Key` sent with a request: a name-based UUID of the
/// key, the method, the path and the body.
fn command_id(key: &[u8], method: &str, path: &str, body: &[u8]) -> Uuid {
    /// The namespace of command ids made from idempotency keys.
    const KEYS: Uuid = Uuid::from_u128(0x0d1c_9a5e_8f3b_4c61_a2f4_5b7e_3c90_d148);
    let mut name = Vec::with_capacity(key.len() + method.len() + path.len() + body.len() + 3);
    for part in [key, method.as_bytes(), path.as_bytes(), body] {
        name.extend_from_slice(part);
        name.push(0);
    }
    Uuid::new_v5(&KEYS, &name)
}

/// Takes (or makes) the correlation id, runs the request in a span carrying it (continuing
/// the caller's trace when it sends `traceparent`), logs the outcome, and echoes the id in
/// the response.
pub(super) async fn request_context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let header = HeaderName::from_static(CORRELATION_HEADER);
    let correlation_id =
        match req.headers().get(&header).map(|v| v.to_str().ok().and_then(|s| s.parse().ok())) {
            None => Uuid::now_v7(),
            Some(Some(id)) => id,
            Some(None) => {
                return ApiError::bad_request(
                    "invalid_correlation_id",
                    format!("{CORRELATION_HEADER} must be a UUID"),
                )
                .into_response();
            }
        };
    let user_id =
        match req.headers().get(USER_HEADER).map(|v| v.to_str().ok().filter(|s| check_id(s).is_ok())) {
            None => None,
            Some(Some(user)) => Some(user.to_owned()),
            Some(None) => {
                return ApiError::bad_request("invalid_user_id", format!("{USER_HEADER} must be an id"))
                    .into_response();
            }
        };
    let key = req.headers().get(IDEMPOTENCY_HEADER).map(|v| v.as_bytes().to_vec());
    let command_id = match key {
        None => None,
        Some(key) if !valid_key(&key) => {
            return ApiError::bad_request(
                "invalid_idempotency_key",
                format!("{IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters"),
            )
            .into_response();
        }
        Some(key) => {
            // The command is the key with the request it came with: the same request
            // sent again runs once; the key sent with another request is another command.
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, super::MAX_BODY).await else {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body is larger than {} KiB", super::MAX_BODY / 1024),
                )
                .into_response();
            };
            let id = command_id(&key, parts.method.as_str(), parts.uri.path(), &bytes);
            req = Request::from_parts(parts, axum::body::Body::from(bytes));
            Some(id)
        }
    };
    req.extensions_mut().insert(Context { correlation_id, user_id, command_id });
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        method = %req.method(),
        path = %req.uri().path(),
        correlation_id = %correlation_id,
    );
    // Continue the caller's trace (W3C trace context); a header that is not valid trace
    // context is ignored, as the recommendation asks, and the request starts a trace.
    {
        let headers = req.headers();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let parent: Option<TraceParent> = text("traceparent").and_then(|t| t.parse().ok());
        let state: Option<TraceState> = text("tracestate").and_then(|t| t.parse().ok());
        factum::trace::continue_trace(&span, parent.as_ref(), state.as_ref());
    }
    let mut response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "served"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&correlation_id.to_string()) {
        response.headers_mut().insert(header, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        #[serde(deserialize_with = "integer")]
        quantity: i64,
        #[serde(default, deserialize_with = "present")]
        id: Option<String>,
    }

    #[test]
    fn an_idempotency_key_names_the_request_it_came_with() {
        let id =
            |key: &str, path: &str, body: &str| command_id(key.as_bytes(), "POST", path, body.as_bytes());
        assert_eq!(id("k-1", "/orders", "{}"), id("k-1", "/orders", "{}"));
        assert_ne!(id("k-1", "/orders", "{}"), id("k-2", "/orders", "{}"));
        assert_ne!(id("k-1", "/orders", "{}"), id("k-1", "/customers", "{}"));
        assert_ne!(id("k-1", "/orders", r#"{"id":"a"}"#), id("k-1", "/orders", r#"{"id":"b"}"#));
        // The parts are kept apart: moving a byte from one to the next is another command.
        assert_ne!(id("k-1", "/orders", "x"), id("k-1", "/ordersx", ""));
        assert!(valid_key(b"0") && valid_key(&[b'a'; 255]));
        assert!(
            !valid_key(b"") && !valid_key(&[b'a'; 256]) && !valid_key(b"a b") && !valid_key("é".as_bytes())
        );
    }

    fn item(json: &str) -> Result<Item, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn integers_are_json_schema_integers() {
        assert_eq!(item(r#"{"quantity": 2}"#).expect("2").quantity, 2);
        assert_eq!(item(r#"{"quantity": 2.0}"#).expect("2.0").quantity, 2);
        assert_eq!(item(r#"{"quantity": 1e2}"#).expect("1e2").quantity, 100);
        assert_eq!(item(r#"{"quantity": -9223372036854775808}"#).expect("min").quantity, i64::MIN);
        for bad in ["2.5", "1e300", "9223372036854775808", "99999999999999999999999", "\"2\"", "null", "true"]
        {
            assert!(item(&format!(r#"{{"quantity": {bad}}}"#)).is_err(), "{bad}");
        }
    }

    #[test]
    fn optional_strings_may_be_absent_but_not_null() {
        assert_eq!(item(r#"{"quantity": 1}"#).expect("absent").id, None);
        assert_eq!(item(r#"{"quantity": 1, "id": "a"}"#).expect("a").id.as_deref(), Some("a"));
        assert!(item(r#"{"quantity": 1, "id": null}"#).is_err());
        assert!(item(r#"{"quantity": 1, "id": 5}"#).is_err());
    }
}
