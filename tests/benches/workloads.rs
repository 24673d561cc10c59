//! The performance workloads of `docs/performance.md`: the framework's hot paths measured
//! beside their raw PostgreSQL baselines, in one run on one server.
//!
//! Run it through `scripts/bench.sh`, which boots a private PostgreSQL with default
//! durability and passes its URL in `FACTUM_BENCH_URL`. Settings (environment):
//!
//! - `FACTUM_BENCH_URL` (or `DATABASE_URL`): a superuser URL; every run works in fresh
//!   schemas of that database and drops them afterwards;
//! - `FACTUM_BENCH_WORKLOADS`: a comma-separated subset (`w1,w3,…`), default all;
//! - `FACTUM_BENCH_REPS`: repetitions per workload, default 3 (the figures are medians);
//! - `FACTUM_BENCH_MAX_IN_FLIGHT`: the `coalesce` workload's flushes in flight (default:
//!   the store's default).
//!
//! It prints one JSON line per workload, then a table. Nothing here asserts on timing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use factum::aggregate::SnapshotPolicy;
use factum::prelude::*;
use factum::projection::{Batch, ProjectionSink, SinkError};
use factum::store::{Checkpoint, ProjectionFailure};
use factum::{
    ExpectedVersion, Factum, FactumConfig, HandlerError, InMemoryStore, Metadata, Metrics, NewEvent,
    Projection, RecordedEvent, StreamId, Supervisor, SupervisorConfig, Version,
};
use factum_postgres::{ExactlyOnce, PgProjection, PoolSettings, PostgresConfig, PostgresStore, SchemaNames};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool, Row};
use uuid::Uuid;

#[path = "workloads/coalesce.rs"]
mod coalesce;
#[path = "workloads/physical.rs"]
mod physical;

// ---------------------------------------------------------------------------------------
// The aggregate the command workloads run: small state, one small event per command.

/// A bench account: a balance and a count of deposits.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, factum::Aggregate)]
#[aggregate(name = "Account", command = AccountCommand, event = AccountEvent, error = AccountError, snapshot_every = 100)]
struct Account {
    balance: i64,
    deposits: u64,
}

#[derive(Debug, Clone, factum::Command)]
#[command(id = id)]
enum AccountCommand {
    Deposit { id: String, amount: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, factum::DomainEvent)]
enum AccountEvent {
    #[event(name = "account.deposited", topic = "account.money.deposited")]
    Deposited { amount: i64, customer: String },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum AccountError {
    #[error("amount must be positive")]
    NotPositive,
}

impl Account {
    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Deposit { amount, .. } if *amount <= 0 => Err(AccountError::NotPositive),
            AccountCommand::Deposit { id, amount } => {
                Ok(vec![AccountEvent::Deposited { amount: *amount, customer: id.clone() }])
            }
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited { amount, .. } => {
                self.balance += amount;
                self.deposits += 1;
            }
        }
    }
}

fn payload(id: &str, amount: i64) -> Value {
    json!({ "amount": amount, "customer": id })
}

fn new_event(id: &str, amount: i64) -> NewEvent {
    let metadata = Metadata {
        correlation_id: Some(Uuid::now_v7()),
        causation_id: Some(Uuid::now_v7()),
        ..Metadata::default()
    };
    NewEvent::new("account.deposited", payload(id, amount))
        .with_topic("account.money.deposited")
        .with_metadata(metadata)
}

// ---------------------------------------------------------------------------------------
// Figures.

/// One repetition's result: a throughput (or a time, for W3) and the latencies of its
/// operations.
#[derive(Clone, Debug)]
struct Rep {
    value: f64,
    latencies: Vec<Duration>,
    /// CPU per operation in µs, (this process, the PostgreSQL server), where measured.
    cpu: Option<(f64, f64)>,
}

/// CPU time used so far by this process and by the PostgreSQL server processes (every
/// process named `postgres`, children reaped by the postmaster included), in clock ticks,
/// from `/proc`; `None` where there is no `/proc`.
fn cpu_ticks() -> Option<(u64, u64)> {
    fn ticks(stat: &str, children: bool) -> Option<u64> {
        // The fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        // utime, stime, cutime, cstime are fields 14–17 of stat, 12–15 after the name.
        let own = n(11)? + n(12)?;
        Some(if children { own + n(13)? + n(14)? } else { own })
    }
    let me = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?, false)?;
    let mut server = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if stat.contains("(postgres)") {
            server += ticks(&stat, true).unwrap_or(0);
        }
    }
    Some((me, server))
}

/// CPU per operation in µs between two `cpu_ticks` readings (100 ticks per second).
fn cpu_per_op(before: Option<(u64, u64)>, ops: usize) -> Option<(f64, f64)> {
    let (b, after) = (before?, cpu_ticks()?);
    let us = |t: u64| t as f64 * 10_000.0 / ops as f64;
    Some((us(after.0.saturating_sub(b.0)), us(after.1.saturating_sub(b.1))))
}

