//! The supervisor on a real PostgreSQL: replay, rebuild under live traffic, retention,
//! metrics, restarts and shutdown, and two instances sharing one database.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use factum::prelude::*;
use factum::projection::ProjectionState;
use factum::store::Snapshot;
use factum::supervisor::{ReplayOptions, RetentionConfig, RetentionMode};
use factum::{
    EventFilter, EventHandler, EventStore, ExpectedVersion, Factum, FactumConfig, HandlerError, Metrics,
    NewEvent, Projection, RecordedEvent, StreamId, Supervisor, SupervisorConfig, Version,
};
use factum_postgres::{ExactlyOnce, PostgresConfig, PostgresStore};
use factum_tests::counter::CounterCommand;
use factum_tests::faulty::Faulty;
use factum_tests::recorder::{Recorded, Recorder};
use factum_tests::{eventually, TestDb};
use serde_json::json;
use uuid::Uuid;

fn sid(t: &str, id: &str) -> StreamId {
    StreamId::new(t, id).unwrap()
}

fn event(t: &str, n: u64) -> NewEvent {
    NewEvent::new(t, json!({ "n": n })).with_topic("order.lifecycle.placed")
}

async fn append_n(store: &dyn EventStore, stream: &StreamId, n: u64, t: &str) -> Vec<Uuid> {
    let version = store.stream_version(stream).await.unwrap();
    let events: Vec<NewEvent> = (0..n).map(|i| event(t, version.0 + i)).collect();
    let ids = events.iter().map(|e| e.event_id).collect();
    store.append(stream, ExpectedVersion::Exact(version), events).await.unwrap();
    ids
}

async fn caught_up(supervisor: &Supervisor, name: &str, timeout: Duration) {
    eventually(timeout, &format!("{name} caught up"), || {
        async move {
            // Measured now: a status's lag can be a moment old.
            let live = supervisor.status(name).unwrap().state == ProjectionState::Live;
            (live && supervisor.lag(name).await.unwrap() == 0).then_some(())
        }
    })
    .await;
}

/// Fails on every event whose `n` is 7 modulo 50.
struct Picky {
    handled: Arc<AtomicU64>,
}

