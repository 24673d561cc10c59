//! Coalesced appends: the store's coalescing writer (on by default) beside the same store
//! with it off (every append a transaction of its own) and beside the minimal raw table
//! written with one autocommit `INSERT` per event, each caller on a connection of its own,
//! at the same concurrency. Selected as the workload `coalesce` (only when named).
//!
//! Cases: commands through warm aggregate actors (64 callers over 10,000 aggregates, 16
//! over 200, 1 over 200), W1's appends (16 tasks over 200 streams), and W6's live latency
//! at its rate and at 5,000 commands/s. With coalescing on it prints the writer's
//! `flush_stats()` (appends per flush: the evidence that it coalesced) and the rows that
//! sequential scans of the events table read per event. A diagnostic variant runs the
//! store on the lean schema (`SchemaNames::query_indexes(false)`: the log's own indexes
//! only), to show what the query indexes cost each append; another runs it on a table
//! that already holds 20,000 events and was analyzed, as a table in service does.

use factum_postgres::{Coalescing, FlushStats};
use sqlx::postgres::PgConnectOptions;

use super::physical::Table;
use super::*;

#[path = "coalesce_report.rs"]
mod report;
use report::{goals, print_tables, row_json};

/// Commands or appends per throughput phase.
const OPS: usize = 20_000;
/// Commands of the one-caller latency phase.
const ONE_CALLER_OPS: usize = 2_000;
/// W6's second rate, commands/s.
const HIGH_RATE: u64 = 5_000;

/// What a case drives: commands through actors, `store.append`, W6 at a rate, or W5's
/// bulk appends (the yardstick of CPU per event: a row of an append of 1,000).
#[derive(Clone, Copy, PartialEq)]
enum Path {
    Commands,
    Appends,
    Live(u64),
    Bulk,
}

/// Events of the bulk case, in appends of 1,000.
const BULK_EVENTS: usize = 100_000;

/// A phase: the raw baseline, or the store with coalescing on, off, or on in one of the
/// diagnostics (the lean schema; a filled, analyzed table). The index of each phase's figures.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Raw = 0,
    On = 1,
    Off = 2,
    Lean = 3,
    Filled = 4,
}

/// The diagnostics, with what they change.
const DIAGNOSTICS: [(Variant, &str); 2] = [(Lean, "lean schema"), (Filled, "filled, analyzed table")];

/// Events already stored in the `Filled` diagnostic.
const FILL: usize = 20_000;

use Variant::{Filled, Lean, Off, On, Raw};

struct Case {
    id: &'static str,
    name: &'static str,
    path: Path,
    callers: usize,
    streams: usize,
    ops: usize,
    variants: &'static [Variant],
}

impl Case {
    fn unit(&self) -> &'static str {
        match self.path {
            Path::Commands => "commands/s",
            Path::Appends => "appends/s",
            Path::Bulk => "events/s",
            Path::Live(_) => "ms p99",
        }
    }
}

const fn case(id: &'static str, name: &'static str, path: Path, callers: usize, streams: usize) -> Case {
    let ops = if callers == 1 { ONE_CALLER_OPS } else { OPS };
    Case { id, name, path, callers, streams, ops, variants: &[Raw, On, Off, Lean, Filled] }
}

const CASES: [Case; 8] = [
    case("C1a", "commands, 64 callers over 10,000 aggregates", Path::Commands, 64, 10_000),
    case("C1b", "commands, 16 callers over 200 aggregates", Path::Commands, 16, 200),
    // C1a's aggregates with C1b's callers: flushes of C1b's size on C1a's streams, which
    // separates what a flush costs from what an append costs (see docs/performance.md).
    Case {
        variants: &[Raw, On],
        ..case("C1d", "commands, 16 callers over 10,000 aggregates", Path::Commands, 16, 10_000)
    },
    Case {
        variants: &[On, Off],
        ..case("C1c", "commands, 1 caller over 200 aggregates", Path::Commands, 1, 200)
    },
    case("C2", "W1 appends, 16 tasks over 200 streams", Path::Appends, 16, 200),
    Case { variants: &[On], ..case("C3a", "W6 live latency, 2,000 commands/s", Path::Live(W6_RATE), 1, 200) },
    Case {
        variants: &[On],
        ..case("C3b", "W6 live latency, 5,000 commands/s", Path::Live(HIGH_RATE), 1, 200)
    },
    Case {
        variants: &[On],
        ops: BULK_EVENTS,
        ..case("C4", "W5 bulk appends of 1,000 events", Path::Bulk, 1, STREAMS)
    },
];

