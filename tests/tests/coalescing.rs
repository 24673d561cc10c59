//! The coalescing writer on PostgreSQL: failure isolation inside a flush, writers racing
//! over shared streams, and a SIGKILL in the middle of flushes.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use factum::prelude::*;
use factum::store::VersionRange;
use factum::{ExpectedVersion, NewEvent, StoreError, StreamId, Version};
use factum_postgres::Coalescing;
use factum_tests::TestDb;
use rand::Rng;
use serde_json::json;
use uuid::Uuid;

fn sid(id: &str) -> StreamId {
    StreamId::new("Account", id).unwrap()
}

fn ev(t: &str) -> NewEvent {
    NewEvent::new(t, json!({ "t": t }))
}

/// 50 appends queued behind a flush held up by a table lock, so that they go into one
/// flush together, with `odd` as the 26th: it alone fails, the other 49 are stored, in
/// one transaction when `shared` (else the flush failed as a whole on the unique index,
/// and each was tried alone).
async fn flush_of_fifty(
    shared: bool,
    odd: impl FnOnce(&NewEvent) -> (StreamId, ExpectedVersion, Vec<NewEvent>),
) {
    let db = TestDb::new().await;
    let store = db.store_with(db.config().with_coalescing(Coalescing::default().max_in_flight(1))).await;
    store.append(&sid("taken"), ExpectedVersion::NoStream, vec![ev("Opened")]).await.unwrap();
    let stored = ev("Stored");
    store.append(&sid("other"), ExpectedVersion::NoStream, vec![stored.clone()]).await.unwrap();
    let odd = odd(&stored);

    let mut lock = store.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN SHARE MODE").execute(&mut *lock).await.unwrap();
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.append(&sid("first"), ExpectedVersion::NoStream, vec![ev("First")]).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        let (stream, expected, events) = if i == 25 {
            odd.clone()
        } else {
            (sid(&format!("s{i}")), ExpectedVersion::NoStream, vec![ev("A"), ev("B")])
        };
        tasks.push(tokio::spawn(
            async move { (stream.clone(), store.append(&stream, expected, events).await) },
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.commit().await.unwrap();
    first.await.unwrap().unwrap();

    let mut failed = Vec::new();
    let mut transactions = HashSet::new();
    for task in tasks {
        let (stream, result) = task.await.unwrap();
        match result {
            Ok(r) => {
                assert_eq!((r.from_version, r.to_version), (Version(1), Version(2)), "{stream}");
                let events = store.read_stream(&stream, VersionRange::ALL).await.unwrap();
                assert_eq!(events.len(), 2, "{stream}");
                transactions.extend(events.iter().map(|e| e.transaction));
            }
            Err(e) => failed.push((stream, e)),
        }
    }
    assert_eq!(failed.len(), 1, "exactly the odd append fails: {failed:?}");
    assert_eq!(failed[0].0, odd.0);
    let stats = store.flush_stats();
    assert!(stats.largest >= 49, "{stats:?}");
    if shared {
        assert_eq!(transactions.len(), 1, "the other 49 committed in one flush");
    } else {
        assert!(stats.retried_alone >= 50, "{stats:?}");
    }
    println!("flush of fifty: {:?} for {}", stats, failed[0].1);
    match &failed[0].1 {
        StoreError::Conflict { actual, .. } => assert_eq!(*actual, Version(1)),
        StoreError::DuplicateEvent { event_id } => assert_eq!(*event_id, stored.event_id),
        StoreError::InvalidInput(_) => {}
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_conflict_in_a_flush_of_fifty_fails_alone() {
    flush_of_fifty(true, |_| (sid("taken"), ExpectedVersion::NoStream, vec![ev("Again")])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_duplicate_in_a_flush_of_fifty_fails_alone() {
    // An id stored in another stream.
    flush_of_fifty(false, |stored| (sid("dup"), ExpectedVersion::NoStream, vec![stored.clone()])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invalid_event_in_a_flush_of_fifty_fails_alone() {
    flush_of_fifty(true, |_| (sid("bad"), ExpectedVersion::NoStream, vec![NewEvent::new("", json!({}))]))
        .await;
}

/// What the racing writers saw: appends acknowledged (stream, first version, ids) and
/// conflicts (stream, expected, actual).
#[derive(Default)]
struct Seen {
    acked: Vec<(StreamId, u64, Vec<Uuid>)>,
    conflicts: Vec<(StreamId, u64, u64)>,
}

/// 64 writers over 1,000 streams, of which 200 are hot and shared by all (half of each
/// writer's appends go to them) and the rest split among the writers. Every acknowledged
/// event is stored once at the version it was acknowledged with, streams have no gaps,
/// nothing unacknowledged is stored, and every conflict is real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_over_shared_streams() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut writers = Vec::new();
    for w in 0..64 {
        let (store, seen) = (store.clone(), seen.clone());
        writers.push(tokio::spawn(async move {
            for _ in 0..40 {
                let id = {
                    let mut rng = rand::thread_rng();
                    if rng.gen_bool(0.5) {
                        format!("hot-{}", rng.gen_range(0..200))
                    } else {
                        format!("cold-{}", 200 + w * 12 + rng.gen_range(0..12))
                    }
                };
                let stream = sid(&id);
                let n = rand::thread_rng().gen_range(1..=3);
                let events: Vec<NewEvent> = (0..n).map(|_| ev("Moved")).collect();
                let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                let v = store.stream_version(&stream).await.unwrap();
                let expected =
                    if v == Version::INITIAL { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v) };
                match store.append(&stream, expected, events).await {
                    Ok(r) => seen.lock().unwrap().acked.push((stream, r.from_version.0, ids)),
                    Err(StoreError::Conflict { actual, .. }) => {
                        seen.lock().unwrap().conflicts.push((stream, v.0, actual.0))
                    }
                    Err(e) => panic!("append: {e}"),
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut stored: HashMap<Uuid, (StreamId, u64)> = HashMap::new();
    let mut finals: HashMap<StreamId, u64> = HashMap::new();
    let streams: HashSet<StreamId> = seen.acked.iter().map(|a| a.0.clone()).collect();
    for s in &streams {
        let events = store.read_stream(s, VersionRange::ALL).await.unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e.version.0).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>(), "{s} has gaps");
        finals.insert(s.clone(), events.len() as u64);
        for e in events {
            assert!(stored.insert(e.event_id, (s.clone(), e.version.0)).is_none(), "stored twice");
        }
    }
    let acked_events: usize = seen.acked.iter().map(|a| a.2.len()).sum();
    for (s, from, ids) in &seen.acked {
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(stored.get(id), Some(&(s.clone(), from + i as u64)), "acknowledged {id} in {s}");
        }
    }
    assert_eq!(stored.len(), acked_events, "only acknowledged events are stored");
    assert_eq!(store.count(&factum::EventFilter::new()).await.unwrap(), acked_events as u64);
    for (s, expected, actual) in &seen.conflicts {
        assert!(actual > expected, "a conflict on {s} at {expected} with the stream at {actual}");
        assert!(finals.get(s).copied().unwrap_or(0) >= *actual, "{s} never reached {actual}");
    }
    assert!(seen.conflicts.len() > 50, "conflicts are frequent: {}", seen.conflicts.len());
    println!(
        "racing writers: {} appends ({} events) acknowledged, {} real conflicts, {:?}",
        seen.acked.len(),
        acked_events,
        seen.conflicts.len(),
        store.flush_stats()
    );
}

/// The writer process of `sigkill_in_the_middle_of_flushes_loses_nothing_acknowledged`:
/// 32 writers appending to streams of their own, printing each acknowledged event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by sigkill_in_the_middle_of_flushes_loses_nothing_acknowledged"]
async fn child_coalescing_writer() {
    let Ok(url) = std::env::var("FACTUM_CHILD_DB_URL") else { return };
    let config = factum_postgres::PostgresConfig::from_url(&url).unwrap();
    let store = factum_postgres::PostgresStore::connect(config).await.unwrap();
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut writers = Vec::new();
    for w in 0..32 {
        let (store, out) = (store.clone(), out.clone());
        writers.push(tokio::spawn(async move {
            for i in 0u64.. {
                let stream = sid(&format!("w{w}-{}", i % 20));
                let v = store.stream_version(&stream).await.unwrap();
                let expected =
                    if v == Version::INITIAL { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v) };
                let events = vec![ev("Moved"), ev("Moved")];
                let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
                if store.append(&stream, expected, events).await.is_ok() {
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ACK {}", ids.join(" ")).unwrap();
                    out.flush().unwrap();
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
}

/// The writer process is killed (SIGKILL) while its flushes are in flight: every event it
/// acknowledged is stored, and no stream has a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_flushes_loses_nothing_acknowledged() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_coalescing_writer", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("FACTUM_CHILD_DB_URL", db.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let acked = Arc::new(Mutex::new(Vec::<Uuid>::new()));
    let reader = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(ids) = line.strip_prefix("ACK ") {
                    acked.lock().unwrap().extend(ids.split(' ').filter_map(|id| id.parse::<Uuid>().ok()));
                }
            }
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 2_000 {
        assert!(tokio::time::Instant::now() < deadline, "the writer acknowledged too little");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_id = ANY($1)")
        .bind(&acked)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(found as usize, acked.len(), "every acknowledged event is stored");
    let gaps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT aggregate_id, max(version) AS top, count(*) AS n FROM events \
         GROUP BY aggregate_id) s WHERE top <> n",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(gaps, 0, "no stream has a gap");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.unwrap();
    println!("sigkill mid-flush: {} acknowledged, {total} stored, lost 0", acked.len());
}

/// Flushes on a table that started empty (where a cached generic plan could choose to
/// scan it) read no rows by sequential scan: each flush finds its streams' versions
/// through the stream index, however large the table grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_never_scan_the_table() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut writers = Vec::new();
    for w in 0..32 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..40u64 {
                let stream = sid(&format!("w{w}-{}", i % 4));
                let expected =
                    if i < 4 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(Version(i / 4)) };
                store.append(&stream, expected, vec![ev("Moved")]).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let stats = store.flush_stats();
    assert!(stats.flushes > 20 && stats.appends > stats.flushes, "coalesced: {stats:?}");
    // Statistics reach the server's views within a second or so of each transaction.
    let mut read = (0i64, 0i64);
    for _ in 0..100 {
        read = sqlx::query_as(
            "SELECT coalesce(n_tup_ins, 0), coalesce(seq_tup_read, 0) FROM pg_stat_user_tables \
             WHERE relname = 'events' AND schemaname = 'public'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if read.0 >= 1_280 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(read.0, 1_280, "inserted");
    assert!(read.1 < 128, "{} rows read by sequential scans for 1,280 appends ({stats:?})", read.1);
    println!("flushes on a new table: {stats:?}, {} rows read by sequential scans", read.1);
}

/// Callers that give up on their appends (the lone one holding the flush slot, and some
/// of those queued behind it) leave the writer working: the slot passes on to the queue,
/// every append still awaited is answered, and a later append is flushed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_give_up_leave_the_writer_working() {
    let db = TestDb::new().await;
    let store = db.store_with(db.config().with_coalescing(Coalescing::default().max_in_flight(1))).await;
    store.append(&sid("warm"), ExpectedVersion::NoStream, vec![ev("Opened")]).await.unwrap();

    let mut lock = store.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN SHARE MODE").execute(&mut *lock).await.unwrap();
    // Takes the only flush slot, blocks on the lock, and is given up after 300 ms.
    let lone = tokio::spawn({
        let store = store.clone();
        async move {
            tokio::time::timeout(
                Duration::from_millis(300),
                store.append(&sid("lone"), ExpectedVersion::NoStream, vec![ev("Lone")]),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut kept = Vec::new();
    for i in 0..20u32 {
        let store = store.clone();
        let stream = sid(&format!("q{i}"));
        let append = async move { store.append(&stream, ExpectedVersion::NoStream, vec![ev("Q")]).await };
        if i.is_multiple_of(2) {
            kept.push(tokio::spawn(append));
        } else {
            // Given up while queued.
            tokio::spawn(async move { tokio::time::timeout(Duration::from_millis(50), append).await });
        }
    }
    assert!(lone.await.unwrap().is_err(), "the lone append was given up while it held the slot");
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.commit().await.unwrap();

    for task in kept {
        let result = tokio::time::timeout(Duration::from_secs(30), task).await;
        let result = result.expect("a queued append is answered after its neighbours gave up");
        assert_eq!(result.unwrap().unwrap().to_version, Version(1));
    }
    let later = tokio::time::timeout(
        Duration::from_secs(10),
        store.append(&sid("later"), ExpectedVersion::NoStream, vec![ev("Later")]),
    )
    .await
    .expect("the flush slot is free again");
    assert_eq!(later.unwrap().to_version, Version(1));
}
