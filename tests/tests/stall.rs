//! A stalled database, on a private cluster: the server frozen with SIGSTOP, and a lock
//! held on the events table. Commands end with a typed error within the operation
//! timeout (and, for an append the timeout left of unknown outcome, the resolution
//! window after it), nothing hangs, and afterwards no actor or projection is stuck.

use std::sync::Arc;
use std::time::{Duration, Instant};

use factum::projection::ProjectionState;
use factum::supervisor::HealthStatus;
use factum::{CommandError, Factum, Projection, StoreError, Supervisor, SupervisorConfig};
use factum_postgres::{ExactlyOnce, PoolSettings, PostgresConfig, PostgresStore};
use factum_tests::cluster::Cluster;
use factum_tests::counter::{CounterCommand, CounterError};
use factum_tests::eventually;
use factum_tests::recorder::{Recorded, Recorder};
use sqlx::{Connection, PgConnection};

const TIMEOUT: Duration = Duration::from_secs(1);
/// How long an append that timed out may take to find out whether it committed.
const RESOLVING: Duration = Duration::from_secs(1);
/// The longest a command may take: an append queued behind a flush that stalls waits
/// for that flush (one timeout), then its own (another), then the resolution window.
const LONGEST: Duration = Duration::from_secs(3);
/// What a command may take beyond the timeout before it counts as hanging.
const MARGIN: Duration = Duration::from_millis(500);
const _: () = assert!(LONGEST.as_millis() == 2 * TIMEOUT.as_millis() + RESOLVING.as_millis());

type Outcome = Result<(), CommandError<CounterError>>;

/// Runs `n` commands at once on counters of their own; their outcomes and the slowest.
async fn burst(factum: &Arc<Factum>, tag: &str, n: usize) -> (Vec<Outcome>, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let factum = factum.clone();
            let id = format!("{tag}-{i}");
            tokio::spawn(
                async move { factum.execute(CounterCommand::Increment { id, by: 1 }).await.map(|_| ()) },
            )
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    (outcomes, started.elapsed())
}

fn assert_typed_failures(what: &str, outcomes: &[Outcome], slowest: Duration) {
    for o in outcomes {
        assert!(
            matches!(
                o,
                Err(CommandError::Store(
                    StoreError::Timeout { .. }
                        | StoreError::Unavailable { .. }
                        | StoreError::OutcomeUnknown { .. }
                ))
            ),
            "{what}: expected a typed timeout, unavailable or unknown-outcome error, got {o:?}"
        );
    }
    assert!(
        slowest <= LONGEST + MARGIN,
        "{what}: a command took {slowest:?} (timeout {TIMEOUT:?}, then {RESOLVING:?} resolving)"
    );
}

async fn until_caught_up(store: &PostgresStore, supervisor: &Supervisor) -> usize {
    eventually(Duration::from_secs(60), "the projection live with the whole log", || async {
        let events: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.ok()?;
        let rows = Recorded::read(store.pool(), "rm_stall").await.rows;
        let live = supervisor.status("stall").unwrap().state == ProjectionState::Live;
        (live && rows == events as u64).then_some(rows as usize)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_and_a_held_lock_end_in_typed_errors() {
    let Some(cluster) = Cluster::start() else { return };
    let config = PostgresConfig::from_url(&cluster.url("postgres"))
        .unwrap()
        .with_pool(PoolSettings::default().operation_timeout(TIMEOUT).outcome_timeout(RESOLVING));
    let store = PostgresStore::connect(config).await.unwrap();
    store.migrate().await.unwrap();
    let recorder = Recorder::create(store.pool(), "rm_stall").await;
    let projection = Projection::new("stall", ExactlyOnce::new(store.clone(), recorder));
    let supervisor =
        Supervisor::start(Arc::new(store.clone()), SupervisorConfig::default().projection(projection))
            .await
            .unwrap();
    let factum = Arc::new(Factum::new(Arc::new(store.clone())));
    let (warm, _) = burst(&factum, "warm", 8).await;
    assert!(warm.iter().all(Result::is_ok), "{warm:?}");
    until_caught_up(&store, &supervisor).await;

    // The server frozen for 3 s.
    cluster.signal("STOP");
    let (stalled, slowest_stalled) = burst(&factum, "warm", 8).await;
    let asked = Instant::now();
    let health = supervisor.health().await;
    let health_took = asked.elapsed();
    let (later, slowest_later) = burst(&factum, "warm", 8).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.signal("CONT");
    assert_typed_failures("server stopped", &stalled, slowest_stalled);
    assert_typed_failures("server stopped, known", &later, slowest_later);
    assert_eq!(health.status, HealthStatus::Unavailable, "{health:?}");
    assert!(health_took <= TIMEOUT, "the health check took {health_took:?}");

    let back = Instant::now();
    let resumed = eventually(Duration::from_secs(30), "commands to succeed again", || async {
        let (outcomes, _) = burst(&factum, "warm", 8).await;
        outcomes.iter().all(Result::is_ok).then_some(back.elapsed())
    })
    .await;
    let rows = until_caught_up(&store, &supervisor).await;

    // A lock held on the events table for 3 s.
    let mut locker = PgConnection::connect(&cluster.url("postgres")).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    let (locked, slowest_locked) = burst(&factum, "warm", 8).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    // Each append waited behind the lock until the timeout, then as long again trying to
    // find out whether it committed: its outcome is unknown (it may commit once the lock
    // is gone).
    assert!(
        locked.iter().all(|o| matches!(o, Err(CommandError::Store(StoreError::OutcomeUnknown { .. })))),
        "a held lock: expected unknown outcomes, got {locked:?}"
    );
    assert!(slowest_locked <= LONGEST + MARGIN, "a held lock: a command took {slowest_locked:?}");
    let unlocked = Instant::now();
    eventually(Duration::from_secs(30), "commands to succeed after the lock", || async {
        let (outcomes, _) = burst(&factum, "warm", 8).await;
        outcomes.iter().all(Result::is_ok).then_some(())
    })
    .await;
    let rows_after = until_caught_up(&store, &supervisor).await;
    println!(
        "stall: SIGSTOP 3 s and a held lock 3 s survived; commands failed within {:?} (stalled), {:?} (known), \
         {:?} (lock), all typed; health within {health_took:?}; commands again {resumed:?} after SIGCONT and \
         {:?} after the lock; read model {rows} then {rows_after} rows, equal to the log",
        slowest_stalled,
        slowest_later,
        slowest_locked,
        unlocked.elapsed(),
    );
    // Every counter's versions are gapless.
    let gaps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT aggregate_id, max(version) AS m, count(*) AS n FROM events GROUP BY 1) s WHERE m <> n",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(gaps, 0);
    supervisor.shutdown().await.unwrap();
}
