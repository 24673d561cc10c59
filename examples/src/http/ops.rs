//! The operations endpoints: projection status and rebuild, replay, retention.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use factum::prelude::*;
use factum::supervisor::ReplayOptions;
use factum::{EventFilter, EventHandler, HandlerError, RecordedEvent};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, Id};
use super::ApiError;
use crate::app::App;
use crate::openapi::{self, ErrorBody};
use crate::validate::check_id;

/// One projection's status.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StatusView {
    /// The projection's name.
    name: String,
    /// `starting`, `standby`, `catching_up`, `live`, `paused`, `rebuilding`, `retrying`,
    /// `waiting_for_store`, `failed`, `stopped` or `retired`.
    state: String,
    /// The last error, if any.
    error: Option<String>,
    /// The global position of the last event it committed.
    #[schema(minimum = 0)]
    checkpoint: u64,
    /// Events behind the head of the log (measured on request for one projection).
    #[schema(minimum = 0)]
    lag: Option<u64>,
    /// Events handled.
    #[schema(minimum = 0)]
    handled: u64,
    /// Events skipped.
    #[schema(minimum = 0)]
    skipped: u64,
    /// The version this instance runs.
    #[schema(minimum = 1)]
    version: u32,
    /// The build this instance runs, once registered.
    build: Option<super::builds::BuildView>,
    /// For a projection in slices, each slice (the projection's own checkpoint is then its
    /// slowest slice's, and its lag the largest); empty otherwise.
    slices: Vec<SliceView>,
}

/// One slice of a projection in slices.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SliceView {
    /// The slice's index, from 0.
    #[schema(minimum = 0)]
    index: u16,
    /// How many slices the projection has.
    #[schema(minimum = 1)]
    of: u16,
    /// As the projection's `state`; `standby` while another instance holds it.
    state: String,
    /// The global position of the last event the slice committed, as this instance saw it.
    #[schema(minimum = 0)]
    checkpoint: u64,
    /// Events behind the head of the log, when last measured here.
    #[schema(minimum = 0)]
    lag: Option<u64>,
    /// The instance holding the slice (host and process id), as last heard.
    holder: Option<String>,
}

fn status_view(status: factum::projection::ProjectionStatus) -> StatusView {
    StatusView {
        state: status.state.as_str().to_owned(),
        name: status.name,
        error: status.last_error,
        checkpoint: status.checkpoint.position.0,
        lag: status.lag,
        handled: status.handled,
        skipped: status.skipped,
        version: status.version,
        build: status.build.as_ref().map(super::builds::build_view),
        slices: status
            .slices
            .iter()
            .filter_map(|s| {
                let slice = s.slice?;
                Some(SliceView {
                    index: slice.index(),
                    of: slice.count(),
                    state: s.state.as_str().to_owned(),
                    checkpoint: s.checkpoint.position.0,
                    lag: s.lag,
                    holder: s.holder.clone(),
                })
            })
            .collect(),
    }
}

/// Every projection's status.
#[utoipa::path(get, path = "/ops/projections", tag = "operations",
    responses((status = 200, description = "The statuses.", body = Vec<StatusView>)))]
pub(super) async fn projections(State(app): State<App>) -> Json<Vec<StatusView>> {
    Json(app.supervisor.statuses().into_iter().map(status_view).collect())
}

/// One projection's status, with its lag measured now.
#[utoipa::path(get, path = "/ops/projections/{name}", tag = "operations",
    params(("name" = inline(openapi::IdParam), Path, description = "The projection's name.")),
    responses(
        (status = 200, description = "The status.", body = StatusView),
        (status = 404, description = "No such projection (`not_found`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn projection(State(app): State<App>, Id(name): Id) -> Result<Json<StatusView>, ApiError> {
    let mut status = app.supervisor.status(&name)?;
    status.lag = Some(app.supervisor.lag(&name).await?);
    Ok(Json(status_view(status)))
}

/// What a replay or rebuild did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReplayView {
    /// Events the handler took.
    #[schema(minimum = 0)]
    replayed: u64,
    /// Events the handler failed on.
    #[schema(minimum = 0)]
    failed: u64,
    /// How long it took.
    #[schema(minimum = 0)]
    duration_ms: u64,
    /// Whether it stopped at an error before the end.
    stopped_early: bool,
    /// The first failures (at most 100).
    errors: Vec<String>,
    /// For a rebuild into a fresh copy: the build it made live (`VERSION.BUILD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    build: Option<String>,
    /// For a replay: the events by type.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    by_type: Option<BTreeMap<String, u64>>,
}

