//! Projections on a real PostgreSQL: exactly once through crashes, live under many
//! concurrent writers, catching up late, and the failure policies.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factum::prelude::*;
use factum::projection::{FailurePolicy, ProjectionState};
use factum::{
    ExpectedVersion, HandlerError, NewEvent, Projection, StreamId, Supervisor, SupervisorConfig, Version,
};
use factum_postgres::{ExactlyOnce, PostgresStore};
use factum_tests::recorder::{Recorded, Recorder};
use factum_tests::{eventually, TestDb};
use serde_json::json;
use uuid::Uuid;

fn sid(t: &str, id: &str) -> StreamId {
    StreamId::new(t, id).unwrap()
}

fn event(kind: &str, n: u64) -> NewEvent {
    let topic = if kind == "Order" { "order.lifecycle.placed" } else { "customer.profile.registered" };
    NewEvent::new(format!("{kind}Happened"), json!({ "n": n })).with_topic(topic)
}

/// Appends `per_stream` events to each of `streams` streams of `kind`, 1,000 per append.
async fn bulk(store: &PostgresStore, kind: &str, streams: usize, per_stream: u64) -> HashSet<Uuid> {
    let mut ids = HashSet::new();
    for s in 0..streams {
        let stream = sid(kind, &format!("{kind}-{s}"));
        let mut version = store.stream_version(&stream).await.unwrap();
        let mut left = per_stream;
        while left > 0 {
            let n = left.min(1000);
            let batch: Vec<NewEvent> = (0..n).map(|i| event(kind, i)).collect();
            ids.extend(batch.iter().map(|e| e.event_id));
            let r = store.append(&stream, ExpectedVersion::Exact(version), batch).await.unwrap();
            version = r.to_version;
            left -= n;
        }
    }
    ids
}

async fn until_caught_up(supervisor: &Supervisor, names: &[&str], timeout: Duration) {
    for name in names {
        eventually(timeout, &format!("{name} caught up with zero lag"), || {
            async move {
                // Measured now: a status's lag can be a moment old.
                let live = supervisor.status(name).unwrap().state == ProjectionState::Live;
                (live && supervisor.lag(name).await.unwrap() == 0).then_some(())
            }
        })
        .await;
    }
}

fn fast_retry(attempts: u32) -> FailurePolicy {
    FailurePolicy::retry_then_stop(attempts).backoff(Duration::from_millis(10), Duration::from_millis(40))
}

/// A handler that panics on the 3rd event of a batch (once), and a database connection
/// killed in the middle of a batch: after both, each event is in the read model exactly
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_batch_applies_each_event_exactly_once() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let ids = bulk(&store, "Order", 4, 50).await;

    let panicked = Arc::new(AtomicBool::new(false));
    let seen_in_batch = Arc::new(AtomicU32::new(0));
    let hook = {
        let (panicked, seen) = (panicked.clone(), seen_in_batch.clone());
        Arc::new(move |_: &factum::RecordedEvent| -> Result<(), HandlerError> {
            // The 3rd event of the 2nd batch (batches of 40) panics, the first time.
            if seen.fetch_add(1, Ordering::SeqCst) == 42 && !panicked.swap(true, Ordering::SeqCst) {
                panic!("crash after k events of a batch");
            }
            Ok(())
        })
    };
    let recorder = Recorder::create(store.pool(), "rm_crash").await.with_hook(hook);
    let projection = Projection::new("crash", ExactlyOnce::new(store.clone(), recorder))
        .batch_size(40)
        .on_failure(fast_retry(3));
    let supervisor =
        Supervisor::start(Arc::new(store.clone()), SupervisorConfig::default().projection(projection))
            .await
            .unwrap();
    until_caught_up(&supervisor, &["crash"], Duration::from_secs(30)).await;
    assert!(panicked.load(Ordering::SeqCst), "the handler did panic");
    let status = supervisor.status("crash").unwrap();
    assert!(status.last_error.as_deref().unwrap_or_default().contains("panicked"), "{status:?}");
    Recorded::read(store.pool(), "rm_crash").await.assert_exactly(&ids, true);
    supervisor.shutdown().await.unwrap();
}

