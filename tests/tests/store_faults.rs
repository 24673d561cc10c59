//! The command path when the store fails: an append that committed but whose answer was
//! lost, and snapshot writes that fail. A wrapper injects the faults into a real store.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use factum::prelude::*;
use factum::{CommandError, Factum, InMemoryStore, StoreError, StreamId, Version};
use factum_tests::counter::{Counter, CounterCommand};
use factum_tests::faulty::Faulty;

fn faulty() -> Arc<Faulty<InMemoryStore>> {
    Faulty::new(InMemoryStore::new())
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
