//! Every statement that finds a stream's head or reads a stream goes through the stream
//! index `(aggregate_type, aggregate_id, version)`, whatever the table's statistics and
//! whatever plan a connection has cached.
//!
//! The planner once chose otherwise. On a never-analyzed table of 200 one-event streams,
//! the generic plan of the coalesced flush found each stream's head through the category
//! index `(aggregate_type, transaction_id, global_position)`, reading every event of the
//! category for each append; the connection kept that plan for its life, and the cost of
//! an append grew with the table. On a small analyzed table it chose to read the table.
//!
//! So each test fills the table in one of those states, then runs every stream-keyed
//! operation enough times for each connection to settle on a generic plan, and reads the
//! server's own counters (`pg_stat_user_indexes`, `pg_stat_user_tables`) once the store's
//! connections have ended (a backend reports its counts when it ends). It asserts:
//! - no tuple of the category index and no sequential read of the events table;
//! - for appends and head reads, at most one stream-index entry per operation;
//! - for stream reads, at most one stream-index entry per event read (a long stream's
//!   load too, whose rest after the first page is read in a transaction of its own).

use std::time::Duration;

use factum::prelude::*;
use factum::store::{Snapshot, StreamAppend, VersionRange};
use factum::{ExpectedVersion, NewEvent, StreamId, Version};
use factum_postgres::PostgresStore;
use factum_tests::TestDb;
use futures_util::TryStreamExt;
use serde_json::json;
use sqlx::{AssertSqlSafe, PgConnection};

/// The streams of the fixture, as in the run that found the defect.
const STREAMS: usize = 200;
/// The events of the one long stream: a load reads it in more than one page.
const LONG: i64 = 2_500;
/// The application name of the measured store's connections.
const APP: &str = "factum-stream-index-test";

/// The counters of one measured window.
#[derive(Debug, Default, Clone, Copy)]
struct Reads {
    /// Index entries the category index returned.
    category: i64,
    /// Index entries the stream index returned.
    stream: i64,
    /// Rows read from the events table by sequential scans.
    events_seq: i64,
    /// Rows read from the snapshots table by sequential scans.
    snapshots_seq: i64,
}

impl std::ops::Sub for Reads {
    type Output = Reads;
    fn sub(self, b: Reads) -> Reads {
        Reads {
            category: self.category - b.category,
            stream: self.stream - b.stream,
            events_seq: self.events_seq - b.events_seq,
            snapshots_seq: self.snapshots_seq - b.snapshots_seq,
        }
    }
}

async fn counters(conn: &mut PgConnection) -> Reads {
    let index = |name: &'static str| {
        sqlx::query_scalar::<_, i64>(
            "SELECT coalesce(sum(idx_tup_read), 0)::int8 FROM pg_stat_user_indexes WHERE indexrelname = $1",
        )
        .bind(name)
    };
    let seq = |table: &'static str| {
        sqlx::query_scalar::<_, i64>(
            "SELECT coalesce(sum(seq_tup_read), 0)::int8 FROM pg_stat_user_tables WHERE relname = $1",
        )
        .bind(table)
    };
    Reads {
        category: index("events_category_idx").fetch_one(&mut *conn).await.unwrap(),
        stream: index("events_stream_version_key").fetch_one(&mut *conn).await.unwrap(),
        events_seq: seq("events").fetch_one(&mut *conn).await.unwrap(),
        snapshots_seq: seq("snapshots").fetch_one(&mut *conn).await.unwrap(),
    }
}

/// A store whose connections can be told apart, and whose connections all end on `close`.
async fn open(db: &TestDb) -> PostgresStore {
    PostgresStore::connect(db.config_with_app(APP)).await.expect("connect")
}

