//! The read-model queries: a customer, an order, the audit log.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::consistency::MinPosition;
use super::extract::{query_error, Id};
use super::ApiError;
use crate::app::App;
use crate::openapi::{self, ErrorBody};
use crate::read_models::{AuditEntry, AuditQuery, CustomerView, OrderView};
use crate::validate::check_id;

/// The largest `after` accepted: 2^53 - 1, the largest integer every JSON reader keeps
/// exactly.
pub(crate) const MAX_POSITION: i64 = (1 << 53) - 1;
/// The most audit entries one request returns.
pub(super) const MAX_LIMIT: i64 = 1000;

/// A customer's profile, orders and totals (read model).
#[utoipa::path(get, path = "/customers/{id}", tag = "customers",
    params(("id" = inline(openapi::IdParam), Path, description = "The customer's id.")),
    responses(
        (status = 200, description = "The customer.", body = CustomerView),
        (status = 404, description = "No such customer, or not projected yet (`customer_not_found`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn get_customer(
    State(app): State<App>,
    Id(id): Id,
    min: MinPosition,
) -> Result<Json<CustomerView>, ApiError> {
    min.wait(&app, "customer_history").await?;
    match app.tables.customer(&id).await.map_err(ApiError::internal)? {
        Some(view) => Ok(Json(view)),
        None => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "customer_not_found", format!("no customer {id} (yet)")))
        }
    }
}

/// An order's summary: status, lines, total (read model).
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = inline(openapi::IdParam), Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order.", body = OrderView),
        (status = 404, description = "No such order, or not projected yet (`order_not_found`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn get_order(
    State(app): State<App>,
    Id(id): Id,
    min: MinPosition,
) -> Result<Json<OrderView>, ApiError> {
    min.wait(&app, "order_summary").await?;
    match app.tables.order(&id).await.map_err(ApiError::internal)? {
        Some(view) => Ok(Json(view)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "order_not_found", format!("no order {id} (yet)"))),
    }
}

/// Which audit entries to list; every parameter is optional, and an empty value
/// (`?limit=`) is refused like any other invalid one.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditParams {
    /// Only this aggregate type (`Order` or `Customer`).
    #[param(schema_with = openapi::id)]
    aggregate_type: Option<String>,
    /// Only this aggregate.
    #[param(schema_with = openapi::id)]
    aggregate_id: Option<String>,
    /// Only this request's events.
    correlation_id: Option<Uuid>,
    /// Entries after this global position (default 0).
    #[param(schema_with = after)]
    after: Option<i64>,
    /// At most this many entries (default 100).
    #[param(schema_with = limit)]
    limit: Option<i64>,
}

fn after() -> utoipa::openapi::schema::Object {
    openapi::integer(0, MAX_POSITION, "Entries after this global position (default 0)")
}

fn limit() -> utoipa::openapi::schema::Object {
    openapi::integer(1, MAX_LIMIT, "At most this many entries (default 100)")
}

/// The audit log: every event with its metadata, oldest first.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditParams),
    responses(
        (status = 200, description = "The entries.", body = Vec<AuditEntry>),
        (status = 400, description = "A parameter that is unknown, empty or invalid (`invalid_query`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn audit(
    State(app): State<App>,
    min: MinPosition,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let Query(params) = query.map_err(query_error)?;
    for value in [&params.aggregate_type, &params.aggregate_id].into_iter().flatten() {
        check_id(value).map_err(|why| ApiError::bad_request("invalid_query", format!("{value:?}: {why}")))?;
    }
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be between 1 and 1000"));
    }
    let after = params.after.unwrap_or(0);
    if !(0..=MAX_POSITION).contains(&after) {
        return Err(ApiError::bad_request("invalid_query", "after must be between 0 and 2^53 - 1"));
    }
    let query = AuditQuery {
        after,
        aggregate_type: params.aggregate_type,
        aggregate_id: params.aggregate_id,
        correlation_id: params.correlation_id,
        limit,
    };
    min.wait(&app, "audit_log").await?;
    let entries = app.tables.audit(&query).await.map_err(ApiError::internal)?;
    Ok(Json(entries))
}