#[async_trait]
impl EventHandler for Picky {
    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if event.payload["n"].as_u64().unwrap_or(0) % 50 == 7 {
            return Err(HandlerError::msg("n % 50 == 7"));
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Replay: by filter, in batches, stopping at the first error or going on
/// past errors, with a report, progress and its six metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_stops_at_first_error_or_continues() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store().await);
    let s = sid("Order", "o-1");
    append_n(store.as_ref(), &s, 200, "Placed").await;
    append_n(store.as_ref(), &sid("Order", "o-2"), 30, "Ignored").await;
    let supervisor = Supervisor::start(store.clone(), SupervisorConfig::default()).await.unwrap();
    let filter = EventFilter::new().event_types(["Placed"]);

    let handled = Arc::new(AtomicU64::new(0));
    let report = supervisor
        .replay(filter.clone(), Picky { handled: handled.clone() }, ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!((report.replayed, report.failed, report.stopped_early), (7, 1, true));
    assert_eq!(report.errors.len(), 1);
    assert_eq!(handled.load(Ordering::SeqCst), 7);

    let progress = Arc::new(AtomicU32::new(0));
    let options =
        ReplayOptions::default().batch_size(10).continue_on_error(true).on_progress(Duration::ZERO, {
            let progress = progress.clone();
            move |_| {
                progress.fetch_add(1, Ordering::SeqCst);
            }
        });
    let handled = Arc::new(AtomicU64::new(0));
    let report = supervisor.replay(filter, Picky { handled: handled.clone() }, options).await.unwrap();
    assert_eq!((report.replayed, report.failed, report.stopped_early), (196, 4, false));
    assert_eq!(progress.load(Ordering::SeqCst), 20, "a progress report per batch of 10");

    let text = supervisor.metrics().encode();
    for line in [
        "eventstore_replay_runs_total 2",
        "eventstore_events_replayed_total 203",
        "eventstore_replay_failed_events_total 5",
        "eventstore_replay_last_count 196",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    let bad = supervisor
        .replay(EventFilter::new().topics(["bad..topic"]), Picky { handled }, ReplayOptions::default())
        .await;
    assert!(bad.is_err(), "a bad filter is refused");
    supervisor.shutdown().await.unwrap();
}

/// Rebuilding a projection while writers go on ends with the same read model as a
/// projection that ran from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_under_live_traffic_matches_a_projection_that_never_stopped() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let pool = store.pool().clone();
    let config = SupervisorConfig::default()
        .projection(Projection::new(
            "reference",
            ExactlyOnce::new(store.clone(), Recorder::create(&pool, "rm_ref").await),
        ))
        .projection(
            Projection::new(
                "rebuilt",
                ExactlyOnce::new(store.clone(), Recorder::create(&pool, "rm_rebuilt").await),
            )
            .batch_size(50),
        );
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    let mut ids: HashSet<Uuid> = HashSet::new();
    for i in 0..20 {
        ids.extend(append_n(&store, &sid("Order", &format!("o-{i}")), 100, "Placed").await);
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..40u32 {
                for i in 0..5 {
                    ids.extend(append_n(&store, &sid("Order", &format!("live-{i}")), 5, "Placed").await);
                }
                if round.is_multiple_of(10) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = supervisor.rebuild("rebuilt").await.unwrap();
    assert!(report.replayed >= 2_000, "replayed the stored log: {report:?}");
    assert!(report.checkpoint.is_some());
    ids.extend(writer.await.unwrap());
    caught_up(&supervisor, "reference", Duration::from_secs(60)).await;
    caught_up(&supervisor, "rebuilt", Duration::from_secs(60)).await;
    let reference = Recorded::read(&pool, "rm_ref").await;
    let rebuilt = Recorded::read(&pool, "rm_rebuilt").await;
    reference.assert_exactly(&ids, true);
    rebuilt.assert_exactly(&ids, true);
    assert_eq!(reference.streams, rebuilt.streams);
    assert!(supervisor.metrics().encode().contains("eventstore_replay_runs_total 1"));
    supervisor.shutdown().await.unwrap();
}

/// A rebuild replays what was stored when it began, even while a transaction elsewhere
/// holds the gap-safe horizon back: it waits for the horizon rather than stopping short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_waits_for_a_held_back_horizon() {
    use factum_postgres::sqlx::{self, Connection};
    let db = TestDb::new().await;
    let store = db.store().await;
    let pool = store.pool().clone();
    let config = SupervisorConfig::default().projection(Projection::new(
        "held",
        ExactlyOnce::new(store.clone(), Recorder::create(&pool, "rm_held").await),
    ));
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    // An open transaction with an id, taken before the events are written: none of them
    // is readable until it ends.
    let mut blocker = sqlx::PgConnection::connect_with(&db.options()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut blocker).await.unwrap();
    let mut ids = HashSet::new();
    for i in 0..5 {
        ids.extend(append_n(&store, &sid("Order", &format!("h-{i}")), 40, "Placed").await);
    }
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    });
    let report = supervisor.rebuild("held").await.unwrap();
    release.await.unwrap();
    assert_eq!(report.replayed, 200, "everything stored before the rebuild: {report:?}");
    Recorded::read(&pool, "rm_held").await.assert_exactly(&ids, true);
    supervisor.shutdown().await.unwrap();
}

fn snapshot(stream: &StreamId, v: u64) -> Snapshot {
    Snapshot {
        stream: stream.clone(),
        version: Version(v),
        schema_version: 1,
        state: json!({}),
        created_at: chrono::Utc::now(),
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        .parse()
        .unwrap()
}

/// Safe mode keeps what a projection has not processed and what no snapshot covers;
/// plain mode deletes by age; both update the five retention metrics; the
/// periodic clean-up starts and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_safe_and_plain() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (o1, o2) = (sid("Order", "o-1"), sid("Order", "o-2"));
    append_n(&store, &o1, 10, "Placed").await;
    append_n(&store, &o2, 10, "Placed").await;
    store.save_snapshot(&snapshot(&o1, 10)).await.unwrap();
    let recorder = Recorder::create(store.pool(), "rm_p").await;
    let config = SupervisorConfig::default()
        .projection(Projection::new("p", ExactlyOnce::new(store.clone(), recorder)))
        .retention(RetentionConfig::default().period(Duration::ZERO));
    let safe = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    caught_up(&safe, "p", Duration::from_secs(20)).await;
    safe.pause("p").await.unwrap();
    append_n(&store, &o1, 5, "Placed").await;
    store.save_snapshot(&snapshot(&o1, 15)).await.unwrap();

    let report = safe.cleanup_now().await.unwrap();
    assert_eq!((report.deleted, report.mode), (10, RetentionMode::Safe), "o-1 v1..10: processed and covered");
    let left = store.query(&EventFilter::new().limit(100)).await.unwrap();
    let mut kept: Vec<(String, u64)> =
        left.iter().map(|e| (e.stream.aggregate_id().to_owned(), e.version.0)).collect();
    kept.sort();
    let mut want: Vec<(String, u64)> = (11..=15).map(|v| ("o-1".to_owned(), v)).collect();
    want.extend((1..=10).map(|v| ("o-2".to_owned(), v)));
    want.sort();
    assert_eq!(kept, want, "unprocessed o-1 tail and unsnapshotted o-2 kept");
    let text = safe.metrics().encode();
    assert_eq!(metric(&text, "eventstore_retention_cleanup_runs_total"), 1.0);
    assert_eq!(metric(&text, "eventstore_retention_total_events_deleted"), 10.0);
    assert_eq!(metric(&text, "eventstore_retention_last_cleanup_deleted"), 10.0);
    assert!(metric(&text, "eventstore_retention_last_cleanup_timestamp") > 1.7e9);
    assert!(metric(&text, "eventstore_retention_last_cleanup_duration_seconds") > 0.0);
    safe.shutdown().await.unwrap();

    let plain_config = SupervisorConfig::default().retention(
        RetentionConfig::default()
            .period(Duration::ZERO)
            .mode(RetentionMode::Plain)
            .interval(Duration::from_secs(1)),
    );
    let plain = Supervisor::start(Arc::new(store.clone()), plain_config).await.unwrap();
    assert_eq!(
        plain.cleanup_now().await.unwrap().deleted,
        13,
        "everything older than the period but each stream's newest event (o-1 v15, o-2 v10)"
    );
    let text = plain.metrics().encode();
    assert_eq!(metric(&text, "eventstore_retention_total_events_deleted"), 13.0);
    assert_eq!(metric(&text, "eventstore_retention_last_cleanup_deleted"), 13.0);

    // The periodic clean-up: started, it deletes on its own; stopped, it does not.
    append_n(&store, &o2, 3, "Placed").await;
    plain.start_retention().await.unwrap();
    eventually(Duration::from_secs(10), "the periodic clean-up", || {
        let store = store.clone();
        // Each stream's newest event stays: o-1 v15 and o-2 v13.
        async move { (store.count(&EventFilter::new()).await.unwrap() == 2).then_some(()) }
    })
    .await;
    plain.stop_retention().await.unwrap();
    let runs = metric(&plain.metrics().encode(), "eventstore_retention_cleanup_runs_total");
    append_n(&store, &o2, 2, "Placed").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(store.count(&EventFilter::new()).await.unwrap(), 4, "stopped: nothing deleted");
    assert_eq!(metric(&plain.metrics().encode(), "eventstore_retention_cleanup_runs_total"), runs);
    // Versions go on after deletion.
    assert_eq!(store.stream_version(&o2).await.unwrap(), Version(15));
    plain.shutdown().await.unwrap();
}

/// One registry for everything: the encoded text parses with an OpenMetrics parser and
/// carries the eleven established names and the framework's own figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_text_parses_and_names_everything() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store().await);
    let metrics = Arc::new(Metrics::new());
    let factum = Factum::with_config(store.clone(), FactumConfig::default(), metrics.clone());
    for i in 0..12 {
        factum.execute(CounterCommand::Increment { id: format!("c-{}", i % 2), by: 1 }).await.unwrap();
    }
    // A second process's actor for c-0 is behind: its command meets a conflict and retries.
    let other = Factum::with_config(store.clone(), FactumConfig::default(), metrics.clone());
    other.load::<factum_tests::counter::Counter>("c-0").await.unwrap();
    factum.execute(CounterCommand::Increment { id: "c-0".into(), by: 1 }).await.unwrap();
    other.execute(CounterCommand::Increment { id: "c-0".into(), by: 1 }).await.unwrap();
    factum.shutdown();
    other.shutdown();
    let recorder = Recorder::create(store.pool(), "rm_m").await;
    let config = SupervisorConfig::default()
        .metrics(metrics.clone())
        .projection(Projection::new("m", ExactlyOnce::new(store.as_ref().clone(), recorder)));
    let supervisor = Supervisor::start(store.clone(), config).await.unwrap();
    caught_up(&supervisor, "m", Duration::from_secs(20)).await;
    supervisor
        .replay(EventFilter::new(), Picky { handled: Arc::default() }, ReplayOptions::default())
        .await
        .unwrap();
    supervisor.cleanup_now().await.unwrap();
    factum.load::<factum_tests::counter::Counter>("c-0").await.unwrap();

