//! The projection builds in the operations endpoints: each projection's versions and the
//! copies its rebuilds made, with their state and progress.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use factum::prelude::*;
use factum::store::{BuildState, ProjectionBuild};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Id;
use super::ApiError;
use crate::app::App;
use crate::openapi::{self, ErrorBody};

/// One build of a projection: a version, or a rebuild's copy of one.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BuildView {
    /// The version the projection's code declares.
    #[schema(minimum = 1)]
    version: u32,
    /// Which build of that version.
    #[schema(minimum = 1)]
    build: u32,
    /// The name its checkpoint, lease and fence hang on.
    consumer: String,
    /// `building`, `live` (the one readers read), `replaced` or `retired`.
    state: String,
    /// The global position of the last event it processed (when listed with progress).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, required = false)]
    checkpoint: Option<u64>,
    /// Events of the log after its checkpoint (when listed with progress).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, required = false)]
    behind: Option<u64>,
    /// When it was registered.
    created_at: DateTime<Utc>,
    /// When it last became live.
    live_at: Option<DateTime<Utc>>,
}

pub(super) fn build_view(build: &ProjectionBuild) -> BuildView {
    BuildView {
        version: build.id.version,
        build: build.id.build,
        consumer: build.id.consumer(),
        state: build.state.to_string(),
        checkpoint: None,
        behind: None,
        created_at: build.created_at,
        live_at: build.live_at,
    }
}

/// A projection's builds, oldest first, with how far each one has come.
#[utoipa::path(get, path = "/ops/projections/{name}/builds", tag = "operations",
    params(("name" = inline(openapi::IdParam), Path, description = "The projection's name.")),
    responses(
        (status = 200, description = "The builds.", body = Vec<BuildView>),
        (status = 404, description = "No such projection (`not_found`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn builds(State(app): State<App>, Id(name): Id) -> Result<Json<Vec<BuildView>>, ApiError> {
    let builds = app.supervisor.builds(&name).await?;
    let end = app
        .store
        .latest_position()
        .await
        .map_err(factum::supervisor::SupervisorError::from)?
        .map_or(0, |p| p.0);
    let mut views = Vec::with_capacity(builds.len());
    for build in &builds {
        let mut view = build_view(build);
        if build.state != BuildState::Retired {
            let at = app
                .store
                .load_checkpoint(&build.id.consumer())
                .await
                .map_err(factum::supervisor::SupervisorError::from)?
                .unwrap_or_default()
                .position
                .0;
            view.checkpoint = Some(at);
            view.behind = Some(end.saturating_sub(at));
        }
        views.push(view);
    }
    Ok(Json(views))
}
