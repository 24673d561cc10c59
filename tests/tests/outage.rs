//! Database outages under load, on a private cluster: immediate restarts, commands and
//! health checks failing fast while it is down, projections waiting in place and live
//! again within 2 s of the server accepting connections, nothing acknowledged lost or
//! doubled.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use factum::projection::ProjectionState;
use factum::supervisor::HealthStatus;
use factum::{CommandError, Factum, Metadata, Projection, StoreError, Supervisor, SupervisorConfig};
use factum_postgres::{ExactlyOnce, PostgresConfig, PostgresStore};
use factum_tests::cluster::Cluster;
use factum_tests::counter::CounterCommand;
use factum_tests::recorder::{Recorded, Recorder};
use rand::Rng;
use uuid::Uuid;

/// The default number of restarts; `FACTUM_FAULT_RESTARTS` sets another (a soak run).
const RESTARTS: usize = 10;
const WRITERS: usize = 6;
/// The goals: commands and health checks answer within this while the server is down…
const FAIL_FAST: Duration = Duration::from_secs(1);
/// …and projections are live again within this of the server accepting connections.
const LIVE_AGAIN: Duration = Duration::from_secs(2);

#[derive(Default)]
struct History {
    /// Correlation ids of acknowledged commands.
    acked: Vec<Uuid>,
    /// The slowest failure of a command started while the circuit should be open.
    slowest_failure: Duration,
    failures: u64,
}