    let text = metrics.encode();
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("the exposition does not parse: {e:?}\n{text}"));
    let names = [
        "eventstore_replay_runs_total",
        "eventstore_events_replayed_total",
        "eventstore_replay_failed_events_total",
        "eventstore_replay_last_run_timestamp",
        "eventstore_replay_last_duration_seconds",
        "eventstore_replay_last_count",
        "eventstore_retention_cleanup_runs_total",
        "eventstore_retention_total_events_deleted",
        "eventstore_retention_last_cleanup_timestamp",
        "eventstore_retention_last_cleanup_duration_seconds",
        "eventstore_retention_last_cleanup_deleted",
        "factum_commands_total",
        "factum_command_duration_seconds_bucket",
        "factum_events_appended_total",
        "factum_append_duration_seconds_bucket",
        "factum_query_duration_seconds_bucket",
        "factum_aggregate_load_duration_seconds_bucket",
        "factum_snapshot_loads_total",
        "factum_event_store_bytes",
        "factum_projection_position",
        "factum_projection_lag_events",
        "factum_projection_events_total",
        "factum_projection_batch_duration_seconds_bucket",
        "factum_live_actors",
        "factum_snapshot_writes_total",
        "factum_concurrency_conflicts_total",
        "factum_command_retries_total",
    ];
    for name in names {
        let family = name.trim_end_matches("_total").trim_end_matches("_bucket");
        assert!(parsed.families.contains_key(family), "family {family} parsed");
        assert!(
            text.lines().any(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{'])),
            "{name} in\n{text}"
        );
    }
    assert!(text.contains("factum_events_appended_total{aggregate_type=\"Counter\"} 14"), "{text}");
    assert!(text.contains("factum_concurrency_conflicts_total{aggregate_type=\"Counter\"} 1"), "{text}");
    assert!(text.contains("factum_projection_lag_events{projection=\"m\"} 0"), "{text}");
    assert!(metric(&text, "factum_event_store_bytes") > 0.0);
    supervisor.shutdown().await.unwrap();
}

/// A child that crashes (a panic, not a store error) is restarted by the supervisor with
/// backoff, and picks up where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_a_crashed_child_with_backoff() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let ids: HashSet<Uuid> =
        append_n(&store, &sid("Order", "o-1"), 120, "Placed").await.into_iter().collect();
    let faulty = Faulty::new(store.clone());
    faulty.panic_reads.store(2, Ordering::SeqCst);
    let recorder = Recorder::create(store.pool(), "rm_crashed").await;
    let config = SupervisorConfig::default()
        .restart_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .projection(Projection::new("crashed", ExactlyOnce::new(store.clone(), recorder)).batch_size(50));
    let supervisor = Supervisor::start(faulty.clone(), config).await.unwrap();
    caught_up(&supervisor, "crashed", Duration::from_secs(30)).await;
    assert_eq!(faulty.panic_reads.load(Ordering::SeqCst), 0, "both panics happened");
    assert_eq!(supervisor.metrics().restarts("projection:crashed"), 2, "one restart per crash");
    Recorded::read(store.pool(), "rm_crashed").await.assert_exactly(&ids, true);
    supervisor.shutdown().await.unwrap();
}

