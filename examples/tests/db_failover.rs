//! The fault suite's failover class: the example service, with its RabbitMQ publisher,
//! on a replicated PostgreSQL (three Patroni nodes from `scripts/cluster.sh`, one
//! primary and two standbys, `synchronous_standby_names = 'ANY 1 (*)'`), under the fault
//! suite's load, through SIGKILLs of the primary's host (its Patroni and its postmaster):
//! each time a standby is promoted, and the old primary rejoins as a standby before the
//! next kill. Then a standby is killed under the same load, and writes go on.
//!
//! The load's clients send every command with an idempotency key and send it again after
//! a 5xx or no answer, as a careful client does. After the run: nothing acknowledged is
//! lost, no command is stored twice, the read models equal the fold of the log, the
//! audit log (unique event ids: a batch applied twice would break it) matches the log
//! one to one, and every event published to RabbitMQ is in the log.
//!
//! Printed per failover: the time from the kill to the promotion (the failover
//! manager's detection), to the first acknowledged command, and until the projections
//! are live again; and the appends whose outcome was unknown, by how each was resolved.
//!
//! `FACTUM_FAILOVER_KILLS` sets the number of kills (default 3; the documented long run
//! sets 10). Patroni's detection runs at its defaults (ttl 30 s), so each failover takes
//! about half a minute.

mod fault;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use factum_postgres::{PostgresConfig, PostgresStore};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use rand::Rng;
use uuid::Uuid;

use fault::*;

/// The cluster this test runs on: apart from one started by hand for trials.
const CLUSTER_DIR: &str = "/tmp/factum-cluster-failover-test";
const CLUSTER_PORT: &str = "55461";

