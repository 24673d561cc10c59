//! The store's operations, each declared once: a type per operation, built only through
//! a checked constructor, and the one trait, [`Execute`], that a backend implements per
//! operation.
//!
//! An operation's type is its input, already checked ("parse, don't validate"): its
//! constructor refuses bad input with an [`InvalidInput`](super::InvalidInput) error, its
//! fields are private, and a backend reads them through accessors. So a backend receives
//! only valid input and never validates; every backend refuses the same input with the
//! same error; and the checks cannot be bypassed, since no value of an operation exists
//! that did not pass them.
//!
//! The store traits ([`EventLog`](super::EventLog), [`SnapshotStore`](super::SnapshotStore),
//! [`ConsumerStore`](super::ConsumerStore), [`RetentionStore`](super::RetentionStore)) are
//! implemented for every type that executes their operations: each of their methods
//! builds the operation and executes it. A wrapper of a store (one that measures, traces,
//! or injects faults) implements [`Execute`] once, generically over every operation.
//!
//! Adding an operation means: its type here, its method on its store trait (which names
//! the type among the trait's supertraits), an `Execute` impl in each backend, and a case
//! in the conformance suite.
//!
//! ```
//! use async_trait::async_trait;
//! use factum::store::op::{Execute, LoadCheckpoint, Operation};
//! use factum::store::{Checkpoint, StoreError};
//!
//! /// A backend of checkpoints that has none.
//! struct Empty;
//!
//! #[async_trait]
//! impl Execute<LoadCheckpoint> for Empty {
//!     async fn execute(&self, op: LoadCheckpoint) -> Result<Option<Checkpoint>, StoreError> {
//!         let _ = op.consumer(); // checked: a valid consumer name
//!         Ok(None)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Bad input never reaches the backend: it cannot even be built.
//! assert!(LoadCheckpoint::new("").is_err());
//! let op = LoadCheckpoint::new("order-summary").unwrap();
//! assert_eq!(LoadCheckpoint::NAME, "load_checkpoint");
//! assert_eq!(Empty.execute(op).await.unwrap(), None);
//! # }
//! ```

mod build;
mod consumer;
mod log;
mod members;
mod position;
mod query;
mod retention;
mod snapshot;
mod timers;

use std::time::Duration;

use async_trait::async_trait;

use super::{AppendResult, StoreError};

pub use build::{Builds, CutOver, RegisterBuild, ReopenBuild, RetireBuild};
pub use consumer::{
    AdvanceCheckpoint, CompleteRequest, CountAfter, Failures, LoadCheckpoint, LoadRequest, MakeRequest,
    RecordFailure, RecordStop, ResolveFailure, SaveCheckpoint, Stopped, TryLease,
};
pub use log::{
    Append, AppendMany, CountStreams, Durable, LatestPosition, ReadAll, ReadCategory, ReadLog, ReadStream,
    StreamVersion,
};
pub use members::{Heartbeat, Leave};
pub use position::{CheckpointOf, Unread};
pub use query::{Count, Query, StreamEvents};
pub use retention::{DeleteBefore, DeleteBeforeGuarded, StorageBytes};
pub use snapshot::{DeleteSnapshot, LoadSnapshot, SaveSnapshot};
pub use timers::{CancelTimers, RemoveTimer, SetTimer, Timers};

/// A store operation: its checked input is the value, its result is [`Output`](Self::Output).
pub trait Operation: Send + Sized + 'static {
    /// The operation's name, as metrics label it (`operation`) and as errors name it.
    const NAME: &'static str;

    /// Whether the operation appends events: its latency is then measured as an append's,
    /// and [`appended`](Self::appended) says what it appended.
    const APPENDS: bool = false;

    /// What the operation returns.
    type Output: Send + 'static;

    /// What an append's output says it appended (nothing for other operations).
    fn appended(output: &Self::Output) -> &[AppendResult] {
        let _ = output;
        &[]
    }

    /// The `tracing` span the operation runs in, if it has one of its own.
    fn span(&self) -> tracing::Span {
        tracing::Span::none()
    }
}

/// Runs one operation: what a backend implements, once per operation it supports.
#[async_trait]
pub trait Execute<Op: Operation>: Send + Sync + 'static {
    /// Runs `op`, whose input passed its checks, under the contract of the store method
    /// that builds it.
    async fn execute(&self, op: Op) -> Result<Op::Output, StoreError>;
}

/// Receives what each operation cost: the framework's [`Metrics`](crate::Metrics)
/// implement it. A backend that runs operations outside the store traits (PostgreSQL's
/// transactional `*_in` methods) reports them to the observer it is given when it is
/// instrumented ([`LogBackend::instrumented`](super::backend::LogBackend::instrumented)).
pub trait Observer: Send + Sync + 'static {
    /// An operation other than an append ran (successfully or not) in `took`.
    fn executed(&self, operation: &'static str, took: Duration);

    /// An append succeeded in `took`, with these results (deduplicated ones included).
    fn appended(&self, results: &[AppendResult], took: Duration);
}

/// Reports `outcome`, the result of an `Op` that ran in `took`, to `observer`: failed
/// appends are not measured; every other operation is, whatever its result.
pub fn observe<Op: Operation>(
    observer: &dyn Observer,
    outcome: &Result<Op::Output, StoreError>,
    took: Duration,
) {
    match outcome {
        Ok(output) if Op::APPENDS => observer.appended(Op::appended(output), took),
        Err(_) if Op::APPENDS => {}
        _ => observer.executed(Op::NAME, took),
    }
}

#[cfg(test)]
mod tests;