/// The writer's figures summed over the repetitions.
#[derive(Clone, Copy, Default)]
struct Flushes {
    flushes: u64,
    appends: u64,
    largest: u64,
    retried_alone: u64,
    waited: Duration,
}

impl Flushes {
    /// The flushes between two readings (the largest: since the store was made).
    fn between(before: FlushStats, after: FlushStats) -> Flushes {
        Flushes {
            flushes: after.flushes - before.flushes,
            appends: after.appends - before.appends,
            largest: after.largest,
            retried_alone: after.retried_alone - before.retried_alone,
            waited: after.waited.saturating_sub(before.waited),
        }
    }

    fn add(&mut self, s: Flushes) {
        self.flushes += s.flushes;
        self.appends += s.appends;
        self.largest = self.largest.max(s.largest);
        self.retried_alone += s.retried_alone;
        self.waited += s.waited;
    }

    fn mean(&self) -> f64 {
        self.appends as f64 / self.flushes.max(1) as f64
    }

    fn mean_wait_us(&self) -> f64 {
        self.waited.as_secs_f64() * 1e6 / self.appends.max(1) as f64
    }

    fn json(&self) -> Value {
        json!({ "flushes": self.flushes, "appends": self.appends, "mean_appends": round(self.mean()),
                "largest": self.largest, "retried_alone": self.retried_alone,
                "mean_wait_us": round(self.mean_wait_us()) })
    }
}

/// One phase's figures: the repetition, the writer's figures, the rows sequential scans of
/// the events table read per event, and W6's achieved rate.
struct Phase {
    rep: Rep,
    flush: Option<Flushes>,
    seq_rows: Option<f64>,
    achieved: Option<f64>,
}

/// The writer's configuration with coalescing on: the default, or as many flushes in
/// flight as `FACTUM_BENCH_MAX_IN_FLIGHT` says.
fn coalescing() -> Coalescing {
    match std::env::var("FACTUM_BENCH_MAX_IN_FLIGHT").ok().and_then(|v| v.parse().ok()) {
        Some(n) => Coalescing::default().max_in_flight(n),
        None => Coalescing::default(),
    }
}

/// A fresh schema with the framework's tables and a store on it, coalescing off for
/// `Off`; for `Lean` without the query indexes; for `Filled` FILL
/// events stored on other streams, then `ANALYZE`.
async fn store(b: &Bench, v: Variant) -> (PostgresStore, String) {
    let schema = b.fresh_schema("co").await;
    let connect: PgConnectOptions = b.url.parse().expect("bench url");
    let config = PostgresConfig::from_options(connect)
        .with_schema(SchemaNames::in_schema(schema.clone()).query_indexes(v != Lean))
        .with_pool(PoolSettings::default().max_connections(POOL))
        .with_coalescing(if v == Off { Coalescing::off() } else { coalescing() });
    let store = PostgresStore::connect(config).await.expect("connect");
    store.migrate().await.expect("migrate");
    if v == Filled {
        bulk(&store, FILL, "fill").await;
        sqlx::query(AssertSqlSafe(format!("ANALYZE {schema}.events"))).execute(&b.admin).await.unwrap();
    }
    (store, schema)
}

