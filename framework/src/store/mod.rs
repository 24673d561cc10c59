//! The event store: the traits callers use, the values they exchange, and the in-memory
//! backend. Backends implement the storage traits of [`backend`]; the store traits here
//! come with them, checking every call's input first.

pub mod backend;
mod checked;
mod consumer;
pub(crate) mod cursor;
mod error;
mod filter;
pub(crate) mod memory;
mod new_event;
mod subscription;
mod types;
pub mod validate;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_core::stream::BoxStream;
use futures_util::TryStreamExt;
use tokio::sync::watch;
use uuid::Uuid;

pub use consumer::{ConsumerRequest, Lease, PendingRequest, ProjectionFailure, RetentionGuard};
pub use cursor::{LogPage, LogSelector};
pub use error::{InvalidInput, StoreError};
pub use filter::{EventFilter, OrderBy, TopicPattern, ValidFilter, DEFAULT_QUERY_LIMIT};
pub use memory::InMemoryStore;
pub use new_event::{NewEvent, StreamAppend};
pub use subscription::{subscribe_all, subscribe_category, subscribe_stream, SubscriptionOptions};
pub use types::{
    AppendResult, Checkpoint, EventPayload, ExpectedVersion, GlobalPosition, Metadata, RecordedEvent,
    Snapshot, StreamId, Version, VersionRange,
};
pub use validate::Limits;

/// A stream of events, as returned by [`EventStore::stream`](crate::store::EventLog::stream) and the subscriptions.
pub type EventStream = BoxStream<'static, Result<RecordedEvent, StoreError>>;

/// One aggregate's stored events as [`EventStore::read_payloads`](crate::store::EventLog::read_payloads) yields them.
pub type PayloadStream<'a> = BoxStream<'a, Result<EventPayload, StoreError>>;

/// A signal that the log may have grown: the value changes after appends commit. It is
/// only a wake-up; the log is the source of truth.
pub type WakeSignal = watch::Receiver<u64>;

/// An event store: an append-only log of events, grouped in streams (one per aggregate),
/// with snapshots of aggregate state and checkpoints of consumers; the sum of four roles
/// ([`EventLog`], [`SnapshotStore`], [`ConsumerStore`], [`RetentionStore`]). Every type
/// that implements the four is an `EventStore`, and `Arc<dyn EventStore>` is how the
/// framework holds one.
///
/// A backend implements the storage traits of [`backend`] and gets the four roles from
/// them, with every call's input checked before it reaches the backend. Backends behave
/// identically on every operation; the conformance suite in `factum-tests` runs the same
/// cases against each one.
///
/// The roles' methods are called through `EventStore` on a `dyn EventStore` or a generic
/// `S: EventStore`; on a concrete store, bring the roles into scope with
/// `use factum::prelude::*;`.
pub trait EventStore: EventLog + SnapshotStore + ConsumerStore + RetentionStore {}

impl<T: EventLog + SnapshotStore + ConsumerStore + RetentionStore + ?Sized> EventStore for T {}