/// Closes the store and waits until its backends have ended, and so reported their counts.
async fn close(store: PostgresStore, admin: &mut PgConnection) {
    store.pool().close().await;
    drop(store);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(APP)
            .fetch_one(&mut *admin)
            .await
            .unwrap();
        if n == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the store's {n} backends did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A migrated database whose events and snapshots tables autovacuum leaves alone, holding
/// `per_stream` events in each of [`STREAMS`] streams; analyzed when `analyze`.
async fn fixture(per_stream: i64, analyze: bool) -> (TestDb, PgConnection) {
    let db = TestDb::new().await;
    let store = db.store().await;
    store.pool().close().await;
    let mut admin = db.connect().await;
    for table in ["events", "snapshots"] {
        sqlx::query(AssertSqlSafe(format!("ALTER TABLE {table} SET (autovacuum_enabled = off)")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    // Ids of 32 characters, as in the run that found the defect: the wider the stream
    // index's entries, the more the planner thought it cost against the category index.
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, event_data, occurred_at)
         SELECT gen_random_uuid(), 'Order', md5(s::text), v, 'Filled', '{}', now()
         FROM generate_series(1, $1::int8) v, generate_series(1, $2::int8) s ORDER BY v, s",
    )
    .bind(per_stream)
    .bind(STREAMS as i64)
    .execute(&mut admin)
    .await
    .unwrap();
    // One long stream, whose load goes past its first page.
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, event_data, occurred_at)
         SELECT gen_random_uuid(), 'Order', 'long', v, 'Filled', '{}', now() FROM generate_series(1, $1::int8) v",
    )
    .bind(LONG)
    .execute(&mut admin)
    .await
    .unwrap();
    if analyze {
        sqlx::query("ANALYZE events").execute(&mut admin).await.unwrap();
        sqlx::query("ANALYZE snapshots").execute(&mut admin).await.unwrap();
    }
    let analyzed: Option<i64> = sqlx::query_scalar(
        "SELECT analyze_count + autoanalyze_count FROM pg_stat_user_tables WHERE relname = 'events'",
    )
    .fetch_optional(&mut admin)
    .await
    .unwrap();
    assert_eq!(analyzed.unwrap_or(0) > 0, analyze, "the events table's statistics are as the test needs");
    (db, admin)
}

fn ev(n: u64) -> NewEvent {
    NewEvent::new("Placed", json!({ "n": n }))
}

