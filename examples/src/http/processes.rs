//! The processes endpoint: each process manager, its projection's state, and its timers.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use factum::prelude::*;
use factum::process::Process;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiError;
use crate::app::App;
use crate::openapi;
use crate::processes::{CustomerOrders, ShipDeadline};

/// The most timers listed per process.
const TIMERS_LISTED: usize = 100;

/// One process manager.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ProcessView {
    /// The process's name: its projection's, and its instances' stream category.
    name: String,
    /// Its projection's state (as in `/ops/projections`): `stopped` after a failure its
    /// policy stopped on (resume it with `factum projections resume`).
    state: String,
    /// The last error, if any.
    error: Option<String>,
    /// The global position of the last event it handled.
    #[schema(minimum = 0)]
    checkpoint: u64,
    /// Its pending timers, earliest first (at most 100).
    timers: Vec<TimerView>,
}

/// A pending timer of a process instance.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TimerView {
    /// The instance (its correlation id).
    instance: String,
    /// The timer's name.
    name: String,
    /// When it fires.
    deadline: DateTime<Utc>,
}

/// The process managers: `customer_orders` (a deactivated customer's unshipped orders
/// are cancelled) and `ship_deadline` (a confirmed order not shipped in time is
/// cancelled), with their pending timers.
#[utoipa::path(get, path = "/ops/processes", tag = "operations",
    responses(
        (status = 200, description = "The processes.", body = Vec<ProcessView>),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn processes(State(app): State<App>) -> Result<Json<Vec<ProcessView>>, ApiError> {
    let mut views = Vec::new();
    for name in [CustomerOrders::NAME, ShipDeadline::NAME] {
        let status = app.supervisor.status(name)?;
        let timers = app
            .store
            .timers(name, None, TIMERS_LISTED)
            .await
            .map_err(|e| ApiError::from(factum::supervisor::SupervisorError::Store(e)))?;
        views.push(ProcessView {
            name: name.to_owned(),
            state: status.state.as_str().to_owned(),
            error: status.last_error,
            checkpoint: status.checkpoint.position.0,
            timers: timers
                .into_iter()
                .map(|t| TimerView {
                    instance: t.stream.aggregate_id().to_owned(),
                    name: t.name,
                    deadline: t.deadline,
                })
                .collect(),
        });
    }
    Ok(Json(views))
}
