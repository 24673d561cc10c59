//! The store traits of snapshots, consumers and retention.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::op::{
    AdvanceCheckpoint, CompleteRequest, CountAfter, DeleteBefore, DeleteBeforeGuarded, DeleteSnapshot,
    Execute, Failures, Heartbeat, Leave, LoadCheckpoint, LoadRequest, LoadSnapshot, MakeRequest,
    RecordFailure, RecordStop, ResolveFailure, SaveCheckpoint, SaveSnapshot, Stopped, StorageBytes, TryLease,
};
use super::{
    Checkpoint, ConsumerRequest, Lease, Member, PendingRequest, ProjectionFailure, RetentionGuard, Snapshot,
    StoreError, StreamId,
};

/// Snapshots of aggregate state, one per stream.
#[async_trait]
pub trait SnapshotStore: Execute<SaveSnapshot> + Execute<LoadSnapshot> + Execute<DeleteSnapshot> {
    /// Saves a snapshot, replacing the stream's previous one.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.execute(SaveSnapshot::new(snapshot.clone())?).await
    }

    /// Loads the stream's latest snapshot.
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.execute(LoadSnapshot::new(stream.clone())).await
    }

    /// Deletes the stream's snapshot; `true` if there was one.
    async fn delete_snapshot(&self, stream: &StreamId) -> Result<bool, StoreError> {
        self.execute(DeleteSnapshot::new(stream.clone())).await
    }
}

impl<T> SnapshotStore for T where T: Execute<SaveSnapshot> + Execute<LoadSnapshot> + Execute<DeleteSnapshot> {}

/// What the log's consumers keep in the store: checkpoints, leases, recorded failures,
/// operators' requests, and their lag.
#[async_trait]
pub trait ConsumerStore:
    Execute<LoadCheckpoint>
    + Execute<SaveCheckpoint>
    + Execute<AdvanceCheckpoint>
    + Execute<CountAfter>
    + Execute<TryLease>
    + Execute<RecordFailure>
    + Execute<Failures>
    + Execute<ResolveFailure>
    + Execute<RecordStop>
    + Execute<Stopped>
    + Execute<MakeRequest>
    + Execute<LoadRequest>
    + Execute<CompleteRequest>
    + Execute<Heartbeat>
    + Execute<Leave>
{
    /// Loads a named consumer's checkpoint.
    async fn load_checkpoint(&self, consumer: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.execute(LoadCheckpoint::new(consumer)?).await
    }

    /// Saves a named consumer's checkpoint.
    async fn save_checkpoint(&self, consumer: &str, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.execute(SaveCheckpoint::new(consumer, checkpoint)?).await
    }

    /// Moves a consumer's checkpoint from `from` to `to`, only if it still is `from` (a
    /// consumer without a checkpoint is at [`Checkpoint::START`]); `false`, changing
    /// nothing, if it is not. A writer that lost its lease finds out here.
    async fn advance_checkpoint(
        &self,
        consumer: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        self.execute(AdvanceCheckpoint::new(consumer, from, to)?).await
    }

    /// How many events of the global log lie after `after`, as far as committed, counting
    /// only the given aggregate types (all of them when `aggregate_types` is empty). A
    /// consumer's lag: a projection scoped to some categories passes them, since its
    /// checkpoint only moves over their events.
    async fn count_after(&self, after: Checkpoint, aggregate_types: &[String]) -> Result<u64, StoreError> {
        self.execute(CountAfter::new(after, aggregate_types.to_vec())?).await
    }

    /// Tries to take the exclusive lease on a consumer's name: `None` if someone else
    /// (in this process or another one sharing the store) holds it.
    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.execute(TryLease::new(name)?).await
    }

    /// Records a failure, replacing an earlier record of the same projection and event.
    async fn record_failure(&self, failure: &ProjectionFailure) -> Result<(), StoreError> {
        self.execute(RecordFailure::new(failure.clone())?).await
    }

    /// A projection's recorded failures, in log order.
    async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, StoreError> {
        self.execute(Failures::new(projection)?).await
    }

    /// Removes a recorded failure; `true` if there was one.
    async fn resolve_failure(&self, projection: &str, event_id: Uuid) -> Result<bool, StoreError> {
        self.execute(ResolveFailure::new(projection, event_id)?).await
    }

    /// Records that a projection stopped at `failure`'s event by its failure policy
    /// ([`OnExhausted::Stop`](crate::projection::OnExhausted::Stop)), replacing an earlier
    /// record, so that operators can see it (`factum status`). The record goes when the
    /// projection's checkpoint is next saved or advanced: once it got past the event, or
    /// was reset.
    async fn record_stop(&self, failure: &ProjectionFailure) -> Result<(), StoreError> {
        self.execute(RecordStop::new(failure.clone())?).await
    }

    /// Where a projection stopped by its failure policy, while it is stopped (see
    /// [`record_stop`](Self::record_stop)).
    async fn stopped(&self, projection: &str) -> Result<Option<ProjectionFailure>, StoreError> {
        self.execute(Stopped::new(projection)?).await
    }

    /// Records an operator's request for a consumer, replacing any request not yet carried
    /// out, and returns the pending request. The consumer need not have a checkpoint yet.
    async fn request(&self, consumer: &str, request: ConsumerRequest) -> Result<PendingRequest, StoreError> {
        self.execute(MakeRequest::new(consumer, request)?).await
    }

    /// The consumer's pending request, if any. The instance holding the consumer's lease
    /// looks for one about once a second (and when it takes the lease).
    async fn pending_request(&self, consumer: &str) -> Result<Option<PendingRequest>, StoreError> {
        self.execute(LoadRequest::new(consumer)?).await
    }

    /// Removes the consumer's pending request once carried out, only if it still is the
    /// one made at `requested_at`; `false`, changing nothing, if it is not.
    async fn complete_request(
        &self,
        consumer: &str,
        requested_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.execute(CompleteRequest::new(consumer, requested_at)?).await
    }

    /// Tells the store that `member` runs slices of the build named `consumer`
    /// ([`BuildId::consumer`](crate::store::BuildId::consumer)) and holds `member.holds`,
    /// and returns every member heard from within `ttl`, this one included, by instance id.
    /// A member not heard from within `ttl` no longer counts: an instance calls this a few
    /// times per `ttl`.
    async fn heartbeat(
        &self,
        consumer: &str,
        member: &Member,
        ttl: Duration,
    ) -> Result<Vec<Member>, StoreError> {
        self.execute(Heartbeat::new(consumer, member.clone(), ttl)?).await
    }

    /// Removes `instance` from the members of the build named `consumer` (an instance that
    /// stops), so that the others take its slices over at once.
    async fn leave(&self, consumer: &str, instance: Uuid) -> Result<(), StoreError> {
        self.execute(Leave::new(consumer, instance)?).await
    }
}

