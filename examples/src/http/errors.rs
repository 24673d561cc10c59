//! Errors, and the shape of every body: an error is a status with a JSON body
//! `{"error": code, "message": message}`, domain and store errors map to statuses here,
//! and every JSON body ends with a newline (`json_line`).

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use factum::supervisor::SupervisorError;
use factum::{CommandError, StoreError};

use crate::app::AppError;
use crate::customer::CustomerError;
use crate::openapi::ErrorBody;
use crate::order::OrderError;

use super::IDEMPOTENCY_HEADER;

/// An error response: a status and a JSON body `{"error": code, "message": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(super) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// The store cannot be reached: 503 with `Retry-After`, at once.
    pub(super) fn store_unavailable(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the event store is unreachable: {e}"),
        )
    }

    pub(super) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the service could not do this now: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, code = self.code, message = %self.message, "error response");
        } else {
            tracing::debug!(status = %self.status, code = self.code, message = %self.message, "refused");
        }
        // The body is written here, newline and all, rather than left to `json_line`: the
        // error `json_line` itself may answer with must not depend on it.
        let mut json = serde_json::to_vec(&ErrorBody { error: self.code, message: &self.message })
            .unwrap_or_else(|_| br#"{"error":"unavailable","message":"unserializable error"}"#.to_vec());
        json.push(b'\n');
        let body = ([(CONTENT_TYPE, HeaderValue::from_static(JSON))], json);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 is worth a retry: the store or an actor is back within moments.
            return (self.status, [(RETRY_AFTER, "1")], body).into_response();
        }
        (self.status, body).into_response()
    }
}

/// The status and code of a domain error.
trait Rejection {
    fn status_and_code(&self) -> (StatusCode, &'static str);
}

impl Rejection for CustomerError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use CustomerError as E;
        match self {
            E::AlreadyRegistered(_) => (StatusCode::CONFLICT, "customer_exists"),
            E::NotRegistered(_) => (StatusCode::NOT_FOUND, "customer_not_found"),
            E::Inactive(_) => (StatusCode::CONFLICT, "customer_inactive"),
            E::InvalidName(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_name"),
            E::InvalidEmail(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_email"),
        }
    }
}

impl Rejection for OrderError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use OrderError as E;
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match self {
            E::AlreadyPlaced(_) => (StatusCode::CONFLICT, "order_exists"),
            E::NotFound(_) => (StatusCode::NOT_FOUND, "order_not_found"),
            E::InvalidCustomerId(_) => (unprocessable, "invalid_customer_id"),
            E::InvalidSku(_) => (unprocessable, "invalid_sku"),
            E::InvalidQuantity(_) => (unprocessable, "invalid_quantity"),
            E::InvalidPrice(_) => (unprocessable, "invalid_price"),
            E::PriceMismatch { .. } => (StatusCode::CONFLICT, "price_mismatch"),
            E::TooMany { .. } => (StatusCode::CONFLICT, "too_many_items"),
            E::UnknownItem(_) => (StatusCode::NOT_FOUND, "item_not_found"),
            E::Locked(_) => (StatusCode::CONFLICT, "order_locked"),
            E::Empty => (StatusCode::CONFLICT, "order_empty"),
            E::NotConfirmed(_) => (StatusCode::CONFLICT, "order_not_confirmed"),
            E::Closed(_) => (StatusCode::CONFLICT, "order_closed"),
            E::InvalidReason(_) => (unprocessable, "invalid_reason"),
        }
    }
}