/// A projection whose store fails three reads waits in place, is not restarted, and picks
/// up where it was; shutdown lets the batch in flight commit, then nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_out_store_failures_and_shuts_down_cleanly() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let ids: HashSet<Uuid> =
        append_n(&store, &sid("Order", "o-1"), 300, "Placed").await.into_iter().collect();
    let faulty = Faulty::new(store.clone());
    faulty.fail_reads.store(3, Ordering::SeqCst);
    // Slow enough that shutdown finds a batch in flight.
    let hook = Arc::new(|_: &RecordedEvent| -> Result<(), HandlerError> {
        std::thread::sleep(Duration::from_millis(2));
        Ok(())
    });
    let recorder = Recorder::create(store.pool(), "rm_r").await.with_hook(hook);
    let config = SupervisorConfig::default()
        .restart_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .projection(Projection::new("r", ExactlyOnce::new(store.clone(), recorder)).batch_size(50));
    let supervisor = Supervisor::start(faulty.clone(), config).await.unwrap();
    caught_up(&supervisor, "r", Duration::from_secs(30)).await;
    // A store failure is not a crash: the projection waited in place and went on.
    assert_eq!(supervisor.metrics().restarts("projection:r"), 0, "no restart for a store failure");
    assert_eq!(faulty.fail_reads.load(Ordering::SeqCst), 0, "the three failed reads happened");
    let error = supervisor.status("r").unwrap().last_error.unwrap_or_default();
    assert!(error.starts_with("store: "), "the store failure is reported: {error:?}");
    Recorded::read(store.pool(), "rm_r").await.assert_exactly(&ids, true);

    append_n(&store, &sid("Order", "o-1"), 500, "Placed").await;
    eventually(Duration::from_secs(10), "a batch in flight", || {
        let s = supervisor.status("r").unwrap();
        async move { (s.handled > 300).then_some(()) }
    })
    .await;
    supervisor.shutdown().await.unwrap();
    let status = supervisor.status("r").unwrap();
    assert_eq!(status.state, ProjectionState::Stopped);
    let rows = Recorded::read(store.pool(), "rm_r").await.rows;
    assert_eq!(rows % 50, 0, "whole batches only: the one in flight committed");
    assert_eq!(rows, status.handled, "the read model matches the last checkpoint");
    assert_eq!(store.load_checkpoint("r").await.unwrap(), Some(status.checkpoint));
    append_n(&store, &sid("Order", "o-1"), 10, "Placed").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(Recorded::read(store.pool(), "rm_r").await.rows, rows, "nothing moves after shutdown");
    assert!(supervisor.pause("r").await.is_err(), "a stopped supervisor refuses work");
}