/// The child half of [`process_killed_mid_batch_applies_each_event_exactly_once`]: runs a
/// projection that aborts the whole process in the middle of a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by process_killed_mid_batch_applies_each_event_exactly_once in a child process"]
async fn child_aborts_mid_batch() {
    let Ok(name) = std::env::var("FACTUM_CHILD_DB") else { return };
    let store = PostgresStore::connect(TestDb::config_for(&name)).await.unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let hook = Arc::new(move |_: &factum::RecordedEvent| -> Result<(), HandlerError> {
        if seen.fetch_add(1, Ordering::SeqCst) == 125 {
            std::process::abort();
        }
        Ok(())
    });
    let recorder = Recorder::create(store.pool(), "rm_killed").await.with_hook(hook);
    let projection = Projection::new("killed", ExactlyOnce::new(store.clone(), recorder)).batch_size(50);
    let _supervisor =
        Supervisor::start(Arc::new(store.clone()), SupervisorConfig::default().projection(projection))
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    unreachable!("the handler aborts the process first");
}

/// The process is killed (SIGABRT) after 25 events of its third batch; a new process
/// finishes the job, and each event is in the read model exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_killed_mid_batch_applies_each_event_exactly_once() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let ids = bulk(&store, "Order", 2, 200).await;

    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_aborts_mid_batch", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("FACTUM_CHILD_DB", db.name())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was killed mid-batch: {status:?}");
    let partial = Recorded::read(store.pool(), "rm_killed").await;
    assert_eq!(partial.rows, 100, "two batches committed, the third died with the process");
    let checkpoint = store.load_checkpoint("killed").await.unwrap().expect("checkpoint of two batches");
    assert!(checkpoint.position.0 >= 100);

    let recorder = Recorder::create(store.pool(), "rm_killed").await;
    let projection = Projection::new("killed", ExactlyOnce::new(store.clone(), recorder)).batch_size(50);
    let supervisor =
        Supervisor::start(Arc::new(store.clone()), SupervisorConfig::default().projection(projection))
            .await
            .unwrap();
    until_caught_up(&supervisor, &["killed"], Duration::from_secs(30)).await;
    Recorded::read(store.pool(), "rm_killed").await.assert_exactly(&ids, true);
    supervisor.shutdown().await.unwrap();
}

/// 16 writers append 100,000 events (one per append) while three live projections
/// follow: the whole log, two aggregate types, two topic patterns. Each read model ends
/// with exactly the appended events, in stream order, and all three report zero lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_live_projections_under_sixteen_writers() {
    const WRITERS: usize = 16;
    const PER_WRITER: u64 = 6_250;
    const STREAMS_PER_WRITER: usize = 12;
    let db = TestDb::new().await;
    let store = db.store().await;
    let pool = store.pool().clone();
    let config = SupervisorConfig::default()
        .projection(Projection::new(
            "all",
            ExactlyOnce::new(store.clone(), Recorder::create(&pool, "rm_all").await),
        ))
        .projection(
            Projection::new(
                "by_type",
                ExactlyOnce::new(store.clone(), Recorder::create(&pool, "rm_by_type").await),
            )
            .aggregate_types(["Order", "Customer"])
            .batch_size(500),
        )
        .projection(
            Projection::new(
                "by_topic",
                ExactlyOnce::new(store.clone(), Recorder::create(&pool, "rm_by_topic").await),
            )
            .topics(["order.#", "customer.*.registered"])
            .batch_size(250),
        );
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();

    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let kind = if w.is_multiple_of(2) { "Order" } else { "Customer" };
                let mut versions = [Version(0); STREAMS_PER_WRITER];
                let mut ids = Vec::with_capacity(PER_WRITER as usize);
                for n in 0..PER_WRITER {
                    let s = (n as usize) % STREAMS_PER_WRITER;
                    let stream = sid(kind, &format!("w{w}-s{s}"));
                    let e = event(kind, n);
                    ids.push(e.event_id);
                    let r =
                        store.append(&stream, ExpectedVersion::Exact(versions[s]), vec![e]).await.unwrap();
                    versions[s] = r.to_version;
                }
                ids
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for w in writers {
        ids.extend(w.await.unwrap());
    }
    let written = started.elapsed();
    until_caught_up(&supervisor, &["all", "by_type", "by_topic"], Duration::from_secs(300)).await;
    println!(
        "100,000 events from {WRITERS} writers in {written:?}; all three caught up {:?} after",
        started.elapsed() - written
    );
    for table in ["rm_all", "rm_by_type", "rm_by_topic"] {
        Recorded::read(&pool, table).await.assert_exactly(&ids, true);
    }
    for name in ["all", "by_type", "by_topic"] {
        eventually(Duration::from_secs(5), "the lag metric and status at zero", || {
            let status_lag = supervisor.status(name).unwrap().lag;
            let metric = supervisor.metrics().projection_lag(name);
            async move { (status_lag == Some(0) && metric == 0).then_some(()) }
        })
        .await;
        assert_eq!(supervisor.status(name).unwrap().handled, 100_000, "{name}");
    }
    supervisor.shutdown().await.unwrap();
}

