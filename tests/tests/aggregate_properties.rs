//! Property: for random command sequences, the state rebuilt from snapshot + tail equals
//! the state from a full replay, and equals the state the live actor holds. Runs on the
//! in-memory store (the same actor code as on PostgreSQL, many cases quickly); the
//! PostgreSQL path of snapshots is covered in `aggregates.rs`.

use std::sync::Arc;
use std::time::Duration;

use factum::prelude::*;
use factum::store::VersionRange;
use factum::testing::AggregateTest;
use factum::{Aggregate, DomainEvent, Factum, InMemoryStore, StreamId};
use factum_tests::counter::{fold, Counter, CounterCommand, CounterError, CounterEvent};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Increment(i64),
    Reset,
    Noop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![8 => (-2i64..30).prop_map(Op::Increment), 1 => Just(Op::Reset), 1 => Just(Op::Noop)]
}

fn command(op: &Op) -> CounterCommand {
    let id = "p-1".to_owned();
    match op {
        Op::Increment(by) => CounterCommand::Increment { id, by: *by },
        Op::Reset => CounterCommand::Reset { id },
        Op::Noop => CounterCommand::Noop { id },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn snapshot_plus_tail_equals_full_replay_equals_live(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let store = Arc::new(InMemoryStore::new());
            let factum = Factum::new(store.clone());
            for op in &ops {
                match factum.execute(command(op)).await {
                    Ok(_) | Err(factum::CommandError::Domain(CounterError::BadIncrement(_))) => {}
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            let (live, version) = factum.load::<Counter>("p-1").await.unwrap();
            let stream = StreamId::new(Counter::TYPE, "p-1").unwrap();
            let stored: Vec<CounterEvent> = store
                .read_stream(&stream, VersionRange::ALL)
                .await
                .unwrap()
                .into_iter()
                .map(|e| CounterEvent::from_stored(&e.event_type, e.schema_version, e.payload).unwrap())
                .collect();
            let replayed = fold(&stored);
            assert_eq!(live, replayed, "live actor == full replay");
            assert_eq!(version.0 as usize, stored.len());

            // The newest snapshot (written in the background every 5 events).
            let expected_snapshot = version.0 / Counter::SNAPSHOT_EVERY * Counter::SNAPSHOT_EVERY;
            if expected_snapshot > 0 {
                factum_tests::eventually(Duration::from_secs(5), "the latest snapshot", || {
                    let store = store.clone();
                    let stream = stream.clone();
                    async move {
                        store.load_snapshot(&stream).await.unwrap().filter(|s| s.version.0 == expected_snapshot)
                    }
                })
                .await;
            }
            let fresh = Factum::new(store.clone());
            let (from_snapshot, v2) = fresh.load::<Counter>("p-1").await.unwrap();
            assert_eq!((from_snapshot, v2), (replayed, version), "snapshot + tail == full replay");
            let hits = fresh.metrics().snapshot_loads("Counter", "hit");
            assert_eq!(hits, u64::from(expected_snapshot > 0));
        });
    }
}

/// The test kit, as application teams use it.
#[tokio::test]
async fn test_kit_given_when_then() {
    AggregateTest::<Counter>::given([CounterEvent::Incremented { by: 2 }])
        .when(CounterCommand::Increment { id: "k".into(), by: 3 })
        .await
        .then_expect_events(&[CounterEvent::Incremented { by: 3 }])
        .then_state(|c| c.value == 5);
    AggregateTest::<Counter>::given([])
        .when(CounterCommand::Increment { id: "k".into(), by: 0 })
        .await
        .then_expect_error(|e| *e == CounterError::BadIncrement(0))
        .then_state(|c| c.value == 0);
    let outcome = AggregateTest::<Counter>::given([CounterEvent::Incremented { by: 1 }, CounterEvent::Reset])
        .when(CounterCommand::Noop { id: "k".into() })
        .await;
    outcome.then_expect_events(&[]);
    assert_eq!(outcome.version.0, 2);
}