async fn instance(db: &TestDb, name: &str) -> (PostgresStore, Supervisor) {
    let config = PostgresConfig::from_options(db.options().application_name(name));
    let store = db.store_with(config).await;
    let recorder = Recorder::create(store.pool(), "rm_shared").await;
    let config = SupervisorConfig::default()
        .lease_retry(Duration::from_millis(200))
        .projection(Projection::new("shared", ExactlyOnce::new(store.clone(), recorder)).batch_size(100));
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    (store, supervisor)
}

fn state(s: &Supervisor) -> ProjectionState {
    s.status("shared").unwrap().state
}

/// Two instances share one database: one runs the projection, the other stands by and
/// takes over within seconds when the first shuts down, or when its lease connection is
/// killed. The read model holds each event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_runs_the_other_takes_over() {
    let db = TestDb::new().await;
    let (store, a) = instance(&db, "instance_a").await;
    let mut ids: HashSet<Uuid> = HashSet::new();
    for i in 0..10 {
        ids.extend(append_n(&store, &sid("Order", &format!("o-{i}")), 100, "Placed").await);
    }
    caught_up(&a, "shared", Duration::from_secs(20)).await;
    let (_, b) = instance(&db, "instance_b").await;
    eventually(Duration::from_secs(5), "b stands by", || {
        let s = state(&b);
        async move { (s == ProjectionState::Standby).then_some(()) }
    })
    .await;

    // A shuts down while events keep coming: B takes over.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..60 {
                ids.extend(append_n(&store, &sid("Order", &format!("w-{}", round % 7)), 10, "Placed").await);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Instant::now();
    a.shutdown().await.unwrap();
    eventually(Duration::from_secs(5), "b takes over", || {
        let s = state(&b);
        async move { matches!(s, ProjectionState::Live | ProjectionState::CatchingUp).then_some(()) }
    })
    .await;
    println!("takeover after shutdown: {:?}", stopped.elapsed());

    // A fresh A' stands by; B's lease connection is killed: A' takes over.
    let (_, a2) = instance(&db, "instance_a2").await;
    eventually(Duration::from_secs(5), "a' stands by", || {
        let s = state(&a2);
        async move { (s == ProjectionState::Standby).then_some(()) }
    })
    .await;
    let mut admin = db.connect().await;
    let killed = Instant::now();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'instance_b' AND query LIKE '%advisory%'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(n, 1, "b's lease connection");
    eventually(Duration::from_secs(5), "a' takes over", || {
        let s = state(&a2);
        async move { matches!(s, ProjectionState::Live | ProjectionState::CatchingUp).then_some(()) }
    })
    .await;
    println!("takeover after the lease connection died: {:?}", killed.elapsed());
    eventually(Duration::from_secs(5), "b stands by", || {
        let s = state(&b);
        async move { (s == ProjectionState::Standby).then_some(()) }
    })
    .await;

    ids.extend(writer.await.unwrap());
    caught_up(&a2, "shared", Duration::from_secs(30)).await;
    Recorded::read(store.pool(), "rm_shared").await.assert_exactly(&ids, true);
    b.shutdown().await.unwrap();
    a2.shutdown().await.unwrap();
}
