//! Where a projection stands, as the supervisor reports it.

use chrono::{DateTime, Utc};

use crate::store::{Checkpoint, ProjectionBuild, Slice};

/// Where a projection is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectionState {
    /// Starting up.
    Starting,
    /// Another instance holds the projection's lease; this one waits to take over.
    Standby,
    /// Reading the log behind the live end.
    CatchingUp,
    /// Caught up, following the log live.
    Live,
    /// Paused by an operator.
    Paused,
    /// Being rebuilt by a replay.
    Rebuilding,
    /// Waiting to retry a failed event.
    Retrying {
        /// Failed attempts so far.
        attempts: u32,
    },
    /// Stopped by the failure policy; `resume` tries again.
    Failed,
    /// The store did not answer; the projection tries again in place (at most a second
    /// apart) and goes on as soon as it answers.
    WaitingForStore,
    /// Shut down.
    Stopped,
    /// Its build was replaced by another version's, or retired, or a newer version went
    /// live in this process: it applies nothing more (until the process starts again).
    Retired,
}

impl ProjectionState {
    /// The state as one word: `starting`, `standby`, `catching_up`, `live`, `paused`,
    /// `rebuilding`, `retrying`, `failed`, `waiting_for_store`, `stopped` or `retired`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProjectionState::Starting => "starting",
            ProjectionState::Standby => "standby",
            ProjectionState::CatchingUp => "catching_up",
            ProjectionState::Live => "live",
            ProjectionState::Paused => "paused",
            ProjectionState::Rebuilding => "rebuilding",
            ProjectionState::Retrying { .. } => "retrying",
            ProjectionState::Failed => "failed",
            ProjectionState::WaitingForStore => "waiting_for_store",
            ProjectionState::Stopped => "stopped",
            ProjectionState::Retired => "retired",
        }
    }
}

/// A projection's status, as [`Supervisor::status`](crate::Supervisor::status) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: String,
    /// The version this instance runs (the one its code declares).
    pub version: u32,
    /// The build this instance runs, once registered, and its state (building or live,
    /// for example) as it last knew it.
    pub build: Option<ProjectionBuild>,
    /// Its state.
    pub state: ProjectionState,
    /// The last event it processed.
    pub checkpoint: Checkpoint,
    /// Events of the log after its checkpoint, when last measured.
    pub lag: Option<u64>,
    /// Events it applied since this process started.
    pub handled: u64,
    /// Events it skipped and recorded since this process started.
    pub skipped: u64,
    /// The last handler or store error.
    pub last_error: Option<String>,
    /// When the status last changed.
    pub updated_at: DateTime<Utc>,
    /// The slice this status is of, for one slice of a projection in slices.
    pub slice: Option<Slice>,
    /// Which instance holds the slice's lease, as last heard (for one slice).
    pub holder: Option<String>,
    /// For a projection in slices: each slice's status, by index, as this instance sees
    /// it (a slice another instance holds is standing by here, at the checkpoint this
    /// instance last saw; `factum status` reads every slice's from the store). The
    /// projection's own checkpoint is then the slowest of the slices that run here, its
    /// lag the largest, and its state the least healthy of theirs (standing by when none
    /// runs here).
    pub slices: Vec<ProjectionStatus>,
}

impl ProjectionStatus {
    pub(crate) fn new(name: &str, version: u32) -> Self {
        ProjectionStatus {
            name: name.to_owned(),
            version,
            build: None,
            state: ProjectionState::Starting,
            checkpoint: Checkpoint::START,
            lag: None,
            handled: 0,
            skipped: 0,
            last_error: None,
            updated_at: Utc::now(),
            slice: None,
            holder: None,
            slices: Vec::new(),
        }
    }
}

/// What [`Supervisor::retry_failures`](crate::Supervisor::retry_failures) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryReport {
    /// Recorded failures that now succeeded (their records are gone).
    pub resolved: u64,
    /// Recorded failures that failed again (their records stay).
    pub still_failing: u64,
    /// Recorded failures whose event no longer exists (deleted by retention).
    pub missing: u64,
}