fn cluster(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster.sh"))
        .args(args)
        .env("FACTUM_CLUSTER_DIR", CLUSTER_DIR)
        .env("FACTUM_CLUSTER_PORT", CLUSTER_PORT)
        .output()
        .map_err(|e| format!("cannot run scripts/cluster.sh: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!("scripts/cluster.sh {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Takes the cluster down when the test ends, however it ends.
struct Cluster;

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = cluster(&["down"]);
    }
}

/// The leader's name once it is not `old` (and is one), waiting up to `within`.
fn new_leader(old: &str, within: Duration) -> (String, Instant) {
    let started = Instant::now();
    loop {
        if let Ok(leader) = cluster(&["leader"]) {
            if !leader.is_empty() && leader != old {
                return (leader, Instant::now());
            }
        }
        assert!(started.elapsed() < within, "no standby was promoted within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Consumes everything published to `exchange`, keeping the event ids.
async fn tap(amqp: &str, exchange: &str, queue: &str) -> (Connection, Arc<Mutex<HashSet<Uuid>>>) {
    let conn = Connection::connect(amqp, ConnectionProperties::default()).await.expect("broker");
    let ch = conn.create_channel().await.expect("channel");
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    ch.exchange_declare(exchange.into(), ExchangeKind::Topic, durable, FieldTable::default()).await.unwrap();
    ch.queue_declare(queue.into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            if let Some(id) = delivery.properties.message_id().as_ref().and_then(|m| m.as_str().parse().ok())
            {
                into.lock().unwrap().insert(id);
            }
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
    });
    (conn, seen)
}

/// The service's count of appends of unknown outcome, by resolution.
async fn unknown_outcomes(http: &reqwest::Client, base: &str) -> Vec<(String, u64)> {
    let Ok(r) = http.get(format!("{base}/metrics")).timeout(Duration::from_secs(2)).send().await else {
        return Vec::new();
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("factum_append_unknown_outcomes_total{"))
        .filter_map(|l| {
            let resolution = l.split('"').nth(1)?.to_owned();
            let count = l.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
            Some((resolution, count))
        })
        .collect()
}

/// Waits until `/health` says `ok` (every projection live); when it did.
async fn until_live(http: &reqwest::Client, base: &str, within: Duration) -> Instant {
    let started = Instant::now();
    loop {
        let ok = match http.get(format!("{base}/health")).timeout(Duration::from_secs(1)).send().await {
            Ok(r) => r.json::<serde_json::Value>().await.is_ok_and(|b| b["status"] == "ok"),
            Err(_) => false,
        };
        if ok {
            return Instant::now();
        }
        assert!(started.elapsed() < within, "the projections were not live again within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_loses_nothing_acknowledged_and_publishes_nothing_lost() {
    let kills: usize = std::env::var("FACTUM_FAILOVER_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let _ = cluster(&["down"]);
    let url = cluster(&["up"]).unwrap_or_else(|e| panic!("{e}"));
    let _cluster = Cluster;
    let amqp = std::env::var("FACTUM_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let prefix = format!("factum-test.failover.{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (exchange, queue, tap_queue) =
        (format!("{prefix}.events"), format!("{prefix}.orders"), format!("{prefix}.tap"));
    let (broker, published) = tap(&amqp, &exchange, &tap_queue).await;

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let env = [
        ("FACTUM_EXAMPLE_RABBITMQ_URL", amqp.as_str()),
        ("FACTUM_EXAMPLE_RABBITMQ_EXCHANGE", exchange.as_str()),
        ("FACTUM_EXAMPLE_RABBITMQ_QUEUE", queue.as_str()),
    ];
    let mut child = spawn_with(&url, port, &env);
    until_healthy(&http, &base, Duration::from_secs(120)).await;
    // Two more workers that only write, so that appends are in flight when the primary dies.
    let load = Load::start_with(&http, &[&base], &Down::default(), true, 2);
    let mut rng = rand::thread_rng();
    let mut rows = Vec::new();
    let mut before = unknown_outcomes(&http, &base).await;
    for round in 1..=kills {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1_000..3_000))).await;
        let old = cluster(&["leader"]).expect("a leader");
        cluster(&["kill", &old]).expect("kill the primary");
        // The kill returns once the postmaster and its backends are gone.
        let killed = Instant::now();
        let (leader, promoted) = tokio::task::spawn_blocking({
            let old = old.clone();
            move || new_leader(&old, Duration::from_secs(120))
        })
        .await
        .unwrap();
        let first_ack = loop {
            if let Some(at) = load.first_ack_after(killed) {
                break at;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(150),
                "no command acknowledged after the failover"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let live = until_live(&http, &base, Duration::from_secs(60)).await;
        // No server accepted writes in between: nothing can have been acknowledged, but
        // for answers to commits made just before the kill still on their way (a second).
        let early = load.acks_between(killed + Duration::from_secs(1), promoted);
        assert!(early.is_empty(), "writes acknowledged with no primary: {early:?}");
        let after = unknown_outcomes(&http, &base).await;
        let resolved: Vec<String> = after
            .iter()
            .map(|(r, n)| (r, n - before.iter().find(|(b, _)| b == r).map_or(0, |(_, m)| *m)))
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        before = after;
        let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
        let row = format!(
            "failover {round}: {old} killed, {leader} promoted after {:.1} s (detection); first write \
             acknowledged {:.1} s after the kill ({:.1} s after the promotion); projections live {:.2} s after \
             that; unknown outcomes: {}",
            secs(killed, promoted),
            secs(killed, first_ack),
            secs(promoted, first_ack),
            secs(first_ack, live),
            if resolved.is_empty() { "none".to_owned() } else { resolved.join(", ") },
        );
        println!("{row}");
        rows.push((secs(promoted, first_ack), secs(first_ack, live)));
        // The old primary rejoins as a standby before the next kill.
        cluster(&["start", &old]).expect("restart the old primary");
        cluster(&["wait-replicas", "2", "180"]).expect("the old primary rejoins");
    }

    // A standby killed under load: with ANY 1 of two standbys, writes go on.
    let leader = cluster(&["leader"]).expect("a leader");
    let standby = ["n1", "n2", "n3"].into_iter().find(|n| *n != leader).unwrap();
    let killed = Instant::now();
    cluster(&["kill", standby]).expect("kill a standby");
    let acked = load.acked();
    let standby_ack = loop {
        if load.acked() > acked + 20 {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "writes stopped when a standby died");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    cluster(&["start", standby]).expect("restart the standby");
    cluster(&["wait-replicas", "2", "180"]).expect("the standby rejoins");

    let ledger = load.finish().await;
    let config = PostgresConfig::from_url(&url).expect("the cluster's URL");
    let store = PostgresStore::connect(config).await.expect("store");
    let v = verify(&store, &ledger).await;
    // The publisher may still be confirming the last batch: give it a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: HashSet<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
    let published = published.lock().unwrap().clone();
    let phantom = published.difference(&ids).count();
    let _ = child.kill();
    let _ = child.wait();
    if let Ok(ch) = broker.create_channel().await {
        for q in [tap_queue.clone(), queue.clone(), format!("{queue}.dead-letter")] {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for e in [exchange.clone(), format!("{queue}.dead-letter")] {
            let _ = ch.exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default()).await;
        }
    }
    let worst = |f: fn(&(f64, f64)) -> f64| rows.iter().map(f).fold(0.0, f64::max);
    println!(
        "db failover: {kills} primaries killed, {} commands acknowledged ({} refused, {} without an answer, {} \
         answered 503 outcome_unknown, {} resent), {} events verified, {} orders checked against their fold, lost \
         {}, duplicated {}; {} events published, {} of them not in the log; writes at most {:.1} s after a \
         promotion, projections live at most {:.2} s after writes; a standby killed: 20 more commands \
         acknowledged within {:.2} s",
        ledger.acked.len(),
        ledger.refused.len(),
        ledger.unknown.len(),
        ledger.outcome_unknown,
        ledger.resent,
        v.events,
        v.orders_checked,
        v.lost,
        v.duplicated + v.stored_twice,
        published.len(),
        phantom,
        worst(|r| r.0),
        worst(|r| r.1),
        standby_ack.as_secs_f64(),
    );
    v.assert_clean(&ledger);
    assert_eq!(phantom, 0, "events published that the log does not hold");
    assert!(!published.is_empty(), "the publisher published");
    assert!(worst(|r| r.0) <= 10.0, "writes came back more than 10 s after a promotion");
}
