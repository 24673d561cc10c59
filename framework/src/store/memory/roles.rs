//! The in-memory store's snapshots, consumers and retention.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use super::{relock, InMemoryStore};
use crate::store::backend::{ConsumerBackend, RetentionBackend, SnapshotBackend};
use crate::store::{
    Checkpoint, ConsumerRequest, Lease, PendingRequest, ProjectionFailure, RecordedEvent, RetentionGuard,
    Snapshot, StoreError, StreamId,
};

#[async_trait]
impl SnapshotBackend for InMemoryStore {
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut state = self.lock();
        let mut stored = snapshot.clone();
        stored.created_at = stored.created_at.trunc_subsecs(6);
        // Like the PostgreSQL store: an older snapshot never replaces a newer one.
        if state.snapshots.get(&snapshot.stream).is_none_or(|s| s.version <= snapshot.version) {
            state.snapshots.insert(snapshot.stream.clone(), stored);
        }
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }

    async fn delete_snapshot(&self, stream: &StreamId) -> Result<bool, StoreError> {
        Ok(self.lock().snapshots.remove(stream).is_some())
    }
}

#[async_trait]
impl ConsumerBackend for InMemoryStore {
    async fn load_checkpoint(&self, consumer: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.lock().checkpoints.get(consumer).copied())
    }

    async fn save_checkpoint(&self, consumer: &str, checkpoint: Checkpoint) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.checkpoints.insert(consumer.to_owned(), checkpoint);
        state.stops.remove(consumer);
        Ok(())
    }

    async fn advance_checkpoint(
        &self,
        consumer: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let current = state.checkpoints.get(consumer).copied().unwrap_or(Checkpoint::START);
        if current != from {
            return Ok(false);
        }
        state.checkpoints.insert(consumer.to_owned(), to);
        state.stops.remove(consumer);
        Ok(true)
    }

    async fn count_after(&self, after: Checkpoint, aggregate_types: &[String]) -> Result<u64, StoreError> {
        let state = self.lock();
        let from = after.position.0.saturating_add(1);
        let in_scope = |e: &RecordedEvent| {
            aggregate_types.is_empty() || aggregate_types.iter().any(|t| t == e.stream.aggregate_type())
        };
        Ok(state.log.range(from..).filter(|(_, e)| e.checkpoint() > after && in_scope(e)).count() as u64)
    }

    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        if !relock(&self.shared.leases).insert(name.to_owned()) {
            return Ok(None);
        }
        let shared = self.shared.clone();
        let name = name.to_owned();
        Ok(Some(Lease::new(
            || true,
            move || {
                relock(&shared.leases).remove(&name);
            },
        )))
    }

    async fn record_failure(&self, failure: &ProjectionFailure) -> Result<(), StoreError> {
        let mut stored = failure.clone();
        stored.failed_at = stored.failed_at.trunc_subsecs(6);
        self.lock().failures.insert((failure.projection.clone(), failure.event_id), stored);
        Ok(())
    }

    async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, StoreError> {
        let mut found: Vec<ProjectionFailure> =
            self.lock().failures.values().filter(|f| f.projection == projection).cloned().collect();
        found.sort_by_key(ProjectionFailure::checkpoint);
        Ok(found)
    }

    async fn resolve_failure(&self, projection: &str, event_id: Uuid) -> Result<bool, StoreError> {
        Ok(self.lock().failures.remove(&(projection.to_owned(), event_id)).is_some())
    }

    async fn record_stop(&self, failure: &ProjectionFailure) -> Result<(), StoreError> {
        let mut stored = failure.clone();
        stored.failed_at = stored.failed_at.trunc_subsecs(6);
        self.lock().stops.insert(failure.projection.clone(), stored);
        Ok(())
    }

    async fn stopped(&self, projection: &str) -> Result<Option<ProjectionFailure>, StoreError> {
        Ok(self.lock().stops.get(projection).cloned())
    }

    async fn request(&self, consumer: &str, request: ConsumerRequest) -> Result<PendingRequest, StoreError> {
        let mut state = self.lock();
        // Strictly later than the request it replaces, so that completing that one cannot
        // remove this one.
        let mut at = Utc::now().trunc_subsecs(6);
        if let Some(previous) = state.requests.get(consumer) {
            at = at.max(previous.requested_at + chrono::Duration::microseconds(1));
        }
        let pending = PendingRequest::new(request, at);
        state.requests.insert(consumer.to_owned(), pending);
        Ok(pending)
    }

    async fn pending_request(&self, consumer: &str) -> Result<Option<PendingRequest>, StoreError> {
        Ok(self.lock().requests.get(consumer).copied())
    }

    async fn complete_request(
        &self,
        consumer: &str,
        requested_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state.requests.get(consumer).is_some_and(|p| p.requested_at == requested_at) {
            state.requests.remove(consumer);
            return Ok(true);
        }
        Ok(false)
    }
}

#[async_trait]
impl RetentionBackend for InMemoryStore {
    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let doomed: Vec<Arc<RecordedEvent>> =
            state.log.values().filter(|e| e.recorded_at < cutoff && !state.is_newest(e)).cloned().collect();
        state.remove(&doomed);
        Ok(doomed.len() as u64)
    }

    async fn delete_before_guarded(
        &self,
        cutoff: DateTime<Utc>,
        guard: &RetentionGuard,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let checkpoints: Vec<Option<Checkpoint>> =
            guard.unprocessed_by.iter().map(|n| state.checkpoints.get(n).copied()).collect();
        let doomed: Vec<Arc<RecordedEvent>> = state
            .log
            .values()
            .filter(|e| e.recorded_at < cutoff && !state.is_newest(e))
            .filter(|e| !guard.keeps(e, &checkpoints, state.snapshots.get(&e.stream).map(|s| s.version)))
            .cloned()
            .collect();
        state.remove(&doomed);
        Ok(doomed.len() as u64)
    }
}
