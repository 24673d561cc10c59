//! The command side against a real PostgreSQL: aggregate actors, the registry,
//! conflicts across facades, passivation, the live-actor cap, panics, snapshots, upcasting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use factum::store::{Snapshot, VersionRange};
use factum::{
    Aggregate, CommandError, DomainEvent, EventStore, ExpectedVersion, Factum, FactumConfig, Metrics,
    NewEvent, StreamId, Version,
};
use factum_tests::counter::{fold, Counter, CounterCommand, CounterError, CounterEvent};
use factum_tests::TestDb;
use serde_json::json;

fn inc(id: &str, by: i64) -> CounterCommand {
    CounterCommand::Increment { id: id.into(), by }
}

async fn stored_events(store: &dyn EventStore, id: &str) -> Vec<CounterEvent> {
    let stream = StreamId::new(Counter::TYPE, id).unwrap();
    store
        .read_stream(&stream, VersionRange::ALL)
        .await
        .unwrap()
        .into_iter()
        .map(|e| CounterEvent::from_stored(&e.event_type, e.schema_version, e.payload).unwrap())
        .collect()
}

async fn pg_facade(db: &TestDb, config: FactumConfig) -> Factum {
    let pool = factum_postgres::PoolSettings::default().max_connections(40);
    let store = db.store_with(db.config().with_pool(pool)).await;
    Factum::with_config(Arc::new(store), config, Arc::new(Metrics::new()))
}

/// 1,000 concurrent commands to one aggregate through one facade: all acknowledged,
/// versions 1..=1000 without gaps, and the state equals the fold of the stored events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_commands_on_one_aggregate() {
    let db = TestDb::new().await;
    let factum = pg_facade(&db, FactumConfig::default()).await;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let factum = factum.clone();
        tasks.push(tokio::spawn(async move { factum.execute(inc("c-1", 1 + i % 7)).await }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        let done = t.await.unwrap().expect("acknowledged");
        assert_eq!(done.events.len(), 1);
        versions.push(done.version.0);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=1000).collect::<Vec<u64>>(), "each command got its own version");
    let events = stored_events(factum.store().as_ref(), "c-1").await;
    assert_eq!(events.len(), 1000);
    let (live, version) = factum.load::<Counter>("c-1").await.unwrap();
    assert_eq!(version, Version(1000));
    assert_eq!(live, fold(&events));
    assert_eq!(live.value, (0..1000).map(|i| 1 + i % 7).sum::<i64>());
    // 1,000 concurrent first commands spawned one actor: one load, and no conflicts
    // (a second actor would have raced the first one's appends).
    assert_eq!(factum.metrics().snapshot_loads("Counter", "miss"), 1, "exactly one actor was loaded");
    assert!(!factum.metrics().encode().contains("factum_concurrency_conflicts_total{"), "no conflicts");
}