#[derive(Clone, Debug)]
struct Figure {
    median: f64,
    min: f64,
    max: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Median CPU per operation in µs: (this process, the server).
    cpu: Option<(f64, f64)>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The median of the repetitions' values with their spread; the latency percentiles are
/// medians of each repetition's percentiles.
fn figure(reps: &[Rep]) -> Figure {
    let mut values: Vec<f64> = reps.iter().map(|r| r.value).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for r in reps {
        let mut l = r.latencies.clone();
        l.sort_unstable();
        p50s.push(percentile(&l, 0.50));
        p99s.push(percentile(&l, 0.99));
    }
    let cpu = reps.iter().map(|r| r.cpu).collect::<Option<Vec<_>>>().filter(|c| !c.is_empty()).map(|c| {
        let (mut client, mut server): (Vec<f64>, Vec<f64>) = c.into_iter().unzip();
        (median(&mut client), median(&mut server))
    });
    Figure {
        median: median(&mut values),
        min,
        max,
        p50_ms: median(&mut p50s),
        p99_ms: median(&mut p99s),
        cpu,
    }
}

#[derive(Clone, Copy, Debug)]
enum Goal {
    /// framework / raw at least this (throughputs).
    RatioAtLeast(f64),
    /// framework / raw at most this (times).
    RatioAtMost(f64),
    /// The framework's p99 in ms at most this.
    P99AtMost(f64),
    /// The framework's value at most this.
    ValueAtMost(f64),
}

struct Outcome {
    id: &'static str,
    name: &'static str,
    unit: &'static str,
    framework: Figure,
    raw: Option<Figure>,
    goal: Goal,
    note: String,
}

impl Outcome {
    fn ratio(&self) -> Option<f64> {
        self.raw.as_ref().map(|r| self.framework.median / r.median)
    }

    fn met(&self) -> bool {
        match self.goal {
            Goal::RatioAtLeast(g) => self.ratio().is_some_and(|r| r >= g),
            Goal::RatioAtMost(g) => self.ratio().is_some_and(|r| r <= g),
            Goal::P99AtMost(g) => self.framework.p99_ms <= g,
            Goal::ValueAtMost(g) => self.framework.median <= g,
        }
    }

    fn goal_text(&self) -> String {
        match self.goal {
            Goal::RatioAtLeast(g) => format!(">= {g:.2}x"),
            Goal::RatioAtMost(g) => format!("<= {g:.2}x"),
            Goal::P99AtMost(g) => format!("p99 <= {g} ms"),
            Goal::ValueAtMost(g) => format!("<= {g} {}", self.unit),
        }
    }

