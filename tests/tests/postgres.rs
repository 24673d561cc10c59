//! PostgreSQL-specific behaviour: real concurrency, gap safety, NOTIFY, immutability,
//! transaction-first appends, the standard monitoring SQL, schema configuration.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factum::prelude::*;
use factum::store::{
    subscribe_all, subscribe_category, Checkpoint, EventStream, StreamAppend, SubscriptionOptions,
    VersionRange,
};
use factum::{ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamId, Version};
use factum_postgres::{PoolSettings, PostgresStore, SchemaNames};
use factum_tests::TestDb;
use futures_util::{StreamExt, TryStreamExt};
use rand::Rng;
use serde_json::json;
use sqlx::Row;
use tokio::sync::Barrier;
use uuid::Uuid;

fn sid(t: &str, id: &str) -> StreamId {
    StreamId::new(t, id).unwrap()
}

fn ev(t: &str) -> NewEvent {
    NewEvent::new(t, json!({}))
}

async fn next_within(sub: &mut EventStream, within: Duration) -> Option<RecordedEvent> {
    match tokio::time::timeout(within, sub.next()).await {
        Ok(Some(Ok(e))) => Some(e),
        Ok(Some(Err(e))) => panic!("subscription error: {e}"),
        Ok(None) => panic!("subscription ended"),
        Err(_) => None,
    }
}

/// 50 tasks race with `Exact` expected versions: each round has exactly one winner, every
/// loser sees a conflict carrying the actual version, and the stream ends gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_exact_appends() {
    let db = TestDb::new().await;
    let pool = PoolSettings::default().max_connections(60);
    let store = Arc::new(db.store_with(db.config().with_pool(pool)).await);
    let stream = sid("Counter", "c-1");
    const TASKS: usize = 50;

    // Round one: all 50 at Exact(0) at once.
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let (store, stream, barrier) = (store.clone(), stream.clone(), barrier.clone());
        handles.push(tokio::spawn(async move {
            let event = NewEvent::new("Tick", json!({ "task": i }));
            barrier.wait().await;
            store.append(&stream, ExpectedVersion::Exact(Version(0)), vec![event]).await
        }));
    }
    let mut winners = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(r) => {
                winners += 1;
                assert_eq!(r.to_version, Version(1));
            }
            Err(StoreError::Conflict { actual, expected, .. }) => {
                assert_eq!(actual, Version(1));
                assert_eq!(expected, ExpectedVersion::Exact(Version(0)));
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners, 1, "exactly one writer wins a round");

    // Then every task appends once, retrying on conflict with the version it read.
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let (store, stream, conflicts) = (store.clone(), stream.clone(), conflicts.clone());
        handles.push(tokio::spawn(async move {
            let event = NewEvent::new("Tock", json!({ "task": i }));
            loop {
                let v = store.stream_version(&stream).await.unwrap();
                match store.append(&stream, ExpectedVersion::Exact(v), vec![event.clone()]).await {
                    Ok(r) => return r.to_version,
                    Err(StoreError::Conflict { .. }) => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        }));
    }
    let mut won: Vec<u64> = Vec::new();
    for h in handles {
        won.push(h.await.unwrap().0);
    }
    won.sort_unstable();
    assert_eq!(won, (2..=51).collect::<Vec<u64>>(), "each version written by exactly one task");
    let events = store.read_stream(&stream, VersionRange::ALL).await.unwrap();
    assert_eq!(events.iter().map(|e| e.version.0).collect::<Vec<_>>(), (1..=51).collect::<Vec<_>>());
    let tasks: HashSet<i64> = events
        .iter()
        .filter(|e| e.event_type == "Tock")
        .map(|e| e.payload["task"].as_i64().unwrap())
        .collect();
    assert_eq!(tasks.len(), TASKS, "every task's event stored once");
    assert!(conflicts.load(Ordering::Relaxed) > 0, "racing writers saw conflicts");
}

