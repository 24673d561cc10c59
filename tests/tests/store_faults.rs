//! The command path when the store fails: an append that committed but whose answer was
//! lost, and snapshot writes that fail. A wrapper injects the faults into a real store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use factum::{
    AppendResult, Checkpoint, CommandError, EventFilter, EventStore, EventStream, ExpectedVersion, Factum,
    GlobalPosition, InMemoryStore, Limits, NewEvent, RecordedEvent, Snapshot, StoreError, StreamId, Version,
    VersionRange, WakeSignal,
};
use factum_tests::counter::{Counter, CounterCommand};

#[derive(Debug, thiserror::Error)]
#[error("injected fault: {0}")]
struct Injected(&'static str);

/// Delegates to an in-memory store, failing where told to.
struct Faulty {
    inner: InMemoryStore,
    /// The next append commits, then reports a connection failure.
    lose_next_append_reply: AtomicBool,
    /// Snapshot writes fail.
    fail_snapshots: AtomicBool,
}

#[async_trait]
impl EventStore for Faulty {
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
    async fn stream_version(&self, s: &StreamId) -> Result<Version, StoreError> {
        self.inner.stream_version(s).await
    }
    async fn read_stream(&self, s: &StreamId, r: VersionRange) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(s, r).await
    }
    async fn read_all(&self, a: Checkpoint, l: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(a, l).await
    }
    async fn read_category(
        &self,
        c: &str,
        a: Checkpoint,
        l: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
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
    async fn delete_before(&self, c: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.delete_before(c).await
    }
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
    async fn load_checkpoint(&self, c: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.load_checkpoint(c).await
    }
    async fn save_checkpoint(&self, c: &str, cp: Checkpoint) -> Result<(), StoreError> {
        self.inner.save_checkpoint(c, cp).await
    }
    fn wake_signal(&self) -> WakeSignal {
        self.inner.wake_signal()
    }
}

fn faulty() -> Arc<Faulty> {
    Arc::new(Faulty {
        inner: InMemoryStore::new(),
        lose_next_append_reply: AtomicBool::new(false),
        fail_snapshots: AtomicBool::new(false),
    })
}

fn inc(by: i64) -> CounterCommand {
    CounterCommand::Increment { id: "c-1".into(), by }
}

/// The append committed but the reply was lost: the caller gets a typed store error, and
/// the actor reloads before its next command, which then succeeds at the right version
/// (no conflict, no lost or doubled event).
#[tokio::test]
async fn lost_append_reply_is_settled_by_a_reload() {
    let store = faulty();
    let factum = Factum::new(store.clone());
    factum.execute(inc(1)).await.unwrap();
    store.lose_next_append_reply.store(true, Ordering::SeqCst);
    let err = factum.execute(inc(10)).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(StoreError::Backend(_))), "{err:?}");
    let done = factum.execute(inc(100)).await.unwrap();
    assert_eq!(done.version, Version(3), "the reload saw the committed event");
    let (state, version) = factum.load::<Counter>("c-1").await.unwrap();
    assert_eq!((state.value, version), (111, Version(3)));
    assert_eq!(factum.metrics().snapshot_loads("Counter", "miss"), 1, "one load, no respawn");
}

/// Failing snapshot writes never fail a command; they are counted.
#[tokio::test]
async fn failed_snapshot_writes_are_not_fatal() {
    let store = faulty();
    store.fail_snapshots.store(true, Ordering::SeqCst);
    let factum = Factum::new(store.clone());
    for _ in 0..12 {
        factum.execute(inc(1)).await.unwrap();
    }
    factum_tests::eventually(std::time::Duration::from_secs(5), "failed snapshot writes counted", || {
        let text = factum.metrics().encode();
        async move {
            text.contains("factum_snapshot_writes_total{aggregate_type=\"Counter\",outcome=\"failed\"} 2")
                .then_some(())
        }
    })
    .await;
    let stream = StreamId::new("Counter", "c-1").unwrap();
    assert!(store.load_snapshot(&stream).await.unwrap().is_none());
    assert_eq!(factum.load::<Counter>("c-1").await.unwrap().0.value, 12);
}