/// Runs every stream-keyed operation on a store of its own, window by window, and checks
/// each window's counters.
async fn every_operation_uses_the_stream_index(per_stream: i64, analyze: bool) {
    let (db, mut admin) = fixture(per_stream, analyze).await;
    // The fixture's ids, computed again rather than read: reading them would count here.
    let ids: Vec<String> = sqlx::query_scalar("SELECT md5(s::text) FROM generate_series(1, $1::int8) s")
        .bind(STREAMS as i64)
        .fetch_all(&mut admin)
        .await
        .unwrap();
    let streams: Vec<StreamId> = ids.iter().map(|id| StreamId::new("Order", id.as_str()).unwrap()).collect();
    let mut version = per_stream as u64;

    // Coalesced flushes: 16 writers, each over its own streams, five rounds.
    let before = counters(&mut admin).await;
    let store = open(&db).await;
    let rounds = 5;
    let mut writers = Vec::new();
    for w in 0..16 {
        let store = store.clone();
        let mine: Vec<StreamId> = streams.iter().skip(w).step_by(16).cloned().collect();
        writers.push(tokio::spawn(async move {
            for r in 0..rounds {
                for s in &mine {
                    let at = Version(version + r);
                    store.append(s, ExpectedVersion::Exact(at), vec![ev(r)]).await.unwrap();
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    version += rounds;
    let stats = store.flush_stats();
    assert!(stats.largest > 1, "appends were coalesced into flushes: {stats:?}");
    close(store, &mut admin).await;
    let appends = (STREAMS as u64 * rounds) as i64;
    check("coalesced flushes", counters(&mut admin).await - before, appends);

    // Lone appends of one event and of two, each in its caller's task.
    let before = counters(&mut admin).await;
    let store = open(&db).await;
    for s in &streams {
        store.append(s, ExpectedVersion::Exact(Version(version)), vec![ev(1)]).await.unwrap();
        store.append(s, ExpectedVersion::Exact(Version(version + 1)), vec![ev(2), ev(3)]).await.unwrap();
    }
    version += 3;
    close(store, &mut admin).await;
    check("lone appends", counters(&mut admin).await - before, 2 * STREAMS as i64);

    // Atomic appends to two streams at once, each at its known version.
    let before = counters(&mut admin).await;
    let store = open(&db).await;
    for pair in streams.chunks(2) {
        let appends = pair
            .iter()
            .map(|s| StreamAppend::new(s.clone(), ExpectedVersion::Exact(Version(version)), vec![ev(4)]));
        store.append_many(appends.collect()).await.unwrap();
    }
    version += 1;
    close(store, &mut admin).await;
    check("multi-stream appends", counters(&mut admin).await - before, STREAMS as i64);

    // The append function: mode any, and appends in a caller's transaction.
    let before = counters(&mut admin).await;
    let store = open(&db).await;
    for s in &streams {
        store.append(s, ExpectedVersion::Any, vec![ev(5)]).await.unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        store.append_in(&mut tx, s, ExpectedVersion::Exact(Version(version + 1)), vec![ev(6)]).await.unwrap();
        tx.commit().await.unwrap();
    }
    version += 2;
    close(store, &mut admin).await;
    check("appends through the append function", counters(&mut admin).await - before, 2 * STREAMS as i64);

    // Head reads.
    let before = counters(&mut admin).await;
    let store = open(&db).await;
    for s in &streams {
        assert_eq!(store.stream_version(s).await.unwrap(), Version(version));
    }
    close(store, &mut admin).await;
    check("head reads", counters(&mut admin).await - before, STREAMS as i64);

    // Stream reads: the last three events, by range and as an aggregate loads them.
    let before = counters(&mut admin).await;
    let store = open(&db).await;
    for s in &streams {
        let read = store.read_stream(s, VersionRange::after(Version(version - 3))).await.unwrap();
        assert_eq!(read.len(), 3);
        let loaded: Vec<_> = store.read_payloads(s, Version(version - 3)).try_collect().await.unwrap();
        assert_eq!(loaded.len(), 3);
    }
    let long = StreamId::new("Order", "long").unwrap();
    for _ in 0..3 {
        let loaded: Vec<_> = store.read_payloads(&long, Version(0)).try_collect().await.unwrap();
        assert_eq!(loaded.len() as i64, LONG);
    }
    close(store, &mut admin).await;
    check("stream reads", counters(&mut admin).await - before, 6 * STREAMS as i64 + 3 * LONG);

    // Snapshots: saved, loaded and deleted by stream.
    let before = counters(&mut admin).await;
    let store = open(&db).await;
    for s in &streams {
        let snapshot = Snapshot {
            stream: s.clone(),
            version: Version(version),
            schema_version: 1,
            state: json!({ "v": version }),
            created_at: chrono::Utc::now(),
        };
        store.save_snapshot(&snapshot).await.unwrap();
        assert!(store.load_snapshot(s).await.unwrap().is_some());
    }
    for s in &streams {
        assert!(store.delete_snapshot(s).await.unwrap());
    }
    close(store, &mut admin).await;
    check("snapshots", counters(&mut admin).await - before, 0);
}

/// The window's counters: no category-index tuple, no sequential read, and at most
/// `stream_entries` stream-index entries.
fn check(what: &str, reads: Reads, stream_entries: i64) {
    println!("{what}: {reads:?} (at most {stream_entries} stream-index entries)");
    assert_eq!(reads.category, 0, "{what} read the category index: {reads:?}");
    assert_eq!(reads.events_seq, 0, "{what} read the events table sequentially: {reads:?}");
    assert_eq!(reads.snapshots_seq, 0, "{what} read the snapshots table sequentially: {reads:?}");
    assert!(reads.stream <= stream_entries, "{what} read more stream-index entries than it needs: {reads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_fresh_never_analyzed_table() {
    every_operation_uses_the_stream_index(1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_filled_analyzed_table() {
    every_operation_uses_the_stream_index(50, true).await;
}

/// Events looked up by their ids (the durability check of every page a publisher or an
/// at-least-once sink hands on, and the answer to a repeated append) go through the
/// event-id index even on a connection that planned the lookup while the table was
/// nearly empty: such a plan (a sequential scan) is cached for the connection's life,
/// and then reads the whole table on each call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_by_id_use_their_index_after_the_table_grew() {
    let db = TestDb::new().await;
    db.store().await.pool().close().await;
    let mut admin = db.connect().await;
    sqlx::query("ALTER TABLE events SET (autovacuum_enabled = off)").execute(&mut admin).await.unwrap();
    let store = open(&db).await;
    let s = StreamId::new("Order", "first").unwrap();
    let first = ev(0);
    let id = first.event_id;
    store.append(&s, ExpectedVersion::NoStream, vec![first.clone()]).await.unwrap();
    // A page's ids, as a publisher checks them: the one stored event among others.
    let mut ids: Vec<uuid::Uuid> = (0..300).map(|_| uuid::Uuid::now_v7()).collect();
    ids.push(id);
    // Planned (and the plan cached) while the table holds one event.
    for _ in 0..30 {
        assert!(store.durable(&ids).await.is_err(), "300 of the ids are not stored");
        store.durable(&[id]).await.unwrap();
        let again = store.append(&s, ExpectedVersion::NoStream, vec![first.clone()]).await.unwrap();
        assert!(again.deduplicated);
    }
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, event_data, occurred_at)
         SELECT gen_random_uuid(), 'Order', md5(s::text), 1, 'Filled', '{}', now() FROM generate_series(1, 20000) s",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let before = counters(&mut admin).await;
    for _ in 0..30 {
        assert!(store.durable(&ids).await.is_err());
        store.durable(&[id]).await.unwrap();
        let again = store.append(&s, ExpectedVersion::NoStream, vec![first.clone()]).await.unwrap();
        assert!(again.deduplicated);
    }
    close(store, &mut admin).await;
    let reads = counters(&mut admin).await - before;
    println!("lookups by id after the table grew: {reads:?}");
    // What the first calls read of a one-event table may be reported late; a lookup that
    // scanned the grown table would read 20,000 rows each time.
    assert!(reads.events_seq <= 100, "lookups by id read the events table sequentially: {reads:?}");
    assert!(reads.category <= 100, "lookups by id read the category index: {reads:?}");
}
