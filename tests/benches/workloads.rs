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
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Row, SqlSafeStr, SqlStr};
use uuid::Uuid;

#[path = "workloads/catch_up.rs"]
mod catch_up;
#[path = "workloads/coalesce.rs"]
mod coalesce;
#[path = "workloads/cold_load.rs"]
mod cold_load;
#[path = "workloads/commands.rs"]
mod commands;
#[path = "workloads/domain.rs"]
mod domain;
#[path = "workloads/environment.rs"]
mod environment;
#[path = "workloads/figures.rs"]
mod figures;
#[path = "workloads/live.rs"]
mod live;
#[path = "workloads/memory.rs"]
mod memory;
#[path = "workloads/physical.rs"]
mod physical;
#[path = "workloads/processes.rs"]
mod processes;
#[path = "workloads/read_your_writes.rs"]
mod read_your_writes;
#[path = "workloads/slices.rs"]
mod slices;

use catch_up::*;
use cold_load::*;
use commands::*;
use domain::*;
use environment::*;
use figures::*;
use live::*;
use memory::*;
use processes::*;
use read_your_writes::*;
use slices::*;

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
    if want("w8") {
        for (id, rate) in ["W8a", "W8b"].into_iter().zip(W8_RATES) {
            let (mut reps_, mut live, mut rates) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps {
                // W6 at the same rate, just before, as the yardstick.
                let (store, schema) = b.fresh_store("w8live").await;
                live.push(w6_at(&b, store, &schema, rate).await.0.value);
                let (r, achieved) = w8_at(&b, rate).await;
                reps_.push(r);
                rates.push(achieved);
            }
            let live_p99 = median(&mut live);
            let o = Outcome {
                id,
                name: "read-your-writes (ack to a read that waited for the command)",
                unit: "ms p99",
                framework: figure(&reps_),
                raw: None,
                goal: Goal::P99AtMost(live_p99 + 2.0),
                note: format!(
                    "{rate} commands/s for {W6_SECONDS} s (achieved {:.0}/s median) over {STREAMS} aggregates; \
                     W6 at the same rate just before: p99 {live_p99:.2} ms (goal: within 2 ms of it)",
                    median(&mut rates)
                ),
            };
            emit(&o);
            outcomes.push(o);
        }
    }
    if want("w9") {
        let mut one_slice = None;
        for (slices, instances) in W9_LAYOUTS {
            let mut reps_ = Vec::new();
            for _ in 0..reps {
                reps_.push(w9_at(&b, slices, instances).await);
            }
            let fw = figure(&reps_);
            let single = *one_slice.get_or_insert(fw.median);
            let linear = Figure {
                median: single * f64::from(slices),
                min: f64::NAN,
                max: f64::NAN,
                p50_ms: f64::NAN,
                p99_ms: f64::NAN,
                cpu: None,
            };
            let o = Outcome {
                id: match (slices, instances) {
                    (1, _) => "W9a",
                    (4, _) => "W9b",
                    (_, 1) => "W9c",
                    _ => "W9d",
                },
                name: "projection in slices, 2 ms per event",
                unit: "events/s",
                framework: fw,
                raw: (slices > 1).then_some(linear),
                goal: if slices > 1 { Goal::RatioAtLeast(0.80) } else { Goal::Yardstick },
                note: format!(
                    "{slices} slice(s) over {instances} instance(s), {W9_EVENTS} events over 400 streams, \
                     rate between 5% and 95% handled; raw = 1 slice's median rate x {slices} (linear)"
                ),
            };
            emit(&o);
            outcomes.push(o);
        }
    }
    if want("w10") {
        let (mut steps, mut live, mut rates) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            steps.push(w10_backlog(&b).await);
            let (rep, rate) = w10_live(&b).await;
            live.push(rep);
            rates.push(rate);
        }
        let a = Outcome {
            id: "W10a",
            name: "process steps (trigger in, command acknowledged), catching up",
            unit: "steps/s",
            framework: figure(&steps),
            raw: None,
            goal: Goal::Yardstick,
            note: format!(
                "{W10_BACKLOG} triggers, each a new process instance that sends one command and ends; \
                 single-active, 16 instances at once"
            ),
        };
        emit(&a);
        outcomes.push(a);
        let b_ = Outcome {
            id: "W10b",
            name: "process latency (trigger's commit to its command's commit)",
            unit: "ms p99",
            framework: figure(&live),
            raw: None,
            goal: Goal::Yardstick,
            note: format!(
                "{W10_RATE} triggers/s for {W10_SECONDS} s (achieved {:.0}/s median), each a new process \
                 instance; from the two events' recorded_at",
                median(&mut rates)
            ),
        };
        emit(&b_);
        outcomes.push(b_);
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
            for old in if rep.is_multiple_of(2) { [true, false] } else { [false, true] } {
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