/// A transaction holds its append open while a later one commits: readers of the log and
/// of the category must not move past the open one, and see both exactly once after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_safety_with_a_held_transaction() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store().await);
    let opts = SubscriptionOptions::default().poll_interval(Duration::from_millis(50));
    let mut sub_all = subscribe_all(store.clone(), Checkpoint::START, opts).unwrap();
    let mut sub_cat = subscribe_category(store.clone(), "Order", Checkpoint::START, opts).unwrap();

    let mut slow = store.pool().begin().await.unwrap();
    let a = store
        .append_in(&mut slow, &sid("Order", "slow"), ExpectedVersion::Any, vec![ev("Slow")])
        .await
        .unwrap();
    let b = store.append(&sid("Order", "fast"), ExpectedVersion::Any, vec![ev("Fast")]).await.unwrap();
    assert!(a.positions[0] < b.positions[0], "the held transaction took the lower position");

    // A naive reader by position would now see "Fast", checkpoint past "Slow", and lose it.
    let naive: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position > 0")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(naive, 1, "the later event is already visible to plain SELECTs");
    assert!(
        store.read_all(Checkpoint::START, 100).await.unwrap().is_empty(),
        "the log waits for the open one"
    );
    assert!(store.read_category("Order", Checkpoint::START, 100).await.unwrap().is_empty());
    assert!(next_within(&mut sub_all, Duration::from_millis(300)).await.is_none());
    assert!(next_within(&mut sub_cat, Duration::from_millis(100)).await.is_none());

    slow.commit().await.unwrap();
    let page = factum_tests::eventually(Duration::from_secs(10), "both events", || {
        let store = store.clone();
        async move {
            let page = store.read_all(Checkpoint::START, 100).await.unwrap();
            (page.len() == 2).then_some(page)
        }
    })
    .await;
    assert_eq!(page.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["Slow", "Fast"]);
    for sub in [&mut sub_all, &mut sub_cat] {
        let first = next_within(sub, Duration::from_secs(10)).await.unwrap();
        let second = next_within(sub, Duration::from_secs(10)).await.unwrap();
        assert_eq!((first.event_type.as_str(), second.event_type.as_str()), ("Slow", "Fast"));
        assert!(next_within(sub, Duration::from_millis(300)).await.is_none(), "nothing twice");
    }
}

/// A transaction with an older id appending after a newer one wrote the same stream would
/// reorder the stream in the log: refused with a retryable error, and nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_order_in_the_log_is_kept() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let s = sid("Order", "o-1");
    let mut old = store.pool().begin().await.unwrap();
    // Take a transaction id now, as a transaction that wrote something first would.
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *old).await.unwrap();
    store.append(&s, ExpectedVersion::Any, vec![ev("Newer")]).await.unwrap();
    let err = store.append_in(&mut old, &s, ExpectedVersion::Any, vec![ev("Older")]).await.unwrap_err();
    assert!(matches!(err, StoreError::RetryTransaction { .. }), "{err:?}");
    old.rollback().await.unwrap();
    // Retried in a new transaction, it goes through.
    let mut retry = store.pool().begin().await.unwrap();
    store.append_in(&mut retry, &s, ExpectedVersion::Any, vec![ev("Older")]).await.unwrap();
    retry.commit().await.unwrap();
    let store = Arc::new(store);
    let log = factum_tests::eventually(Duration::from_secs(20), "both events in the log", || {
        let store = store.clone();
        async move {
            let log = store.read_all(Checkpoint::START, 10).await.unwrap();
            (log.len() == 2).then_some(log)
        }
    })
    .await;
    assert_eq!(log.iter().map(|e| e.version.0).collect::<Vec<_>>(), [1, 2]);
}

