//! What a storage backend implements: the store's four roles, storage only.
//!
//! A backend implements [`LogBackend`], [`SnapshotBackend`], [`ConsumerBackend`] and
//! [`RetentionBackend`], and is then an [`EventStore`](super::EventStore): the store
//! traits ([`EventLog`](super::EventLog), [`SnapshotStore`](super::SnapshotStore),
//! [`ConsumerStore`](super::ConsumerStore), [`RetentionStore`](super::RetentionStore))
//! are implemented for every backend by checking each call's input first, against the
//! rules of [`validate`](super::validate) and the backend's [`Limits`], and only then
//! calling the backend. So a backend receives only valid input and never validates, every
//! backend refuses the same input with the same [`InvalidInput`](super::InvalidInput)
//! error, and the checks cannot be bypassed by calling a backend directly.
//!
//! Each method here has the contract of the store method of the same name, given input
//! that passed its checks. The conformance suite in `factum-tests` runs the same cases
//! against every backend.
//!
//! Wrappers of a store that is already checked (one that adds metrics, or injects faults
//! in tests) implement the store traits themselves and delegate.
//!
//! Helpers for backends live here too: [`deduplicated_result`] tells a retry of a stored
//! append from a duplicate, [`read_log_in_memory`] selects a page of the log by reading
//! it all, and [`json_contains`] is PostgreSQL's `@>` for a backend that filters metadata
//! itself.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use uuid::Uuid;

pub use super::cursor::read_log_in_memory;
pub use super::filter::json_contains;
use super::{
    AppendResult, Checkpoint, ConsumerRequest, EventFilter, EventPayload, EventStream, ExpectedVersion,
    GlobalPosition, Lease, Limits, LogPage, LogSelector, NewEvent, PayloadStream, PendingRequest,
    ProjectionFailure, RecordedEvent, RetentionGuard, Snapshot, StoreError, StreamAppend, StreamId,
    ValidFilter, Version, VersionRange, WakeSignal,
};

/// The log's storage: see [`EventLog`](super::EventLog) for each method's contract.
#[async_trait]
pub trait LogBackend: Send + Sync + 'static {
    /// The limits input is checked against before it reaches this backend.
    fn limits(&self) -> &Limits;

    /// Stores a valid batch: [`EventLog::append`](super::EventLog::append).
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Stores valid appends to distinct streams atomically:
    /// [`EventLog::append_many`](super::EventLog::append_many). By default
    /// [`StoreError::Unsupported`].
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let _ = appends;
        Err(StoreError::Unsupported { operation: "append_many" })
    }

    /// [`EventLog::stream_version`](super::EventLog::stream_version).
    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError>;

    /// [`EventLog::read_stream`](super::EventLog::read_stream).
    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`EventLog::read_payloads`](super::EventLog::read_payloads); by default from
    /// [`read_stream`](Self::read_stream).
    fn read_payloads<'a>(&'a self, stream: &'a StreamId, after: Version) -> PayloadStream<'a> {
        let read = self.read_stream(stream, VersionRange::after(after));
        Box::pin(
            futures_util::stream::once(read)
                .map_ok(|events| {
                    futures_util::stream::iter(events.into_iter().map(|e| Ok(EventPayload::from(e))))
                })
                .try_flatten(),
        )
    }

    /// [`EventLog::read_all`](super::EventLog::read_all), with a limit within
    /// [`Limits::max_query_limit`].
    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`EventLog::read_category`](super::EventLog::read_category).
    async fn read_category(
        &self,
        category: &str,
        after: Checkpoint,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`EventLog::read_log`](super::EventLog::read_log); by default from
    /// [`read_all`](Self::read_all) or [`read_category`](Self::read_category), selecting
    /// in memory.
    async fn read_log(
        &self,
        after: Checkpoint,
        selector: &LogSelector,
        limit: usize,
    ) -> Result<Option<LogPage>, StoreError> {
        let read = match selector.single_category() {
            Some(category) => self.read_category(category, after, limit).await?,
            None => self.read_all(after, limit).await?,
        };
        Ok(LogPage::select(read, selector, limit))
    }

    /// [`EventLog::latest_position`](super::EventLog::latest_position).
    async fn latest_position(&self) -> Result<Option<GlobalPosition>, StoreError>;

    /// [`EventLog::query`](super::EventLog::query), of a filter that passed its checks.
    async fn query(&self, filter: &ValidFilter<'_>) -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`EventLog::count`](super::EventLog::count), of a filter that passed its checks.
    async fn count(&self, filter: &ValidFilter<'_>) -> Result<u64, StoreError>;

    /// [`EventLog::stream`](super::EventLog::stream), of a filter that passed
    /// [`EventFilter::validate`] (so validating it again only parses it).
    fn stream(&self, filter: EventFilter) -> EventStream;

    /// [`EventLog::wake_signal`](super::EventLog::wake_signal).
    fn wake_signal(&self) -> WakeSignal;

    /// [`EventLog::category_wake_signal`](super::EventLog::category_wake_signal); by
    /// default [`wake_signal`](Self::wake_signal).
    fn category_wake_signal(&self, category: &str) -> WakeSignal {
        let _ = category;
        self.wake_signal()
    }
}

/// Snapshot storage: see [`SnapshotStore`](super::SnapshotStore).
#[async_trait]
pub trait SnapshotBackend: Send + Sync + 'static {
    /// [`SnapshotStore::save_snapshot`](super::SnapshotStore::save_snapshot).
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// [`SnapshotStore::load_snapshot`](super::SnapshotStore::load_snapshot).
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError>;

    /// [`SnapshotStore::delete_snapshot`](super::SnapshotStore::delete_snapshot).
    async fn delete_snapshot(&self, stream: &StreamId) -> Result<bool, StoreError>;
}

