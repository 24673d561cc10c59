//! The event store: the traits callers use, the values they exchange, and the in-memory
//! backend. Each store operation is declared once, as a type in [`op`]; a backend
//! executes the operations ([`op::Execute`]) and implements [`backend::LogBackend`], and
//! the store traits here come with them, checking every call's input as they build its
//! operation.

pub mod backend;
mod builds;
mod consumer;
pub(crate) mod cursor;
mod error;
mod filter;
mod log;
pub(crate) mod memory;
mod metadata;
mod new_event;
pub mod op;
pub mod operator;
mod roles;
mod slice;
mod subscription;
mod timers;
mod types;
pub mod validate;

use futures_core::stream::BoxStream;
use tokio::sync::watch;

pub use backend::LogBackend;
pub use builds::{
    build_to_run, lease_build, BuildId, BuildState, BuildStore, ProjectionBuild, Retired, Switch,
};
pub use consumer::{ConsumerRequest, Lease, Member, PendingRequest, ProjectionFailure, RetentionGuard};
pub use cursor::{Chase, LogPage, LogSelector};
pub use error::{InvalidInput, StoreError};
pub use filter::{EventFilter, OrderBy, TopicPattern, ValidFilter, DEFAULT_QUERY_LIMIT};
pub use log::EventLog;
pub use memory::InMemoryStore;
pub use metadata::Metadata;
pub use new_event::{NewEvent, StreamAppend};
pub use roles::{ConsumerStore, RetentionStore, SnapshotStore};
pub use slice::{slice_build, slice_count, stream_hash, Slice, MAX_SLICES};
pub use subscription::{subscribe_all, subscribe_category, subscribe_stream, SubscriptionOptions};
pub use timers::{Timer, TimerStore};
pub use types::{
    AppendResult, Checkpoint, EventPayload, ExpectedVersion, GlobalPosition, RecordedEvent, Snapshot,
    StreamId, Version, VersionRange,
};
pub use validate::Limits;

/// A stream of events, as returned by [`EventLog::stream`] and the subscriptions.
pub type EventStream = BoxStream<'static, Result<RecordedEvent, StoreError>>;

/// One aggregate's stored events as [`LogBackend::read_payloads`] yields them.
pub type PayloadStream<'a> = BoxStream<'a, Result<EventPayload, StoreError>>;

/// An aggregate's cold load as [`LogBackend::load_aggregate`] reads it: its snapshot and
/// the events after it.
#[non_exhaustive]
pub struct AggregateLoad<'a> {
    /// The stream's snapshot, whatever its schema version; `None` if it has none.
    pub snapshot: Option<Snapshot>,
    /// The stream's events in version order: after the snapshot's version when the
    /// snapshot has the schema version asked for, else from the stream's start.
    pub events: PayloadStream<'a>,
}

impl<'a> AggregateLoad<'a> {
    /// A load of `snapshot` and `events`, as a backend read them.
    pub fn new(snapshot: Option<Snapshot>, events: PayloadStream<'a>) -> Self {
        AggregateLoad { snapshot, events }
    }
}

impl std::fmt::Debug for AggregateLoad<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateLoad").field("snapshot", &self.snapshot).finish_non_exhaustive()
    }
}

/// [`LogBackend::load_aggregate`]'s answer: the load, once read.
pub type AggregateLoadFuture<'a> = futures_util::future::BoxFuture<'a, Result<AggregateLoad<'a>, StoreError>>;

/// A signal that the log may have grown: the value changes after appends commit. It is
/// only a wake-up; the log is the source of truth.
pub type WakeSignal = watch::Receiver<u64>;

/// An event store: an append-only log of events, grouped in streams (one per aggregate),
/// with snapshots of aggregate state, checkpoints of consumers and the registry of
/// projection builds and durable timers; the sum of six roles ([`EventLog`],
/// [`SnapshotStore`], [`ConsumerStore`], [`RetentionStore`], [`BuildStore`],
/// [`TimerStore`]). Every type that implements the six is an `EventStore`, and `Arc<dyn EventStore>` is how the
/// framework holds one.
///
/// A backend executes the store's [operations](op) and implements [`LogBackend`], and gets
/// the six roles from them, with every call's input checked before it reaches the
/// backend. Backends behave
/// identically on every operation; the conformance suite in `factum-tests` runs the same
/// cases against each one.
///
/// The roles' methods are called through `EventStore` on a `dyn EventStore` or a generic
/// `S: EventStore`; on a concrete store, bring the roles into scope with
/// `use factum::prelude::*;`.
pub trait EventStore:
    EventLog + SnapshotStore + ConsumerStore + RetentionStore + BuildStore + TimerStore
{
}

impl<T: EventLog + SnapshotStore + ConsumerStore + RetentionStore + BuildStore + TimerStore + ?Sized>
    EventStore for T
{
}
