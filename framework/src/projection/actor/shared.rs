//! What a projection keeps across restarts of its actor: its definition, its sink, its
//! status; and the two things every reader of it does, reading a page and applying it
//! ([`ProjectionShared::apply_page`], the one read-and-apply step of the live loop and of
//! rebuilds).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use futures_util::FutureExt;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::projection::slices::Allotment;
use crate::projection::{
    panic_error, Batch, FailurePolicy, HandlerError, ProjectionSink, ProjectionState, ProjectionStatus,
    SinkError,
};
use crate::store::{
    Checkpoint, EventStore, LogPage, LogSelector, ProjectionBuild, RecordedEvent, Slice, StoreError,
};

/// What applying a page came to ([`ProjectionShared::apply_page`]).
pub(crate) enum Applied {
    /// Every event was applied: the checkpoint is at the page's end.
    All,
    /// The events before `index` were applied and the checkpoint is past them (where
    /// `index` is 0, nothing moved); the event at `index` failed with `error`.
    Failed { index: usize, error: HandlerError },
    /// Applying the events before a failed one again failed differently: nothing more
    /// was applied, read again from the checkpoint.
    Again,
    /// Another instance moved the checkpoint: nothing was applied.
    Fenced,
}

/// Everything about one projection that outlives its actor (which the supervisor may
/// restart).
pub(crate) struct ProjectionShared {
    pub(crate) name: String,
    /// The version its code declares, and whether a new build of it becomes live on its
    /// own once caught up.
    pub(crate) version: u32,
    pub(crate) switch_automatically: bool,
    /// How long a replaced build stays before it is retired, if it is retired at all.
    pub(crate) retire_after: Option<Duration>,
    /// The newest version of the projection that went live in this process (shared by
    /// the versions that run here side by side): an older one stands down after it.
    pub(crate) live_here: Arc<AtomicU32>,
    pub(crate) selector: LogSelector,
    /// How many events of the log a read looks at: the batch size, times the slice
    /// count for a slice (which selects about one event in that many), within the
    /// store's limit.
    pub(crate) page_size: usize,
    /// The slice this actor runs (slice 0 of 1 for a projection not in slices).
    pub(crate) slice: Slice,
    /// What the slices of the projection here share, for a projection in slices.
    pub(crate) allot: Option<Arc<Allotment>>,
    pub(crate) failure: FailurePolicy,
    pub(crate) poll_interval: Duration,
    pub(crate) lease_retry: Duration,
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) sink: tokio::sync::Mutex<Box<dyn ProjectionSink>>,
    pub(crate) status: Mutex<ProjectionStatus>,
    /// Wakes whoever waits for the status to change (read-your-writes waits).
    pub(crate) changed: tokio::sync::Notify,
    pub(crate) metrics: Arc<Metrics>,
}