/// The log: appends, reads of a stream, of the global log and of a category, queries, and
/// the wake-up signals that say it grew.
///
/// # Ordering and gap safety
///
/// Within a stream, events are ordered by [`Version`], gapless from 1. The global log
/// ([`read_all`](Self::read_all)) and a category ([`read_category`](Self::read_category))
/// are read *after* a [`Checkpoint`], and only as far as no transaction still in flight
/// could land before what is returned: a reader that resumes after the last event it saw
/// never skips an event that committed late.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The limits this store enforces on its input.
    fn limits(&self) -> &Limits;

    /// Appends `events` to `stream` atomically, if the stream's version satisfies
    /// `expected`; the store assigns consecutive versions and global positions.
    ///
    /// Errors: [`StoreError::InvalidInput`] for a bad batch, [`StoreError::Conflict`] when
    /// the stream is not at the expected version, [`StoreError::DuplicateEvent`] when an
    /// event id is already stored by a different append. Re-appending exactly the batch
    /// an earlier append stored (same ids, same stream, same content) is answered with
    /// that append's result and `deduplicated: true`, whatever the expected version, so
    /// a writer may retry an append whose acknowledgment was lost.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Appends to several streams atomically: every [`StreamAppend`] is stored, each with
    /// its own expected version, or none is. The results come in the order of `appends`.
    ///
    /// Errors as [`append`](Self::append), and nothing is stored: a conflict names the
    /// stream that was not at its expected version. Each stream may appear once, and the
    /// event ids must be distinct across all the appends; at most
    /// [`Limits::max_batch_len`] events in all. Re-sending exactly a multi-stream append
    /// that was stored is answered with its results, `deduplicated: true`.
    ///
    /// For sagas and transfers between accounts. A store that cannot append atomically
    /// across streams answers [`StoreError::Unsupported`] (the default).
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let _ = appends;
        Err(StoreError::Unsupported { operation: "append_many" })
    }

    /// The stream's current version ([`Version::INITIAL`] for a stream with no events),
    /// without reading its events.
    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError>;

    /// Reads the stream's events within `range`, in version order.
    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Streams the stream's events after version `after`, in version order, with only
    /// what folding them into an aggregate needs: the aggregate actors load through it,
    /// decoding and folding each event as it arrives.
    ///
    /// By default from [`read_stream`](Self::read_stream); a backend may read less and
    /// yield events while it still reads the rest. An error ends the stream.
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

    /// Reads up to `limit` events of the global log after `after`, gap-safe.
    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events of one category (aggregate type) after `after`, gap-safe.
    async fn read_category(
        &self,
        category: &str,
        after: Checkpoint,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads the next page of the log after `after` as a reader following `selector` sees
    /// it: at most `limit` events of the log (of the selector's one category, if it has
    /// one), gap-safe as [`read_all`](Self::read_all), of which only those the selector
    /// matches come back, with the checkpoint of the last one read. `None` when nothing is
    /// readable after `after` yet. Subscriptions, projections and rebuilds all read the
    /// log through it.
    ///
    /// By default from [`read_all`](Self::read_all) or
    /// [`read_category`](Self::read_category), selecting in memory
    /// ([`backend::read_log_in_memory`]); a backend may select in its queries instead.
    async fn read_log(
        &self,
        after: Checkpoint,
        selector: &LogSelector,
        limit: usize,
    ) -> Result<Option<LogPage>, StoreError> {
        backend::read_log_in_memory(self, after, selector, limit).await
    }

    /// The highest global position assigned to a stored event, if any. Not a safe
    /// checkpoint under concurrent writers: use it for monitoring and lag.
    async fn latest_position(&self) -> Result<Option<GlobalPosition>, StoreError>;

    /// The events matching `filter`, ordered and paginated as it says.
    async fn query(&self, filter: &EventFilter) -> Result<Vec<RecordedEvent>, StoreError>;

    /// How many events match `filter` (limit and offset ignored).
    async fn count(&self, filter: &EventFilter) -> Result<u64, StoreError>;

    /// The events matching `filter`, yielded through a bounded buffer: the store reads
    /// ahead only as far as the consumer keeps up. Without a limit, every match.
    fn stream(&self, filter: EventFilter) -> EventStream;

    /// A wake-up signal that changes after appends commit.
    fn wake_signal(&self) -> WakeSignal;

    /// A wake-up signal that changes after appends to `category` commit; it may also
    /// change for other appends (the default is [`wake_signal`](Self::wake_signal)).
    fn category_wake_signal(&self, category: &str) -> WakeSignal {
        let _ = category;
        self.wake_signal()
    }
}

/// Snapshots of aggregate state, one per stream.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// Saves a snapshot, replacing the stream's previous one.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Loads the stream's latest snapshot.
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError>;

    /// Deletes the stream's snapshot; `true` if there was one.
    async fn delete_snapshot(&self, stream: &StreamId) -> Result<bool, StoreError>;
}