/// ≥ 100,000 events from 16 writers whose transactions commit after random short delays,
/// followed live by subscriptions to the log and to a category: zero lost, zero doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gap_safety_at_volume() {
    const WRITERS: usize = 16;
    const TX_PER_WRITER: usize = 625;
    const BATCH: usize = 10;
    const TOTAL: usize = WRITERS * TX_PER_WRITER * BATCH; // 100,000
    let db = TestDb::new().await;
    let pool = PoolSettings::default().max_connections(30);
    let store = Arc::new(db.store_with(db.config().with_pool(pool)).await);
    let opts = SubscriptionOptions::default().batch_size(1000).poll_interval(Duration::from_millis(200));

    let follow = |sub: EventStream, expect: usize| {
        tokio::spawn(async move {
            let mut sub = sub;
            let mut seen = HashSet::with_capacity(expect);
            let mut duplicates = 0usize;
            let mut last = Checkpoint::START;
            let mut versions: std::collections::HashMap<StreamId, u64> = std::collections::HashMap::new();
            while seen.len() < expect {
                let e = match tokio::time::timeout(Duration::from_secs(60), sub.next()).await {
                    Ok(Some(Ok(e))) => e,
                    other => panic!("subscription stalled at {} of {expect}: {other:?}", seen.len()),
                };
                assert!(e.checkpoint() > last, "checkpoints strictly increase");
                last = e.checkpoint();
                let v = versions.entry(e.stream.clone()).or_default();
                assert_eq!(e.version.0, *v + 1, "{}: versions arrive in order, without gaps", e.stream);
                *v = e.version.0;
                if !seen.insert(e.event_id) {
                    duplicates += 1;
                }
            }
            // Nothing more arrives (no duplicates after the last one either).
            let extra = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
            assert!(extra.is_err(), "unexpected extra event: {extra:?}");
            (seen, duplicates)
        })
    };
    let all = follow(subscribe_all(store.clone(), Checkpoint::START, opts).unwrap(), TOTAL);
    let even = follow(subscribe_category(store.clone(), "Even", Checkpoint::START, opts).unwrap(), TOTAL / 2);

    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(TX_PER_WRITER * BATCH);
            let mut retries = 0u64;
            for t in 0..TX_PER_WRITER {
                let (stream_no, delay_us) = {
                    let mut rng = rand::thread_rng();
                    (rng.gen_range(0..200u32), rng.gen_range(0..2000u64))
                };
                let category = if (w + t).is_multiple_of(2) { "Even" } else { "Odd" };
                let stream = sid(category, &format!("s-{stream_no}"));
                let batch: Vec<NewEvent> = (0..BATCH).map(|_| ev("V")).collect();
                ids.extend(batch.iter().map(|e| (e.event_id, category == "Even")));
                loop {
                    let mut tx = store.pool().begin().await.unwrap();
                    match store.append_in(&mut tx, &stream, ExpectedVersion::Any, batch.clone()).await {
                        Ok(_) => {}
                        Err(StoreError::RetryTransaction { .. }) => {
                            retries += 1;
                            continue;
                        }
                        Err(e) => panic!("append failed: {e}"),
                    }
                    tokio::time::sleep(Duration::from_micros(delay_us)).await;
                    tx.commit().await.unwrap();
                    break;
                }
            }
            (ids, retries)
        }));
    }
    let mut written = Vec::with_capacity(TOTAL);
    let mut retries = 0;
    for w in writers {
        let (ids, r) = w.await.unwrap();
        written.extend(ids);
        retries += r;
    }
    let write_secs = started.elapsed().as_secs_f64();
    let (seen_all, dup_all) = all.await.unwrap();
    let (seen_even, dup_even) = even.await.unwrap();
    eprintln!(
        "gap_safety_at_volume: {TOTAL} events by {WRITERS} writers in {write_secs:.1}s, followed in {:.1}s, \
         {retries} transactions retried",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(retries, 0, "fresh transactions never race a stream's order");
    assert_eq!(written.len(), TOTAL);
    assert_eq!((dup_all, dup_even), (0, 0), "no event delivered twice");
    let expected_all: HashSet<Uuid> = written.iter().map(|(id, _)| *id).collect();
    let expected_even: HashSet<Uuid> = written.iter().filter(|(_, even)| *even).map(|(id, _)| *id).collect();
    assert_eq!(seen_all, expected_all, "the log subscription saw every event");
    assert_eq!(seen_even, expected_even, "the category subscription saw every event of its category");
}

/// A live subscriber wakes on NOTIFY long before its poll interval; a rolled-back append
/// notifies nobody and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_a_live_subscriber() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store().await);
    let opts = SubscriptionOptions::default().poll_interval(Duration::from_secs(120));
    let mut sub = subscribe_all(store.clone(), Checkpoint::START, opts).unwrap();
    // Let it catch up (nothing) and park on the wake-up.
    assert!(next_within(&mut sub, Duration::from_millis(500)).await.is_none());

    let mut tx = store.pool().begin().await.unwrap();
    store
        .append_in(&mut tx, &sid("Order", "o-1"), ExpectedVersion::Any, vec![ev("RolledBack")])
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    for i in 0..3 {
        let started = Instant::now();
        store.append(&sid("Order", "o-1"), ExpectedVersion::Any, vec![ev("Live")]).await.unwrap();
        let got = next_within(&mut sub, Duration::from_secs(10)).await.expect("woken by NOTIFY");
        assert_eq!(got.event_type, "Live");
        assert_eq!(got.version, Version(i + 1), "the rolled-back append used no version");
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(10), "woke after {waited:?}, poll interval is 120 s");
    }
}

