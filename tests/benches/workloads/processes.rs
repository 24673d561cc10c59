//! W10: a process manager. Each trigger event starts a process instance that sends one
//! command to another aggregate and ends. W10a: steps per second (trigger in, command
//! acknowledged) catching up on a backlog of W10_BACKLOG triggers. W10b: the p99 from a
//! trigger's commit to its command's commit, at W10_RATE triggers per second.

use factum::process::{Decision, Input, ProcessManager, Received};
use factum::EventFilter;

use super::*;

/// The backlog W10a works through.
pub(super) const W10_BACKLOG: usize = 4_000;
/// The triggers per second W10b appends, for W10_SECONDS.
pub(super) const W10_RATE: u64 = 500;
pub(super) const W10_SECONDS: u64 = 10;

#[derive(Debug, Default, Clone, Serialize, Deserialize, factum::Aggregate)]
#[aggregate(name = "W10Target", command = TargetCommand, event = TargetEvent, error = std::convert::Infallible)]
struct Target;

#[derive(Debug, Clone, Serialize, Deserialize, factum::Command)]
enum TargetCommand {
    Pong {
        #[command(id)]
        target: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, factum::DomainEvent)]
enum TargetEvent {
    Ponged,
}

impl Target {
    fn handle(&self, _: &TargetCommand) -> Result<Vec<TargetEvent>, std::convert::Infallible> {
        Ok(vec![TargetEvent::Ponged])
    }
    fn apply(&mut self, _: &TargetEvent) {}
}

/// The trigger, as the process decodes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, factum::DomainEvent)]
enum Trigger {
    #[event(name = "Pinged")]
    Pinged { target: String },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, factum::process::Process)]
#[process(name = "w10", event = Trigger, aggregate_types = ["W10Trigger"])]
struct PingPong;

impl PingPong {
    fn correlate(event: &Received<Trigger>) -> Result<Option<String>, String> {
        let Trigger::Pinged { target } = &event.event;
        Ok(Some(target.clone()))
    }
    fn handle(&self, input: &Input<Trigger>) -> Decision {
        match input {
            Input::Event(e) => {
                let Trigger::Pinged { target } = &e.event;
                Decision::new().send(TargetCommand::Pong { target: target.clone() }).end()
            }
            _ => Decision::ignore(),
        }
    }
    fn apply(&mut self, _: &Input<Trigger>) {}
}

async fn trigger(store: &PostgresStore, n: usize) {
    let id = format!("t-{n}");
    let stream = StreamId::new("W10Trigger", id.as_str()).unwrap();
    let event = NewEvent::new("Pinged", json!({ "target": format!("x-{n}") }));
    store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.expect("append a trigger");
}

async fn done(store: &PostgresStore) -> u64 {
    store.count(&EventFilter::new().aggregate_type("W10Target")).await.expect("count")
}

fn start(store: &PostgresStore) -> (Factum, SupervisorConfig) {
    let factum = Factum::new(Arc::new(store.clone()));
    let manager = ProcessManager::<PingPong>::new(&factum).expect("process").sends::<TargetCommand>();
    (factum, SupervisorConfig::default().projection(manager.into_projection()))
}

/// W10a: steps per second through a backlog, with the CPU per step.
pub(super) async fn w10_backlog(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w10a").await;
    for n in 0..W10_BACKLOG {
        trigger(&store, n).await;
    }
    b.settle().await;
    let (factum, config) = start(&store);
    let before = cpu_ticks();
    let began = Instant::now();
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.expect("supervisor");
    while done(&store).await < W10_BACKLOG as u64 {
        assert!(began.elapsed() < Duration::from_secs(300), "W10a did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = W10_BACKLOG as f64 / began.elapsed().as_secs_f64();
    let cpu = cpu_per_op(before, W10_BACKLOG);
    supervisor.shutdown().await.unwrap();
    factum.shutdown();
    store.pool().close().await;
    b.drop_schema(&schema).await;
    Rep { value: rate, latencies: Vec::new(), cpu }
}

/// W10b: triggers at W10_RATE per second; each one's latency is its command's event's
/// `recorded_at` less its own (both single-statement transactions, so their start is
/// within a hair of their commit). Returns the rep and the rate achieved.
pub(super) async fn w10_live(b: &Bench) -> (Rep, f64) {
    let (store, schema) = b.fresh_store("w10b").await;
    let (factum, config) = start(&store);
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.expect("supervisor");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = (W10_RATE * W10_SECONDS) as usize;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / W10_RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let began = Instant::now();
    let mut appends = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        let store = store.clone();
        appends.spawn(async move { trigger(&store, n).await });
    }
    while appends.join_next().await.is_some() {}
    let achieved = total as f64 / began.elapsed().as_secs_f64();
    while done(&store).await < total as u64 {
        assert!(began.elapsed() < Duration::from_secs(300), "W10b did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let query = format!(
        "SELECT (EXTRACT(EPOCH FROM (x.recorded_at - t.recorded_at)) * 1e6)::float8 FROM {schema}.events t \
         JOIN {schema}.events x ON x.aggregate_type = 'W10Target' \
          AND x.aggregate_id = 'x-' || substr(t.aggregate_id, 3) \
         WHERE t.aggregate_type = 'W10Trigger'"
    );
    let micros: Vec<f64> = sqlx::query_scalar(AssertSqlSafe(query)).fetch_all(store.pool()).await.unwrap();
    assert_eq!(micros.len(), total, "every trigger's command landed once");
    let mut latencies: Vec<Duration> =
        micros.iter().map(|us| Duration::from_micros(us.max(0.0) as u64)).collect();
    latencies.sort();
    supervisor.shutdown().await.unwrap();
    factum.shutdown();
    store.pool().close().await;
    b.drop_schema(&schema).await;
    let p99 = percentile(&latencies, 0.99);
    (Rep { value: p99, latencies, cpu: None }, achieved)
}
