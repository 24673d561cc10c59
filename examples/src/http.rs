//! The HTTP JSON API (axum): commands, read-model queries, operations, `/health`,
//! `/metrics` and `/openapi.json`.
//!
//! Every JSON body, an answer or an error, ends with a newline.
//! Every error is a JSON body `{"error": "<code>", "message": "<what was wrong>"}` with a
//! 4xx status for anything the client can fix, 409 for a conflict with the aggregate's
//! state or a concurrency conflict that survived the retries, and 5xx only when the
//! service itself is in trouble; every 503 carries `Retry-After`.
//!
//! The handlers live in `commands`, `queries` and `ops`, the extractors in `extract`, the
//! error type and the newline every JSON body ends with in `errors`.
//! Each handler's `#[utoipa::path]` is its entry in `/openapi.json` ([`crate::openapi`])
//! and also what [`routes`] registers it by.

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use factum::supervisor::HealthStatus;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::openapi;

mod builds;
mod commands;
mod consistency;

pub use consistency::{MIN_POSITION_HEADER, POSITION_HEADER, READ_WAIT};
pub(crate) use queries::MAX_POSITION;
mod errors;
mod extract;
mod ops;
mod processes;
mod queries;

pub use errors::ApiError;
use errors::{json_line, method_not_allowed, not_found};
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
    let projections: BTreeMap<String, String> = app
        .supervisor
        .statuses()
        .into_iter()
        .map(|s| (s.name.clone(), s.state.as_str().to_owned()))
        .collect();
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