/// Two facades (as two processes) on one database, 8 tasks each, hammering 10 counters:
/// no lost update, and conflicts are retried rather than surfaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_facades_lose_no_update() {
    let db = TestDb::new().await;
    let config = FactumConfig::default()
        .max_conflict_retries(100)
        .retry_delays(Duration::from_millis(1), Duration::from_millis(20));
    let a = pg_facade(&db, config.clone()).await;
    let b = pg_facade(&db, config).await;
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..10).map(|_| AtomicU64::new(0)).collect());
    let surfaced = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (f, factum) in [a.clone(), b.clone()].into_iter().enumerate() {
        for t in 0..8 {
            let (factum, acked, surfaced) = (factum.clone(), acked.clone(), surfaced.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0..40 {
                    let k = (f * 3 + t + n) % 10;
                    match factum.execute(inc(&format!("c-{k}"), 1)).await {
                        Ok(_) => {
                            acked[k].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(CommandError::Conflict { .. }) => {
                            surfaced.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(surfaced.load(Ordering::Relaxed), 0, "conflicts within the bound are retried");
    let mut total = 0;
    for (k, n) in acked.iter().enumerate() {
        let id = format!("c-{k}");
        let n = n.load(Ordering::Relaxed);
        total += n;
        let events = stored_events(a.store().as_ref(), &id).await;
        assert_eq!(events.len() as u64, n, "{id}: one event per acknowledged command");
        // Both facades converge on the stored truth.
        for f in [&a, &b] {
            let (state, _) = f.load::<Counter>(&id).await.unwrap();
            assert_eq!(state.value as u64, n, "{id}: no lost update");
        }
    }
    assert_eq!(total, 640);
    let conflicts = a.metrics().encode() + &b.metrics().encode();
    assert!(conflicts.contains("factum_concurrency_conflicts_total"), "conflicts were counted");
}

/// Domain errors come back typed and write nothing; commands that decide nothing append
/// nothing; an invalid aggregate id is refused before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_errors_and_bad_commands() {
    let db = TestDb::new().await;
    let factum = pg_facade(&db, FactumConfig::default()).await;
    factum.execute(inc("c-1", 5)).await.unwrap();
    let err = factum.execute(inc("c-1", 0)).await.unwrap_err();
    assert_eq!(err.domain(), Some(&CounterError::BadIncrement(0)));
    let noop = factum.execute(CounterCommand::Noop { id: "c-1".into() }).await.unwrap();
    assert_eq!((noop.version, noop.events.len()), (Version(1), 0));
    for bad in ["", "x\u{0}y"] {
        let err = factum.execute(inc(bad, 1)).await.unwrap_err();
        assert!(matches!(err, CommandError::InvalidCommand(_)), "{err:?}");
    }
    assert_eq!(stored_events(factum.store().as_ref(), "c-1").await.len(), 1);
}

/// A panic in `handle` stops only that aggregate's actor; the caller gets a typed error;
/// the next command for it succeeds from a fresh load, and others never noticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_stops_only_its_aggregate() {
    let db = TestDb::new().await;
    let factum = pg_facade(&db, FactumConfig::default()).await;
    factum.execute(inc("victim", 2)).await.unwrap();
    factum.execute(inc("bystander", 3)).await.unwrap();
    let err = factum.execute(CounterCommand::PanicInHandle { id: "victim".into() }).await.unwrap_err();
    assert!(matches!(err, CommandError::Panicked { committed: false, .. }), "{err:?}");
    factum.execute(inc("bystander", 3)).await.unwrap();
    let done = factum.execute(inc("victim", 2)).await.unwrap();
    assert_eq!(done.version, Version(2));
    assert_eq!(factum.load::<Counter>("victim").await.unwrap().0.value, 4);
    assert_eq!(factum.load::<Counter>("bystander").await.unwrap().0.value, 6);
}

/// Idle actors passivate after the timeout; the next command reloads the right state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_actors_passivate() {
    let db = TestDb::new().await;
    let factum = pg_facade(&db, FactumConfig::default().idle_timeout(Duration::from_millis(200))).await;
    for i in 0..5 {
        factum.execute(inc(&format!("c-{i}"), 10)).await.unwrap();
    }
    assert_eq!(factum.live_aggregates(), 5);
    factum_tests::eventually(Duration::from_secs(10), "actors to passivate", || {
        let factum = factum.clone();
        async move {
            (factum.live_aggregates() == 0 && factum.metrics().live_actors("Counter") == 0).then_some(())
        }
    })
    .await;
    let done = factum.execute(inc("c-3", 1)).await.unwrap();
    assert_eq!(done.version, Version(2));
    assert_eq!(factum.load::<Counter>("c-3").await.unwrap().0.value, 11);
}

/// With a cap of 1,000 live actors, touching 20,000 aggregates never holds more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_actors_stay_under_the_cap() {
    const CAP: usize = 1000;
    const AGGREGATES: usize = 20_000;
    let db = TestDb::new().await;
    let factum = pg_facade(&db, FactumConfig::default().max_live_actors(CAP)).await;
    let peak = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (factum, peak, next) = (factum.clone(), peak.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= AGGREGATES {
                    return;
                }
                factum.execute(inc(&format!("c-{i}"), 1)).await.unwrap();
                let live = factum.metrics().live_actors("Counter").max(0) as u64;
                peak.fetch_max(live, Ordering::Relaxed);
                peak.fetch_max(factum.live_aggregates() as u64, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "live_actors_stay_under_the_cap: peak {peak} live actors for {AGGREGATES} aggregates, cap {CAP}"
    );
    assert!(peak <= CAP as u64, "peak {peak} exceeded the cap");
    assert!(peak >= (CAP as u64) / 2, "the cap was actually reached ({peak})");
    // Evicted aggregates come back with their state.
    assert_eq!(factum.execute(inc("c-7", 1)).await.unwrap().version, Version(2));
}

/// A stored snapshot that no longer decodes falls back to a full replay, says so in the
/// metrics, and never fails the aggregate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_snapshot_falls_back_to_replay() {
    let db = TestDb::new().await;
    let factum = pg_facade(&db, FactumConfig::default()).await;
    for _ in 0..7 {
        factum.execute(inc("c-1", 1)).await.unwrap();
    }
    let stream = StreamId::new("Counter", "c-1").unwrap();
    // Snapshots are written in the background every 5 events.
    factum_tests::eventually(Duration::from_secs(10), "the snapshot at version 5", || {
        let store = factum.store().clone();
        let stream = stream.clone();
        async move { store.load_snapshot(&stream).await.unwrap().filter(|s| s.version == Version(5)) }
    })
    .await;

    // A fresh facade loads from the good snapshot plus the tail.
    let fresh = Factum::new(factum.store().clone());
    assert_eq!(
        fresh.load::<Counter>("c-1").await.unwrap(),
        (Counter { value: 7, increments: 7 }, Version(7))
    );
    assert_eq!(fresh.metrics().snapshot_loads("Counter", "hit"), 1);

    // Now the stored state has the wrong shape (as after a change of the state type).
    factum.store().delete_snapshot(&stream).await.unwrap();
    let broken = Snapshot {
        stream: stream.clone(),
        version: Version(5),
        schema_version: Counter::SNAPSHOT_VERSION,
        state: json!({"value": "not a number"}),
        created_at: chrono::Utc::now(),
    };
    factum.store().save_snapshot(&broken).await.unwrap();
    let fresh = Factum::new(factum.store().clone());
    assert_eq!(
        fresh.load::<Counter>("c-1").await.unwrap(),
        (Counter { value: 7, increments: 7 }, Version(7))
    );
    assert_eq!(fresh.metrics().snapshot_loads("Counter", "fallback"), 1);
    assert!(fresh.metrics().encode().contains("outcome=\"fallback\""));
}

/// Events stored at schema version 1 load into the version 2 shape through the upcaster;
/// the stored rows are left as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_event_versions_are_upcast_on_load() {
    let db = TestDb::new().await;
    let factum = pg_facade(&db, FactumConfig::default()).await;
    let stream = StreamId::new("Counter", "legacy").unwrap();
    let v1 = |n: i64| NewEvent::new("counter.incremented", json!({ "amount": n })).with_schema_version(1);
    factum.store().append(&stream, ExpectedVersion::NoStream, vec![v1(3), v1(4)]).await.unwrap();
    let (state, version) = factum.load::<Counter>("legacy").await.unwrap();
    assert_eq!((state.value, version), (7, Version(2)));
    let done = factum.execute(inc("legacy", 1)).await.unwrap();
    assert_eq!(done.version, Version(3));
    let stored = factum.store().read_stream(&stream, VersionRange::ALL).await.unwrap();
    assert_eq!(stored.iter().map(|e| e.schema_version).collect::<Vec<_>>(), [1, 1, 2], "old rows untouched");
    assert_eq!(stored[2].payload, json!({"by": 1}));
    assert_eq!(stored[2].topic.as_deref(), Some("counter.value.incremented"));

    // Unknown types, newer versions and broken payloads are typed errors.
    let unknown = CounterEvent::from_stored("counter.exploded", 1, json!({})).unwrap_err();
    assert!(matches!(unknown, factum::aggregate::EventCodecError::UnknownEventType { .. }));
    let newer = CounterEvent::from_stored("counter.incremented", 3, json!({"by": 1})).unwrap_err();
    assert!(matches!(newer, factum::aggregate::EventCodecError::NewerSchema { stored: 3, supported: 2, .. }));
    let broken = CounterEvent::from_stored("counter.incremented", 2, json!({"by": "x"})).unwrap_err();
    assert!(matches!(broken, factum::aggregate::EventCodecError::Malformed { .. }));
    let bad_v1 = CounterEvent::from_stored("counter.incremented", 1, json!({})).unwrap_err();
    assert!(matches!(bad_v1, factum::aggregate::EventCodecError::Upcast { from: 1, .. }));
}

/// Command metadata travels into every event's metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_metadata_reaches_the_events() {
    let db = TestDb::new().await;
    let factum = pg_facade(&db, FactumConfig::default()).await;
    let mut meta = factum::Metadata {
        correlation_id: Some(uuid::Uuid::now_v7()),
        user_id: Some("u-1".into()),
        tenant_id: Some("t-1".into()),
        ..Default::default()
    };
    meta.custom.insert("request".into(), json!("r-9"));
    factum.execute_with(inc("c-1", 1), meta.clone()).await.unwrap();
    factum.execute(inc("c-1", 1)).await.unwrap();
    let stream = StreamId::new("Counter", "c-1").unwrap();
    let stored = factum.store().read_stream(&stream, VersionRange::ALL).await.unwrap();
    let m = &stored[0].metadata;
    assert_eq!(
        (m.correlation_id, &m.user_id, &m.tenant_id),
        (meta.correlation_id, &meta.user_id, &meta.tenant_id)
    );
    assert_eq!(m.custom.get("request"), Some(&json!("r-9")));
    assert!(m.causation_id.is_some(), "the command's id is the causation id");
    assert!(stored[1].metadata.correlation_id.is_some(), "a correlation id is generated");
    assert_ne!(stored[1].metadata.correlation_id, meta.correlation_id);
}

