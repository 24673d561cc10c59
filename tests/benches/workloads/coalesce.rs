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

/// Commands or appends per throughput phase.
const OPS: usize = 20_000;
/// Commands of the one-caller latency phase.
const ONE_CALLER_OPS: usize = 2_000;
/// W6's second rate, commands/s.
const HIGH_RATE: u64 = 5_000;

/// What a case drives: commands through actors, `store.append`, or W6 at a rate.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    Commands,
    Appends,
    Live(u64),
}

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
            Path::Live(_) => "ms p99",
        }
    }
}

const fn case(id: &'static str, name: &'static str, path: Path, callers: usize, streams: usize) -> Case {
    let ops = if callers == 1 { ONE_CALLER_OPS } else { OPS };
    Case { id, name, path, callers, streams, ops, variants: &[Raw, On, Off, Lean, Filled] }
}

const CASES: [Case; 6] = [
    case("C1a", "commands, 64 callers over 10,000 aggregates", Path::Commands, 64, 10_000),
    case("C1b", "commands, 16 callers over 200 aggregates", Path::Commands, 16, 200),
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
        sqlx::query(&format!("ANALYZE {schema}.events")).execute(&b.admin).await.unwrap();
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
    let (callers, streams, ops) = (case.callers, case.streams, case.ops);
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
    let rep = concurrent_n(case.callers, case.streams, case.ops, move |t, stream, version| {
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

fn goals(c: &Case, m: &Measured) -> Goals {
    let (on, off, raw) = (m.figure(On).expect("on runs"), m.figure(Off), m.figure(Raw));
    let at_least = |g: f64| {
        let r = raw.as_ref().map_or(f64::NAN, |raw| on.median / raw.median);
        (format!("on ÷ raw >= {g:.2}x"), r >= g)
    };
    let within = |p: &str, on: f64, off: f64| (format!("on {p} <= 1.05 × off"), on <= 1.05 * off);
    match c.id {
        "C1a" => vec![at_least(2.5), ("on p99 <= 10 ms".into(), on.p99_ms <= 10.0)],
        "C1b" | "C2" => vec![at_least(1.2)],
        "C1c" => {
            let off = off.expect("C1c runs off");
            vec![within("p50", on.p50_ms, off.p50_ms), within("p99", on.p99_ms, off.p99_ms)]
        }
        _ => vec![("p99 <= 20 ms".into(), on.p99_ms <= 20.0)],
    }
}

fn row_json(c: &Case, m: &Measured, goals: &[(String, bool)]) -> Value {
    let fig = |v: Variant| m.figure(v).as_ref().map(figure_json);
    let ratio2 = |a: Variant, b: Variant| Some(round(m.figure(a)?.median / m.figure(b)?.median));
    let ratio = |v: Variant| ratio2(On, v);
    let seq = |v: Variant| median_of(&m.seq_rows[v as usize]).map(round);
    json!({
        "workload": "coalesce", "case": c.id, "name": c.name,
        "unit": c.unit(),
        "on": fig(On), "off": fig(Off), "raw": fig(Raw), "on_to_raw": ratio(Raw), "on_to_off": ratio(Off),
        "flush": m.flushes[On as usize].json(), "seq_rows_per_event": { "on": seq(On), "off": seq(Off) },
        "achieved_rate": median_of(&m.achieved[On as usize]).map(round),
        "diagnostics": DIAGNOSTICS.iter().filter_map(|&(v, what)| m.figure(v).map(|f| json!({
            "variant": what, "figure": figure_json(&f), "flush": m.flushes[v as usize].json(),
            "seq_rows_per_event": seq(v), "on_to_raw": ratio2(v, Raw),
            "achieved_rate": median_of(&m.achieved[v as usize]).map(round) }))).collect::<Vec<_>>(),
        "goals": goals.iter().map(|(g, met)| json!({ "goal": g, "met": met })).collect::<Vec<_>>(),
        "note": match c.path {
            Path::Live(rate) => format!("W6: command ack to projection commit, {rate} commands/s for \
                                         {W6_SECONDS} s over {STREAMS} aggregates"),
            _ => format!("{} ops of 1 event, {} callers over {} streams; the store's pool: {POOL} \
                          connections; raw: minimal table, a connection per caller", c.ops, c.callers, c.streams),
        },
    })
}

/// Prints a table row of `cells`.
fn line(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}

fn print_tables(rows: &[Row<'_>], reps: usize, load: (String, String)) {
    let fig = |f: &Option<Figure>| f.as_ref().map_or("—".into(), fmt_figure);
    let lat = |f: &Option<Figure>| f.as_ref().map_or("—".into(), fmt_lat);
    let x = |a: &Option<Figure>, b: &Option<Figure>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a.median / b.median),
        _ => "—".into(),
    };
    // W6's rows say the rate they achieved.
    let name = |c: &Case, m: &Measured, v: Variant| match median_of(&m.achieved[v as usize]) {
        Some(r) => format!("{} {} (achieved {r:.0}/s)", c.id, c.name),
        None => format!("{} {}", c.id, c.name),
    };
    let cpu = |m: &Measured, vs: &[Variant], pick: fn((f64, f64)) -> f64| {
        let one = |v: &Variant| {
            m.figure(*v).and_then(|f| f.cpu).map_or("—".into(), |c| format!("{:.0}", pick(c)))
        };
        vs.iter().map(one).collect::<Vec<String>>().join(" / ")
    };
    let seq = |m: &Measured, v: Variant| {
        median_of(&m.seq_rows[v as usize]).map_or("—".into(), |s| format!("{s:.0}"))
    };
    let flushes = |f: &Flushes| {
        let w = f.mean_wait_us();
        format!("{:.1} ({}) | {} | {} | {w:.0}", f.mean(), f.largest, f.flushes, f.retried_alone)
    };
    println!();
    println!("Coalesced appends: the store with its coalescing writer on (the default) and off, beside the minimal raw table with one autocommit INSERT per event on dedicated connections; medians (min–max) over {reps} repetitions. Load average before / after: {} / {}.", load.0, load.1);
    println!();
    println!("| case | unit | on median (min–max) | on p50 / p99 ms | off median (min–max) | off p50 / p99 ms | raw median (min–max) | raw p50 / p99 ms | on ÷ raw | on ÷ off | goal | met |");
    println!("{}|", "| --- ".repeat(12));
    for (c, m, goals) in rows {
        let goal: Vec<&str> = goals.iter().map(|(g, _)| g.as_str()).collect();
        let met: Vec<&str> = goals.iter().map(|(_, m)| if *m { "yes" } else { "**no**" }).collect();
        let (on, off, raw) = (m.figure(On), m.figure(Off), m.figure(Raw));
        line(&[
            name(c, m, On),
            c.unit().into(),
            fig(&on),
            lat(&on),
            fig(&off),
            lat(&off),
            fig(&raw),
            lat(&raw),
            x(&on, &raw),
            x(&on, &off),
            goal.join("; "),
            met.join("; "),
        ]);
    }
    println!();
    println!("CPU per event, µs (medians; server = every `postgres` process, client = this process); the coalescing writer's flushes with it on (over all repetitions); rows read by sequential scans of the events table per event (medians):");
    println!();
    println!("| case | server: on / off / raw | client: on / off / raw | appends per flush: mean (largest) | flushes | retried alone | mean wait before flush µs | seq-scanned rows per event: on / off |");
    println!("{}|", "| --- ".repeat(8));
    for (c, m, _) in rows {
        let all = [On, Off, Raw];
        let seqs = format!("{} / {}", seq(m, On), seq(m, Off));
        let fl = flushes(&m.flushes[On as usize]);
        line(&[name(c, m, On), cpu(m, &all, |c| c.1), cpu(m, &all, |c| c.0), fl, seqs]);
    }
    println!();
    println!("Diagnostics, coalescing on, in the same run: lean schema = `SchemaNames::query_indexes(false)`, the log's own indexes only; filled = the table holds {FILL} events on other streams and was analyzed before the phase:");
    println!();
    println!("| case | variant | median (min–max) | p50 / p99 ms | ÷ raw | ÷ on | CPU server / client µs per event | appends per flush: mean (largest) | flushes | retried alone | mean wait µs | seq-scanned rows per event |");
    println!("{}|", "| --- ".repeat(12));
    for (c, m, _) in rows {
        for (v, what) in DIAGNOSTICS.into_iter().filter(|(v, _)| m.figure(*v).is_some()) {
            let cpu = format!("{} / {}", cpu(m, &[v], |c| c.1), cpu(m, &[v], |c| c.0));
            let (f, on, raw) = (m.figure(v), m.figure(On), m.figure(Raw));
            let fl = flushes(&m.flushes[v as usize]);
            let cells = [fig(&f), lat(&f), x(&f, &raw), x(&f, &on), cpu, fl, seq(m, v)];
            line(&[&[name(c, m, v), what.into()][..], &cells[..]].concat());
        }
    }
}

fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
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
                let p = phase(b, c, v).await;
                let i = v as usize;
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
