//! The HTTP JSON API (axum): commands, read-model queries, operations, `/health`,
//! `/metrics` and `/openapi.json`.
//!
//! Every error is a JSON body `{"error": "<code>", "message": "<what was wrong>"}` with a
//! 4xx status for anything the client can fix, 409 for a conflict with the aggregate's
//! state or a concurrency conflict that survived the retries, and 5xx only when the
//! service itself is in trouble.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use factum::{
    CommandError, EventFilter, EventHandler, EventStore, Executed, HandlerError, HealthStatus, Metadata,
    ProjectionState, RecordedEvent, ReplayOptions, StoreError, SupervisorError,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::Instrument;
use uuid::Uuid;

use crate::app::{App, AppError};
use crate::customer::{CustomerCommand, CustomerError};
use crate::order::{OrderCommand, OrderError};
use crate::read_models::AuditQuery;
use crate::validate::check_id;

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// The request header carrying the correlation id (a UUID); echoed on every response.
pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// The request header naming the acting user (an id), stored in the events' metadata.
pub const USER_HEADER: &str = "x-user-id";

/// The API's routes over `app`.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/customers", post(register_customer))
        .route("/customers/{id}", get(get_customer))
        .route("/customers/{id}/email", put(change_email))
        .route("/customers/{id}/deactivate", post(deactivate))
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/items", post(add_item))
        .route("/orders/{id}/items/{sku}", delete(remove_item))
        .route("/orders/{id}/confirm", post(confirm))
        .route("/orders/{id}/ship", post(ship))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/audit", get(audit))
        .route("/ops/projections", get(projections))
        .route("/ops/projections/{name}", get(projection))
        .route("/ops/projections/{name}/rebuild", post(rebuild))
        .route("/ops/replay", post(replay))
        .route("/ops/retention/cleanup", post(cleanup))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_context))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
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
        let body = Json(json!({ "error": self.code, "message": self.message }));
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
            E::TooMany { .. } => (unprocessable, "too_many_items"),
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
// Extractors that answer with ApiError

/// A JSON body; malformed JSON is 400, a wrong shape (missing or unknown fields, wrong
/// types) 422, a missing `Content-Type: application/json` 415, an oversize body 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let code = match &rejection {
                    JsonRejection::JsonDataError(_) => "invalid_body",
                    JsonRejection::JsonSyntaxError(_) => "malformed_json",
                    JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
                    _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    _ => "unreadable_body",
                };
                Err(ApiError::new(rejection.status(), code, rejection.body_text()))
            }
        }
    }
}

/// The `{id}` path segment, checked to be an id (letters, digits, `-`, `_`; 1 to 64).
struct Id(String);

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

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", e.body_text())
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", e.body_text())
}

/// What the request-context middleware puts in the request's extensions.
#[derive(Clone, Debug)]
struct Context {
    correlation_id: Uuid,
    user_id: Option<String>,
}

