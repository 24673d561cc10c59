//! The fault suite's load: the example service as a child process, workers that drive
//! every kind of command over HTTP and keep a ledger of what each answer said, and the
//! checks after a run (nothing acknowledged lost, nothing stored twice, the read models
//! equal to the fold of the log). Shared by the suite's runs: service kills, database
//! restarts, database failovers.
#![allow(dead_code)] // Each run uses its part.

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
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

/// The service as a child process, on a port fixed for the run so that clients follow
/// it across restarts.
pub(crate) fn spawn(database_url: &str, port: u16) -> Child {
    spawn_with(database_url, port, &[])
}

/// [`spawn`], with more environment variables.
pub(crate) fn spawn_with(database_url: &str, port: u16, env: &[(&str, &str)]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_factum-example"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .envs(env.iter().copied())
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

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

/// One request of the load: its correlation id, and whether it was acknowledged (2xx),
/// refused (4xx) or has no known outcome (5xx, or no answer: the service died).
#[derive(Default)]
pub(crate) struct Ledger {
    pub(crate) acked: HashSet<Uuid>,
    /// What each acknowledged request was, and the body of its answer.
    pub(crate) what: HashMap<Uuid, String>,
    /// How many events each acknowledged command reported (an idempotent one, none).
    pub(crate) events: HashMap<Uuid, usize>,
    /// The slowest answer to a request sent while the database was known to be down.
    pub(crate) slowest_while_down: Duration,
    /// How long each request sent while the database was known to be down took.
    pub(crate) while_down: Vec<Duration>,
    pub(crate) refused: HashSet<Uuid>,
    pub(crate) unknown: HashSet<Uuid>,
    /// Answers that said the command's outcome was unknown (503 `outcome_unknown`).
    pub(crate) outcome_unknown: usize,
    /// Requests sent again (with their idempotency key) after a 5xx or no answer.
    pub(crate) resent: usize,
    /// When each acknowledged command that recorded events was answered.
    pub(crate) acked_at: Vec<Instant>,
    pub(crate) acked_log: Vec<(Instant, String)>,
}

/// When the database went down, while it is (set by the database-restart run).
pub(crate) type Down = Arc<Mutex<Option<Instant>>>;

pub(crate) async fn drive(
    http: reqwest::Client,
    bases: Vec<String>,
    worker: u64,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    down: Down,
    resend: bool,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(worker);
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let customer = format!("c{}-{}", worker % 6, rng.gen_range(0..5));
        let order = format!("o{worker}-{}", rng.gen_range(0..20));
        // Workers past the sixth only change emails: commands that always write.
        let kind = if worker >= 6 { 8 } else { rng.gen_range(0..9) };
        let (path, body) = match kind {
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
        // A client that resends: the same request, under the same idempotency key, after
        // a 5xx or no answer, until it gets an answer that says what happened.
        let mut attempts = 0;
        let sent = loop {
            attempts += 1;
            let request =
                if put { http.put(format!("{base}{path}")) } else { http.post(format!("{base}{path}")) };
            let request = request.header("x-correlation-id", correlation.to_string());
            let request =
                if resend { request.header("idempotency-key", correlation.to_string()) } else { request };
            let sent = request.json(&body).timeout(Duration::from_secs(15)).send().await;
            let sent = match sent {
                Ok(r) => {
                    let status = r.status();
                    Ok((status, r.text().await.unwrap_or_default()))
                }
                Err(e) => Err(e),
            };
            if let Ok((_, text)) = &sent {
                if text.contains("outcome_unknown") {
                    ledger.lock().unwrap().outcome_unknown += 1;
                }
            }
            let settled = matches!(&sent, Ok((s, _)) if !s.is_server_error());
            if !resend || settled || attempts >= 60 || stop.load(Ordering::Acquire) {
                break sent;
            }
            ledger.lock().unwrap().resent += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let answered = {
            let mut ledger = ledger.lock().unwrap();
            if known_down && sent.is_ok() {
                ledger.slowest_while_down = ledger.slowest_while_down.max(sent_at.elapsed());
                ledger.while_down.push(sent_at.elapsed());
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
                    if reported > 0 {
                        ledger.acked_at.push(Instant::now());
                        ledger.acked_log.push((Instant::now(), what.clone()));
                    }
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

pub(crate) async fn health_ok(http: &reqwest::Client, base: &str) -> bool {
    match http.get(format!("{base}/health")).timeout(Duration::from_secs(1)).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// What the checks after a run found.
pub(crate) struct Verified {
    pub(crate) events: usize,
    pub(crate) total: u64,
    pub(crate) orders_checked: usize,
    pub(crate) lost: usize,
    pub(crate) duplicated: usize,
    pub(crate) stored_twice: usize,
    pub(crate) refused_wrote: usize,
}

impl Verified {
    pub(crate) fn assert_clean(&self, ledger: &Ledger) {
        assert_eq!((self.lost, self.duplicated + self.stored_twice, self.refused_wrote), (0, 0, 0));
        assert!(!ledger.acked.is_empty() && self.orders_checked > 0, "the load did something");
    }
}

/// Waits for the read models to catch up with the whole log, then checks the log and
/// the read models against what the load was told.
pub(crate) async fn verify(store: &PostgresStore, ledger: &Ledger) -> Verified {
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
pub(crate) async fn until_healthy(http: &reqwest::Client, base: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while !health_ok(http, base).await {
        assert!(started.elapsed() < within, "the service did not become healthy within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Six workers driving every kind of command until stopped.
pub(crate) struct Load {
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(http: &reqwest::Client, bases: &[&str], down: &Down) -> Load {
        Self::start_with(http, bases, down, false, 0)
    }

    /// Six workers, plus `writers` that only send commands that write, each sending its
    /// commands with an idempotency key and sending them again after a 5xx or no answer
    /// (`resend`), as a careful client does.
    pub(crate) fn start_with(
        http: &reqwest::Client,
        bases: &[&str],
        down: &Down,
        resend: bool,
        writers: u64,
    ) -> Load {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..6 + writers)
            .map(|w| {
                tokio::spawn(drive(
                    http.clone(),
                    bases.iter().map(|b| (*b).to_owned()).collect(),
                    w,
                    ledger.clone(),
                    stop.clone(),
                    down.clone(),
                    resend,
                ))
            })
            .collect();
        Load { ledger, stop, workers }
    }

    pub(crate) fn acked(&self) -> usize {
        self.ledger.lock().unwrap().acked.len()
    }

    /// What was acknowledged, with events, between `from` and `to`.
    pub(crate) fn acks_between(&self, from: Instant, to: Instant) -> Vec<String> {
        let ledger = self.ledger.lock().unwrap();
        ledger.acked_log.iter().filter(|(t, _)| *t > from && *t < to).map(|(_, w)| w.clone()).collect()
    }

    /// When the first command that recorded events was acknowledged after `since`.
    pub(crate) fn first_ack_after(&self, since: Instant) -> Option<Instant> {
        self.ledger.lock().unwrap().acked_at.iter().copied().filter(|t| *t > since).min()
    }

    /// Lets the last requests finish, stops the workers, and hands over what they learnt.
    pub(crate) async fn finish(self) -> Ledger {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop.store(true, Ordering::Release);
        for w in self.workers {
            w.await.unwrap();
        }
        let mut ledger = self.ledger.lock().unwrap();
        std::mem::take(&mut *ledger)
    }
}
