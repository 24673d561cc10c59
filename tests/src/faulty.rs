//! A store wrapper that injects faults into a real store: lost append replies, failing
//! snapshot writes, failing reads of the log.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use factum::prelude::*;
use factum::store::{
    AppendResult, Checkpoint, ConsumerRequest, EventStream, GlobalPosition, Lease, Limits, PendingRequest,
    ProjectionFailure, RetentionGuard, Snapshot, VersionRange, WakeSignal,
};
use factum::{
    EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamId, Version,
};
use uuid::Uuid;

/// The error a fault reports.
#[derive(Debug, thiserror::Error)]
#[error("injected fault: {0}")]
pub struct Injected(pub &'static str);

/// Delegates to `inner`, failing where told to.
pub struct Faulty<S> {
    /// The real store.
    pub inner: S,
    /// The next append commits, then reports a connection failure.
    pub lose_next_append_reply: AtomicBool,
    /// Snapshot writes fail.
    pub fail_snapshots: AtomicBool,
    /// The next this-many reads of the log (`read_all`, `read_category`) fail.
    pub fail_reads: AtomicU32,
    /// The next this-many reads of the log panic (a bug in a backend: a crash, not an
    /// outage).
    pub panic_reads: AtomicU32,
}

impl<S> Faulty<S> {
    /// A wrapper with no faults armed.
    pub fn new(inner: S) -> Arc<Self> {
        Arc::new(Faulty {
            inner,
            lose_next_append_reply: AtomicBool::new(false),
            fail_snapshots: AtomicBool::new(false),
            fail_reads: AtomicU32::new(0),
            panic_reads: AtomicU32::new(0),
        })
    }

    fn read_fault(&self) -> Result<(), StoreError> {
        if self.panic_reads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            panic!("injected: a read of the log panicked");
        }
        let armed = self.fail_reads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match armed {
            Ok(_) => Err(StoreError::backend(Injected("read of the log failed"))),
            Err(_) => Ok(()),
        }
    }
}

#[async_trait]
impl<S: EventStore> EventLog for Faulty<S> {
    fn limits(&self) -> &Limits {
        self.inner.limits()
    }

    async fn append(
        &self,
        s: &StreamId,
        e: ExpectedVersion,
        ev: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let result = self.inner.append(s, e, ev).await;
        if self.lose_next_append_reply.swap(false, Ordering::SeqCst) {
            return Err(StoreError::backend(Injected("connection lost after commit")));
        }
        result
    }

    async fn append_many(
        &self,
        appends: Vec<factum::store::StreamAppend>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        self.inner.append_many(appends).await
    }

    async fn stream_version(&self, s: &StreamId) -> Result<Version, StoreError> {
        self.inner.stream_version(s).await
    }

    async fn read_stream(&self, s: &StreamId, r: VersionRange) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(s, r).await
    }

    async fn read_all(&self, a: Checkpoint, l: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_fault()?;
        self.inner.read_all(a, l).await
    }

    async fn read_category(
        &self,
        c: &str,
        a: Checkpoint,
        l: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_fault()?;
        self.inner.read_category(c, a, l).await
    }

    async fn latest_position(&self) -> Result<Option<GlobalPosition>, StoreError> {
        self.inner.latest_position().await
    }

    async fn query(&self, f: &EventFilter) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.query(f).await
    }

    async fn count(&self, f: &EventFilter) -> Result<u64, StoreError> {
        self.inner.count(f).await
    }

    fn stream(&self, f: EventFilter) -> EventStream {
        self.inner.stream(f)
    }

    fn wake_signal(&self) -> WakeSignal {
        self.inner.wake_signal()
    }

    fn category_wake_signal(&self, c: &str) -> WakeSignal {
        self.inner.category_wake_signal(c)
    }
}

#[async_trait]
impl<S: EventStore> SnapshotStore for Faulty<S> {
    async fn save_snapshot(&self, s: &Snapshot) -> Result<(), StoreError> {
        if self.fail_snapshots.load(Ordering::SeqCst) {
            return Err(StoreError::backend(Injected("snapshot write failed")));
        }
        self.inner.save_snapshot(s).await
    }

    async fn load_snapshot(&self, s: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(s).await
    }

    async fn delete_snapshot(&self, s: &StreamId) -> Result<bool, StoreError> {
        self.inner.delete_snapshot(s).await
    }
}

#[async_trait]
impl<S: EventStore> ConsumerStore for Faulty<S> {
    async fn load_checkpoint(&self, c: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.load_checkpoint(c).await
    }

    async fn save_checkpoint(&self, c: &str, cp: Checkpoint) -> Result<(), StoreError> {
        self.inner.save_checkpoint(c, cp).await
    }

    async fn advance_checkpoint(
        &self,
        c: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        self.inner.advance_checkpoint(c, from, to).await
    }

    async fn count_after(&self, a: Checkpoint, types: &[String]) -> Result<u64, StoreError> {
        self.inner.count_after(a, types).await
    }

    async fn try_lease(&self, n: &str) -> Result<Option<Lease>, StoreError> {
        self.inner.try_lease(n).await
    }

    async fn record_failure(&self, f: &ProjectionFailure) -> Result<(), StoreError> {
        self.inner.record_failure(f).await
    }

    async fn failures(&self, p: &str) -> Result<Vec<ProjectionFailure>, StoreError> {
        self.inner.failures(p).await
    }

    async fn resolve_failure(&self, p: &str, id: Uuid) -> Result<bool, StoreError> {
        self.inner.resolve_failure(p, id).await
    }

    async fn record_stop(&self, f: &ProjectionFailure) -> Result<(), StoreError> {
        self.inner.record_stop(f).await
    }

    async fn stopped(&self, p: &str) -> Result<Option<ProjectionFailure>, StoreError> {
        self.inner.stopped(p).await
    }

    async fn request(&self, c: &str, r: ConsumerRequest) -> Result<PendingRequest, StoreError> {
        self.inner.request(c, r).await
    }

    async fn pending_request(&self, c: &str) -> Result<Option<PendingRequest>, StoreError> {
        self.inner.pending_request(c).await
    }

    async fn complete_request(&self, c: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.complete_request(c, at).await
    }
}

#[async_trait]
impl<S: EventStore> RetentionStore for Faulty<S> {
    async fn delete_before(&self, c: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.delete_before(c).await
    }

    async fn delete_before_guarded(&self, c: DateTime<Utc>, g: &RetentionGuard) -> Result<u64, StoreError> {
        self.inner.delete_before_guarded(c, g).await
    }
}