/// Events are immutable in the database itself: UPDATE, DELETE and TRUNCATE are refused;
/// only delete_before removes rows.
#[tokio::test]
async fn events_are_immutable() {
    let db = TestDb::new().await;
    let store = db.store().await;
    store.append(&sid("Order", "o-1"), ExpectedVersion::Any, vec![ev("A")]).await.unwrap();
    for sql in [
        "UPDATE events SET event_type = 'Changed'",
        "UPDATE events SET event_data = '{}' WHERE false",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = sqlx::query(sql).execute(store.pool()).await.unwrap_err();
        let db_err = err.as_database_error().expect("a database error");
        assert_eq!(db_err.code().as_deref(), Some("23001"), "{sql}: {db_err}");
        assert!(db_err.message().contains("events are immutable"), "{sql}: {db_err}");
    }
    let row =
        sqlx::query("SELECT event_type, count(*) OVER () FROM events").fetch_one(store.pool()).await.unwrap();
    assert_eq!(row.get::<String, _>(0), "A");
    assert_eq!(row.get::<i64, _>(1), 1);
    store.append(&sid("Order", "o-1"), ExpectedVersion::Exact(Version(1)), vec![ev("B")]).await.unwrap();
    assert_eq!(store.delete_before(chrono::Utc::now() + chrono::Duration::seconds(1)).await.unwrap(), 1);
}