/// A projection added after 50,000 events exist catches up, then follows live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_projection_catches_up_then_follows_live() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut ids = bulk(&store, "Order", 10, 5_000).await;
    assert_eq!(ids.len(), 50_000);

    let recorder = Recorder::create(store.pool(), "rm_late").await;
    let projection = Projection::new("late", ExactlyOnce::new(store.clone(), recorder)).batch_size(1_000);
    let started = Instant::now();
    let supervisor =
        Supervisor::start(Arc::new(store.clone()), SupervisorConfig::default().projection(projection))
            .await
            .unwrap();
    until_caught_up(&supervisor, &["late"], Duration::from_secs(120)).await;
    println!("caught up with 50,000 events in {:?}", started.elapsed());
    Recorded::read(store.pool(), "rm_late").await.assert_exactly(&ids, true);

    // Live: new events arrive through NOTIFY wake-ups, well before the 5 s poll.
    let live_from = Instant::now();
    ids.extend(bulk(&store, "Order", 10, 10).await);
    eventually(Duration::from_secs(4), "the live events", || {
        let status = supervisor.status("late").unwrap();
        async move { (status.handled == 50_100).then_some(()) }
    })
    .await;
    println!("100 live events applied {:?} after the first append", live_from.elapsed());
    until_caught_up(&supervisor, &["late"], Duration::from_secs(10)).await;
    Recorded::read(store.pool(), "rm_late").await.assert_exactly(&ids, true);
    supervisor.shutdown().await.unwrap();
}