/// Loads the aggregates `acc-0` … `acc-{n-1}` into live actors, 32 at a time.
async fn warm_n(factum: &Factum, n: usize) {
    let workers = 32;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let f = factum.clone();
        tasks.push(tokio::spawn(async move {
            for s in (w..n).step_by(workers) {
                f.load::<Account>(&format!("acc-{s}")).await.expect("warm");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Rows read by sequential scans of `schema.events`, per event stored, once the store's
/// connections have ended (a server process reports its statistics when it exits).
async fn seq_rows(b: &Bench, store: &PostgresStore, schema: &str, events: usize) -> f64 {
    // The store's connection stack hands idle connections back to the pool after 100 ms.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), store.pool().close()).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let rows: i64 = sqlx::query_scalar(
        "SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'events'",
    )
    .bind(schema)
    .fetch_one(&b.admin)
    .await
    .unwrap();
    rows as f64 / events as f64
}

/// The case through the store.
async fn framework(b: &Bench, case: &Case, v: Variant) -> Phase {
    let (store, schema) = store(b, v).await;
    let before = store.flush_stats();
    let (callers, streams, ops) = (case.callers, case.streams, scaled(case.ops));
    let rep = if case.path == Path::Commands {
        let factum = factum_on(&store, 2 * streams);
        warm_n(&factum, streams).await;
        b.settle().await;
        let f = factum.clone();
        let rep = concurrent_n(callers, streams, ops, move |_, stream, _| {
            let f = f.clone();
            async move {
                f.execute(AccountCommand::Deposit { id: format!("acc-{stream}"), amount: 1 })
                    .await
                    .expect("command");
            }
        })
        .await;
        factum.shutdown();
        rep
    } else {
        b.settle().await;
        let s = store.clone();
        concurrent_n(callers, streams, ops, move |_, stream, version| {
            let store = s.clone();
            async move {
                let id = format!("acc-{stream}");
                let s = StreamId::new("Account", id.as_str()).unwrap();
                store
                    .append(&s, ExpectedVersion::Exact(Version(version)), vec![new_event(&id, 1)])
                    .await
                    .expect("append");
            }
        })
        .await
    };
    // Warming loads and appends nothing: these are the phase's flushes.
    let flush = (v != Off).then(|| Flushes::between(before, store.flush_stats()));
    let seq = seq_rows(b, &store, &schema, rep.latencies.len()).await;
    b.drop_schema(&schema).await;
    Phase { rep, flush, seq_rows: Some(seq), achieved: None }
}

/// The raw baseline: one autocommit `INSERT` per event into the minimal table, each
/// caller on a connection of its own (as W1's raw baseline and `physical` do).
async fn raw(b: &Bench, case: &Case) -> Phase {
    let (_, schema) = b.table("cr", Table::Minimal).await;
    let mut conns = Vec::new();
    for _ in 0..case.callers {
        conns.push(tokio::sync::Mutex::new(PgConnection::connect(&b.url).await.expect("raw connection")));
    }
    let conns = Arc::new(conns);
    let sql: &'static str = Box::leak(raw_insert_sql(&schema).into_boxed_str());
    b.settle().await;
    let c = conns.clone();
    let rep = concurrent_n(case.callers, case.streams, scaled(case.ops), move |t, stream, version| {
        let conns = c.clone();
        async move {
            let id = format!("acc-{stream}");
            let e = new_event(&id, 1);
            // Only task `t` uses connection `t`: the lock is never contended.
            let mut conn = conns[t].lock().await;
            raw_insert(&mut conn, sql, &e, &id, version).await;
        }
    })
    .await;
    if let Ok(conns) = Arc::try_unwrap(conns) {
        for conn in conns {
            let _ = conn.into_inner().close().await;
        }
    }
    b.drop_schema(&schema).await;
    Phase { rep, flush: None, seq_rows: None, achieved: None }
}

async fn phase(b: &Bench, case: &Case, v: Variant) -> Phase {
    match (v, case.path) {
        (Raw, _) => raw(b, case).await,
        (_, Path::Bulk) => {
            let (store, schema) = store(b, v).await;
            b.settle().await;
            let events = scaled(case.ops);
            let cpu = cpu_ticks();
            let began = Instant::now();
            let latencies = super::catch_up::bulk(&store, events, "bulk").await;
            let value = events as f64 / began.elapsed().as_secs_f64();
            let rep = Rep { value, latencies, cpu: cpu_per_op(cpu, events) };
            b.drop_schema(&schema).await;
            Phase { rep, flush: None, seq_rows: None, achieved: None }
        }
        (_, Path::Live(rate)) => {
            let (store, schema) = store(b, v).await;
            let (rep, achieved) = w6_at(b, store.clone(), &schema, rate).await;
            let flush = Flushes::between(FlushStats::default(), store.flush_stats());
            Phase { rep, flush: Some(flush), seq_rows: None, achieved: Some(achieved) }
        }
        _ => framework(b, case, v).await,
    }
}

/// One case's phases over the repetitions, by variant.
#[derive(Default)]
struct Measured {
    reps: [Vec<Rep>; 5],
    seq_rows: [Vec<f64>; 5],
    achieved: [Vec<f64>; 5],
    flushes: [Flushes; 5],
}

impl Measured {
    fn figure(&self, v: Variant) -> Option<Figure> {
        let reps = &self.reps[v as usize];
        (!reps.is_empty()).then(|| figure(reps))
    }
}

fn median_of(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| median(&mut values.to_vec()))
}

/// Goals as (goal, met).
type Goals = Vec<(String, bool)>;

/// A case, its figures and its goals.
type Row<'a> = (&'a Case, Measured, Goals);

fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// A phase's operations, times `FACTUM_BENCH_SCALE` (default 1): a longer phase, for a
/// profile in which it outweighs the set-up around it.
fn scaled(ops: usize) -> usize {
    ops * std::env::var("FACTUM_BENCH_SCALE").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).max(1)
}

/// Whether the phase runs: every one, unless `FACTUM_BENCH_CASES` (case ids, such as
/// `C1a,C2`) or `FACTUM_BENCH_VARIANTS` (`raw`, `on`, `off`, `lean`, `filled`) name
/// others; for a profile of one phase (`perf record` beside it).
fn selected(case: &Case, v: Variant) -> bool {
    let named = |var: &str, item: &str| {
        std::env::var(var).map_or(true, |list| list.split(',').any(|x| x.trim().eq_ignore_ascii_case(item)))
    };
    let variant = ["raw", "on", "off", "lean", "filled"][v as usize];
    named("FACTUM_BENCH_CASES", case.id) && named("FACTUM_BENCH_VARIANTS", variant)
}

/// Runs the cases, their phases in an order that rotates with each repetition (so that
/// none always runs on another's leftovers), and prints the JSON lines and the tables.
pub(super) async fn run(b: &Bench) {
    let load_before = loadavg();
    let mut measured: Vec<Measured> = CASES.iter().map(|_| Measured::default()).collect();
    for rep in 0..b.reps {
        for (c, m) in CASES.iter().zip(&mut measured) {
            let n = c.variants.len();
            for k in 0..n {
                let v = c.variants[(rep + k) % n];
                if !selected(c, v) {
                    continue;
                }
                let p = phase(b, c, v).await;
                let i = v as usize;
                eprintln!(
                    "coalesce: {} {} rep {}: {:.0} {}, CPU client / server µs per op {:?}, {:.1} appends per flush",
                    c.id,
                    ["raw", "on", "off", "lean", "filled"][i],
                    rep + 1,
                    p.rep.value,
                    c.unit(),
                    p.rep.cpu.map(|(a, b)| (a.round(), b.round())),
                    p.flush.map_or(0.0, |f| f.mean())
                );
                m.reps[i].push(p.rep);
                m.seq_rows[i].extend(p.seq_rows);
                m.achieved[i].extend(p.achieved);
                if let Some(s) = p.flush {
                    m.flushes[i].add(s);
                }
            }
        }
    }
    let rows: Vec<_> = CASES
        .iter()
        .zip(measured)
        .filter(|(c, _)| c.variants.iter().all(|&v| selected(c, v)))
        .map(|(c, m)| {
            let g = goals(c, &m);
            (c, m, g)
        })
        .collect();
    for (c, m, g) in &rows {
        println!("{}", row_json(c, m, g));
    }
    print_tables(&rows, b.reps, (load_before, loadavg()));
}