fn replay_view(
    report: factum::supervisor::ReplayReport,
    by_type: Option<BTreeMap<String, u64>>,
) -> ReplayView {
    ReplayView {
        replayed: report.replayed,
        failed: report.failed,
        duration_ms: report.duration.as_millis() as u64,
        stopped_early: report.stopped_early,
        errors: report.errors.iter().map(|e| format!("{e:?}")).collect(),
        build: report.build.as_ref().map(|b| format!("{}.{}", b.version, b.build)),
        by_type,
    }
}

/// Rebuilds a projection while writes go on: into a fresh copy beside the live one, which
/// keeps serving until readers switch to the copy in one step once it has caught up.
#[utoipa::path(post, path = "/ops/projections/{name}/rebuild", tag = "operations",
    params(("name" = inline(openapi::IdParam), Path, description = "The projection's name.")),
    responses(
        (status = 200, description = "The rebuild's report.", body = ReplayView),
        (status = 404, description = "No such projection (`not_found`).", body = ErrorBody),
        (status = 409, description = "Another instance runs this projection (`not_owner`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn rebuild(State(app): State<App>, Id(name): Id) -> Result<Json<ReplayView>, ApiError> {
    let report = app.supervisor.rebuild(&name).await?;
    Ok(Json(replay_view(report, None)))
}

/// Which events to replay; an empty object replays them all.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"aggregate_type": "Order", "topics": ["order.lifecycle.#"]}))]
pub(super) struct ReplayBody {
    /// Only this aggregate type.
    #[serde(default, deserialize_with = "super::extract::present")]
    #[schema(schema_with = openapi::id, required = false)]
    aggregate_type: Option<String>,
    /// Only this aggregate.
    #[serde(default, deserialize_with = "super::extract::present")]
    #[schema(schema_with = openapi::id, required = false)]
    aggregate_id: Option<String>,
    /// Only these event types (empty: all).
    #[serde(default)]
    #[schema(inline, value_type = Vec<openapi::IdParam>, required = false)]
    event_types: Vec<String>,
    /// Only events whose topic matches one of these patterns (empty: all).
    #[serde(default)]
    #[schema(inline, value_type = Vec<openapi::TopicParam>, required = false)]
    topics: Vec<String>,
}

/// Replays the matching events, oldest first, through a handler that tallies them by
/// event type: a dry run of the replay machinery that changes nothing.
#[utoipa::path(post, path = "/ops/replay", tag = "operations", request_body = ReplayBody,
    responses(
        (status = 200, description = "The replay's report, with counts by event type.", body = ReplayView),
        (status = 400, description = "A filter value that is not an id or a topic pattern (`invalid_filter`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn replay(
    State(app): State<App>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<Json<ReplayView>, ApiError> {
    let ids = body.aggregate_type.iter().chain(&body.aggregate_id).chain(&body.event_types);
    for value in ids {
        check_id(value)
            .map_err(|why| ApiError::bad_request("invalid_filter", format!("{value:?}: {why}")))?;
    }
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

/// What a retention clean-up did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CleanupView {
    /// Events deleted.
    #[schema(minimum = 0)]
    deleted: u64,
    /// Events recorded before this were candidates.
    cutoff: DateTime<Utc>,
    /// The mode it ran in (`safe`: only what every projection has passed).
    mode: String,
    /// How long it took.
    #[schema(minimum = 0)]
    duration_ms: u64,
}

/// Runs retention's clean-up now (safe mode, 90 days).
#[utoipa::path(post, path = "/ops/retention/cleanup", tag = "operations",
    responses(
        (status = 200, description = "What was deleted.", body = CleanupView),
        (status = 409, description = "Another instance runs retention (`not_owner`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn cleanup(State(app): State<App>) -> Result<Json<CleanupView>, ApiError> {
    let report = app.supervisor.cleanup_now().await?;
    Ok(Json(CleanupView {
        deleted: report.deleted,
        cutoff: report.cutoff,
        mode: format!("{:?}", report.mode).to_lowercase(),
        duration_ms: report.duration.as_millis() as u64,
    }))
}