/// A cold load on PostgreSQL is one round trip: the snapshot and the events after it come
/// from one statement (`load_aggregate`), with no separate snapshot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_load_is_one_round_trip() {
    let db = TestDb::new().await;
    let writer = pg_facade(&db, FactumConfig::default()).await;
    for _ in 0..12 {
        writer.execute(inc("c-1", 2)).await.unwrap();
    }
    // Snapshots are written after the acknowledgment: wait for the one at version 10.
    let stream = StreamId::new("Counter", "c-1").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while writer.store().load_snapshot(&stream).await.unwrap().map(|s| s.version) != Some(Version(10)) {
        assert!(tokio::time::Instant::now() < deadline, "the snapshot at version 10 was not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let cold = pg_facade(&db, FactumConfig::default()).await;
    let (state, version) = cold.load::<Counter>("c-1").await.unwrap();
    assert_eq!((state.value, version), (24, Version(12)));
    assert_eq!(cold.metrics().snapshot_loads("Counter", "hit"), 1);
    let text = cold.metrics().encode();
    let count = |operation: &str| {
        let prefix = format!("factum_query_duration_seconds_count{{operation=\"{operation}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    assert_eq!(count("load_aggregate"), 1.0, "one statement loaded it:\n{text}");
    assert_eq!(count("load_snapshot"), 0.0, "no separate snapshot read:\n{text}");
    assert_eq!(count("read_stream"), 0.0, "no separate read of the events:\n{text}");
}
