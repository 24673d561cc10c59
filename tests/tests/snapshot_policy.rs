//! The snapshot policy set at run time (`FactumConfig::snapshot_policy`) against the
//! declared `snapshot_every`, on PostgreSQL and on the in-memory store: how many
//! snapshots each policy writes, at which versions, and that loads still use them.
//!
//! `Counter` declares `snapshot_every = 5`.

use std::sync::Arc;
use std::time::Duration;

use factum::aggregate::SnapshotPolicy;
use factum::{Aggregate, EventStore, Factum, FactumConfig, InMemoryStore, Metrics, StreamId, Version};
use factum_tests::counter::{Counter, CounterCommand};
use factum_tests::{eventually, TestDb};

fn inc(id: &str) -> CounterCommand {
    CounterCommand::Increment { id: id.into(), by: 1 }
}

/// Snapshot writes that succeeded, as the facade's metrics counted them.
fn snapshots_written(factum: &Factum) -> u64 {
    let text = factum.metrics().encode();
    let line = "factum_snapshot_writes_total{aggregate_type=\"Counter\",outcome=\"ok\"} ";
    text.lines().find_map(|l| l.strip_prefix(line)).map_or(0, |n| n.parse().expect("a count"))
}

/// The version of the newest stored snapshot of `Counter/id`.
async fn snapshot_at(store: &dyn EventStore, id: &str) -> Option<Version> {
    let stream = StreamId::new(Counter::TYPE, id).unwrap();
    store.load_snapshot(&stream).await.unwrap().map(|s| s.version)
}

fn facade(store: &Arc<dyn EventStore>, config: FactumConfig) -> Factum {
    Factum::with_config(store.clone(), config, Arc::new(Metrics::new()))
}

/// Runs `n` increments on `id`, then a state request: the actor handles messages in
/// order, so once it replies, every snapshot decision of those commands has been made.
async fn run(factum: &Factum, id: &str, n: u64) {
    for _ in 0..n {
        factum.execute(inc(id)).await.expect("command");
    }
    let (counter, _) = factum.load::<Counter>(id).await.expect("load");
    assert!(counter.increments >= n);
}

/// Waits until `factum` has written `expected` snapshots and the newest stored one of
/// `id` is at `at`.
async fn expect_snapshots(factum: &Factum, id: &str, expected: u64, at: u64) {
    let store = factum.store().clone();
    let what = format!("{expected} snapshots of {id}, the newest at {at}");
    eventually(Duration::from_secs(10), &what, || {
        let store = store.clone();
        async move {
            let newest = snapshot_at(store.as_ref(), id).await;
            (snapshots_written(factum) == expected && newest == Some(Version(at))).then_some(())
        }
    })
    .await;
}

/// Nine commands each under the declared policy (every 5), `Every(2)`, `Never`, and a
/// custom "3 events since the last snapshot"; then a fresh facade whose custom policy
/// counts from the snapshot it loaded.
async fn policies_decide_the_snapshots(store: Arc<dyn EventStore>) {
    let declared = facade(&store, FactumConfig::default());
    assert_eq!(FactumConfig::default().snapshot_policy_of::<Counter>(), SnapshotPolicy::every(5).unwrap());
    let every_2 =
        facade(&store, FactumConfig::default().snapshot_policy::<Counter>(SnapshotPolicy::every(2).unwrap()));
    let never = facade(&store, FactumConfig::default().snapshot_policy::<Counter>(SnapshotPolicy::Never));
    let since_3 = || SnapshotPolicy::custom(|ctx| ctx.events_since_snapshot() >= 3);
    let custom = facade(&store, FactumConfig::default().snapshot_policy::<Counter>(since_3()));

    tokio::join!(
        run(&declared, "declared", 9),
        run(&every_2, "every-2", 9),
        run(&never, "never", 9),
        run(&custom, "custom", 9),
    );
    expect_snapshots(&declared, "declared", 1, 5).await; // at 5
    expect_snapshots(&every_2, "every-2", 4, 8).await; // at 2, 4, 6, 8
    expect_snapshots(&custom, "custom", 3, 9).await; // at 3, 6, 9
    assert_eq!(snapshots_written(&never), 0, "Never writes no snapshot");
    assert_eq!(snapshot_at(store.as_ref(), "never").await, None);

    // Never governs writes only: a facade that never snapshots still loads from the
    // snapshot another one wrote (at 8), and folds the one event after it.
    let reader = facade(&store, FactumConfig::default().snapshot_policy::<Counter>(SnapshotPolicy::Never));
    let (counter, version) = reader.load::<Counter>("every-2").await.unwrap();
    assert_eq!((counter.value, version), (9, Version(9)));
    assert_eq!(reader.metrics().snapshot_loads("Counter", "hit"), 1);

    // A fresh actor of the custom policy starts counting from the snapshot it loaded
    // (at 9): the next snapshot is at 12, not at 10 or 11.
    let custom = facade(&store, FactumConfig::default().snapshot_policy::<Counter>(since_3()));
    run(&custom, "custom", 2).await;
    assert_eq!(snapshots_written(&custom), 0, "2 events after the snapshot at 9");
    run(&custom, "custom", 1).await;
    expect_snapshots(&custom, "custom", 1, 12).await;

    for f in [declared, every_2, never, custom, reader] {
        f.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_policies_on_postgres() {
    let db = TestDb::new().await;
    policies_decide_the_snapshots(Arc::new(db.store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_policies_in_memory() {
    policies_decide_the_snapshots(Arc::new(InMemoryStore::new())).await;
}

/// A policy that panics is "no snapshot": the command still succeeds, and so do the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_policy_only_skips_the_snapshot() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let policy =
        SnapshotPolicy::custom(|ctx| if ctx.after.0 == 2 { panic!("policy panicked") } else { true });
    let factum = facade(&store, FactumConfig::default().snapshot_policy::<Counter>(policy));
    run(&factum, "p-1", 3).await;
    // Snapshots at 1 and 3; none at 2.
    expect_snapshots(&factum, "p-1", 2, 3).await;
    let (counter, version) = factum.load::<Counter>("p-1").await.unwrap();
    assert_eq!((counter.value, version), (3, Version(3)));
}
