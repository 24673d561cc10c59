//! # factum
//!
//! An actor-based event-sourcing framework for Rust on PostgreSQL.
//!
//! This crate holds the core: the [`EventStore`] trait that backends implement, the
//! values they exchange ([`NewEvent`], [`RecordedEvent`], [`StreamId`], [`Version`],
//! [`Checkpoint`], …), query filters with RabbitMQ-style topic patterns, catch-up-then-live
//! subscriptions, and [`InMemoryStore`], an in-memory backend for tests. The PostgreSQL
//! backend lives in the `factum-postgres` crate.
//!
//! ## Example
//!
//! ```
//! use factum::prelude::*; // the store's role traits: EventLog, SnapshotStore, ...
//! use factum::{EventFilter, ExpectedVersion, InMemoryStore, NewEvent, StreamId, VersionRange};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryStore::new();
//! let order = StreamId::new("Order", "ord-123")?;
//!
//! // Create the stream: it must not exist yet.
//! store
//!     .append(&order, ExpectedVersion::NoStream, vec![
//!         NewEvent::new("OrderPlaced", json!({"customer": "c-1"})).with_topic("order.lifecycle.placed"),
//!     ])
//!     .await?;
//!
//! // Append with the version we last saw: a concurrent writer would get a conflict.
//! let written = store
//!     .append(&order, ExpectedVersion::Exact(1.into()), vec![
//!         NewEvent::new("ItemAdded", json!({"sku": "A-1", "qty": 2})).with_topic("order.items.added"),
//!     ])
//!     .await?;
//! assert_eq!(written.to_version.0, 2);
//!
//! let history = store.read_stream(&order, VersionRange::ALL).await?;
//! assert_eq!(history.len(), 2);
//!
//! let lifecycle = store.query(&EventFilter::new().topics(["order.lifecycle.#"])).await?;
//! assert_eq!(lifecycle.len(), 1);
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! - Versions within a stream are gapless from 1; two appends with the same expected
//!   version: exactly one wins, the other gets [`StoreError::Conflict`].
//! - An event id is stored at most once; an exact retry of an append returns the
//!   original result.
//! - Reading the global log after a [`Checkpoint`] never skips an event that commits
//!   late (see [`EventStore`]).

mod aggregate;
mod backoff;
mod facade;
mod instrumented;
mod metrics;
mod projection;
mod store;
mod supervisor;
pub mod testing;

/// The store's role traits, whose methods a concrete store ([`InMemoryStore`], a
/// PostgreSQL store) is called through: `use factum::prelude::*;`. A `dyn EventStore` or a
/// generic `S: EventStore` needs no import.
pub mod prelude {
    pub use crate::store::{ConsumerStore, EventLog, EventStore, RetentionStore, SnapshotStore};
}

#[doc(hidden)]
pub use aggregate::__private;
pub use aggregate::{
    Aggregate, AggregateCommand, Command, CommandError, DomainEvent, EventCodecError, Executed,
    SnapshotContext, SnapshotPolicy, SnapshotPolicyError, DEFAULT_SNAPSHOT_EVERY,
};
pub use backoff::Backoff;
pub use facade::{Factum, FactumConfig};
pub use factum_derive::{Aggregate, Command, DomainEvent};
pub use metrics::Metrics;
pub use projection::{
    catch_panic, AtLeastOnce, Batch, EventHandler, FailurePolicy, HandlerError, OnExhausted, Projection,
    ProjectionSink, ProjectionState, ProjectionStatus, RetryReport, SinkError, DEFAULT_BATCH_SIZE,
};
pub use supervisor::{
    Health, HealthConfig, HealthStatus, ReplayError, ReplayOptions, ReplayProgress, ReplayReport,
    RetentionConfig, RetentionMode, RetentionReport, Supervisor, SupervisorConfig, SupervisorError,
};

pub use store::memory::InMemoryStore;
pub use store::validate::{self, Limits};
pub use store::{
    deduplicated_result, json_contains, read_log_in_memory, subscribe_all, subscribe_category,
    subscribe_stream, AppendResult, Checkpoint, ConsumerRequest, ConsumerStore, EventFilter, EventLog,
    EventPayload, EventStore, EventStream, ExpectedVersion, GlobalPosition, InvalidInput, Lease, LogPage,
    LogSelector, Metadata, NewEvent, OrderBy, PayloadStream, PendingRequest, ProjectionFailure,
    RecordedEvent, RetentionGuard, RetentionStore, Snapshot, SnapshotStore, StoreError, StreamId,
    SubscriptionOptions, TopicPattern, ValidFilter, Version, VersionRange, WakeSignal, DEFAULT_QUERY_LIMIT,
};