async fn executed(
    factum: &Factum,
    stream: &str,
) -> (Uuid, Result<(), CommandError<factum_tests::counter::CounterError>>) {
    let correlation = Uuid::new_v4();
    let metadata = Metadata { correlation_id: Some(correlation), ..Metadata::default() };
    let command = CounterCommand::Increment { id: stream.to_owned(), by: 1 };
    (correlation, factum.execute_with(command, metadata).await.map(|_| ()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_restarts_under_load() {
    let restarts: usize =
        std::env::var("FACTUM_FAULT_RESTARTS").ok().and_then(|v| v.parse().ok()).unwrap_or(RESTARTS);
    let Some(cluster) = Cluster::start() else { return };
    let store =
        PostgresStore::connect(PostgresConfig::from_url(&cluster.url("postgres")).unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    let recorder = Recorder::create(store.pool(), "rm_outage").await;
    let projection = Projection::new("outage", ExactlyOnce::new(store.clone(), recorder)).batch_size(100);
    let supervisor =
        Supervisor::start(Arc::new(store.clone()), SupervisorConfig::default().projection(projection))
            .await
            .unwrap();
    let factum = Arc::new(Factum::new(Arc::new(store.clone())));

    // The writers: each increments counters of its own, and records what was acknowledged.
    let history = Arc::new(Mutex::new(History::default()));
    let down = Arc::new(Mutex::new(None::<Instant>));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (factum, history, down, stop) = (factum.clone(), history.clone(), down.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let started = Instant::now();
                let (correlation, result) = executed(&factum, &format!("w{w}-{}", n % 10)).await;
                let failed = {
                    let mut h = history.lock().unwrap();
                    match result {
                        Ok(()) => h.acked.push(correlation),
                        Err(_) => {
                            h.failures += 1;
                            // Counted once the outage is known: started 300 ms after it began.
                            let since = *down.lock().unwrap();
                            if since.is_some_and(|d| started >= d + Duration::from_millis(300)) {
                                h.slowest_failure = h.slowest_failure.max(started.elapsed());
                            }
                        }
                    }
                    h.acked.last() != Some(&correlation)
                };
                if failed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    let mut rng = rand::thread_rng();
    let mut live_again = Vec::new();
    let mut commands_again = Vec::new();
    let mut slowest_health = Duration::ZERO;
    for restart in 0..restarts {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..800))).await;
        cluster.stop_immediate();
        *down.lock().unwrap() = Some(Instant::now());
        let outage = Duration::from_millis(rng.gen_range(1_000..2_500));
        tokio::time::sleep(Duration::from_millis(400)).await;
        // While it is down: the health check answers, and says so, within a second.
        let asked = Instant::now();
        let health = supervisor.health().await;
        slowest_health = slowest_health.max(asked.elapsed());
        assert_eq!(health.status, HealthStatus::Unavailable, "restart {restart}: {health:?}");
        let asked = Instant::now();
        let (_, result) = executed(&factum, "probe").await;
        let took = asked.elapsed();
        assert!(
            matches!(result, Err(CommandError::Store(StoreError::Unavailable { .. }))),
            "restart {restart}: {result:?}"
        );
        assert!(took <= FAIL_FAST, "restart {restart}: a command took {took:?} to fail");
        tokio::time::sleep(outage.saturating_sub(Duration::from_millis(400))).await;

        cluster.start_server();
        let up = Instant::now();
        *down.lock().unwrap() = None;
        // The first command that succeeds after the restart, then its event in the read model.
        let marker = loop {
            let (correlation, result) = executed(&factum, "marker").await;
            if result.is_ok() {
                break correlation;
            }
            assert!(
                up.elapsed() < Duration::from_secs(30),
                "restart {restart}: commands never succeeded again"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        commands_again.push(up.elapsed());
        history.lock().unwrap().acked.push(marker);
        loop {
            let applied: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM rm_outage r JOIN events e ON e.event_id = r.event_id \
                 WHERE e.correlation_id = $1)",
            )
            .bind(marker)
            .fetch_one(store.pool())
            .await
            .unwrap_or(false);
            if applied && supervisor.status("outage").unwrap().state == ProjectionState::Live {
                break;
            }
            assert!(
                up.elapsed() < Duration::from_secs(60),
                "restart {restart}: the projection never came back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        live_again.push(up.elapsed());
    }
    stop.store(true, Ordering::Release);
    for w in writers {
        w.await.unwrap();
    }

    // Nothing acknowledged lost or doubled; every stream gapless; the read model equals the log.
    let rows: Vec<(Uuid, Option<Uuid>, String, i64)> = sqlx::query_as(
        "SELECT event_id, correlation_id, aggregate_id, version FROM events ORDER BY aggregate_id, version",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut by_correlation: HashMap<Uuid, u32> = HashMap::new();
    let mut versions: HashMap<&str, Vec<i64>> = HashMap::new();
    for (_, correlation, stream, version) in &rows {
        if let Some(c) = correlation {
            *by_correlation.entry(*c).or_default() += 1;
        }
        versions.entry(stream).or_default().push(*version);
    }
    let h = std::mem::take(&mut *history.lock().unwrap());
    let lost = h.acked.iter().filter(|c| !by_correlation.contains_key(c)).count();
    let doubled = by_correlation.values().filter(|n| **n > 1).count();
    for (stream, v) in &versions {
        assert_eq!(*v, (1..=v.len() as i64).collect::<Vec<_>>(), "stream {stream} has a version gap");
    }
    let ids: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
    factum_tests::eventually(Duration::from_secs(30), "the read model to hold the whole log", || async {
        (Recorded::read(store.pool(), "rm_outage").await.ids.len() >= ids.len()).then_some(())
    })
    .await;
    Recorded::read(store.pool(), "rm_outage").await.assert_exactly(&ids, true);

    let max = |d: &[Duration]| d.iter().max().copied().unwrap_or_default();
    println!(
        "outage: {restarts} immediate restarts survived, {} commands acknowledged, {} events verified, lost {lost}, \
         duplicated {doubled}; commands failed within {:?} (slowest), health within {:?}; commands again after {:?}, \
         projections live again after {:?} (max of {restarts})",
        h.acked.len(),
        ids.len(),
        h.slowest_failure,
        slowest_health,
        max(&commands_again),
        max(&live_again),
    );
    println!("outage: live again after each restart: {live_again:?}");
    assert_eq!((lost, doubled), (0, 0));
    assert!(
        h.slowest_failure <= FAIL_FAST,
        "a command took {:?} to fail while the store was down",
        h.slowest_failure
    );
    assert!(slowest_health <= FAIL_FAST, "a health check took {slowest_health:?}");
    for (i, t) in live_again.iter().enumerate() {
        assert!(*t <= LIVE_AGAIN, "restart {i}: projections live again only after {t:?}");
    }
    supervisor.shutdown().await.unwrap();
}
