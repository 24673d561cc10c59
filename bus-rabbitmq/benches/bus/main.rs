//! The bus's benchmark: a program that prints figures, not a timed test
//! (`docs/performance.md`, "The event bus").
//!
//! - **B1 publisher throughput**: 50,000 stored events published with confirms by the
//!   [`Publisher`] (reading them from PostgreSQL, under the supervisor), beside a bare
//!   `lapin` publisher with confirms sending equivalent messages (all in flight, then
//!   every confirm awaited) to the same broker, phases alternating, in the same run.
//! - **B2 end-to-end latency**: commands at a steady 2,000/s for 10 s (after 2 s of
//!   warm-up), from each command's acknowledgment to a subscriber's receipt of its event,
//!   with the time each stage took (`breakdown.rs`, from the stamps of `stages.rs`) and
//!   the CPU each process used (`cpu.rs`).
//!
//! Environment: `DATABASE_URL` (a superuser URL; the run works in a fresh database),
//! `FACTUM_TEST_AMQP_URL` (default the local broker), `FACTUM_BENCH_REPS` (default 3),
//! `FACTUM_BENCH_EVENTS` (B1's events, default 50,000), `FACTUM_BENCH_RATE` (B2's
//! commands per second, default 2,000), `FACTUM_BENCH_ONLY` (`b1` or `b2`),
//! `FACTUM_BENCH_MAX_IN_FLIGHT` (B2's publishing ahead; default the publisher's),
//! `FACTUM_BENCH_BUS=0` (B2's commands alone, without publisher or subscriber).

mod breakdown;
mod cpu;
mod stages;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use factum::{
    Aggregate, Command, DomainEvent, EventStore, Factum, HandlerError, RecordedEvent, Supervisor,
    SupervisorConfig,
};
use factum_rabbitmq::{
    BusEvent, BusMetrics, MessageHandler, Publisher, PublisherConfig, Subscriber, SubscriberConfig,
};
use factum_tests::TestDb;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(command = PingCommand, event = PingEvent, error = PingError)]
struct Ping {
    sent: u64,
}

