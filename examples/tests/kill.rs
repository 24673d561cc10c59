//! The service killed (SIGKILL) at random moments while a load generator drives every
//! kind of command over HTTP. A command counts as acknowledged only by its 2xx. After the
//! run: every acknowledged command's events are stored exactly once, a refused command
//! wrote nothing, no stream has a gap, no event id is stored twice, the read models equal
//! the fold of the log row by row, and the audit log matches the events one to one.
//!
//! `FACTUM_FAULT_KILLS` sets the number of kills (default 20; a soak run sets more).

mod fault;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use factum_postgres::PostgresStore;
use factum_tests::TestDb;
use rand::Rng;

use fault::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_service_loses_nothing_acknowledged() {
    let kills: usize = std::env::var("FACTUM_FAULT_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let db = TestDb::new().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = spawn(&db.url(), port);
    until_healthy(&http, &base, Duration::from_secs(120)).await;
    let load = Load::start(&http, &[&base], &Down::default());
    let mut rng = rand::thread_rng();
    let mut recoveries = Vec::new();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..900))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        child = spawn(&db.url(), port);
        recoveries.push(until_healthy(&http, &base, Duration::from_secs(60)).await);
    }
    let ledger = load.finish().await;
    let store = PostgresStore::connect(db.config()).await.expect("store");
    let v = verify(&store, &ledger).await;
    let _ = child.kill();
    let _ = child.wait();
    let max_recovery = recoveries.iter().max().copied().unwrap_or_default();
    println!(
        "kill: 1 run, {kills} kills survived, {} commands acknowledged ({} refused, {} unknown), {} events verified \
         (last position {}), {} orders checked against their fold, lost {}, duplicated {}, stored more often than \
         acknowledged {}, refused but written {}, max recovery to /health OK {max_recovery:?}",
        ledger.acked.len(),
        ledger.refused.len(),
        ledger.unknown.len(),
        v.events,
        v.total,
        v.orders_checked,
        v.lost,
        v.duplicated,
        v.stored_twice,
        v.refused_wrote,
    );
    v.assert_clean(&ledger);
}

/// The database restarted (`pg_ctl -m immediate`, down 1–5 s) under the same load, on a
/// private cluster, 10 times (`FACTUM_FAULT_RESTARTS` for a soak): the same checks, plus
/// how fast requests fail while it is down, and how long until commands succeed and the
/// projections are live again (`/health` says `ok`, not `degraded`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_database_loses_nothing_acknowledged() {
    let restarts: usize =
        std::env::var("FACTUM_FAULT_RESTARTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let Some(cluster) = factum_tests::cluster::Cluster::start() else { return };
    let url = cluster.url("postgres");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = spawn(&url, port);
    until_healthy(&http, &base, Duration::from_secs(120)).await;
    let down = Down::default();
    let load = Load::start(&http, &[&base], &down);
    let mut rng = rand::thread_rng();
    let (mut commands_again, mut live_again) = (Vec::new(), Vec::new());
    for _ in 0..restarts {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..900))).await;
        cluster.stop_immediate();
        *down.lock().unwrap() = Some(Instant::now());
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1_000..5_000))).await;
        cluster.start_server();
        let up = Instant::now();
        *down.lock().unwrap() = None;
        let acked_before = load.acked();
        while load.acked() == acked_before {
            assert!(up.elapsed() < Duration::from_secs(30), "commands never succeeded again");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        commands_again.push(up.elapsed());
        loop {
            let ok = match http.get(format!("{base}/health")).timeout(Duration::from_secs(1)).send().await {
                Ok(r) => r.json::<serde_json::Value>().await.is_ok_and(|b| b["status"] == "ok"),
                Err(_) => false,
            };
            if ok {
                break;
            }
            assert!(up.elapsed() < Duration::from_secs(60), "the projections never were live again");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        live_again.push(up.elapsed());
    }
    let ledger = load.finish().await;
    let store = PostgresStore::connect(factum_postgres::PostgresConfig::from_url(&url).unwrap())
        .await
        .expect("store");
    let v = verify(&store, &ledger).await;
    let _ = child.kill();
    let _ = child.wait();
    let max = |d: &[Duration]| d.iter().max().copied().unwrap_or_default();
    let mut while_down = ledger.while_down.clone();
    while_down.sort_unstable();
    let p95 = while_down.get(while_down.len() * 95 / 100).copied().unwrap_or_default();
    println!(
        "restart: 1 run, {restarts} immediate restarts survived, {} commands acknowledged ({} refused, {} unknown), \
         {} events verified, {} orders checked against their fold, lost {}, duplicated {}; requests answered within {p95:?} \
         (95%, of {}) and {:?} (slowest) while down; commands again after {:?}, projections live again after {:?} (max)",
        ledger.acked.len(),
        ledger.refused.len(),
        ledger.unknown.len(),
        v.events,
        v.orders_checked,
        v.lost,
        v.duplicated + v.stored_twice,
        while_down.len(),
        ledger.slowest_while_down,
        max(&commands_again),
        max(&live_again),
    );
    v.assert_clean(&ledger);
    // Requests fail fast while the database is down, but for those to an aggregate whose
    // previous append is being resolved (its connection broke as the database went
    // down): the aggregate waits to know its state, at most the resolution window.
    assert!(p95 <= Duration::from_secs(1), "95% of requests while down took up to {p95:?}");
    assert!(
        ledger.slowest_while_down <= Duration::from_secs(11),
        "a request took {:?} while down",
        ledger.slowest_while_down
    );
    assert!(
        max(&live_again) <= Duration::from_secs(2),
        "projections live again only after {:?}",
        max(&live_again)
    );
}

