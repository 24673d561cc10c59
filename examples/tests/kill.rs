//! The service killed (SIGKILL) at random moments while a load generator drives every
//! kind of command over HTTP. A command counts as acknowledged only by its 2xx. After the
//! run: every acknowledged command's events are stored exactly once, a refused command
//! wrote nothing, no stream has a gap, no event id is stored twice, the read models equal
//! the fold of the log row by row, and the audit log matches the events one to one.
//!
//! `FACTUM_FAULT_KILLS` sets the number of kills (default 20; a soak run sets more).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use factum::prelude::*;
use factum::process::Process;
use factum::store::VersionRange;
use factum::{Aggregate, DomainEvent, StreamId};
use factum_example::order::Order;
use factum_example::processes::{CustomerOrders, ShipDeadline};
use factum_postgres::PostgresStore;
use factum_tests::TestDb;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

/// The service as a child process, on a port fixed for the run so that clients follow
/// it across restarts.
fn spawn(database_url: &str, port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_factum-example"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the service");
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {});
    child
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

/// One request of the load: its correlation id, and whether it was acknowledged (2xx),
/// refused (4xx) or has no known outcome (5xx, or no answer: the service died).
#[derive(Default)]
struct Ledger {
    acked: HashSet<Uuid>,
    /// What each acknowledged request was, and the body of its answer.
    what: HashMap<Uuid, String>,
    /// How many events each acknowledged command reported (an idempotent one, none).
    events: HashMap<Uuid, usize>,
    /// The slowest answer to a request sent while the database was known to be down.
    slowest_while_down: Duration,
    refused: HashSet<Uuid>,
    unknown: HashSet<Uuid>,
}

/// When the database went down, while it is (set by the database-restart run).
type Down = Arc<Mutex<Option<Instant>>>;