#[derive(Debug, Command)]
enum PingCommand {
    Send {
        #[command(id)]
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum PingEvent {
    #[event(topic = "bench.ping.sent")]
    Sent { n: u64 },
}

#[derive(Debug, thiserror::Error)]
enum PingError {
    #[error("never")]
    Never,
}

impl Ping {
    fn handle(&self, _: &PingCommand) -> Result<Vec<PingEvent>, PingError> {
        if self.sent == u64::MAX {
            return Err(PingError::Never);
        }
        Ok(vec![PingEvent::Sent { n: self.sent }])
    }

    fn apply(&mut self, _: &PingEvent) {
        self.sent += 1;
    }
}

const EXCHANGE: &str = "factum-bench.events";
const QUEUE: &str = "factum-bench.all";

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The same properties the publisher sets, built the way an application would.
fn bare_properties(e: &RecordedEvent) -> BasicProperties {
    let text = |s: String| AMQPValue::LongString(LongString::from(s));
    let mut h = FieldTable::default();
    h.insert("stream".into(), text(e.stream.to_string()));
    h.insert("aggregate_type".into(), text(e.stream.aggregate_type().to_owned()));
    h.insert("aggregate_id".into(), text(e.stream.aggregate_id().to_owned()));
    h.insert("version".into(), AMQPValue::LongLongInt(e.version.0 as i64));
    h.insert("position".into(), AMQPValue::LongLongInt(e.position.0 as i64));
    h.insert("transaction".into(), AMQPValue::LongLongInt(e.transaction as i64));
    h.insert("schema_version".into(), AMQPValue::LongLongInt(i64::from(e.schema_version)));
    h.insert("topic".into(), text(e.topic.clone().unwrap_or_default()));
    h.insert("occurred_at".into(), text(e.occurred_at.to_rfc3339()));
    h.insert("recorded_at".into(), text(e.recorded_at.to_rfc3339()));
    BasicProperties::default()
        .with_message_id(e.event_id.to_string().into())
        .with_type(e.event_type.as_str().into())
        .with_timestamp(e.occurred_at.timestamp() as u64)
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(h)
}

async fn bare(ch: &Channel, events: &[RecordedEvent]) -> f64 {
    let started = Instant::now();
    let mut confirms = Vec::with_capacity(events.len());
    let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
    for e in events {
        let body = serde_json::to_vec(&e.payload).unwrap();
        let key = e.topic.as_deref().unwrap_or("x");
        confirms.push(
            ch.basic_publish(EXCHANGE.into(), key.into(), options, &body, bare_properties(e)).await.unwrap(),
        );
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack());
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

async fn ours(store: &Arc<dyn EventStore>, url: &str, name: &str, n: usize) -> f64 {
    let metrics = BusMetrics::unregistered();
    let config =
        PublisherConfig::new(url).exchange(EXCHANGE).name(name).batch_size(1000).metrics(metrics.clone());
    let publisher = Publisher::connect(store.clone(), config).await.unwrap();
    let started = Instant::now();
    let supervisor =
        Supervisor::start(store.clone(), SupervisorConfig::default().projection(publisher.into_projection()))
            .await
            .unwrap();
    while metrics.confirmed_count(name) < n as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    supervisor.shutdown().await.unwrap();
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn b1(store: &Arc<dyn EventStore>, ch: &Channel, url: &str, reps: usize) {
    let n: usize = env("FACTUM_BENCH_EVENTS", 50_000);
    let mut events = Vec::with_capacity(n);
    for s in 0..n.div_ceil(500) {
        let stream = factum::StreamId::new("Bench", format!("b-{s}")).unwrap();
        let batch = (0..500.min(n - s * 500))
            .map(|i| {
                factum::NewEvent::new(
                    "BenchHappened",
                    serde_json::json!({ "i": i, "sku": "teapot", "qty": 2 }),
                )
                .with_topic("bench.items.added")
            })
            .collect();
        store.append(&stream, factum::ExpectedVersion::Any, batch).await.unwrap();
    }
    let mut after = factum::store::Checkpoint::START;
    while events.len() < n {
        let page = store.read_all(after, 5000).await.unwrap();
        after = page.last().unwrap().checkpoint();
        events.extend(page);
    }
    let (mut fw, mut raw) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        raw.push(bare(ch, &events).await);
        ch.queue_purge(QUEUE.into(), QueuePurgeOptions::default()).await.unwrap();
        fw.push(ours(store, url, &format!("bench_bus_{rep}"), n).await);
        ch.queue_purge(QUEUE.into(), QueuePurgeOptions::default()).await.unwrap();
        println!("{{\"b1\": {rep}, \"publisher\": {:.0}, \"bare_lapin\": {:.0}}}", fw[rep], raw[rep]);
    }
    let (f, r) = (median(fw.clone()), median(raw.clone()));
    println!(
        "B1 publisher throughput, {n} events, msgs/s: publisher {f:.0} ({:.0}-{:.0}), bare lapin {r:.0} ({:.0}-{:.0}), ratio {:.2}x (goal >= 0.80x)",
        fw.iter().copied().fold(f64::MAX, f64::min),
        fw.iter().copied().fold(0.0, f64::max),
        raw.iter().copied().fold(f64::MAX, f64::min),
        raw.iter().copied().fold(0.0, f64::max),
        f / r
    );
}

/// Records when each ping's event arrives, and its position.
#[derive(Clone, Default)]
struct Receipts(Arc<Mutex<Vec<(String, u64, Instant)>>>);

#[async_trait::async_trait]
impl MessageHandler for Receipts {
    async fn handle(&mut self, event: &BusEvent) -> Result<(), HandlerError> {
        let at = Instant::now();
        self.0.lock().unwrap().push((event.stream.aggregate_id().to_owned(), event.position.0, at));
        Ok(())
    }
}

/// Starts the subscriber, then the publisher under a supervisor.
async fn start_bus(
    store: &Arc<dyn EventStore>,
    url: &str,
    receipts: &Receipts,
    metrics: &BusMetrics,
) -> (Option<factum_rabbitmq::SubscriberHandle>, Option<Supervisor>) {
    let sub_config =
        SubscriberConfig::new(url, "factum-bench.pings").exchange(EXCHANGE).bind(["bench.ping.#"]);
    let subscriber = Subscriber::start(sub_config, receipts.clone()).await.unwrap();
    let config = PublisherConfig::new(url)
        .exchange(EXCHANGE)
        .name("bench_latency")
        .topics(["bench.ping.#"])
        .max_in_flight(env("FACTUM_BENCH_MAX_IN_FLIGHT", factum_rabbitmq::DEFAULT_MAX_IN_FLIGHT))
        .metrics(metrics.clone());
    let publisher = Publisher::connect(store.clone(), config).await.unwrap();
    // The topic filter passes over B1's events (quickly: nothing is published for them).
    let supervisor =
        Supervisor::start(store.clone(), SupervisorConfig::default().projection(publisher.into_projection()))
            .await
            .unwrap();
    (Some(subscriber), Some(supervisor))
}

async fn b2(store: &Arc<dyn EventStore>, url: &str, rep: usize, stamps: &stages::Stamps) {
    let rate: u64 = env("FACTUM_BENCH_RATE", 2_000);
    let bus = env("FACTUM_BENCH_BUS", 1u8) != 0;
    let receipts = Receipts::default();
    let metrics = BusMetrics::unregistered();
    let (subscriber, supervisor) =
        if bus { start_bus(store, url, &receipts, &metrics).await } else { (None, None) };
    let factum = Factum::new(store.clone());
    let acks: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let executed: Arc<Mutex<Vec<f64>>> = Arc::default();
    let warmup = 2 * rate;
    let total = 12 * rate;
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    // Where the events are, once a second: acknowledged, published, confirmed, received.
    let progress = {
        let (acks, receipts, metrics) = (acks.clone(), receipts.clone(), metrics.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!(
                    "b2 {:>5.1}s: acked {} published {} confirmed {} received {}",
                    started.elapsed().as_secs_f64(),
                    acks.lock().unwrap().len(),
                    metrics.published_count("bench_latency"),
                    metrics.confirmed_count("bench_latency"),
                    receipts.0.lock().unwrap().len()
                );
            }
        })
    };
    let mut tasks = Vec::with_capacity(total as usize);
    let mut cpu_start = None;
    let mut measured_from = started;
    for i in 0..total {
        tick.tick().await;
        if i == warmup {
            stamps.start();
            cpu_start = cpu::sample();
            measured_from = Instant::now();
        }
        let (factum, acks, executed) = (factum.clone(), acks.clone(), executed.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("p{rep}-{i}");
            let sent = Instant::now();
            factum.execute(PingCommand::Send { id: id.clone() }).await.unwrap();
            if i >= warmup {
                let at = Instant::now();
                acks.lock().unwrap().push((id, at));
                executed.lock().unwrap().push(at.duration_since(sent).as_secs_f64() * 1e3);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let sent_rate = total as f64 / started.elapsed().as_secs_f64();
    let cpu_end = cpu::sample();
    let measured_secs = measured_from.elapsed().as_secs_f64();
    let mut exec = std::mem::take(&mut *executed.lock().unwrap());
    exec.sort_by(f64::total_cmp);
    if !bus {
        println!(
            "B2 without the bus, {} commands at {sent_rate:.0}/s: command latency p50 {:.2} ms, p99 {:.2} ms",
            exec.len(),
            percentile(&exec, 0.5),
            percentile(&exec, 0.99)
        );
        cpu::report(&cpu_start, &cpu_end);
        progress.abort();
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while receipts.0.lock().unwrap().len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stamped = stamps.stop();
    let got: std::collections::HashMap<String, (u64, Instant)> =
        receipts.0.lock().unwrap().iter().map(|(id, p, at)| (id.clone(), (*p, *at))).collect();
    let measured_events: Vec<breakdown::Measured> = acks
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(id, at)| {
            got.get(id).map(|(position, receipt)| breakdown::Measured {
                ack: *at,
                position: *position,
                receipt: *receipt,
            })
        })
        .collect();
    let mut lat: Vec<f64> = measured_events
        .iter()
        .map(|e| e.receipt.saturating_duration_since(e.ack).as_secs_f64() * 1e3)
        .collect();
    progress.abort();
    let measured = acks.lock().unwrap().len();
    lat.sort_by(f64::total_cmp);
    println!(
        "B2 end-to-end latency, command ack to subscriber receipt, {measured} commands at {sent_rate:.0}/s (target {rate}/s): \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} received (goal p99 <= 25 ms)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0),
        lat.len()
    );
    println!(
        "  command latency (send to ack) p50 {:.2} ms, p99 {:.2} ms",
        percentile(&exec, 0.5),
        percentile(&exec, 0.99)
    );
    cpu::report(&cpu_start, &cpu_end);
    breakdown::report(&measured_events, &stamped, measured_secs);
    if let (Some(supervisor), Some(subscriber)) = (supervisor, subscriber) {
        supervisor.shutdown().await.unwrap();
        subscriber.stop().await;
    }
}

fn main() {
    let url = std::env::var("FACTUM_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let reps: usize = env("FACTUM_BENCH_REPS", 3usize).max(1);
    let stamps = stages::Stamps::default();
    stamps.install();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let db = TestDb::new().await;
        let store: Arc<dyn EventStore> = Arc::new(db.store().await);
        let conn = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        ch.exchange_declare(EXCHANGE.into(), ExchangeKind::Topic, durable, FieldTable::default())
            .await
            .unwrap();
        let qopts = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        ch.queue_declare(QUEUE.into(), qopts, FieldTable::default()).await.unwrap();
        ch.queue_bind(
            QUEUE.into(),
            EXCHANGE.into(),
            "bench.items.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        let only = std::env::var("FACTUM_BENCH_ONLY").unwrap_or_default();
        if only.is_empty() || only == "b1" {
            b1(&store, &ch, &url, reps).await;
        }
        if only.is_empty() || only == "b2" {
            for rep in 0..reps {
                b2(&store, &url, rep, &stamps).await;
            }
        }
        for q in [QUEUE, "factum-bench.pings", "factum-bench.pings.dead-letter"] {
            let _ = ch.queue_delete(q.into(), QueueDeleteOptions::default()).await;
        }
        for e in [EXCHANGE, "factum-bench.pings.dead-letter"] {
            let _ = ch.exchange_delete(e.into(), lapin::options::ExchangeDeleteOptions::default()).await;
        }
        conn.close(200, "bench done".into()).await.ok();
    });
}