/// Consumer storage: see [`ConsumerStore`](super::ConsumerStore).
#[async_trait]
pub trait ConsumerBackend: Send + Sync + 'static {
    /// [`ConsumerStore::load_checkpoint`](super::ConsumerStore::load_checkpoint).
    async fn load_checkpoint(&self, consumer: &str) -> Result<Option<Checkpoint>, StoreError>;

    /// [`ConsumerStore::save_checkpoint`](super::ConsumerStore::save_checkpoint).
    async fn save_checkpoint(&self, consumer: &str, checkpoint: Checkpoint) -> Result<(), StoreError>;

    /// [`ConsumerStore::advance_checkpoint`](super::ConsumerStore::advance_checkpoint).
    async fn advance_checkpoint(
        &self,
        consumer: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, StoreError>;

    /// [`ConsumerStore::count_after`](super::ConsumerStore::count_after).
    async fn count_after(&self, after: Checkpoint, aggregate_types: &[String]) -> Result<u64, StoreError>;

    /// [`ConsumerStore::try_lease`](super::ConsumerStore::try_lease).
    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError>;

    /// [`ConsumerStore::record_failure`](super::ConsumerStore::record_failure).
    async fn record_failure(&self, failure: &ProjectionFailure) -> Result<(), StoreError>;

    /// [`ConsumerStore::failures`](super::ConsumerStore::failures).
    async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, StoreError>;

    /// [`ConsumerStore::resolve_failure`](super::ConsumerStore::resolve_failure).
    async fn resolve_failure(&self, projection: &str, event_id: Uuid) -> Result<bool, StoreError>;

    /// [`ConsumerStore::record_stop`](super::ConsumerStore::record_stop).
    async fn record_stop(&self, failure: &ProjectionFailure) -> Result<(), StoreError>;

    /// [`ConsumerStore::stopped`](super::ConsumerStore::stopped).
    async fn stopped(&self, projection: &str) -> Result<Option<ProjectionFailure>, StoreError>;

    /// [`ConsumerStore::request`](super::ConsumerStore::request).
    async fn request(&self, consumer: &str, request: ConsumerRequest) -> Result<PendingRequest, StoreError>;

    /// [`ConsumerStore::pending_request`](super::ConsumerStore::pending_request).
    async fn pending_request(&self, consumer: &str) -> Result<Option<PendingRequest>, StoreError>;

    /// [`ConsumerStore::complete_request`](super::ConsumerStore::complete_request).
    async fn complete_request(&self, consumer: &str, requested_at: DateTime<Utc>)
        -> Result<bool, StoreError>;
}

/// Retention: see [`RetentionStore`](super::RetentionStore).
#[async_trait]
pub trait RetentionBackend: Send + Sync + 'static {
    /// [`RetentionStore::delete_before`](super::RetentionStore::delete_before).
    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;

    /// [`RetentionStore::delete_before_guarded`](super::RetentionStore::delete_before_guarded).
    async fn delete_before_guarded(
        &self,
        cutoff: DateTime<Utc>,
        guard: &RetentionGuard,
    ) -> Result<u64, StoreError>;

    /// [`RetentionStore::storage_bytes`](super::RetentionStore::storage_bytes); `None` by
    /// default.
    async fn storage_bytes(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
}

/// If `stored` (the events already stored under the batch's ids, in version order) is
/// exactly `batch` appended to `stream`, the original append's result.
///
/// Backends call this when an append hits an event id that is already stored, to tell a
/// retry of the same append (answered with its result) from a real duplicate (an error).
pub fn deduplicated_result(
    stream: &StreamId,
    batch: &[NewEvent],
    stored: &[RecordedEvent],
) -> Option<AppendResult> {
    if stored.len() != batch.len() || stored.is_empty() {
        return None;
    }
    let first = stored[0].version;
    let same = stored.iter().zip(batch).enumerate().all(|(i, (s, b))| {
        s.event_id == b.event_id
            && s.stream == *stream
            && s.version.0 == first.0 + i as u64
            && s.event_type == b.event_type
            && s.schema_version == b.schema_version
            && s.topic == b.topic
            && b.payload_equals(&s.payload)
            && s.metadata == b.metadata
    });
    same.then(|| AppendResult {
        stream: stream.clone(),
        from_version: first,
        to_version: stored[stored.len() - 1].version,
        positions: stored.iter().map(|e| e.position).collect(),
        deduplicated: true,
    })
}