impl Context {
    /// Event metadata for one command of this request: its correlation id, a fresh
    /// causation id (the command's id), the user, and where it came from.
    fn metadata(&self) -> Metadata {
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

/// Takes (or makes) the correlation id, runs the request in a span carrying it, logs the
/// outcome, and echoes the id in the response.
async fn request_context(mut req: Request, next: Next) -> Response {
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
    req.extensions_mut().insert(Context { correlation_id, user_id });
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        correlation_id = %correlation_id,
    );
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

// ---------------------------------------------------------------------------------------
// Commands

/// What a command's response says.
#[derive(Debug, Serialize)]
struct Done {
    id: String,
    version: u64,
    events: Vec<&'static str>,
    correlation_id: Uuid,
}

fn done<A: factum::Aggregate>(executed: Executed<A>, ctx: &Context) -> Json<Done> {
    use factum::DomainEvent;
    Json(Done {
        id: executed.aggregate_id,
        version: executed.version.0,
        events: executed.events.iter().map(DomainEvent::event_type).collect(),
        correlation_id: ctx.correlation_id,
    })
}

fn new_or_checked_id(id: Option<String>, prefix: &str) -> Result<String, ApiError> {
    match id {
        None => Ok(format!("{prefix}-{}", Uuid::now_v7().simple())),
        Some(id) => {
            check_id(&id).map_err(|why| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_id",
                    format!("invalid id {id:?}: {why}"),
                )
            })?;
            Ok(id)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    id: Option<String>,
    name: String,
    email: String,
}

async fn register_customer(
    State(app): State<App>,
    Extension(ctx): Extension<Context>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<Done>), ApiError> {
    let customer_id = new_or_checked_id(body.id, "cus")?;
    let command = CustomerCommand::Register { customer_id, name: body.name, email: body.email };
    Ok((StatusCode::CREATED, done(app.customer(command, ctx.metadata()).await?, &ctx)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    email: String,
}

async fn change_email(
    State(app): State<App>,
    Id(customer_id): Id,
    Extension(ctx): Extension<Context>,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<Json<Done>, ApiError> {
    let command = CustomerCommand::ChangeEmail { customer_id, email: body.email };
    Ok(done(app.customer(command, ctx.metadata()).await?, &ctx))
}

async fn deactivate(
    State(app): State<App>,
    Id(customer_id): Id,
    Extension(ctx): Extension<Context>,
) -> Result<Json<Done>, ApiError> {
    Ok(done(app.customer(CustomerCommand::Deactivate { customer_id }, ctx.metadata()).await?, &ctx))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceBody {
    id: Option<String>,
    customer_id: String,
}

async fn place_order(
    State(app): State<App>,
    Extension(ctx): Extension<Context>,
    ApiJson(body): ApiJson<PlaceBody>,
) -> Result<(StatusCode, Json<Done>), ApiError> {
    let order_id = new_or_checked_id(body.id, "ord")?;
    check_id(&body.customer_id).map_err(|why| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_customer_id",
            format!("invalid customer id: {why}"),
        )
    })?;
    let command = OrderCommand::Place { order_id, customer_id: body.customer_id };
    Ok((StatusCode::CREATED, done(app.order(command, ctx.metadata()).await?, &ctx)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemBody {
    sku: String,
    quantity: i64,
    unit_price: i64,
}

async fn add_item(
    State(app): State<App>,
    Id(order_id): Id,
    Extension(ctx): Extension<Context>,
    ApiJson(body): ApiJson<ItemBody>,
) -> Result<Json<Done>, ApiError> {
    let command = OrderCommand::AddItem {
        order_id,
        sku: body.sku,
        quantity: body.quantity,
        unit_price: body.unit_price,
    };
    Ok(done(app.order(command, ctx.metadata()).await?, &ctx))
}

async fn remove_item(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    Extension(ctx): Extension<Context>,
) -> Result<Json<Done>, ApiError> {
    let Path((order_id, sku)) = path.map_err(path_error)?;
    check_id(&order_id)
        .map_err(|why| ApiError::bad_request("invalid_id", format!("invalid id {order_id:?}: {why}")))?;
    check_id(&sku)
        .map_err(|why| ApiError::bad_request("invalid_sku", format!("invalid sku {sku:?}: {why}")))?;
    Ok(done(app.order(OrderCommand::RemoveItem { order_id, sku }, ctx.metadata()).await?, &ctx))
}

async fn confirm(
    State(app): State<App>,
    Id(order_id): Id,
    Extension(ctx): Extension<Context>,
) -> Result<Json<Done>, ApiError> {
    Ok(done(app.order(OrderCommand::Confirm { order_id }, ctx.metadata()).await?, &ctx))
}

async fn ship(
    State(app): State<App>,
    Id(order_id): Id,
    Extension(ctx): Extension<Context>,
) -> Result<Json<Done>, ApiError> {
    Ok(done(app.order(OrderCommand::Ship { order_id }, ctx.metadata()).await?, &ctx))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: String,
}

async fn cancel(
    State(app): State<App>,
    Id(order_id): Id,
    Extension(ctx): Extension<Context>,
    ApiJson(body): ApiJson<CancelBody>,
) -> Result<Json<Done>, ApiError> {
    Ok(done(app.order(OrderCommand::Cancel { order_id, reason: body.reason }, ctx.metadata()).await?, &ctx))
}

// ---------------------------------------------------------------------------------------
// Queries

async fn get_customer(State(app): State<App>, Id(id): Id) -> Result<Response, ApiError> {
    match app.tables.customer(app.store.pool(), &id).await.map_err(ApiError::internal)? {
        Some(view) => Ok(Json(view).into_response()),
        None => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "customer_not_found", format!("no customer {id} (yet)")))
        }
    }
}

async fn get_order(State(app): State<App>, Id(id): Id) -> Result<Response, ApiError> {
    match app.tables.order(app.store.pool(), &id).await.map_err(ApiError::internal)? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "order_not_found", format!("no order {id} (yet)"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    correlation_id: Option<Uuid>,
    after: Option<i64>,
    limit: Option<i64>,
}

async fn audit(
    State(app): State<App>,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(query_error)?;
    for value in [&params.aggregate_type, &params.aggregate_id].into_iter().flatten() {
        check_id(value).map_err(|why| ApiError::bad_request("invalid_query", format!("{value:?}: {why}")))?;
    }
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be between 1 and 1000"));
    }
    let query = AuditQuery {
        after: params.after.unwrap_or(0).max(0),
        aggregate_type: params.aggregate_type,
        aggregate_id: params.aggregate_id,
        correlation_id: params.correlation_id,
        limit,
    };
    let entries = app.tables.audit(app.store.pool(), &query).await.map_err(ApiError::internal)?;
    Ok(Json(entries).into_response())
}

// ---------------------------------------------------------------------------------------
// Operations

#[derive(Debug, Serialize)]
struct StatusView {
    name: String,
    state: String,
    error: Option<String>,
    checkpoint: u64,
    lag: Option<u64>,
    handled: u64,
    skipped: u64,
}

fn status_view(status: factum::ProjectionStatus) -> StatusView {
    let state = match &status.state {
        ProjectionState::Retrying { .. } => "retrying".to_owned(),
        ProjectionState::WaitingForStore => "waiting_for_store".to_owned(),
        ProjectionState::CatchingUp => "catching_up".to_owned(),
        other => format!("{other:?}").to_lowercase(),
    };
    StatusView {
        name: status.name,
        state,
        error: status.last_error,
        checkpoint: status.checkpoint.position.0,
        lag: status.lag,
        handled: status.handled,
        skipped: status.skipped,
    }
}

async fn projections(State(app): State<App>) -> Json<Vec<StatusView>> {
    Json(app.supervisor.statuses().into_iter().map(status_view).collect())
}

async fn projection(State(app): State<App>, Id(name): Id) -> Result<Json<StatusView>, ApiError> {
    let mut status = app.supervisor.status(&name)?;
    status.lag = Some(app.supervisor.lag(&name).await?);
    Ok(Json(status_view(status)))
}

#[derive(Debug, Serialize)]
struct ReplayView {
    replayed: u64,
    failed: u64,
    duration_ms: u64,
    stopped_early: bool,
    errors: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_type: Option<BTreeMap<String, u64>>,
}

fn replay_view(report: factum::ReplayReport, by_type: Option<BTreeMap<String, u64>>) -> ReplayView {
    ReplayView {
        replayed: report.replayed,
        failed: report.failed,
        duration_ms: report.duration.as_millis() as u64,
        stopped_early: report.stopped_early,
        errors: report.errors.iter().map(|e| format!("{e:?}")).collect(),
        by_type,
    }
}

async fn rebuild(State(app): State<App>, Id(name): Id) -> Result<Json<ReplayView>, ApiError> {
    let report = app.supervisor.rebuild(&name).await?;
    Ok(Json(replay_view(report, None)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
}

/// Replays the matching events, oldest first, through a handler that tallies them by
/// event type: a dry run of the replay machinery that changes nothing.
async fn replay(
    State(app): State<App>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<Json<ReplayView>, ApiError> {
    let mut filter = EventFilter::new();
    if let Some(t) = body.aggregate_type {
        filter = filter.aggregate_type(t);
    }
    if let Some(id) = body.aggregate_id {
        filter = filter.aggregate_id(id);
    }
    if !body.event_types.is_empty() {
        filter = filter.event_types(body.event_types);
    }
    if !body.topics.is_empty() {
        filter = filter.topics(body.topics);
    }
    filter
        .validate(app.store.limits())
        .map_err(|e| ApiError::bad_request("invalid_filter", e.to_string()))?;
    let tally = Tally::default();
    let report = app.supervisor.replay(filter, tally.clone(), ReplayOptions::default()).await?;
    let by_type = tally.0.lock().map(|m| m.clone()).unwrap_or_default();
    Ok(Json(replay_view(report, Some(by_type))))
}

#[derive(Clone, Default)]
struct Tally(Arc<Mutex<BTreeMap<String, u64>>>);

#[async_trait::async_trait]
impl EventHandler for Tally {
    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
        let mut map = self.0.lock().map_err(|_| HandlerError::from("tally poisoned"))?;
        *map.entry(event.event_type.clone()).or_default() += 1;
        Ok(())
    }
}

async fn cleanup(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let report = app.supervisor.cleanup_now().await?;
    Ok(Json(json!({
        "deleted": report.deleted,
        "cutoff": report.cutoff,
        "mode": format!("{:?}", report.mode).to_lowercase(),
        "duration_ms": report.duration.as_millis() as u64,
    })))
}

/// 200 while the store answers (`ok`, or `degraded` with the reasons while a read model is
/// behind), 503 with `Retry-After` when it does not; within a second whatever the
/// database does (the supervisor's probe has a timeout of its own).
async fn health(State(app): State<App>) -> Response {
    let health = app.supervisor.health().await;
    let projections: BTreeMap<String, String> =
        app.supervisor.statuses().into_iter().map(|s| (s.name.clone(), status_view(s).state)).collect();
    let body = Json(json!({
        "status": health.status.as_str(),
        "reasons": health.reasons,
        "live_aggregates": app.factum.live_aggregates(),
        "projections": projections,
    }));
    if health.status == HealthStatus::Unavailable {
        return (StatusCode::SERVICE_UNAVAILABLE, [(RETRY_AFTER, "1")], body).into_response();
    }
    (StatusCode::OK, body).into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.encode())
        .into_response()
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

#[cfg(test)]
mod tests {
    use super::*;
    use factum::StreamId;

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