/// Two instances of the service on one database, the same aggregates commanded through
/// both; ten times, one of them is killed (SIGKILL) and started again. Each projection
/// (the audit log has a unique key) goes on in exactly one instance; the same checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_of_two_hands_its_projections_over() {
    let kills: usize = 10;
    let db = TestDb::new().await;
    let ports = [free_port(), free_port()];
    let bases = ports.map(|p| format!("http://127.0.0.1:{p}"));
    let http = reqwest::Client::new();
    let mut children = ports.map(|p| spawn(&db.url(), p));
    for base in &bases {
        until_healthy(&http, base, Duration::from_secs(120)).await;
    }
    let load = Load::start(&http, &[&bases[0], &bases[1]], &Down::default());
    let mut rng = rand::thread_rng();
    let mut recoveries = Vec::new();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..900))).await;
        let victim = rng.gen_range(0..2);
        children[victim].kill().expect("SIGKILL");
        children[victim].wait().expect("reap");
        children[victim] = spawn(&db.url(), ports[victim]);
        recoveries.push(until_healthy(&http, &bases[victim], Duration::from_secs(60)).await);
    }
    let ledger = load.finish().await;
    let store = PostgresStore::connect(db.config()).await.expect("store");
    let v = verify(&store, &ledger).await;
    // Every projection live in exactly one instance, standing by in the other.
    let deadline = Instant::now() + Duration::from_secs(30);
    let states = loop {
        let mut states: HashMap<String, Vec<String>> = HashMap::new();
        for base in &bases {
            let list: serde_json::Value =
                http.get(format!("{base}/ops/projections")).send().await.unwrap().json().await.unwrap();
            for p in list.as_array().unwrap() {
                states
                    .entry(p["name"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(p["state"].as_str().unwrap().to_owned());
            }
        }
        let settled = states.values().all(|s| {
            s.iter().filter(|x| *x == "live").count() == 1
                && s.iter().filter(|x| *x == "standby").count() == 1
        });
        if settled {
            break states;
        }
        assert!(Instant::now() < deadline, "projections not live in exactly one instance: {states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    println!(
        "failover (service): 2 instances, {kills} kills survived, {} commands acknowledged, {} events verified, \
         lost {}, duplicated {}; each projection live in exactly one instance ({} projections); max recovery to \
         /health OK {:?}",
        ledger.acked.len(),
        v.events,
        v.lost,
        v.duplicated + v.stored_twice,
        states.len(),
        recoveries.iter().max().copied().unwrap_or_default(),
    );
    v.assert_clean(&ledger);
}
