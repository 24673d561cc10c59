//! The HTTP JSON API (axum): commands, read-model queries, operations, `/health`,
//! `/metrics` and `/openapi.json`.
//!
//! Every JSON body, an answer or an error, ends with a newline.
//! Every error is a JSON body `{"error": "<code>", "message": "<what was wrong>"}` with a
//! 4xx status for anything the client can fix, 409 for a conflict with the aggregate's
//! state or a concurrency conflict that survived the retries, and 5xx only when the
//! service itself is in trouble; every 503 carries `Retry-After`.
//!
//! The handlers live in `commands`, `queries` and `ops`, the extractors in `extract`.
//! Each handler's `#[utoipa::path]` is its entry in `/openapi.json` ([`crate::openapi`])
//! and also what [`routes`] registers it by.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use factum::supervisor::{HealthStatus, SupervisorError};
use factum::{CommandError, StoreError};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{App, AppError};
use crate::customer::CustomerError;
use crate::openapi::{self, ErrorBody};
use crate::order::OrderError;

mod builds;
mod commands;
mod consistency;

pub use consistency::{MIN_POSITION_HEADER, POSITION_HEADER, READ_WAIT};
pub(crate) use queries::MAX_POSITION;
mod extract;
mod ops;
mod processes;
mod queries;

pub use extract::ApiJson;

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// The request header carrying the correlation id (a UUID); echoed on every response.
pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// The request header naming the acting user (an id), stored in the events' metadata.
pub const USER_HEADER: &str = "x-user-id";
/// The request header that makes a command run at most once: the same request sent
/// again with the same key answers what the first run recorded (`Idempotency-Key`).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The API's routes over `app`.
pub fn router(app: App) -> Router {
    let (router, _) = routes(OpenApiRouter::new()).split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(extract::request_context))
        .layer(middleware::map_response(json_line))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Every route, each registered from its handler's `#[utoipa::path]`, added to `api`:
/// the one list that both [`router`] and [`openapi::document`] are built from.
pub(crate) fn routes(api: OpenApiRouter<App>) -> OpenApiRouter<App> {
    api.routes(routes!(commands::register_customer))
        .routes(routes!(queries::get_customer))
        .routes(routes!(commands::change_email))
        .routes(routes!(commands::deactivate))
        .routes(routes!(commands::place_order))
        .routes(routes!(queries::get_order))
        .routes(routes!(commands::add_item))
        .routes(routes!(commands::remove_item))
        .routes(routes!(commands::confirm))
        .routes(routes!(commands::ship))
        .routes(routes!(commands::cancel))
        .routes(routes!(queries::audit))
        .routes(routes!(ops::projections))
        .routes(routes!(ops::projection))
        .routes(routes!(ops::rebuild))
        .routes(routes!(builds::builds))
        .routes(routes!(processes::processes))
        .routes(routes!(ops::replay))
        .routes(routes!(ops::cleanup))
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

// ---------------------------------------------------------------------------------------
// Errors

/// An error response: a status and a JSON body `{"error": code, "message": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// The store cannot be reached: 503 with `Retry-After`, at once.
    fn store_unavailable(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the event store is unreachable: {e}"),
        )
    }

    fn internal(e: impl std::fmt::Display) -> Self {
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
async fn json_line(response: Response) -> Response {
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

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method",
    )
}

// ---------------------------------------------------------------------------------------
// Health, metrics, this document

/// The service's health.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// `ok`, `degraded` (serving, with `reasons`: a read model is behind) or
    /// `unavailable` (the store does not answer).
    #[schema(schema_with = health_status)]
    status: &'static str,
    /// Why it is not `ok`, one line per cause; empty when it is.
    reasons: Vec<String>,
    /// Aggregate actors in memory.
    #[schema(minimum = 0)]
    live_aggregates: u64,
    /// Each projection's state, by name.
    projections: BTreeMap<String, String>,
}

fn health_status() -> utoipa::openapi::schema::Object {
    let all = [HealthStatus::Ok, HealthStatus::Degraded, HealthStatus::Unavailable];
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(all.map(HealthStatus::as_str)))
        .build()
}

/// Whether the store answers, and the projections' states; within a second whatever
/// the database does (the supervisor's probe has a timeout of its own).
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Serving: `status` is `ok`, or `degraded` with the reasons.", body = Health),
        (status = 503, description = "The store does not answer: `status` is `unavailable`.", body = Health,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
async fn health(State(app): State<App>) -> Response {
    let health = app.supervisor.health().await;
    let projections: BTreeMap<String, String> =
        app.supervisor.statuses().into_iter().map(|s| (s.name.clone(), ops::state_name(&s.state))).collect();
    let body = Json(Health {
        status: health.status.as_str(),
        reasons: health.reasons,
        live_aggregates: app.factum.live_aggregates() as u64,
        projections,
    });
    if health.status == HealthStatus::Unavailable {
        return (StatusCode::SERVICE_UNAVAILABLE, [(RETRY_AFTER, "1")], body).into_response();
    }
    (StatusCode::OK, body).into_response()
}

/// Every metric, in the OpenMetrics text format (Prometheus scrapes it).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The metrics.", body = String,
        content_type = "application/openmetrics-text")))]
async fn metrics(State(app): State<App>) -> Response {
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.encode())
        .into_response()
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document.", body = Object)))]
async fn openapi_json() -> Json<&'static serde_json::Value> {
    Json(openapi::document())
}

#[cfg(test)]
mod tests {
    use super::*;
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