/// The three standard monitoring queries run unchanged against the default schema.
#[tokio::test]
async fn seed_001_monitoring_queries_run_verbatim() {
    let db = TestDb::new().await;
    let store = db.store().await;
    for (t, id, n) in [("Order", "ord-123", 3), ("Order", "ord-456", 1), ("Customer", "c-1", 2)] {
        let batch: Vec<NewEvent> = (0..n).map(|_| ev("E")).collect();
        store.append(&sid(t, id), ExpectedVersion::Any, batch).await.unwrap();
    }
    store
        .save_snapshot(&factum::store::Snapshot {
            stream: sid("Order", "ord-123"),
            version: Version(3),
            schema_version: 1,
            state: json!({}),
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let by_type = sqlx::query("SELECT aggregate_type, COUNT(*)\nFROM events\nGROUP BY aggregate_type;")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let mut by_type: Vec<(String, i64)> = by_type.iter().map(|r| (r.get(0), r.get(1))).collect();
    by_type.sort();
    assert_eq!(by_type, [("Customer".to_owned(), 2), ("Order".to_owned(), 4)]);

    let largest = sqlx::query(
        "SELECT aggregate_type, aggregate_id, COUNT(*) as event_count\nFROM events\nGROUP BY aggregate_type, aggregate_id\nORDER BY event_count DESC\nLIMIT 10;",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(largest[0].get::<String, _>(1), "ord-123");
    assert_eq!(largest[0].get::<i64, _>(2), 3);

    let coverage = sqlx::query(
        "SELECT COUNT(DISTINCT aggregate_id) as total_aggregates,\nCOUNT(DISTINCT s.aggregate_id) as snapshotted_aggregates\nFROM events e\nLEFT JOIN snapshots s USING (aggregate_type, aggregate_id);",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((coverage.get::<i64, _>(0), coverage.get::<i64, _>(1)), (3, 1));

    // The troubleshooting queries too.
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events\nWHERE aggregate_type = 'Order' AND aggregate_id = 'ord-123';",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(n, 3);
    let snaps =
        sqlx::query("SELECT * FROM snapshots\nWHERE aggregate_type = 'Order' AND aggregate_id = 'ord-123';")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(snaps.len(), 1);

    // docs/operations.md's lag and horizon queries, as written there.
    // The gap-safe horizon is cluster-wide: another test's open transaction can hold the
    // log back for a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = store.read_all(Checkpoint::START, 100).await.unwrap();
        if all.len() == 6 || std::time::Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(all.len(), 6, "the log after the horizon");
    store.save_checkpoint("audit", all[2].checkpoint()).await.unwrap();
    let lag = sqlx::query(
        "SELECT p.projection_name, count(e.*) AS behind\nFROM projection_positions p\n\
         LEFT JOIN events e ON (e.transaction_id, e.global_position)\n\
         > (p.last_processed_transaction, p.last_processed_position)\nGROUP BY p.projection_name;",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((lag.get::<String, _>(0), lag.get::<i64, _>(1)), ("audit".to_owned(), 3));
    sqlx::query(
        "SELECT pid, datname, state, backend_xid, now() - xact_start AS open_for, left(query, 80)\n\
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL ORDER BY age(backend_xid) DESC;",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
}

/// Transaction-first: events commit or roll back with the application's own writes, and
/// a checkpoint can be saved in the same transaction.
#[tokio::test]
async fn append_inside_the_callers_transaction() {
    let db = TestDb::new().await;
    let store = db.store().await;
    sqlx::query("CREATE TABLE outbox (body TEXT NOT NULL)").execute(store.pool()).await.unwrap();
    let s = sid("Order", "o-1");

    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO outbox VALUES ('rolled back')").execute(&mut *tx).await.unwrap();
    store.append_in(&mut tx, &s, ExpectedVersion::NoStream, vec![ev("A")]).await.unwrap();
    store
        .save_checkpoint_in(
            &mut tx,
            "p",
            Checkpoint { transaction: 1, position: factum::store::GlobalPosition(1) },
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(0));
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(store.pool()).await.unwrap();
    assert_eq!(n, 0);

    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO outbox VALUES ('committed')").execute(&mut *tx).await.unwrap();
    let r = store.append_in(&mut tx, &s, ExpectedVersion::NoStream, vec![ev("A"), ev("B")]).await.unwrap();
    let r2 = store.append_in(&mut tx, &s, ExpectedVersion::Exact(Version(2)), vec![ev("C")]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!((r.to_version, r2.to_version), (Version(2), Version(3)));
    assert_eq!(store.read_stream(&s, VersionRange::ALL).await.unwrap().len(), 3);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(store.pool()).await.unwrap();
    assert_eq!(n, 1);

    // A conflict inside the caller's transaction leaves it usable.
    let mut tx = store.pool().begin().await.unwrap();
    let err = store.append_in(&mut tx, &s, ExpectedVersion::NoStream, vec![ev("X")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: Version(3), .. }));
    sqlx::query("INSERT INTO outbox VALUES ('after conflict')").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

/// Migrations are idempotent and safe to run concurrently; schema and table names are
/// configurable and checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_names_and_migrations() {
    let db = TestDb::new().await;
    let names = SchemaNames::in_schema("orders_es")
        .events("order_events")
        .streams("order_streams")
        .snapshots("order_snapshots")
        .positions("order_positions")
        .failures("order_failures")
        .migrations("order_migrations");
    let config = db.config().with_schema(names).with_notify_channel(Some("orders_wake".into()));
    let a = PostgresStore::connect(config.clone()).await.unwrap();
    let b = PostgresStore::connect(config).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let mut applied = [ra.unwrap(), rb.unwrap()];
    applied.sort();
    assert_eq!(
        applied,
        [vec![], vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]],
        "applied once, by one of the two"
    );
    assert_eq!(a.migrate().await.unwrap(), Vec::<i32>::new());

    let s = sid("Order", "o-1");
    a.append(&s, ExpectedVersion::NoStream, vec![ev("A")]).await.unwrap();
    assert_eq!(b.read_stream(&s, VersionRange::ALL).await.unwrap().len(), 1);
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders_es.order_events").fetch_one(a.pool()).await.unwrap();
    assert_eq!(n, 1);
    let public: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public.events')::text").fetch_one(a.pool()).await.unwrap();
    assert_eq!(public, None, "nothing created in the default schema");

    for bad in ["Orders", "x; DROP TABLE y", "", "1x", "a\"b"] {
        let config = db.config().with_schema(SchemaNames::in_schema(bad));
        assert!(PostgresStore::connect(config).await.is_err(), "{bad:?} refused");
    }
    let config = db.config().with_notify_channel(Some("bad channel".into()));
    assert!(PostgresStore::connect(config).await.is_err());
}

/// A store failure is a typed backend error, not a panic.
#[tokio::test]
async fn unreachable_server_is_unavailable_with_the_reason() {
    let config = factum_postgres::PostgresConfig::from_url("postgres://nobody@127.0.0.1:1/none")
        .unwrap()
        .with_pool(PoolSettings::default().connect_timeout(Duration::from_secs(2)));
    let started = std::time::Instant::now();
    let err = PostgresStore::connect(config).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert_eq!(err.to_string(), "store unavailable: connection refused (is the database server running?)");
    // At once: not after the pool's 2 s acquire timeout.
    assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
    // A database that does not exist says so.
    let missing = TestDb::new().await.options().database("factum_no_such_database");
    let err =
        PostgresStore::connect(factum_postgres::PostgresConfig::from_options(missing)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("the database does not exist"), "{err}");
}

/// The unique constraint on (aggregate, version) is the last line: a row written around
/// the store makes the next append a typed conflict, never a silent success.
#[tokio::test]
async fn unique_constraint_is_the_last_line() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let s = sid("Order", "o-1");
    store.append(&s, ExpectedVersion::NoStream, vec![ev("A")]).await.unwrap();
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, event_data, occurred_at) \
         VALUES ($1, 'Order', 'o-1', 2, 'Sneaky', '{}', now())",
    )
    .bind(Uuid::now_v7())
    .execute(store.pool())
    .await
    .unwrap();
    let err = store.append(&s, ExpectedVersion::Exact(Version(1)), vec![ev("B")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: Version(2), .. }), "{err:?}");
    let types: Vec<String> = sqlx::query_scalar("SELECT event_type FROM events ORDER BY version")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(types, ["A", "Sneaky"], "nothing of the refused append was written");
}

/// Without NOTIFY, subscribers still follow the log by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_fallback_without_notify() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store_with(db.config().with_notify_channel(None)).await);
    let opts = SubscriptionOptions::default().poll_interval(Duration::from_millis(100));
    let mut sub = subscribe_all(store.clone(), Checkpoint::START, opts).unwrap();
    assert!(next_within(&mut sub, Duration::from_millis(300)).await.is_none());
    store.append(&sid("Order", "o-1"), ExpectedVersion::Any, vec![ev("Polled")]).await.unwrap();
    let got = next_within(&mut sub, Duration::from_secs(5)).await.expect("found by polling");
    assert_eq!(got.event_type, "Polled");
}