/// Poison events fail every time. With "retry then stop", the projection stops on the
/// first one after three attempts, holding what came before; fixed and resumed, it
/// finishes. With "retry then skip", it records each and goes on; fixed, the recorded
/// failures are replayed and the read model is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policies_stop_or_skip_and_record() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let stream = sid("Order", "o-1");
    let mut events: Vec<NewEvent> = (0..30).map(|n| event("Order", n)).collect();
    for poison in [10, 20] {
        events[poison].payload = json!({ "poison": true });
    }
    let ids: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    let first_poison = events[10].event_id;
    store.append(&stream, ExpectedVersion::NoStream, events).await.unwrap();

    let broken = Arc::new(AtomicBool::new(true));
    let attempts = Arc::new(AtomicU32::new(0));
    let hook = |broken: Arc<AtomicBool>, attempts: Arc<AtomicU32>| {
        Arc::new(move |e: &factum::RecordedEvent| -> Result<(), HandlerError> {
            if e.payload["poison"] == json!(true) && broken.load(Ordering::SeqCst) {
                attempts.fetch_add(1, Ordering::SeqCst);
                return Err(HandlerError::msg(format!("cannot digest {}", e.event_id)));
            }
            Ok(())
        })
    };
    let stop =
        Recorder::create(store.pool(), "rm_stop").await.with_hook(hook(broken.clone(), attempts.clone()));
    let skip_attempts = Arc::new(AtomicU32::new(0));
    let skip = Recorder::create(store.pool(), "rm_skip")
        .await
        .with_hook(hook(broken.clone(), skip_attempts.clone()));
    let config = SupervisorConfig::default()
        .projection(
            Projection::new("stop", ExactlyOnce::new(store.clone(), stop))
                .batch_size(7)
                .on_failure(fast_retry(3)),
        )
        .projection(Projection::new("skip", ExactlyOnce::new(store.clone(), skip)).batch_size(7).on_failure(
            FailurePolicy::retry_then_skip(3).backoff(Duration::from_millis(10), Duration::from_millis(40)),
        ));
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();

    eventually(Duration::from_secs(20), "stop: stopped by its policy", || {
        let status = supervisor.status("stop").unwrap();
        async move { (status.state == ProjectionState::Failed).then_some(status) }
    })
    .await;
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "three attempts, then stop");
    let status = supervisor.status("stop").unwrap();
    assert!(status.last_error.unwrap().contains(&first_poison.to_string()));
    assert_eq!(
        Recorded::read(store.pool(), "rm_stop").await.rows,
        10,
        "the events before the poison, no more"
    );
    // The store says so too, for operators (`factum status`).
    let stopped = store.stopped("stop").await.unwrap().expect("the stop is recorded");
    assert_eq!((stopped.event_id, stopped.attempts), (first_poison, 3));
    assert!(stopped.error.contains("cannot digest"), "{}", stopped.error);
    assert_eq!(store.stopped("skip").await.unwrap(), None, "a skipping projection does not stop");

    until_caught_up(&supervisor, &["skip"], Duration::from_secs(20)).await;
    assert_eq!(skip_attempts.load(Ordering::SeqCst), 6, "three attempts at each of two poison events");
    let failures = supervisor.failures("skip").await.unwrap();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].event_id, first_poison);
    assert_eq!(failures[0].attempts, 3);
    assert!(failures[0].error.contains("cannot digest"));
    let skip_status = supervisor.status("skip").unwrap();
    assert_eq!((skip_status.skipped, skip_status.handled), (2, 28));
    assert_eq!(Recorded::read(store.pool(), "rm_skip").await.rows, 28);

    // Still broken: a retry fails again, and the records say so (one attempt more each).
    let report = supervisor.retry_failures("skip").await.unwrap();
    assert_eq!((report.resolved, report.still_failing, report.missing), (0, 2, 0));
    let again = supervisor.failures("skip").await.unwrap();
    assert_eq!(again.iter().map(|f| f.attempts).collect::<Vec<_>>(), [4, 4], "{again:?}");
    assert!(again[0].failed_at >= failures[0].failed_at);

    // Fixed: replaying the recorded failures completes the read model; resuming the
    // stopped projection finishes it.
    broken.store(false, Ordering::SeqCst);
    let report = supervisor.retry_failures("skip").await.unwrap();
    assert_eq!((report.resolved, report.still_failing, report.missing), (2, 0, 0));
    assert!(supervisor.failures("skip").await.unwrap().is_empty());
    let skip_rows = Recorded::read(store.pool(), "rm_skip").await;
    assert_eq!(skip_rows.ids, ids);
    assert_eq!(skip_rows.rows, 30);

    supervisor.resume("stop").await.unwrap();
    until_caught_up(&supervisor, &["stop"], Duration::from_secs(20)).await;
    Recorded::read(store.pool(), "rm_stop").await.assert_exactly(&ids, true);
    assert_eq!(store.stopped("stop").await.unwrap(), None, "past the event, the stop is gone");
    supervisor.shutdown().await.unwrap();
}
