//! A store wrapper that records append and read latency, events appended, and a
//! `tracing` span per append.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::prelude::*;
use crate::store::validate::Limits;
use crate::store::{
    AppendResult, Checkpoint, ConsumerRequest, EventFilter, EventStore, EventStream, ExpectedVersion,
    GlobalPosition, Lease, LogPage, LogSelector, NewEvent, PayloadStream, PendingRequest, ProjectionFailure,
    RecordedEvent, RetentionGuard, Snapshot, StoreError, StreamAppend, StreamId, Version, VersionRange,
    WakeSignal,
};

pub(crate) struct Instrumented {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Instrumented {
    async fn timed<T>(&self, operation: &str, f: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = f.await;
        self.metrics.query(operation, started.elapsed());
        out
    }
}

#[async_trait]
impl EventLog for Instrumented {
    fn limits(&self) -> &Limits {
        self.store.limits()
    }

    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let meta = events.first().map(|e| &e.metadata);
        let span = tracing::debug_span!(
            "factum.append",
            stream = %stream,
            %expected,
            events = events.len(),
            correlation_id = tracing::field::Empty,
            causation_id = tracing::field::Empty,
        );
        if let Some(c) = meta.and_then(|m| m.correlation_id) {
            span.record("correlation_id", tracing::field::display(c));
        }
        if let Some(c) = meta.and_then(|m| m.causation_id) {
            span.record("causation_id", tracing::field::display(c));
        }
        let n = events.len();
        let started = Instant::now();
        let result = self.store.append(stream, expected, events).instrument(span).await;
        if result.as_ref().is_ok_and(|r| !r.deduplicated) {
            self.metrics.appended(stream.aggregate_type(), n, started.elapsed());
        }
        result
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let span = tracing::debug_span!("factum.append_many", streams = appends.len());
        let counts: Vec<usize> = appends.iter().map(|a| a.events.len()).collect();
        let started = Instant::now();
        let result = self.store.append_many(appends).instrument(span).await;
        if let Ok(results) = &result {
            for (r, n) in results.iter().zip(counts).filter(|(r, _)| !r.deduplicated) {
                self.metrics.appended(r.stream.aggregate_type(), n, started.elapsed());
            }
        }
        result
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.timed("stream_version", self.store.stream_version(stream)).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.timed("read_stream", self.store.read_stream(stream, range)).await
    }

    fn read_payloads<'a>(&'a self, stream: &'a StreamId, after: Version) -> PayloadStream<'a> {
        // Timed from the call to the stream's end, like a read_stream.
        let started = Instant::now();
        let done = futures_util::stream::once(async move {
            self.metrics.query("read_stream", started.elapsed());
            None
        });
        Box::pin(self.store.read_payloads(stream, after).map(Some).chain(done).filter_map(std::future::ready))
    }

    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.timed("read_all", self.store.read_all(after, limit)).await
    }

    async fn read_log(
        &self,
        after: Checkpoint,
        selector: &LogSelector,
        limit: usize,
    ) -> Result<Option<LogPage>, StoreError> {
        self.timed("read_log", self.store.read_log(after, selector, limit)).await
    }

    async fn read_category(
        &self,
        category: &str,
        after: Checkpoint,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.timed("read_category", self.store.read_category(category, after, limit)).await
    }

    async fn latest_position(&self) -> Result<Option<GlobalPosition>, StoreError> {
        self.store.latest_position().await
    }

    async fn query(&self, filter: &EventFilter) -> Result<Vec<RecordedEvent>, StoreError> {
        self.timed("query", self.store.query(filter)).await
    }

    async fn count(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        self.timed("count", self.store.count(filter)).await
    }

    fn stream(&self, filter: EventFilter) -> EventStream {
        self.store.stream(filter)
    }

    fn wake_signal(&self) -> WakeSignal {
        self.store.wake_signal()
    }

    fn category_wake_signal(&self, category: &str) -> WakeSignal {
        self.store.category_wake_signal(category)
    }
}

#[async_trait]
impl SnapshotStore for Instrumented {
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.store.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.timed("load_snapshot", self.store.load_snapshot(stream)).await
    }

    async fn delete_snapshot(&self, stream: &StreamId) -> Result<bool, StoreError> {
        self.store.delete_snapshot(stream).await
    }
}

#[async_trait]
impl ConsumerStore for Instrumented {
    async fn load_checkpoint(&self, consumer: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.store.load_checkpoint(consumer).await
    }

    async fn save_checkpoint(&self, consumer: &str, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.store.save_checkpoint(consumer, checkpoint).await
    }

    async fn advance_checkpoint(
        &self,
        consumer: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        self.store.advance_checkpoint(consumer, from, to).await
    }

    async fn count_after(&self, after: Checkpoint, aggregate_types: &[String]) -> Result<u64, StoreError> {
        self.store.count_after(after, aggregate_types).await
    }

    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.store.try_lease(name).await
    }

    async fn record_failure(&self, failure: &ProjectionFailure) -> Result<(), StoreError> {
        self.store.record_failure(failure).await
    }

    async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, StoreError> {
        self.store.failures(projection).await
    }

    async fn resolve_failure(&self, projection: &str, event_id: Uuid) -> Result<bool, StoreError> {
        self.store.resolve_failure(projection, event_id).await
    }

    async fn record_stop(&self, failure: &ProjectionFailure) -> Result<(), StoreError> {
        self.store.record_stop(failure).await
    }

    async fn stopped(&self, projection: &str) -> Result<Option<ProjectionFailure>, StoreError> {
        self.store.stopped(projection).await
    }

    async fn request(&self, consumer: &str, request: ConsumerRequest) -> Result<PendingRequest, StoreError> {
        self.store.request(consumer, request).await
    }

    async fn pending_request(&self, consumer: &str) -> Result<Option<PendingRequest>, StoreError> {
        self.store.pending_request(consumer).await
    }

    async fn complete_request(
        &self,
        consumer: &str,
        requested_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.store.complete_request(consumer, requested_at).await
    }
}

#[async_trait]
impl RetentionStore for Instrumented {
    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.store.delete_before(cutoff).await
    }

    async fn delete_before_guarded(
        &self,
        cutoff: DateTime<Utc>,
        guard: &RetentionGuard,
    ) -> Result<u64, StoreError> {
        self.store.delete_before_guarded(cutoff, guard).await
    }

    async fn storage_bytes(&self) -> Result<Option<u64>, StoreError> {
        self.store.storage_bytes().await
    }
}
