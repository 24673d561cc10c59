//! What a replay is given and what it reports: its options, its progress, its report and
//! the failures it records.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::store::{BuildId, Checkpoint, GlobalPosition};

/// Progress of a replay, reported while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayProgress {
    /// Events handled so far.
    pub replayed: u64,
    /// Events the handler failed on so far.
    pub failed: u64,
    /// Time since the replay started.
    pub elapsed: Duration,
}

/// How a replay runs. Defaults: batches of 100, stop at the first error, progress every
/// 10 seconds.
#[derive(Clone)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Events read per batch (default 100).
    pub batch_size: usize,
    /// Go on past a failing event (default `false`: stop at the first error).
    pub continue_on_error: bool,
    /// How often to report progress (logged at `info`, and given to `on_progress`).
    pub progress_every: Duration,
    pub(super) on_progress: Option<Arc<dyn Fn(ReplayProgress) + Send + Sync>>,
}

impl fmt::Debug for ReplayOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayOptions")
            .field("batch_size", &self.batch_size)
            .field("continue_on_error", &self.continue_on_error)
            .field("progress_every", &self.progress_every)
            .finish_non_exhaustive()
    }
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            batch_size: 100,
            continue_on_error: false,
            progress_every: Duration::from_secs(10),
            on_progress: None,
        }
    }
}

impl ReplayOptions {
    /// Sets the batch size.
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Goes on past failing events.
    #[must_use]
    pub fn continue_on_error(mut self, continue_on_error: bool) -> Self {
        self.continue_on_error = continue_on_error;
        self
    }

    /// Calls `f` with the progress every `every`.
    #[must_use]
    pub fn on_progress(
        mut self,
        every: Duration,
        f: impl Fn(ReplayProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress_every = every;
        self.on_progress = Some(Arc::new(f));
        self
    }
}

/// An event a replay's handler failed on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("handler failed on event {event_id} at position {position}: {error}")]
#[non_exhaustive]
pub struct ReplayError {
    /// The event.
    pub event_id: Uuid,
    /// Its global position.
    pub position: GlobalPosition,
    /// The handler's error.
    pub error: String,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Events the handler took.
    pub replayed: u64,
    /// Events the handler failed on.
    pub failed: u64,
    /// How long it took.
    pub duration: Duration,
    /// The first failures (at most 100).
    pub errors: Vec<ReplayError>,
    /// Whether it stopped at an error before the end.
    pub stopped_early: bool,
    /// For a rebuild: the projection's checkpoint at the end.
    pub checkpoint: Option<Checkpoint>,
    /// For a rebuild into a fresh copy: the build it made live.
    pub build: Option<BuildId>,
}