fn command_error<E: Rejection + std::error::Error>(e: CommandError<E>) -> ApiError {
    match e {
        CommandError::Domain(d) => {
            let (status, code) = d.status_and_code();
            ApiError::new(status, code, d.to_string())
        }
        CommandError::Conflict { .. } => {
            ApiError::new(StatusCode::CONFLICT, "concurrency_conflict", e.to_string())
        }
        CommandError::InvalidCommand(_) => ApiError::bad_request("invalid_id", e.to_string()),
        CommandError::Store(e @ StoreError::Unavailable { .. }) => ApiError::store_unavailable(e),
        CommandError::Store(e @ StoreError::OutcomeUnknown { .. }) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "outcome_unknown",
            format!(
                "the command may or may not have been recorded ({e}); send it again with the same \
                 {IDEMPOTENCY_HEADER} header to get its result"
            ),
        ),
        CommandError::Store(StoreError::DuplicateEvent { .. }) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            format!("this {IDEMPOTENCY_HEADER} was used for another command"),
        ),
        other => ApiError::internal(other),
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Customer(e) => command_error(e),
            AppError::Order(e) => command_error(e),
        }
    }
}

impl From<SupervisorError> for ApiError {
    fn from(e: SupervisorError) -> Self {
        match e {
            SupervisorError::UnknownProjection(_) => ApiError::not_found(e.to_string()),
            SupervisorError::NotOwner(_) => ApiError::new(StatusCode::CONFLICT, "not_owner", e.to_string()),
            SupervisorError::Store(StoreError::InvalidInput(_)) => {
                ApiError::bad_request("invalid_filter", e.to_string())
            }
            SupervisorError::Store(e @ StoreError::Unavailable { .. }) => ApiError::store_unavailable(e),
            other => ApiError::internal(other),
        }
    }
}

/// The media type of every JSON body.
const JSON: &str = "application/json";

/// Ends a JSON response's body with a newline, as line-oriented tools (a terminal after
/// `curl`, `jq -c`, log shippers) expect; the JSON itself is unchanged. Bodies of other
/// types (`/metrics`) pass through untouched, and so does a body that already ends with
/// one.
pub(super) async fn json_line(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(JSON));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // A JSON body is serialized in memory already: reading it back does not wait.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => return ApiError::internal(format!("cannot read the response body: {e}")).into_response(),
    };
    if bytes.ends_with(b"\n") {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let mut line = Vec::with_capacity(bytes.len() + 1);
    line.extend_from_slice(&bytes);
    line.push(b'\n');
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(line))
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use factum::StreamId;

    async fn body_of(response: Response) -> (Option<String>, String) {
        let content_type = response.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (content_type, String::from_utf8(bytes.to_vec()).expect("utf-8"))
    }

    #[tokio::test]
    async fn json_bodies_end_with_one_newline_and_others_are_untouched() {
        let answer = json_line(Json(serde_json::json!({"id": "o-1"})).into_response()).await;
        assert_eq!(body_of(answer).await, (Some(JSON.to_owned()), "{\"id\":\"o-1\"}\n".to_owned()));

        let error = ApiError::not_found("no such order").into_response();
        let (_, raw) = body_of(error).await;
        assert_eq!(
            raw, "{\"error\":\"not_found\",\"message\":\"no such order\"}\n",
            "written with its newline"
        );
        let error = json_line(ApiError::not_found("no such order").into_response()).await;
        assert_eq!(body_of(error).await.1, raw, "and not given a second one");

        let text = "# EOF\n".to_owned();
        let metrics = ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0")], text.clone());
        assert_eq!(body_of(json_line(metrics.into_response()).await).await.1, text);
        let plain = json_line("no newline".into_response()).await;
        assert_eq!(body_of(plain).await.1, "no newline");
    }

    #[test]
    fn command_errors_map_to_statuses() {
        let stream = StreamId::new("Order", "o-1").expect("id");
        let conflict: CommandError<OrderError> = CommandError::Conflict { stream, attempts: 6 };
        let e = command_error(conflict);
        assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "concurrency_conflict"));
        let e = command_error::<OrderError>(CommandError::Domain(OrderError::Empty));
        assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "order_empty"));
        let e = command_error::<OrderError>(CommandError::Unavailable("busy".into()));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let e = command_error::<CustomerError>(CommandError::Domain(CustomerError::InvalidEmail("x")));
        assert_eq!((e.status, e.code), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_email"));
    }
}