/// The payload limit is configurable; a store with a small one refuses larger payloads.
#[tokio::test]
async fn payload_limit_is_configurable() {
    let db = TestDb::new().await;
    let limits = factum::store::Limits::default().with_max_payload_bytes(64);
    let store = db.store_with(db.config().with_limits(limits)).await;
    let s = sid("Order", "o-1");
    let err = store
        .append(&s, ExpectedVersion::Any, vec![NewEvent::new("Big", json!({"blob": "x".repeat(100)}))])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidInput(factum::store::InvalidInput::TooLarge { max: 64, .. })),
        "{err:?}"
    );
    store.append(&s, ExpectedVersion::Any, vec![NewEvent::new("Small", json!({"k": 1}))]).await.unwrap();
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(1));
}

/// Writers of every expected-version mode on one stream while retention deletes all it
/// may, over and over: every acknowledged append got versions no other append got, together
/// 1..=N without a gap, and the stream's newest event is never deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_retention_never_reuse_a_version() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store().await);
    let stream = sid("Order", "hot");
    store.append(&stream, ExpectedVersion::NoStream, vec![ev("Opened")]).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let retention = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut deleted = 0;
            while !stop.load(Ordering::Relaxed) {
                deleted +=
                    store.delete_before(chrono::Utc::now() + chrono::Duration::hours(1)).await.unwrap();
            }
            deleted
        })
    };
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let (store, stream) = (store.clone(), stream.clone());
        writers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut conflicts = 0;
            for i in 0..40u64 {
                let expected = match (w + i) % 3 {
                    0 => ExpectedVersion::Any,
                    1 => ExpectedVersion::StreamExists,
                    _ => ExpectedVersion::Exact(store.stream_version(&stream).await.unwrap()),
                };
                match store.append(&stream, expected, vec![ev("Noted")]).await {
                    Ok(r) => got.extend(r.from_version.0..=r.to_version.0),
                    Err(StoreError::Conflict { .. }) if matches!(expected, ExpectedVersion::Exact(_)) => {
                        conflicts += 1
                    }
                    Err(e) => panic!("writer {w}, {expected:?}: {e:?}"),
                }
            }
            (got, conflicts)
        }));
    }
    let mut versions = vec![1];
    let mut conflicts = 0;
    for w in writers {
        let (got, c) = w.await.unwrap();
        versions.extend(got);
        conflicts += c;
    }
    stop.store(true, Ordering::Relaxed);
    let deleted = retention.await.unwrap();
    versions.sort_unstable();
    let n = versions.len() as u64;
    assert_eq!(versions, (1..=n).collect::<Vec<_>>(), "each version acknowledged once, no gap");
    assert_eq!(store.stream_version(&stream).await.unwrap(), Version(n));
    let left = store.read_stream(&stream, VersionRange::ALL).await.unwrap();
    assert_eq!(left.last().map(|e| e.version), Some(Version(n)), "the newest event is kept");
    assert_eq!(deleted + left.len() as u64, n, "every other event was deleted, once");
    println!(
        "{n} versions acknowledged, {conflicts} stale exact appends refused, {deleted} deleted meanwhile"
    );
}