impl ProjectionShared {
    pub(crate) fn status(&self) -> ProjectionStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut ProjectionStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut status);
        status.updated_at = Utc::now();
        drop(status);
        // Read-your-writes waits look again (a wait on a projection running here is woken
        // by its progress rather than by a timer).
        self.changed.notify_waiters();
    }

    pub(super) fn set_state(&self, state: ProjectionState) {
        self.update(|s| s.state = state);
    }

    /// `build` is live: versions older than it that run here stand down.
    pub(crate) fn went_live(&self, build: &ProjectionBuild) {
        if build.state == crate::store::BuildState::Live {
            self.live_here.fetch_max(build.id.version, Ordering::AcqRel);
        }
    }

    /// Whether a newer version of the projection went live in this process.
    pub(crate) fn superseded(&self) -> bool {
        self.live_here.load(Ordering::Acquire) > self.version
    }

    /// The consumer name of this slice of `build`.
    pub(crate) fn consumer_of(&self, build: &ProjectionBuild) -> String {
        self.slice.consumer(&build.id.consumer())
    }

    /// Whether this instance holds the lease of this slice's consumer (set by its actor).
    pub(crate) fn seat(&self) -> Option<&Arc<crate::projection::slices::SliceSeat>> {
        self.allot.as_ref().and_then(|a| a.seats.get(usize::from(self.slice.index())))
    }

    /// The build this instance runs, once registered.
    pub(crate) fn build(&self) -> Option<ProjectionBuild> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).build.clone()
    }

    fn runs(&self, consumer: &str) -> bool {
        let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.build.as_ref().is_some_and(|b| self.consumer_of(b) == consumer)
    }

    /// Reads the next page after `after`: the events the projection selects among those
    /// read, the checkpoint of the last one read, and whether the page was full. `None`
    /// when nothing is readable after `after` yet.
    pub(crate) async fn read_batch(&self, after: Checkpoint) -> Result<Option<LogPage>, StoreError> {
        self.store.read_log(after, &self.selector, self.page_size).await
    }

    /// Applies a batch to the build `consumer` through the sink; a panic in the sink
    /// itself counts as a failure of the batch's first event.
    pub(crate) async fn apply(
        &self,
        consumer: &str,
        events: &[RecordedEvent],
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<(), SinkError> {
        let mut sink = self.sink.lock().await;
        let span = tracing::debug_span!(
            "factum.projection.batch",
            projection = %consumer,
            from = %from,
            to = %to,
            events = events.len(),
            correlation_id = tracing::field::Empty,
            causation_id = tracing::field::Empty,
        );
        crate::trace::link_all(&span, events.iter().map(|e| &e.metadata));
        if let Some(first) = events.first() {
            if let Some(c) = first.metadata.correlation_id {
                span.record("correlation_id", tracing::field::display(c));
            }
            if let Some(c) = first.metadata.causation_id {
                span.record("causation_id", tracing::field::display(c));
            }
        }
        let started = Instant::now();
        let batch = Batch { projection: consumer, events, from, to };
        let result = AssertUnwindSafe(sink.apply(batch)).catch_unwind().instrument(span).await;
        self.metrics.projection_batch(&self.name, started.elapsed());
        result.unwrap_or_else(|panic| {
            Err(SinkError::Handler { index: 0, error: panic_error(panic.as_ref()), prefix_committed: false })
        })
    }

    /// Applies a page of `selected` events, read from `from` to `to`, to the build
    /// `consumer` through the sink, a batch in one go: the read-and-apply step of every
    /// reader of the projection. When an event fails, the events before it are kept
    /// (applied again on their own if the sink rolled them back), so that they are not
    /// handled again. The metrics follow the checkpoint, and the status too when the
    /// build is the one this instance runs.
    pub(crate) async fn apply_page(
        &self,
        consumer: &str,
        selected: &[RecordedEvent],
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<Applied, StoreError> {
        let (index, error, prefix_committed) = match self.apply(consumer, selected, from, to).await {
            Ok(()) => {
                self.advanced(consumer, to, selected.len());
                return Ok(Applied::All);
            }
            Err(SinkError::Fenced) => return Ok(Applied::Fenced),
            Err(SinkError::Store(e)) => return Err(e),
            Err(SinkError::Handler { index, error, prefix_committed }) => (index, error, prefix_committed),
        };
        if index > 0 {
            let prefix_to = selected[index - 1].checkpoint();
            if !prefix_committed {
                match self.apply(consumer, &selected[..index], from, prefix_to).await {
                    Ok(()) => {}
                    Err(SinkError::Fenced) => return Ok(Applied::Fenced),
                    Err(SinkError::Store(e)) => return Err(e),
                    Err(SinkError::Handler { .. }) => return Ok(Applied::Again),
                }
            }
            self.advanced(consumer, prefix_to, index);
        }
        Ok(Applied::Failed { index, error })
    }

    /// The build `consumer`'s checkpoint moved to `to` over `handled` events.
    fn advanced(&self, consumer: &str, to: Checkpoint, handled: usize) {
        self.metrics.projection_events(&self.name, "handled", handled as u64);
        let building = self.build().is_none_or(|b| b.state == crate::store::BuildState::Building);
        if !self.runs(consumer) || building {
            self.metrics.projection_building(&self.name, to.position.0);
        }
        if !self.runs(consumer) {
            return;
        }
        self.metrics.projection_progress(&self.name, to.position.0, None);
        self.update(|s| {
            s.checkpoint = to;
            s.handled += handled as u64;
        });
    }
}