    fn json(&self) -> Value {
        let fig = figure_json;
        json!({
            "workload": self.id,
            "name": self.name,
            "unit": self.unit,
            "framework": fig(&self.framework),
            "raw": self.raw.as_ref().map(fig),
            "ratio": self.ratio().map(round),
            "goal": self.goal_text(),
            "met": self.met(),
            "note": self.note,
        })
    }
}

/// A figure as the JSON lines give it.
fn figure_json(f: &Figure) -> Value {
    let cpu = f.cpu.map(|(client, server)| json!({ "client": round(client), "server": round(server) }));
    json!({ "median": round(f.median), "min": round(f.min), "max": round(f.max),
            "p50_ms": round(f.p50_ms), "p99_ms": round(f.p99_ms), "cpu_us_per_op": cpu })
}

fn round(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1000.0).round() / 1000.0
    } else {
        v
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_figure(f: &Figure) -> String {
    format!("{} ({}–{})", fmt_value(f.median), fmt_value(f.min), fmt_value(f.max))
}

fn fmt_lat(f: &Figure) -> String {
    if f.p50_ms.is_nan() {
        "—".into()
    } else {
        format!("{:.2} / {:.2}", f.p50_ms, f.p99_ms)
    }
}

fn print_table(outcomes: &[Outcome]) {
    println!();
    println!("| workload | unit | framework median (min–max) | fw p50 / p99 ms | raw median (min–max) | raw p50 / p99 ms | ratio | goal | met |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for o in outcomes {
        let (raw, raw_lat) = match &o.raw {
            Some(r) => (fmt_figure(r), fmt_lat(r)),
            None => ("—".into(), "—".into()),
        };
        let ratio = o.ratio().map_or("—".into(), |r| format!("{r:.2}x"));
        println!(
            "| {} {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.id,
            o.name,
            o.unit,
            fmt_figure(&o.framework),
            fmt_lat(&o.framework),
            raw,
            raw_lat,
            ratio,
            o.goal_text(),
            if o.met() { "yes" } else { "**no**" }
        );
    }
    let with_cpu: Vec<&Outcome> = outcomes.iter().filter(|o| o.framework.cpu.is_some()).collect();
    if !with_cpu.is_empty() {
        println!();
        println!("CPU per operation, µs (medians; this process / the PostgreSQL server):");
        println!();
        println!("| workload | framework: client / server | raw: client / server |");
        println!("| --- | --- | --- |");
        let cpu = |f: Option<&Figure>| match f.and_then(|f| f.cpu) {
            Some((c, s)) => format!("{c:.0} / {s:.0}"),
            None => "—".into(),
        };
        for o in with_cpu {
            println!("| {} {} | {} | {} |", o.id, o.name, cpu(Some(&o.framework)), cpu(o.raw.as_ref()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Environment.

struct Bench {
    url: String,
    admin: PgPool,
    reps: usize,
    schema_seq: AtomicU64,
}

/// Whether `fresh_store` puts schema version 6's query indexes back in place of version
/// 7's, for the `ab` workload's A/B of W3 and W6 on one build.
static V6_INDEXES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

const V6_INDEX_SQL: &str = "DROP INDEX {schema}.events_type_topic_idx, {schema}.events_occurred_brin, \
    {schema}.events_recorded_brin, {schema}.events_tracing_brin, {schema}.events_metadata_idx;
    CREATE INDEX events_type_idx ON {schema}.events (event_type);
    CREATE INDEX events_topic_idx ON {schema}.events (topic);
    CREATE INDEX events_aggregate_id_idx ON {schema}.events (aggregate_id);
    CREATE INDEX events_occurred_idx ON {schema}.events (occurred_at);
    CREATE INDEX events_recorded_idx ON {schema}.events (recorded_at);
    CREATE INDEX events_metadata_idx ON {schema}.events USING GIN (metadata jsonb_path_ops);";

const POOL: u32 = 24;
const CONCURRENCY: usize = 16;
const STREAMS: usize = 200;

impl Bench {
    /// A fresh, empty schema with the framework's tables in it, and a store on it.
    async fn fresh_store(&self, tag: &str) -> (PostgresStore, String) {
        self.fresh_store_with(tag, true).await
    }

    /// `fresh_store`, with the query indexes or without (the lean schema).
    async fn fresh_store_with(&self, tag: &str, query_indexes: bool) -> (PostgresStore, String) {
        let schema = self.fresh_schema(tag).await;
        let config = PostgresConfig::from_url(&self.url)
            .expect("bench url")
            .with_schema(SchemaNames::in_schema(schema.clone()).query_indexes(query_indexes))
            .with_pool(PoolSettings::default().max_connections(POOL));
        let store = PostgresStore::connect(config).await.expect("connect");
        store.migrate().await.expect("migrate");
        if query_indexes && V6_INDEXES.load(Ordering::Relaxed) {
            sqlx::raw_sql(&V6_INDEX_SQL.replace("{schema}", &schema)).execute(&self.admin).await.unwrap();
        }
        (store, schema)
    }

    async fn fresh_schema(&self, tag: &str) -> String {
        let n = self.schema_seq.fetch_add(1, Ordering::Relaxed);
        let schema = format!("bench_{tag}_{n}");
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&self.admin).await.unwrap();
        schema
    }

    async fn drop_schema(&self, schema: &str) {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&self.admin).await.unwrap();
    }

    /// A pool for raw statements, of the same size as the store's.
    async fn raw_pool(&self) -> PgPool {
        PgPoolOptions::new().max_connections(POOL).connect(&self.url).await.expect("raw pool")
    }

    /// Flushes dirty buffers so that a checkpoint does not land inside a measurement.
    async fn settle(&self) {
        sqlx::query("CHECKPOINT").execute(&self.admin).await.unwrap();
    }
}

/// One raw `INSERT` of `e` at `version + 1` of the stream `Account-{id}`, in its own
/// transaction: the raw baselines' append.
async fn raw_insert(conn: &mut PgConnection, sql: &str, e: &NewEvent, id: &str, version: u64) {
    sqlx::query(sql)
        .bind(e.event_id)
        .bind("Account")
        .bind(id)
        .bind((version + 1) as i64)
        .bind(&e.event_type)
        .bind(e.schema_version as i32)
        .bind(e.topic.as_deref())
        .bind(&e.payload)
        .bind(e.metadata.to_json())
        .bind(e.occurred_at)
        .bind(e.metadata.correlation_id)
        .bind(e.metadata.causation_id)
        .execute(conn)
        .await
        .expect("raw insert");
}

fn raw_insert_sql(schema: &str) -> String {
    format!(
        "INSERT INTO {schema}.events (event_id, aggregate_type, aggregate_id, version, event_type, \
         event_version, topic, event_data, metadata, occurred_at, correlation_id, causation_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )
}

// ---------------------------------------------------------------------------------------
// W1: appends, 1 event each, 16 tasks over 200 streams.

const W1_APPENDS: usize = 20_000;

/// Runs `per_task(task, streams)` on CONCURRENCY tasks, where task `t` owns the streams
/// `t, t + 16, …` and appends to them round robin; returns appends/s and latencies.
async fn concurrent<F, Fut>(total: usize, op: F) -> Rep
where
    F: Fn(usize, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    concurrent_n(CONCURRENCY, STREAMS, total, op).await
}

/// `concurrent` with `callers` tasks over `streams` streams: task `t` owns the streams
/// `t, t + callers, …` below `streams`.
async fn concurrent_n<F, Fut>(callers: usize, streams: usize, total: usize, op: F) -> Rep
where
    F: Fn(usize, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let cpu = cpu_ticks();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..callers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mine: Vec<usize> = (t..streams).step_by(callers).collect();
            let mut versions = vec![0u64; mine.len()];
            let count = total / callers;
            let mut lat = Vec::with_capacity(count);
            for i in 0..count {
                let k = i % mine.len();
                let began = Instant::now();
                op(t, mine[k], versions[k]).await;
                lat.push(began.elapsed());
                versions[k] += 1;
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let took = started.elapsed().as_secs_f64();
    let cpu = cpu_per_op(cpu, latencies.len());
    Rep { value: latencies.len() as f64 / took, latencies, cpu }
}

/// The raw baseline: each task sends its `INSERT`s on a connection of its own, the least
/// a client can do per append (a pooled connection costs two more round trips: sqlx tests
/// it when it is taken and when it is given back).
async fn w1_raw(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w1raw").await;
    drop(store);
    let mut conns = Vec::new();
    for _ in 0..CONCURRENCY {
        conns.push(tokio::sync::Mutex::new(PgConnection::connect(&b.url).await.expect("raw connection")));
    }
    let conns = Arc::new(conns);
    let sql: &'static str = Box::leak(raw_insert_sql(&schema).into_boxed_str());
    b.settle().await;
    let rep = concurrent(W1_APPENDS, move |t, stream, version| {
        let conns = conns.clone();
        async move {
            let id = format!("acc-{stream}");
            let e = new_event(&id, 1);
            // Only task `t` uses connection `t`: the lock is never contended.
            let mut conn = conns[t].lock().await;
            raw_insert(&mut conn, sql, &e, &id, version).await;
        }
    })
    .await;
    b.drop_schema(&schema).await;
    rep
}

async fn w1_framework(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w1fw").await;
    b.settle().await;
    let rep = concurrent(W1_APPENDS, move |_, stream, version| {
        let store = store.clone();
        async move {
            let id = format!("acc-{stream}");
            let s = StreamId::new("Account", id.as_str()).unwrap();
            store
                .append(&s, ExpectedVersion::Exact(Version(version)), vec![new_event(&id, 1)])
                .await
                .expect("append");
        }
    })
    .await;
    b.drop_schema(&schema).await;
    rep
}

// ---------------------------------------------------------------------------------------
// W2: commands through warm aggregate actors.

const W2_COMMANDS: usize = 20_000;

fn factum_on(store: &PostgresStore, cap: usize) -> Factum {
    factum_with(store, FactumConfig::default().max_live_actors(cap))
}

fn factum_with(store: &PostgresStore, config: FactumConfig) -> Factum {
    Factum::with_config(Arc::new(store.clone()), config, Arc::new(Metrics::new()))
}

async fn warm(factum: &Factum) {
    for s in 0..STREAMS {
        factum.load::<Account>(&format!("acc-{s}")).await.expect("warm");
    }
}

async fn w2_framework(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w2fw").await;
    let factum = factum_on(&store, 10_000);
    warm(&factum).await;
    b.settle().await;
    let f = factum.clone();
    let rep = concurrent(W2_COMMANDS, move |_, stream, _| {
        let f = f.clone();
        async move {
            f.execute(AccountCommand::Deposit { id: format!("acc-{stream}"), amount: 1 })
                .await
                .expect("command");
        }
    })
    .await;
    factum.shutdown();
    b.drop_schema(&schema).await;
    rep
}

// ---------------------------------------------------------------------------------------
// W3: cold load of a 10,000-event aggregate.

const W3_EVENTS: u64 = 10_000;
const W3_LOADS: usize = 5;
/// The snapshot variant's interval, set at run time whatever `Account` declares.
const W3_SNAPSHOT_EVERY: u64 = 100;

/// Stores `n` events on `id` in batches of 1,000; returns the folded state.
async fn fill_stream(store: &PostgresStore, id: &str, n: u64) -> Account {
    let stream = StreamId::new("Account", id).unwrap();
    let mut state = Account::default();
    let mut done = 0;
    while done < n {
        let k = (n - done).min(1_000);
        let batch: Vec<NewEvent> = (0..k).map(|_| new_event(id, 1)).collect();
        store.append(&stream, ExpectedVersion::Exact(Version(done)), batch).await.expect("fill");
        for _ in 0..k {
            state.apply(&AccountEvent::Deposited { amount: 1, customer: id.to_owned() });
        }
        done += k;
    }
    state
}

struct W3 {
    raw: Rep,
    full: Rep,
    snap: Rep,
}

async fn w3(b: &Bench) -> W3 {
    let (store, schema) = b.fresh_store("w3").await;
    fill_stream(&store, "cold-full", W3_EVENTS).await;
    // The snapshot variant: a snapshot every W3_SNAPSHOT_EVERY events, the worst case
    // being a whole interval of tail after the last one. The framework writes that
    // snapshot itself: the command that takes the stream to the last multiple runs
    // under the policy.
    let last = W3_EVENTS - W3_SNAPSHOT_EVERY;
    let stream = StreamId::new("Account", "cold-snap").unwrap();
    let mut expected = fill_stream(&store, "cold-snap", last - 1).await;
    let policy = SnapshotPolicy::every(W3_SNAPSHOT_EVERY).expect("a positive interval");
    let writer = factum_with(&store, FactumConfig::default().snapshot_policy::<Account>(policy));
    writer.execute(AccountCommand::Deposit { id: "cold-snap".into(), amount: 1 }).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.load_snapshot(&stream).await.unwrap().map(|s| s.version) != Some(Version(last)) {
        assert!(Instant::now() < deadline, "no snapshot at {last}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.shutdown();
    let tail: Vec<NewEvent> = (0..W3_SNAPSHOT_EVERY).map(|_| new_event("cold-snap", 1)).collect();
    store.append(&stream, ExpectedVersion::Exact(Version(last)), tail).await.unwrap();
    for _ in 0..=W3_SNAPSHOT_EVERY {
        expected.apply(&AccountEvent::Deposited { amount: 1, customer: "cold-snap".into() });
    }
    b.settle().await;

    let pool = b.raw_pool().await;
    let sql = format!(
        "SELECT version, event_type, event_data FROM {schema}.events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY version"
    );
    let mut raw = Vec::new();
    let mut full = Vec::new();
    let mut snap = Vec::new();
    for _ in 0..W3_LOADS {
        let began = Instant::now();
        let rows = sqlx::query(&sql).bind("Account").bind("cold-full").fetch_all(&pool).await.unwrap();
        let mut decoded = Vec::with_capacity(rows.len());
        for row in &rows {
            let v: i64 = row.get(0);
            let t: String = row.get(1);
            let data: Value = row.get(2);
            decoded.push((v, t, data));
        }
        assert_eq!(decoded.len() as u64, W3_EVENTS);
        raw.push(began.elapsed());

        let factum = factum_on(&store, 10);
        let began = Instant::now();
        let (state, version) = factum.load::<Account>("cold-full").await.unwrap();
        full.push(began.elapsed());
        assert_eq!((state.deposits, version), (W3_EVENTS, Version(W3_EVENTS)));
        factum.shutdown();

        let factum = factum_on(&store, 10);
        let began = Instant::now();
        let (state, version) = factum.load::<Account>("cold-snap").await.unwrap();
        snap.push(began.elapsed());
        assert_eq!((&state, version), (&expected, Version(W3_EVENTS)));
        factum.shutdown();
    }
    b.drop_schema(&schema).await;
    let rep = |l: Vec<Duration>| {
        let mut ms: Vec<f64> = l.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Rep { value: median(&mut ms), latencies: l, cpu: None }
    };
    W3 { raw: rep(raw), full: rep(full), snap: rep(snap) }
}

// ---------------------------------------------------------------------------------------
// W4: catch-up of a new projection over 200,000 stored events.

const W4_EVENTS: usize = 200_000;
const W4_BATCH: usize = 1_000;

/// Stores `total` events over STREAMS streams in appends of 1,000; returns the latencies.
async fn bulk(store: &PostgresStore, total: usize, tag: &str) -> Vec<Duration> {
    let mut lat = Vec::new();
    let per_stream = total.div_ceil(STREAMS).max(1);
    let mut versions = vec![0u64; STREAMS];
    let mut done = 0;
    let mut s = 0;
    while done < total {
        let k = (total - done).min(1_000);
        let id = format!("{tag}-{s}");
        let stream = StreamId::new("Account", id.as_str()).unwrap();
        let batch: Vec<NewEvent> = (0..k).map(|_| new_event(&id, 1)).collect();
        let began = Instant::now();
        let r =
            store.append(&stream, ExpectedVersion::Exact(Version(versions[s])), batch).await.expect("bulk");
        lat.push(began.elapsed());
        versions[s] = r.to_version.0;
        done += k;
        if versions[s] as usize >= per_stream {
            s = (s + 1) % STREAMS;
        }
    }
    lat
}

/// The counter read model: events per aggregate id.
struct Counts {
    one: String,
    many: String,
}

impl Counts {
    async fn create(pool: &PgPool, schema: &str) -> Counts {
        let table = format!("{schema}.account_counts");
        sqlx::query(&format!("CREATE TABLE {table} (aggregate_id TEXT PRIMARY KEY, n BIGINT NOT NULL)"))
            .execute(pool)
            .await
            .unwrap();
        Counts {
            one: format!(
                "INSERT INTO {table} (aggregate_id, n) VALUES ($1, 1) \
                 ON CONFLICT (aggregate_id) DO UPDATE SET n = account_counts.n + 1"
            ),
            many: format!(
                "INSERT INTO {table} (aggregate_id, n) SELECT * FROM unnest($1::text[], $2::bigint[]) \
                 ON CONFLICT (aggregate_id) DO UPDATE SET n = account_counts.n + EXCLUDED.n"
            ),
        }
    }
}

#[async_trait]
impl PgProjection for Counts {
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
        sqlx::query(&self.one).bind(event.stream.aggregate_id()).execute(tx).await?;
        Ok(())
    }

    async fn handle_batch(
        &mut self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for e in events {
            *counts.entry(e.stream.aggregate_id()).or_default() += 1;
        }
        let (ids, ns): (Vec<&str>, Vec<i64>) = counts.into_iter().unzip();
        sqlx::query(&self.many).bind(ids).bind(ns).execute(tx).await?;
        Ok(())
    }
}

/// Wraps a sink to time its batches and note when each event's batch committed.
struct Timed<S> {
    inner: S,
    batches: Arc<Mutex<Vec<Duration>>>,
    handled: Arc<AtomicU64>,
    committed: Option<Arc<Mutex<HashMap<Uuid, Instant>>>>,
}

#[async_trait]
impl<S: ProjectionSink> ProjectionSink for Timed<S> {
    async fn apply(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        let began = Instant::now();
        let events = batch.events;
        let r = self.inner.apply(batch).await;
        if r.is_ok() {
            let now = Instant::now();
            self.batches.lock().unwrap().push(now - began);
            self.handled.fetch_add(events.len() as u64, Ordering::Release);
            if let Some(c) = &self.committed {
                let mut c = c.lock().unwrap();
                for e in events {
                    if let Some(id) = e.metadata.correlation_id {
                        c.insert(id, now);
                    }
                }
            }
        }
        r
    }

    async fn skip(&mut self, failure: &ProjectionFailure, from: Checkpoint) -> Result<(), SinkError> {
        self.inner.skip(failure, from).await
    }

    async fn retry_failed(&mut self, projection: &str, event: &RecordedEvent) -> Result<(), SinkError> {
        self.inner.retry_failed(projection, event).await
    }

    async fn reset(&mut self, projection: &str, to: Checkpoint, clear: bool) -> Result<(), SinkError> {
        self.inner.reset(projection, to, clear).await
    }
}

async fn w4(b: &Bench) -> (Rep, Rep) {
    w4_on(b, false).await
}

/// W4 on the default schema or the lean one (`lean`): (framework, raw).
async fn w4_on(b: &Bench, lean: bool) -> (Rep, Rep) {
    let (store, schema) = b.fresh_store_with("w4", !lean).await;
    bulk(&store, W4_EVENTS, "acc").await;
    sqlx::query(&format!("VACUUM ANALYZE {schema}.events")).execute(&b.admin).await.unwrap();
    b.settle().await;

    // Raw: keyset pages in the log's order, every column decoded, payload and metadata
    // as JSON.
    let pool = b.raw_pool().await;
    let sql = format!(
        "SELECT global_position, transaction_id, event_id, aggregate_type, aggregate_id, version, \
         event_type, event_version, topic, event_data, metadata, occurred_at, recorded_at \
         FROM {schema}.events WHERE (transaction_id, global_position) > ($1, $2) \
         ORDER BY transaction_id, global_position LIMIT $3"
    );
    let began = Instant::now();
    let mut after = (0i64, 0i64);
    let mut n = 0;
    let mut pages = Vec::new();
    loop {
        let page_began = Instant::now();
        let rows = sqlx::query(&sql)
            .bind(after.0)
            .bind(after.1)
            .bind(W4_BATCH as i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let position: i64 = row.get(0);
            let tx: i64 = row.get(1);
            let _: Uuid = row.get(2);
            let _: String = row.get(3);
            let _: String = row.get(4);
            let _: i64 = row.get(5);
            let _: String = row.get(6);
            let _: i32 = row.get(7);
            let _: Option<String> = row.get(8);
            let _: Value = row.get(9);
            let _: Value = row.get(10);
            let _: DateTime<Utc> = row.get(11);
            let _: DateTime<Utc> = row.get(12);
            after = (tx, position);
            n += 1;
        }
        pages.push(page_began.elapsed());
    }
    assert_eq!(n, W4_EVENTS);
    let raw = Rep { value: n as f64 / began.elapsed().as_secs_f64(), latencies: pages, cpu: None };

    let counts = Counts::create(store.pool(), &schema).await;
    b.settle().await;
    let batches = Arc::new(Mutex::new(Vec::new()));
    let handled = Arc::new(AtomicU64::new(0));
    let sink = Timed {
        inner: ExactlyOnce::new(store.clone(), counts),
        batches: batches.clone(),
        handled: handled.clone(),
        committed: None,
    };
    let began = Instant::now();
    let supervisor = Supervisor::start(
        Arc::new(store.clone()),
        SupervisorConfig::default().projection(Projection::new("counts", sink).batch_size(W4_BATCH)),
    )
    .await
    .unwrap();
    while handled.load(Ordering::Acquire) < W4_EVENTS as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = began.elapsed().as_secs_f64();
    supervisor.shutdown().await.unwrap();
    let total: i64 = sqlx::query_scalar(&format!("SELECT sum(n)::bigint FROM {schema}.account_counts"))
        .fetch_one(&b.admin)
        .await
        .unwrap();
    assert_eq!(total as usize, W4_EVENTS);
    let fw = Rep { value: W4_EVENTS as f64 / took, latencies: batches.lock().unwrap().clone(), cpu: None };
    b.drop_schema(&schema).await;
    (fw, raw)
}

// ---------------------------------------------------------------------------------------
// W5: bulk appends of 1,000 events.

const W5_EVENTS: usize = 200_000;

async fn w5_framework(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w5fw").await;
    b.settle().await;
    let began = Instant::now();
    let lat = bulk(&store, W5_EVENTS, "bulk").await;
    let rep = Rep { value: W5_EVENTS as f64 / began.elapsed().as_secs_f64(), latencies: lat, cpu: None };
    b.drop_schema(&schema).await;
    rep
}

async fn w5_raw(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w5raw").await;
    drop(store);
    let pool = b.raw_pool().await;
    let sql = format!(
        "INSERT INTO {schema}.events (event_id, aggregate_type, aggregate_id, version, event_type, \
         event_version, topic, event_data, metadata, occurred_at, correlation_id, causation_id) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::int[], \
         $7::text[], $8::jsonb[], $9::jsonb[], $10::timestamptz[], $11::uuid[], $12::uuid[])"
    );
    b.settle().await;
    let began = Instant::now();
    let mut lat = Vec::new();
    let per_stream = W5_EVENTS.div_ceil(STREAMS);
    let mut done = 0;
    let mut version = 0usize;
    let mut s = 0;
    while done < W5_EVENTS {
        let k = (W5_EVENTS - done).min(1_000);
        let id = format!("bulk-{s}");
        let events: Vec<NewEvent> = (0..k).map(|_| new_event(&id, 1)).collect();
        let batch_began = Instant::now();
        sqlx::query(&sql)
            .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
            .bind(vec!["Account"; k])
            .bind(vec![id.as_str(); k])
            .bind((1..=k).map(|i| (version + i) as i64).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.schema_version as i32).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.topic.as_deref()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| &e.payload).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.metadata.to_json()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.metadata.correlation_id).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.metadata.causation_id).collect::<Vec<_>>())
            .execute(&pool)
            .await
            .expect("raw bulk");
        lat.push(batch_began.elapsed());
        done += k;
        version += k;
        if version >= per_stream {
            s += 1;
            version = 0;
        }
    }
    let rep = Rep { value: W5_EVENTS as f64 / began.elapsed().as_secs_f64(), latencies: lat, cpu: None };
    b.drop_schema(&schema).await;
    rep
}

// ---------------------------------------------------------------------------------------
// W6: latency from a command's acknowledgment to its event committed by a live projection.

const W6_RATE: u64 = 2_000;
const W6_SECONDS: u64 = 5;

async fn w6(b: &Bench) -> (Rep, f64) {
    let (store, schema) = b.fresh_store("w6").await;
    w6_at(b, store, &schema, W6_RATE).await
}

/// W6 on `store` (in `schema`, dropped afterwards) at `rate` commands/s for W6_SECONDS.
async fn w6_at(b: &Bench, store: PostgresStore, schema: &str, rate: u64) -> (Rep, f64) {
    let factum = factum_on(&store, 10_000);
    warm(&factum).await;
    let counts = Counts::create(store.pool(), schema).await;
    let committed = Arc::new(Mutex::new(HashMap::new()));
    let sink = Timed {
        inner: ExactlyOnce::new(store.clone(), counts),
        batches: Arc::new(Mutex::new(Vec::new())),
        handled: Arc::new(AtomicU64::new(0)),
        committed: Some(committed.clone()),
    };
    let supervisor = Supervisor::start(
        Arc::new(store.clone()),
        SupervisorConfig::default().projection(Projection::new("live", sink)),
    )
    .await
    .unwrap();
    b.settle().await;

    let total = (rate * W6_SECONDS) as usize;
    let acks = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let at = started + Duration::from_micros(i as u64 * 1_000_000 / rate);
        tokio::time::sleep_until(at.into()).await;
        let factum = factum.clone();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let correlation = Uuid::now_v7();
            let metadata = Metadata { correlation_id: Some(correlation), ..Metadata::default() };
            let command = AccountCommand::Deposit { id: format!("acc-{}", i % STREAMS), amount: 1 };
            factum.execute_with(command, metadata).await.expect("command");
            acks.lock().unwrap().push((correlation, Instant::now()));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = {
            let c = committed.lock().unwrap();
            acks.lock().unwrap().iter().all(|(id, _)| c.contains_key(id))
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    supervisor.shutdown().await.unwrap();
    factum.shutdown();
    let lat: Vec<Duration> = {
        let c = committed.lock().unwrap();
        let acks = acks.lock().unwrap();
        // An event never seen committed counts as the 30 s waited for it.
        acks.iter()
            .map(|(id, ack)| {
                c.get(id).map_or(Duration::from_secs(30), |at| at.saturating_duration_since(*ack))
            })
            .collect()
    };
    b.drop_schema(schema).await;
    let mut ms: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let p99 = ms[((ms.len() - 1) as f64 * 0.99).round() as usize];
    (Rep { value: p99, latencies: lat, cpu: None }, achieved)
}

// ---------------------------------------------------------------------------------------
// W7: resident memory per idle live aggregate actor.

const W7_ACTORS: usize = 100_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

async fn spawn_actors(factum: &Factum, from: usize, to: usize) {
    let mut tasks = Vec::new();
    let workers = 64;
    for w in 0..workers {
        let factum = factum.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = from + w;
            while i < to {
                factum.load::<Account>(&format!("idle-{i}")).await.expect("load");
                i += workers;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The same measurement for bare `ractor` actors with no state and no framework around
/// them: the floor under W7 that the framework cannot go below.
async fn w7_bare_child() -> f64 {
    struct Bare;
    #[ractor::async_trait]
    impl ractor::Actor for Bare {
        type Msg = ();
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> {
            Ok(())
        }
    }
    let mut actors = Vec::with_capacity(W7_ACTORS + 1_000);
    for _ in 0..1_000 {
        actors.push(ractor::Actor::spawn(None, Bare, ()).await.unwrap().0);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes();
    for _ in 0..W7_ACTORS {
        actors.push(ractor::Actor::spawn(None, Bare, ()).await.unwrap().0);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes();
    (after.saturating_sub(before)) as f64 / W7_ACTORS as f64 / 1024.0
}

fn w7_bare() -> f64 {
    let exe = std::env::current_exe().expect("own executable");
    let out = std::process::Command::new(exe).env("FACTUM_BENCH_W7_CHILD", "bare").output().expect("run W7");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("W7 bare output")
}

/// Runs W7 in a child process of its own: freed memory stays with the allocator, so a
/// second measurement in the same process would reuse the first one's pages.
fn w7() -> Rep {
    let exe = std::env::current_exe().expect("own executable");
    let out = std::process::Command::new(exe).env("FACTUM_BENCH_W7_CHILD", "1").output().expect("run W7");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().expect("W7 child output"));
    let (per, spawn_us) = (fields.next().expect("W7 figure"), fields.next().expect("W7 figure"));
    Rep { value: per, latencies: vec![Duration::from_secs_f64(spawn_us / 1e6)], cpu: None }
}

async fn w7_child() -> (f64, f64) {
    // The store does not matter for an idle actor's memory; the in-memory one keeps
    // the 100,000 loads fast and holds nothing for streams without events.
    let factum = Factum::with_config(
        Arc::new(InMemoryStore::new()),
        FactumConfig::default().max_live_actors(200_000),
        Arc::new(Metrics::new()),
    );
    // Warm the allocator and the runtime with a first thousand.
    spawn_actors(&factum, 0, 1_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes();
    let began = Instant::now();
    spawn_actors(&factum, 1_000, 1_000 + W7_ACTORS).await;
    let took = began.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes();
    assert!(factum.live_aggregates() >= W7_ACTORS);
    factum.shutdown();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per = (after.saturating_sub(before)) as f64 / W7_ACTORS as f64 / 1024.0;
    (per, took.as_secs_f64() * 1e6 / W7_ACTORS as f64)
}

// ---------------------------------------------------------------------------------------

fn emit(o: &Outcome) {
    println!("{}", o.json());
}

async fn run(b: Bench, selected: Vec<String>) {
    let want = |w: &str| selected.is_empty() || selected.iter().any(|s| s == w);
    let mut outcomes = Vec::new();
    let reps = b.reps;

    if want("w1") {
        let (mut fw, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            raw.push(w1_raw(&b).await);
            fw.push(w1_framework(&b).await);
        }
        let o = Outcome {
            id: "W1",
            name: "append",
            unit: "appends/s",
            framework: figure(&fw),
            raw: Some(figure(&raw)),
            goal: Goal::RatioAtLeast(0.90),
            note: format!("{W1_APPENDS} appends of 1 event, {CONCURRENCY} tasks over {STREAMS} streams"),
        };
        emit(&o);
        outcomes.push(o);
    }
    if want("w2") {
        let (mut fw, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            raw.push(w1_raw(&b).await);
            fw.push(w2_framework(&b).await);
        }
        let o = Outcome {
            id: "W2",
            name: "commands",
            unit: "commands/s",
            framework: figure(&fw),
            raw: Some(figure(&raw)),
            goal: Goal::RatioAtLeast(0.80),
            note: format!(
                "{W2_COMMANDS} commands, {CONCURRENCY} callers over {STREAMS} warm aggregates; raw = W1's"
            ),
        };
        emit(&o);
        outcomes.push(o);
    }
    if want("w3") {
        let (mut raw, mut full, mut snap) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            let r = w3(&b).await;
            raw.push(r.raw);
            full.push(r.full);
            snap.push(r.snap);
        }
        let note = format!("{W3_EVENTS} events; each repetition is the median of {W3_LOADS} cold loads");
        let o = Outcome {
            id: "W3",
            name: "cold load, full replay",
            unit: "ms",
            framework: figure(&full),
            raw: Some(figure(&raw)),
            goal: Goal::RatioAtMost(1.2),
            note: note.clone(),
        };
        emit(&o);
        outcomes.push(o);
        let o = Outcome {
            id: "W3",
            name: "cold load, snapshot every 100",
            unit: "ms",
            framework: figure(&snap),
            raw: Some(figure(&raw)),
            goal: Goal::RatioAtMost(0.1),
            note: format!(
                "{note}; SnapshotPolicy::every({W3_SNAPSHOT_EVERY}): a snapshot at {} and a \
                 {W3_SNAPSHOT_EVERY}-event tail (the worst case)",
                W3_EVENTS - W3_SNAPSHOT_EVERY
            ),
        };
        emit(&o);
        outcomes.push(o);
    }
    if want("w4") {
        let (mut fw, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let (f, r) = w4(&b).await;
            fw.push(f);
            raw.push(r);
        }
        let o = Outcome {
            id: "W4",
            name: "catch-up",
            unit: "events/s",
            framework: figure(&fw),
            raw: Some(figure(&raw)),
            goal: Goal::RatioAtLeast(0.60),
            note: format!("{W4_EVENTS} events, batches/pages of {W4_BATCH}; latencies are per batch/page"),
        };
        emit(&o);
        outcomes.push(o);
    }
    if want("w5") {
        let (mut fw, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            raw.push(w5_raw(&b).await);
            fw.push(w5_framework(&b).await);
        }
        let o = Outcome {
            id: "W5",
            name: "bulk append",
            unit: "events/s",
            framework: figure(&fw),
            raw: Some(figure(&raw)),
            goal: Goal::RatioAtLeast(0.80),
            note: format!("{W5_EVENTS} events in appends of 1,000; latencies are per append"),
        };
        emit(&o);
        outcomes.push(o);
    }
    if want("w6") {
        let mut reps_ = Vec::new();
        let mut rates = Vec::new();
        for _ in 0..reps {
            let (r, rate) = w6(&b).await;
            reps_.push(r);
            rates.push(rate);
        }
        let o = Outcome {
            id: "W6",
            name: "live latency (ack to projection commit)",
            unit: "ms p99",
            framework: figure(&reps_),
            raw: None,
            goal: Goal::P99AtMost(20.0),
            note: format!(
                "{W6_RATE} commands/s for {W6_SECONDS} s (achieved {:.0}/s median) over {STREAMS} aggregates",
                median(&mut rates)
            ),
        };
        emit(&o);
        outcomes.push(o);
    }
    if want("w7") {
        let mut reps_ = Vec::new();
        let mut bare = Vec::new();
        for _ in 0..reps {
            reps_.push(w7());
            bare.push(w7_bare());
        }
        let o = Outcome {
            id: "W7",
            name: "memory per idle actor",
            unit: "KiB",
            framework: figure(&reps_),
            raw: None,
            goal: Goal::ValueAtMost(4.0),
            note: format!(
                "RSS growth over {W7_ACTORS} live actors; latency = mean spawn time; a bare ractor actor \
                 (no state, no framework) takes {:.2} KiB measured the same way",
                median(&mut bare)
            ),
        };
        emit(&o);
        outcomes.push(o);
    }
    if selected.iter().any(|s| s == "ab") {
        // W3 and W6 with schema version 6's query indexes and with version 7's, alternating.
        let (mut w3_old, mut w3_new, mut w6_old, mut w6_new) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            // Which goes first alternates too, so that neither always runs on the other's leftovers.
            for old in if rep % 2 == 0 { [true, false] } else { [false, true] } {
                V6_INDEXES.store(old, Ordering::Relaxed);
                let full = w3(&b).await.full;
                let (live, _) = w6(&b).await;
                if old {
                    w3_old.push(full);
                    w6_old.push(live);
                } else {
                    w3_new.push(full);
                    w6_new.push(live);
                }
            }
        }
        V6_INDEXES.store(false, Ordering::Relaxed);
        for (id, name, unit, new, old) in [
            ("W3", "cold load, full replay: v7 indexes / v6", "ms", &w3_new, &w3_old),
            ("W6", "live latency p99: v7 indexes / v6", "ms p99", &w6_new, &w6_old),
        ] {
            let o = Outcome {
                id,
                name,
                unit,
                framework: figure(new),
                raw: Some(figure(old)),
                goal: Goal::RatioAtMost(1.0),
                note: "raw = the same workload on schema version 6's query indexes, in the same run".into(),
            };
            emit(&o);
            outcomes.push(o);
        }
    }
    if !outcomes.is_empty() {
        print_table(&outcomes);
    }
    if want("physical") {
        for row in physical::run(&b).await {
            println!("{row}");
        }
    }
    if selected.iter().any(|s| s == "coalesce") {
        coalesce::run(&b).await;
    }
}

fn main() {
    if std::env::var("FACTUM_BENCH_W7_CHILD").as_deref() == Ok("bare") {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        println!("{}", runtime.block_on(w7_bare_child()));
        return;
    }
    if std::env::var_os("FACTUM_BENCH_W7_CHILD").is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let (per, spawn_us) = runtime.block_on(w7_child());
        println!("{per} {spawn_us}");
        return;
    }
    let url = std::env::var("FACTUM_BENCH_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .expect("set FACTUM_BENCH_URL (scripts/bench.sh does)");
    let reps: usize =
        std::env::var("FACTUM_BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let selected: Vec<String> = std::env::var("FACTUM_BENCH_WORKLOADS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let admin = PgPoolOptions::new().max_connections(2).connect(&url).await.expect("connect");
        let b = Bench { url, admin, reps, schema_seq: AtomicU64::new(0) };
        run(b, selected).await;
    });
}
