//! Read-your-writes over HTTP: every command reply says where its events landed
//! (`x-factum-position`), and a read given `x-factum-min-position` answers only once the
//! read models it reads have reached that position.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use factum::aggregate::Executed;
use factum::prelude::*;
use factum::store::GlobalPosition;
use factum::supervisor::WaitError;
use serde::Serialize;

use super::ApiError;
use crate::app::App;

/// The command reply's header: the position of the command's last event (of the log as
/// it stood, when the command recorded nothing).
pub const POSITION_HEADER: &str = "x-factum-position";
/// The read's header: answer once the read models have reached this position.
pub const MIN_POSITION_HEADER: &str = "x-factum-min-position";
/// How long a read waits for its read models by default.
pub const READ_WAIT: Duration = Duration::from_secs(5);

/// A command's reply: its body, with the position of its events in a header.
pub(super) struct Committed<T> {
    position: GlobalPosition,
    body: T,
}

impl<T> Committed<T> {
    /// The reply to `executed`, whose body is `body`.
    pub(super) async fn new<A: factum::Aggregate>(
        app: &App,
        executed: &Executed<A>,
        body: T,
    ) -> Result<Self, ApiError> {
        let position = match executed.checkpoint {
            Some(checkpoint) => checkpoint.position,
            // Nothing recorded: the command decided on the log as it stood.
            None => {
                app.store.latest_position().await.map_err(ApiError::store_unavailable)?.unwrap_or_default()
            }
        };
        Ok(Committed { position, body })
    }
}

impl<T: Serialize> IntoResponse for Committed<T> {
    fn into_response(self) -> Response {
        let header = (HeaderName::from_static(POSITION_HEADER), HeaderValue::from(self.position.0));
        ([header], Json(self.body)).into_response()
    }
}

/// The position a read asked its read models to reach, if it asked.
#[derive(Clone, Copy, Debug)]
pub(super) struct MinPosition(Option<GlobalPosition>);

impl FromRequestParts<App> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(MIN_POSITION_HEADER) else { return Ok(MinPosition(None)) };
        let refused = |why: &str| {
            ApiError::bad_request("invalid_min_position", format!("{MIN_POSITION_HEADER}: {why}"))
        };
        let text = value.to_str().map_err(|_| refused("not a position (a whole number)"))?.trim();
        if text.strip_prefix('-').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            return Err(refused("negative; positions start at 0"));
        }
        let position: u64 = text.parse().map_err(|_| refused("not a position (a whole number)"))?;
        // Every position a command reply gave lies within the log: one past its end was
        // never given, and would make the read wait for nothing.
        let end = app.store.latest_position().await.map_err(ApiError::store_unavailable)?.unwrap_or_default();
        if position > end.0 {
            return Err(refused(&format!("past the end of the log (at {})", end.0)));
        }
        Ok(MinPosition(Some(GlobalPosition(position))))
    }
}

impl MinPosition {
    /// Waits until `projection` has reached the position asked for (at once when none
    /// was): 503 with `Retry-After`, naming the projection, when it does not in time.
    pub(super) async fn wait(self, app: &App, projection: &str) -> Result<(), ApiError> {
        let Some(position) = self.0 else { return Ok(()) };
        match app.supervisor.wait_for(position, &[projection], app.read_wait).await {
            Ok(()) => Ok(()),
            Err(WaitError::Timeout { behind, timeout, .. }) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "read_model_behind",
                format!(
                    "the read model {} had not reached position {} within {timeout:?}",
                    behind.join(", "),
                    position.0
                ),
            )),
            Err(WaitError::Supervisor(e)) => Err(e.into()),
            Err(other) => Err(ApiError::internal(other)),
        }
    }
}