/// What the log's consumers keep in the store: checkpoints, leases, recorded failures,
/// operators' requests, and their lag.
#[async_trait]
pub trait ConsumerStore: Send + Sync + 'static {
    /// Loads a named consumer's checkpoint.
    async fn load_checkpoint(&self, consumer: &str) -> Result<Option<Checkpoint>, StoreError>;

    /// Saves a named consumer's checkpoint.
    async fn save_checkpoint(&self, consumer: &str, checkpoint: Checkpoint) -> Result<(), StoreError>;

    /// Moves a consumer's checkpoint from `from` to `to`, only if it still is `from` (a
    /// consumer without a checkpoint is at [`Checkpoint::START`]); `false`, changing
    /// nothing, if it is not. A writer that lost its lease finds out here.
    async fn advance_checkpoint(
        &self,
        consumer: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, StoreError>;

    /// How many events of the global log lie after `after`, as far as committed, counting
    /// only the given aggregate types (all of them when `aggregate_types` is empty). A
    /// consumer's lag: a projection scoped to some categories passes them, since its
    /// checkpoint only moves over their events.
    async fn count_after(&self, after: Checkpoint, aggregate_types: &[String]) -> Result<u64, StoreError>;

    /// Tries to take the exclusive lease on a consumer's name: `None` if someone else
    /// (in this process or another one sharing the store) holds it.
    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError>;

    /// Records a failure, replacing an earlier record of the same projection and event.
    async fn record_failure(&self, failure: &ProjectionFailure) -> Result<(), StoreError>;

    /// A projection's recorded failures, in log order.
    async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, StoreError>;

    /// Removes a recorded failure; `true` if there was one.
    async fn resolve_failure(&self, projection: &str, event_id: Uuid) -> Result<bool, StoreError>;

    /// Records that a projection stopped at `failure`'s event by its failure policy
    /// ([`OnExhausted::Stop`](crate::projection::OnExhausted::Stop)), replacing an earlier
    /// record, so that operators can see it (`factum status`). The record goes when the
    /// projection's checkpoint is next saved or advanced: once it got past the event, or
    /// was reset.
    async fn record_stop(&self, failure: &ProjectionFailure) -> Result<(), StoreError>;

    /// Where a projection stopped by its failure policy, while it is stopped (see
    /// [`record_stop`](Self::record_stop)).
    async fn stopped(&self, projection: &str) -> Result<Option<ProjectionFailure>, StoreError>;

    /// Records an operator's request for a consumer, replacing any request not yet carried
    /// out, and returns the pending request. The consumer need not have a checkpoint yet.
    async fn request(&self, consumer: &str, request: ConsumerRequest) -> Result<PendingRequest, StoreError>;

    /// The consumer's pending request, if any. The instance holding the consumer's lease
    /// looks for one about once a second (and when it takes the lease).
    async fn pending_request(&self, consumer: &str) -> Result<Option<PendingRequest>, StoreError>;

    /// Removes the consumer's pending request once carried out, only if it still is the
    /// one made at `requested_at`; `false`, changing nothing, if it is not.
    async fn complete_request(&self, consumer: &str, requested_at: DateTime<Utc>)
        -> Result<bool, StoreError>;
}

/// Deleting old events: the only way events leave the log.
#[async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// Deletes every event recorded before `cutoff`, except each stream's newest event, and
    /// returns how many. This is the only operation that removes events. Keeping the
    /// newest event keeps the stream's version, so later appends continue the numbering
    /// and an append at a deleted version is a conflict.
    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Deletes every event recorded before `cutoff` except those `guard` keeps and each
    /// stream's newest event, and returns how many were deleted: retention's safe mode.
    async fn delete_before_guarded(
        &self,
        cutoff: DateTime<Utc>,
        guard: &RetentionGuard,
    ) -> Result<u64, StoreError>;

    /// The bytes the store's events take, where the backend can tell (table and indexes).
    async fn storage_bytes(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
}