async fn drive(
    http: reqwest::Client,
    bases: Vec<String>,
    worker: u64,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    down: Down,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(worker);
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let customer = format!("c{worker}-{}", rng.gen_range(0..5));
        let order = format!("o{worker}-{}", rng.gen_range(0..20));
        let (path, body) = match rng.gen_range(0..9) {
            0 => (
                "/customers".to_owned(),
                json!({ "id": customer, "name": "Ada", "email": format!("{customer}@example.com") }),
            ),
            1 => ("/orders".to_owned(), json!({ "id": order, "customer_id": customer })),
            2..=4 => (
                format!("/orders/{order}/items"),
                json!({ "sku": format!("sku-{}", rng.gen_range(0..4)), "quantity": rng.gen_range(1..4), "unit_price": 100 }),
            ),
            5 => (format!("/orders/{order}/confirm"), json!({})),
            6 => (format!("/orders/{order}/ship"), json!({})),
            7 => (format!("/orders/{order}/cancel"), json!({ "reason": "changed my mind" })),
            _ => (
                format!("/customers/{customer}/email"),
                json!({ "email": format!("{customer}-{n}@example.com") }),
            ),
        };
        let put = path.ends_with("/email");
        // Each request goes to one of the instances: the same aggregates through all.
        let base = &bases[rng.gen_range(0..bases.len())];
        let correlation = Uuid::now_v7();
        let sent_at = Instant::now();
        let known_down = down.lock().unwrap().is_some_and(|d| sent_at >= d + Duration::from_millis(300));
        let request =
            if put { http.put(format!("{base}{path}")) } else { http.post(format!("{base}{path}")) };
        let sent = request
            .header("x-correlation-id", correlation.to_string())
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let sent = match sent {
            Ok(r) => {
                let status = r.status();
                Ok((status, r.text().await.unwrap_or_default()))
            }
            Err(e) => Err(e),
        };
        let answered = {
            let mut ledger = ledger.lock().unwrap();
            if known_down && sent.is_ok() {
                ledger.slowest_while_down = ledger.slowest_while_down.max(sent_at.elapsed());
            }
            match sent.map(|(s, text)| (s, format!("{path} -> {s} {text}"))) {
                Ok((s, what)) if s.is_success() => {
                    let reported = what
                        .split_once(' ')
                        .and_then(|(_, rest)| rest.find('{').map(|i| &rest[i..]))
                        .and_then(|body| serde_json::from_str::<serde_json::Value>(body).ok())
                        .and_then(|body| body["events"].as_array().map(Vec::len))
                        .unwrap_or(1);
                    ledger.events.insert(correlation, reported);
                    ledger.what.insert(correlation, what);
                    ledger.acked.insert(correlation)
                }
                Ok((s, _)) if s.is_client_error() => ledger.refused.insert(correlation),
                _ => !ledger.unknown.insert(correlation),
            }
        };
        if !answered {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn health_ok(http: &reqwest::Client, base: &str) -> bool {
    match http.get(format!("{base}/health")).timeout(Duration::from_secs(1)).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// What the checks after a run found.
struct Verified {
    events: usize,
    total: u64,
    orders_checked: usize,
    lost: usize,
    duplicated: usize,
    stored_twice: usize,
    refused_wrote: usize,
}

impl Verified {
    fn assert_clean(&self, ledger: &Ledger) {
        assert_eq!((self.lost, self.duplicated + self.stored_twice, self.refused_wrote), (0, 0, 0));
        assert!(!ledger.acked.is_empty() && self.orders_checked > 0, "the load did something");
    }
}

/// Waits for the read models to catch up with the whole log, then checks the log and
/// the read models against what the load was told.
async fn verify(store: &PostgresStore, ledger: &Ledger) -> Verified {
    let total = store.latest_position().await.unwrap().map_or(0, |p| p.0);
    let caught_up = Instant::now();
    loop {
        let mut read = store.read_models(&["audit_log"]).await.unwrap();
        let audit: i64 =
            sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(&mut *read).await.unwrap();
        drop(read);
        let events: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.unwrap();
        if audit == events {
            break;
        }
        assert!(
            caught_up.elapsed() < Duration::from_secs(60),
            "the audit log never caught up ({audit} of {events})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let rows: Vec<(Uuid, Option<Uuid>, String, String, i64)> = sqlx::query_as(
        "SELECT event_id, correlation_id, aggregate_type, aggregate_id, version FROM events ORDER BY global_position",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    // The process managers' steps carry the correlation of the event they reacted to, in
    // streams of their own: they are not the command's own events.
    let processes = [CustomerOrders::NAME, ShipDeadline::NAME];
    let commanded: Vec<_> = rows.iter().filter(|r| !processes.contains(&r.2.as_str())).collect();
    let stored: HashSet<Uuid> = commanded.iter().filter_map(|r| r.1).collect();
    let mut stored_per_command: HashMap<Uuid, usize> = HashMap::new();
    for (_, c, _, _, _) in &commanded {
        if let Some(c) = c {
            *stored_per_command.entry(*c).or_default() += 1;
        }
    }
    // Acknowledged with events, and not all of them stored: lost. (An idempotent command,
    // such as confirming a confirmed order, is acknowledged with none.)
    let lost_ids: Vec<&Uuid> = ledger
        .acked
        .iter()
        .filter(|c| stored_per_command.get(c).copied().unwrap_or(0) < ledger.events[c])
        .collect();
    let lost = lost_ids.len();
    for c in lost_ids.iter().take(5) {
        println!("kill: acknowledged but not stored: {c} {}", ledger.what[c]);
    }
    let stored_twice = ledger
        .acked
        .iter()
        .filter(|c| stored_per_command.get(c).copied().unwrap_or(0) > ledger.events[c])
        .count();
    let refused_wrote = ledger.refused.iter().filter(|c| stored.contains(c)).count();
    // Each command writes once: a correlation id's events come from one transaction,
    // so they are consecutive versions of one stream.
    let mut by_command: HashMap<Uuid, Vec<(&str, &str, i64)>> = HashMap::new();
    for (_, c, t, id, v) in &commanded {
        if let Some(c) = c {
            by_command.entry(*c).or_default().push((t, id, *v));
        }
    }
    let duplicated = by_command
        .values()
        .filter(|evs| evs.windows(2).any(|w| w[0].0 != w[1].0 || w[0].1 != w[1].1 || w[1].2 != w[0].2 + 1))
        .count();
    let ids: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids.len(), rows.len(), "an event id stored twice");
    let mut versions: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
    for (_, _, t, id, v) in &rows {
        versions.entry((t, id)).or_default().push(*v);
    }
    for (stream, v) in &versions {
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=v.len() as i64).collect::<Vec<_>>(), "{stream:?} has a version gap");
    }

    // The read models, row by row, against the fold of each stream.
    let mut orders_checked = 0;
    for ((t, id), v) in &versions {
        if *t != Order::TYPE {
            continue;
        }
        let stream = StreamId::new(*t, *id).unwrap();
        let mut state = Order::default();
        for e in store.read_stream(&stream, VersionRange::ALL).await.unwrap() {
            state.apply(
                &<Order as Aggregate>::Event::from_stored(&e.event_type, e.schema_version, e.payload)
                    .unwrap(),
            );
        }
        let row: (String, i64, i64) =
            sqlx::query_as("SELECT status, total, version FROM order_summary WHERE order_id = $1")
                .bind(id)
                .fetch_one(&mut *store.read_models(&["order_summary"]).await.unwrap())
                .await
                .unwrap_or_else(|e| panic!("order {id} missing from order_summary: {e}"));
        assert_eq!(row, (state.status.as_str().to_owned(), state.total(), v.len() as i64), "order {id}");
        orders_checked += 1;
    }
    let audit: HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>("SELECT event_id FROM audit_log")
        .fetch_all(&mut *store.read_models(&["audit_log"]).await.unwrap())
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(audit, ids, "the audit log matches the events one to one");

    Verified { events: rows.len(), total, orders_checked, lost, duplicated, stored_twice, refused_wrote }
}

/// Waits until `/health` answers 2xx; how long that took.
async fn until_healthy(http: &reqwest::Client, base: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while !health_ok(http, base).await {
        assert!(started.elapsed() < within, "the service did not become healthy within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Six workers driving every kind of command until stopped.
struct Load {
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(http: &reqwest::Client, bases: &[&str], down: &Down) -> Load {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..6)
            .map(|w| {
                tokio::spawn(drive(
                    http.clone(),
                    bases.iter().map(|b| (*b).to_owned()).collect(),
                    w,
                    ledger.clone(),
                    stop.clone(),
                    down.clone(),
                ))
            })
            .collect();
        Load { ledger, stop, workers }
    }

    fn acked(&self) -> usize {
        self.ledger.lock().unwrap().acked.len()
    }

    /// Lets the last requests finish, stops the workers, and hands over what they learnt.
    async fn finish(self) -> Ledger {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop.store(true, Ordering::Release);
        for w in self.workers {
            w.await.unwrap();
        }
        let mut ledger = self.ledger.lock().unwrap();
        std::mem::take(&mut *ledger)
    }
}

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
    println!(
        "restart: 1 run, {restarts} immediate restarts survived, {} commands acknowledged ({} refused, {} unknown), \
         {} events verified, {} orders checked against their fold, lost {}, duplicated {}; requests failed within {:?} \
         while down; commands again after {:?}, projections live again after {:?} (max)",
        ledger.acked.len(),
        ledger.refused.len(),
        ledger.unknown.len(),
        v.events,
        v.orders_checked,
        v.lost,
        v.duplicated + v.stored_twice,
        ledger.slowest_while_down,
        max(&commands_again),
        max(&live_again),
    );
    v.assert_clean(&ledger);
    assert!(
        ledger.slowest_while_down <= Duration::from_secs(1),
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
