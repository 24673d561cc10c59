//! What the log's consumers keep in the store beside their checkpoints: exclusive leases,
//! recorded failures, what retention must keep for them, and the instances that run a
//! projection's slices.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::types::{Checkpoint, GlobalPosition, RecordedEvent, StreamId, Version};

/// The exclusive right to run a named consumer, as granted by
/// [`EventStore::try_lease`](crate::store::ConsumerStore::try_lease). Dropping it gives the name up.
///
/// A lease can be lost without being dropped (the PostgreSQL store holds it through a
/// session that can break); [`is_held`](Self::is_held) says whether it still stands.
/// Consumers do not rely on it alone: checkpoints advance with
/// [`advance_checkpoint`](crate::store::ConsumerStore::advance_checkpoint), which refuses a writer
/// that is not where it believes it is.
pub struct Lease {
    held: Box<dyn Fn() -> bool + Send + Sync>,
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Lease {
    /// A lease that `held` reports on and `release` gives up (once, on drop). For
    /// backends.
    pub fn new(
        held: impl Fn() -> bool + Send + Sync + 'static,
        release: impl FnOnce() + Send + Sync + 'static,
    ) -> Lease {
        Lease { held: Box::new(held), release: Some(Box::new(release)) }
    }

    /// Whether the lease still stands.
    pub fn is_held(&self) -> bool {
        (self.held)()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").field("held", &self.is_held()).finish()
    }
}

/// An event a projection gave up on and skipped, recorded so that an operator can see it
/// and replay it once the handler is fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectionFailure {
    /// The projection's name.
    pub projection: String,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's stream.
    pub stream: StreamId,
    /// The event's version in its stream.
    pub version: Version,
    /// The event's global position.
    pub position: GlobalPosition,
    /// The event's transaction (with the position, its place in the log).
    pub transaction: u64,
    /// The event's type.
    pub event_type: String,
    /// The handler's last error.
    pub error: String,
    /// How many times the handler was tried.
    pub attempts: u32,
    /// When the event was given up on. Stored with microsecond precision.
    pub failed_at: DateTime<Utc>,
}

impl ProjectionFailure {
    /// The failure of `event` in `projection` after `attempts` tries, now.
    pub fn new(projection: &str, event: &RecordedEvent, error: impl fmt::Display, attempts: u32) -> Self {
        ProjectionFailure {
            projection: projection.to_owned(),
            event_id: event.event_id,
            stream: event.stream.clone(),
            version: event.version,
            position: event.position,
            transaction: event.transaction,
            event_type: event.event_type.clone(),
            error: error.to_string(),
            attempts,
            failed_at: Utc::now(),
        }
    }

    /// The failed event's place in the log.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { transaction: self.transaction, position: self.position }
    }
}

/// What [`EventStore::delete_before_guarded`](crate::store::RetentionStore::delete_before_guarded)
/// keeps even when it is older than the cutoff.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionGuard {
    /// Keep every event that one of these consumers has not processed yet (that lies
    /// after its checkpoint, or any event if it has none).
    pub unprocessed_by: Vec<String>,
    /// Keep every event that an aggregate still needs to load: one that no snapshot of
    /// its stream covers.
    pub unsnapshotted: bool,
}

impl RetentionGuard {
    /// Keeps what `consumers` have not processed and what no snapshot covers.
    pub fn safe(consumers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        RetentionGuard {
            unprocessed_by: consumers.into_iter().map(Into::into).collect(),
            unsnapshotted: true,
        }
    }

    /// Whether the guard keeps `event`, given the checkpoints of its consumers (`None`
    /// for one without a checkpoint) and the version of the stream's snapshot.
    pub fn keeps(
        &self,
        event: &RecordedEvent,
        checkpoints: &[Option<Checkpoint>],
        snapshot: Option<Version>,
    ) -> bool {
        let unprocessed = checkpoints.iter().any(|c| c.is_none_or(|c| event.checkpoint() > c));
        let needed = self.unsnapshotted && snapshot.is_none_or(|v| v < event.version);
        unprocessed || needed
    }
}

/// What an operator asked of a consumer through the store (the `factum` command line
/// records these), for the instance that holds the consumer's lease to carry out.
///
/// A request is durable: one made while no instance runs the consumer is carried out by
/// the first instance that takes its lease. Every backend stores every kind, so the enum
/// is exhaustive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerRequest {
    /// Move the checkpoint to `to` and go on from there. With `clear`, the consumer's read
    /// model is cleared first, in the same step: a rebuild from `to`.
    Reset {
        /// Where the consumer goes on from.
        to: Checkpoint,
        /// Clear the read model first.
        clear: bool,
    },
    /// Feed each recorded failure to the consumer again, resolving those it now handles.
    RetryFailures,
    /// Make another build of the projection live (asked of its live build): a build of
    /// the version the instance runs is first brought up to date, in the background.
    Switch {
        /// The build's version.
        version: u32,
        /// Which build of that version.
        build: u32,
    },
}

/// A [`ConsumerRequest`] as the store holds it, until
/// [`complete_request`](crate::store::ConsumerStore::complete_request) removes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingRequest {
    /// What was asked.
    pub request: ConsumerRequest,
    /// When it was asked: the request's identity, so that completing an older request
    /// never removes a newer one. Stored with microsecond precision.
    pub requested_at: DateTime<Utc>,
}

impl PendingRequest {
    /// A request made at `requested_at`. For backends.
    pub fn new(request: ConsumerRequest, requested_at: DateTime<Utc>) -> Self {
        PendingRequest { request, requested_at }
    }
}

/// An instance that runs a build's slices, as it last told the store
/// ([`ConsumerStore::heartbeat`](crate::store::ConsumerStore::heartbeat)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Member {
    /// The instance: one per supervisor and projection, new at each start.
    pub instance: Uuid,
    /// What operators know it by (host and process id, by default).
    pub label: String,
    /// The slices whose lease it holds, by index.
    pub holds: Vec<u16>,
    /// When the store last heard from it (set by the store).
    pub seen_at: DateTime<Utc>,
}

impl Member {
    /// A member as an instance describes itself.
    pub fn new(instance: Uuid, label: impl Into<String>, holds: Vec<u16>) -> Self {
        Member { instance, label: label.into(), holds, seen_at: Utc::now() }
    }
}
