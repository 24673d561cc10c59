//! Projections: named consumers of the log that keep read models current.
//!
//! A [`Projection`] is a name, a sink that applies events and records the checkpoint,
//! an optional narrowing of what it receives, a batch size and a [`FailurePolicy`]. The
//! [`Supervisor`](crate::Supervisor) runs each one in an actor of its own: it catches up
//! from its checkpoint in batches, then follows the log live on wake-ups, with polling as
//! the fallback.
//!
//! Two kinds of sink:
//!
//! - **Exactly once**, into a transactional read model: the sink applies a batch and
//!   moves the checkpoint in one transaction (`factum_postgres::ExactlyOnce` for
//!   PostgreSQL). After a crash at any point, each event has been applied exactly once.
//! - **At least once**, for anything else: an [`EventHandler`] gets each event, and the
//!   checkpoint moves only after it returned `Ok`. After a crash, the events after the
//!   checkpoint come again; use [`RecordedEvent::event_id`] as the idempotency key.

pub(crate) mod actor;
mod definition;
mod error;
mod policy;
mod sink;
pub(crate) mod slices;
mod status;

use async_trait::async_trait;

use crate::store::{Checkpoint, LogPage, ProjectionBuild, ProjectionFailure, RecordedEvent};

pub(crate) use definition::slice_sinks;
pub use definition::{Projection, DEFAULT_BATCH_SIZE};
pub(crate) use error::panic_error;
pub use error::{catch_panic, HandlerError, ProjectionError, SinkError};
pub use policy::{FailurePolicy, OnExhausted};
pub(crate) use sink::advance;
pub use sink::AtLeastOnce;
pub use status::{ProjectionState, ProjectionStatus, RetryReport};

/// Handles events one at a time: an at-least-once projection's handler, or a replay's.
///
/// ```
/// use factum::{EventHandler, HandlerError, RecordedEvent};
///
/// struct Mailer;
///
/// #[async_trait::async_trait]
/// impl EventHandler for Mailer {
///     async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
///         if event.event_type == "CustomerRegistered" {
///             // send_welcome(event.event_id, &event.payload).await?; // event id = idempotency key
///         }
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait EventHandler: Send + 'static {
    /// Handles one event. An error (or a panic) is a failure, handled by the policy.
    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError>;

    /// Clears what the handler built, before a rebuild replays the log into it. By
    /// default there is nothing to clear.
    async fn clear(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// One batch for a [`ProjectionSink`]: the events the projection selected among those
/// read after `from`, and the checkpoint `to` of the last event read (selected or not).
#[derive(Debug)]
#[non_exhaustive]
pub struct Batch<'a> {
    /// The consumer name of the build being applied to (its checkpoint's name: see
    /// [`BuildId::consumer`](crate::store::BuildId::consumer)).
    pub projection: &'a str,
    /// The selected events, in log order; possibly none.
    pub events: &'a [RecordedEvent],
    /// Where the projection stands: the checkpoint to move from.
    pub from: Checkpoint,
    /// The checkpoint to move to.
    pub to: Checkpoint,
}

/// Where a projection's events go, and how its checkpoint moves with them.
///
/// Every call names the build it is for by its consumer name (a projection has one
/// build per version, and a rebuild makes another: see [`BuildId`](crate::store::BuildId)).
/// A sink that keeps each build's read model apart says so
/// ([`keeps_builds_apart`](Self::keeps_builds_apart)); a rebuild then builds a fresh copy
/// beside the live one and switches readers over when it has caught up, instead of
/// clearing the read model in place.
///
/// The framework implements it for [`EventHandler`]s ([`AtLeastOnce`]); a backend
/// implements it for transactional read models (`factum_postgres::ExactlyOnce`), where
/// one transaction holds a batch's writes and the checkpoint. Implementations move the
/// checkpoint only from where the batch says it is
/// ([`EventStore::advance_checkpoint`](crate::store::ConsumerStore::advance_checkpoint) or its transactional twin), and run user code
/// through [`catch_panic`].
#[async_trait]
pub trait ProjectionSink: Send + 'static {
    /// Applies the batch's events in order and moves the checkpoint from `from` to `to`.
    async fn apply(&mut self, batch: Batch<'_>) -> Result<(), SinkError>;

    /// Records `failure` and moves the checkpoint from `from` past the failed event.
    async fn skip(&mut self, failure: &ProjectionFailure, from: Checkpoint) -> Result<(), SinkError>;

    /// Applies an event whose failure was recorded, and removes the record; the
    /// checkpoint stays where it is.
    async fn retry_failed(&mut self, projection: &str, event: &RecordedEvent) -> Result<(), SinkError>;

    /// Sets the checkpoint to `to`, after clearing the read model if `clear`, together
    /// where the sink can.
    async fn reset(&mut self, projection: &str, to: Checkpoint, clear: bool) -> Result<(), SinkError>;

    /// Gets `build`'s read model ready before anything is applied to it: called each
    /// time a build is taken up (its lease taken), so it must be idempotent. By default
    /// there is nothing to do.
    async fn prepare(&mut self, build: &ProjectionBuild) -> Result<(), SinkError> {
        let _ = build;
        Ok(())
    }

    /// Whether each build's read model is kept apart from the others' (by default
    /// not: every build writes to the same place).
    fn keeps_builds_apart(&self) -> bool {
        false
    }

    /// The page of the log after `after` (at most `limit` selected events), if the sink
    /// has already read it itself: a sink that reads the log ahead of its batches (the
    /// RabbitMQ publisher does, while it waits for the broker's confirms) hands over what
    /// it read, and the projection applies it as its next batch instead of reading the
    /// same events again. The page must be what
    /// [`read_log`](crate::store::EventLog::read_log) with the projection's selector
    /// would return from `after`: every selected event after it, up to `to`, in log
    /// order. `None` (the default) when it has not; the projection then reads the page.
    fn read_ahead(&mut self, after: Checkpoint, limit: usize) -> Option<LogPage> {
        let _ = (after, limit);
        None
    }
}
