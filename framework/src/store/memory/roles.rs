//! The in-memory store's snapshots, consumers and retention.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};

use super::{relock, InMemoryStore};
use crate::store::op::{
    AdvanceCheckpoint, CompleteRequest, CountAfter, DeleteBefore, DeleteBeforeGuarded, DeleteSnapshot,
    Execute, Failures, LoadCheckpoint, LoadRequest, LoadSnapshot, MakeRequest, RecordFailure, RecordStop,
    ResolveFailure, SaveCheckpoint, SaveSnapshot, Stopped, StorageBytes, TryLease,
};
use crate::store::{
    Checkpoint, Lease, PendingRequest, ProjectionFailure, RecordedEvent, Snapshot, StoreError,
};

#[async_trait]
impl Execute<SaveSnapshot> for InMemoryStore {
    async fn execute(&self, op: SaveSnapshot) -> Result<(), StoreError> {
        let snapshot = op.snapshot();
        let mut state = self.lock();
        let mut stored = snapshot.clone();
        stored.created_at = stored.created_at.trunc_subsecs(6);
        // Like the PostgreSQL store: an older snapshot never replaces a newer one.
        if state.snapshots.get(&snapshot.stream).is_none_or(|s| s.version <= snapshot.version) {
            state.snapshots.insert(snapshot.stream.clone(), stored);
        }
        Ok(())
    }
}

#[async_trait]
impl Execute<LoadSnapshot> for InMemoryStore {
    async fn execute(&self, op: LoadSnapshot) -> Result<Option<Snapshot>, StoreError> {
        let stream = op.stream();
        Ok(self.lock().snapshots.get(stream).cloned())
    }
}

#[async_trait]
impl Execute<DeleteSnapshot> for InMemoryStore {
    async fn execute(&self, op: DeleteSnapshot) -> Result<bool, StoreError> {
        let stream = op.stream();
        Ok(self.lock().snapshots.remove(stream).is_some())
    }
}

#[async_trait]
impl Execute<LoadCheckpoint> for InMemoryStore {
    async fn execute(&self, op: LoadCheckpoint) -> Result<Option<Checkpoint>, StoreError> {
        let consumer = op.consumer();
        Ok(self.lock().checkpoints.get(consumer).copied())
    }
}

#[async_trait]
impl Execute<SaveCheckpoint> for InMemoryStore {
    async fn execute(&self, op: SaveCheckpoint) -> Result<(), StoreError> {
        let (consumer, checkpoint) = (op.consumer(), op.checkpoint());
        let mut state = self.lock();
        state.checkpoints.insert(consumer.to_owned(), checkpoint);
        state.stops.remove(consumer);
        Ok(())
    }
}

#[async_trait]
impl Execute<AdvanceCheckpoint> for InMemoryStore {
    async fn execute(&self, op: AdvanceCheckpoint) -> Result<bool, StoreError> {
        let (consumer, from, to) = (op.consumer(), op.from(), op.to());
        let mut state = self.lock();
        let current = state.checkpoints.get(consumer).copied().unwrap_or(Checkpoint::START);
        if current != from || super::builds::closed(&state, consumer) {
            return Ok(false);
        }
        state.checkpoints.insert(consumer.to_owned(), to);
        state.stops.remove(consumer);
        Ok(true)
    }
}

#[async_trait]
impl Execute<CountAfter> for InMemoryStore {
    async fn execute(&self, op: CountAfter) -> Result<u64, StoreError> {
        let (after, aggregate_types) = (op.after(), op.aggregate_types());
        let state = self.lock();
        let from = after.position.0.saturating_add(1);
        let in_scope = |e: &RecordedEvent| {
            aggregate_types.is_empty() || aggregate_types.iter().any(|t| t == e.stream.aggregate_type())
        };
        Ok(state.log.range(from..).filter(|(_, e)| e.checkpoint() > after && in_scope(e)).count() as u64)
    }
}

