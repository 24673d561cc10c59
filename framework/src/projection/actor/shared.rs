//! What a projection keeps across restarts of its actor: its definition, its sink, its
//! status; and the two things every reader of it does, reading a page and applying it.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use futures_util::FutureExt;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::projection::{
    panic_error, Batch, FailurePolicy, ProjectionSink, ProjectionState, ProjectionStatus, SinkError,
};
use crate::store::{Checkpoint, EventStore, LogPage, LogSelector, RecordedEvent, StoreError};

/// Everything about one projection that outlives its actor (which the supervisor may
/// restart).
pub(crate) struct ProjectionShared {
    pub(crate) name: String,
    pub(crate) selector: LogSelector,
    pub(crate) batch_size: usize,
    pub(crate) failure: FailurePolicy,
    pub(crate) poll_interval: Duration,
    pub(crate) lease_retry: Duration,
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) sink: tokio::sync::Mutex<Box<dyn ProjectionSink>>,
    pub(crate) status: Mutex<ProjectionStatus>,
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
    }

    pub(super) fn set_state(&self, state: ProjectionState) {
        self.update(|s| s.state = state);
    }

    /// Reads the next page after `after`: the events the projection selects among those
    /// read, the checkpoint of the last one read, and whether the page was full. `None`
    /// when nothing is readable after `after` yet.
    pub(crate) async fn read_batch(&self, after: Checkpoint) -> Result<Option<LogPage>, StoreError> {
        self.store.read_log(after, &self.selector, self.batch_size).await
    }

    /// Applies a batch through the sink; a panic in the sink itself counts as a failure
    /// of the batch's first event.
    pub(crate) async fn apply(
        &self,
        events: &[RecordedEvent],
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<(), SinkError> {
        let mut sink = self.sink.lock().await;
        let span = tracing::debug_span!(
            "factum.projection.batch",
            projection = %self.name,
            from = %from,
            to = %to,
            events = events.len(),
            correlation_id = tracing::field::Empty,
            causation_id = tracing::field::Empty,
        );
        if let Some(first) = events.first() {
            if let Some(c) = first.metadata.correlation_id {
                span.record("correlation_id", tracing::field::display(c));
            }
            if let Some(c) = first.metadata.causation_id {
                span.record("causation_id", tracing::field::display(c));
            }
        }
        let started = Instant::now();
        let batch = Batch { projection: &self.name, events, from, to };
        let result = AssertUnwindSafe(sink.apply(batch)).catch_unwind().instrument(span).await;
        self.metrics.projection_batch(&self.name, started.elapsed());
        result.unwrap_or_else(|panic| {
            Err(SinkError::Handler { index: 0, error: panic_error(panic.as_ref()), prefix_committed: false })
        })
    }
}