/// Retention locks appends out while it deletes, so that no append checks a head that is
/// being deleted: it waits for an append in an open transaction, and then goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_waits_for_appends_in_flight() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store().await);
    let s = sid("Order", "o-1");
    store.append(&s, ExpectedVersion::NoStream, vec![ev("A"), ev("B")]).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    store.append_in(&mut tx, &s, ExpectedVersion::Exact(Version(2)), vec![ev("C")]).await.unwrap();
    let cleanup = {
        let store = store.clone();
        tokio::spawn(
            async move { store.delete_before(chrono::Utc::now() + chrono::Duration::hours(1)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!cleanup.is_finished(), "retention waits for the open append");
    tx.commit().await.unwrap();
    assert_eq!(cleanup.await.unwrap().unwrap(), 2, "A and B; C is the newest");
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(3));
}

/// A head that retention deleted under schema version 2 (kept in the head table) still
/// decides the stream's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_deleted_under_schema_two_still_count() {
    let db = TestDb::new().await;
    let first = db.store().await;
    let s = sid("Order", "o-1");
    first.append(&s, ExpectedVersion::NoStream, vec![ev("A")]).await.unwrap();
    // What version 2's retention left behind: a head row, and none of the stream's events.
    sqlx::query(
        "INSERT INTO event_streams (aggregate_type, aggregate_id, version) VALUES ('Order', 'o-9', 7), ('Order', 'o-11', 5)",
    )
    .execute(first.pool())
    .await
    .unwrap();
    let store = db.store().await;
    let old = sid("Order", "o-9");
    assert_eq!(store.stream_version(&old).await.unwrap(), Version(7));
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(Version(1))] {
        let err = store.append(&old, expected, vec![ev("B")]).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { actual: Version(7), .. }), "{expected:?}: {err:?}");
    }
    let r = store.append(&old, ExpectedVersion::Exact(Version(7)), vec![ev("B")]).await.unwrap();
    assert_eq!(r.to_version, Version(8));
    let r = store.append(&old, ExpectedVersion::Any, vec![ev("C"), ev("D")]).await.unwrap();
    assert_eq!((r.from_version, r.to_version), (Version(9), Version(10)));
    let r = store.append(&old, ExpectedVersion::Exact(Version(10)), vec![ev("E"), ev("F")]).await.unwrap();
    assert_eq!(r.to_version, Version(12));
    // The multi-stream append (the coalesced flush's statement) finds the heads the same way.
    let other = sid("Order", "o-11");
    let both = |expected| {
        vec![
            StreamAppend::new(old.clone(), ExpectedVersion::Exact(Version(12)), vec![ev("G")]),
            StreamAppend::new(other.clone(), expected, vec![ev("H")]),
        ]
    };
    let err = store.append_many(both(ExpectedVersion::NoStream)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: Version(5), .. }), "{err:?}");
    let r = store.append_many(both(ExpectedVersion::Exact(Version(5)))).await.unwrap();
    assert_eq!((r[0].to_version, r[1].to_version), (Version(13), Version(6)));
}