impl<T> ConsumerStore for T where
    T: Execute<LoadCheckpoint>
        + Execute<SaveCheckpoint>
        + Execute<AdvanceCheckpoint>
        + Execute<CountAfter>
        + Execute<TryLease>
        + Execute<RecordFailure>
        + Execute<Failures>
        + Execute<ResolveFailure>
        + Execute<RecordStop>
        + Execute<Stopped>
        + Execute<MakeRequest>
        + Execute<LoadRequest>
        + Execute<CompleteRequest>
        + Execute<Heartbeat>
        + Execute<Leave>
{
}

/// Deleting old events: the only way events leave the log.
#[async_trait]
pub trait RetentionStore:
    Execute<DeleteBefore> + Execute<DeleteBeforeGuarded> + Execute<StorageBytes>
{
    /// Deletes every event recorded before `cutoff`, except each stream's newest event, and
    /// returns how many. This is the only operation that removes events. Keeping the
    /// newest event keeps the stream's version, so later appends continue the numbering
    /// and an append at a deleted version is a conflict.
    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.execute(DeleteBefore::new(cutoff)).await
    }

    /// Deletes every event recorded before `cutoff` except those `guard` keeps and each
    /// stream's newest event, and returns how many were deleted: retention's safe mode.
    async fn delete_before_guarded(
        &self,
        cutoff: DateTime<Utc>,
        guard: &RetentionGuard,
    ) -> Result<u64, StoreError> {
        self.execute(DeleteBeforeGuarded::new(cutoff, guard.clone())?).await
    }

    /// The bytes the store's events take, where the backend can tell (table and indexes).
    async fn storage_bytes(&self) -> Result<Option<u64>, StoreError> {
        self.execute(StorageBytes).await
    }
}

impl<T> RetentionStore for T where
    T: Execute<DeleteBefore> + Execute<DeleteBeforeGuarded> + Execute<StorageBytes>
{
}