#[async_trait]
impl Execute<TryLease> for InMemoryStore {
    async fn execute(&self, op: TryLease) -> Result<Option<Lease>, StoreError> {
        let name = op.consumer();
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
}

#[async_trait]
impl Execute<RecordFailure> for InMemoryStore {
    async fn execute(&self, op: RecordFailure) -> Result<(), StoreError> {
        let failure = op.failure();
        let mut stored = failure.clone();
        stored.failed_at = stored.failed_at.trunc_subsecs(6);
        self.lock().failures.insert((failure.projection.clone(), failure.event_id), stored);
        Ok(())
    }
}

#[async_trait]
impl Execute<Failures> for InMemoryStore {
    async fn execute(&self, op: Failures) -> Result<Vec<ProjectionFailure>, StoreError> {
        let projection = op.consumer();
        let mut found: Vec<ProjectionFailure> =
            self.lock().failures.values().filter(|f| f.projection == projection).cloned().collect();
        found.sort_by_key(ProjectionFailure::checkpoint);
        Ok(found)
    }
}

#[async_trait]
impl Execute<ResolveFailure> for InMemoryStore {
    async fn execute(&self, op: ResolveFailure) -> Result<bool, StoreError> {
        let (projection, event_id) = (op.projection(), op.event_id());
        Ok(self.lock().failures.remove(&(projection.to_owned(), event_id)).is_some())
    }
}

#[async_trait]
impl Execute<RecordStop> for InMemoryStore {
    async fn execute(&self, op: RecordStop) -> Result<(), StoreError> {
        let failure = op.failure();
        let mut stored = failure.clone();
        stored.failed_at = stored.failed_at.trunc_subsecs(6);
        self.lock().stops.insert(failure.projection.clone(), stored);
        Ok(())
    }
}

#[async_trait]
impl Execute<Stopped> for InMemoryStore {
    async fn execute(&self, op: Stopped) -> Result<Option<ProjectionFailure>, StoreError> {
        let projection = op.consumer();
        Ok(self.lock().stops.get(projection).cloned())
    }
}

#[async_trait]
impl Execute<MakeRequest> for InMemoryStore {
    async fn execute(&self, op: MakeRequest) -> Result<PendingRequest, StoreError> {
        let (consumer, request) = (op.consumer(), op.request());
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
}

#[async_trait]
impl Execute<LoadRequest> for InMemoryStore {
    async fn execute(&self, op: LoadRequest) -> Result<Option<PendingRequest>, StoreError> {
        let consumer = op.consumer();
        Ok(self.lock().requests.get(consumer).copied())
    }
}

#[async_trait]
impl Execute<CompleteRequest> for InMemoryStore {
    async fn execute(&self, op: CompleteRequest) -> Result<bool, StoreError> {
        let (consumer, requested_at) = (op.consumer(), op.requested_at());
        let mut state = self.lock();
        if state.requests.get(consumer).is_some_and(|p| p.requested_at == requested_at) {
            state.requests.remove(consumer);
            return Ok(true);
        }
        Ok(false)
    }
}

#[async_trait]
impl Execute<DeleteBefore> for InMemoryStore {
    async fn execute(&self, op: DeleteBefore) -> Result<u64, StoreError> {
        let cutoff = op.cutoff();
        let mut state = self.lock();
        let doomed: Vec<Arc<RecordedEvent>> =
            state.log.values().filter(|e| e.recorded_at < cutoff && !state.is_newest(e)).cloned().collect();
        state.remove(&doomed);
        Ok(doomed.len() as u64)
    }
}

#[async_trait]
impl Execute<DeleteBeforeGuarded> for InMemoryStore {
    async fn execute(&self, op: DeleteBeforeGuarded) -> Result<u64, StoreError> {
        let (cutoff, guard) = (op.cutoff(), op.guard());
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

#[async_trait]
impl Execute<StorageBytes> for InMemoryStore {
    async fn execute(&self, _: StorageBytes) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
}