/// Four writers append `n` events each to streams `o-0` … `o-3`, in lock step, so that
/// the store uses four connections at once.
async fn four_writers_in_step(store: &PostgresStore, n: u64) {
    let barrier = Arc::new(Barrier::new(4));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (store, barrier) = (store.clone(), barrier.clone());
        writers.push(tokio::spawn(async move {
            let s = sid("Order", &format!("o-{w}"));
            for v in 0..n {
                barrier.wait().await;
                store.append(&s, ExpectedVersion::Exact(Version(v)), vec![ev("A")]).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
}

/// The store keeps connections out of the pool between appends, but never starves the
/// pool's other users: with every connection of a 4-connection pool recently used for
/// appends, the application can still take all 4 from the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacked_connections_go_back_to_the_pool() {
    let db = TestDb::new().await;
    let store = db.store_with(db.config().with_pool(PoolSettings::default().max_connections(4))).await;
    four_writers_in_step(&store, 20).await;
    let began = Instant::now();
    let mut held = Vec::new();
    for _ in 0..4 {
        let conn = tokio::time::timeout(Duration::from_secs(3), store.pool().acquire()).await;
        held.push(conn.expect("a pooled connection within 3 s").expect("acquire"));
    }
    println!("4 pooled connections after the appends in {:?}", began.elapsed());
    drop(held);
    // And the store goes on working on the connections it gets back.
    store.append(&sid("Order", "o-0"), ExpectedVersion::Exact(Version(20)), vec![ev("B")]).await.unwrap();
    assert_eq!(store.stream_version(&sid("Order", "o-0")).await.unwrap(), Version(21));
}

/// When the server drops every connection (as on a restart), one operation fails, not
/// one per connection the store had kept: the rest are tested by the pool again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_fail_one_operation() {
    let db = TestDb::new().await;
    let store = db.store_with(db.config().with_pool(PoolSettings::default().max_connections(6))).await;
    four_writers_in_step(&store, 10).await;
    let mut admin = db.connect().await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(killed >= 1, "the store had connections");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let s = sid("Order", "o-0");
    let mut failures = 0;
    let mut version = 10;
    for _ in 0..8 {
        match store.append(&s, ExpectedVersion::Exact(Version(version)), vec![ev("B")]).await {
            Ok(r) => version = r.to_version.0,
            Err(StoreError::Backend(e)) => {
                println!("after the kill: {e}");
                failures += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(failures <= 1, "{failures} appends failed after {killed} connections were killed");
    assert_eq!(version, 10 + 8 - failures, "every other append went through");
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(version));
}

/// An aggregate's load reads a long stream in pages, a page ahead of the caller: every
/// event comes, once, in version order, and a caller that stops early stops the reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_loads_in_pages_in_version_order() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let s = sid("Order", "long");
    // Two and a half pages of a load (pages of 1,000).
    let batch: Vec<NewEvent> =
        (0..2_500).map(|i| NewEvent::new("Noted", serde_json::json!({ "i": i }))).collect();
    store.append(&s, ExpectedVersion::NoStream, batch).await.unwrap();
    for after in [0u64, 999, 1_000, 2_499, 2_500] {
        let loaded: Vec<_> = store.read_payloads(&s, Version(after)).try_collect().await.unwrap();
        let versions: Vec<u64> = loaded.iter().map(|e| e.version.0).collect();
        assert_eq!(versions, (after + 1..=2_500).collect::<Vec<_>>(), "after {after}");
        if let Some(first) = loaded.first() {
            let payload: serde_json::Value = serde_json::from_str(&first.payload).unwrap();
            assert_eq!(payload["i"], after, "the payload of version {}", after + 1);
        }
    }
    let mut partial = store.read_payloads(&s, Version(0));
    assert_eq!(partial.next().await.unwrap().unwrap().version, Version(1));
    drop(partial);
    // The store is still usable: the dropped read gave its connection back.
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(2_500));
}
