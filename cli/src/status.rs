//! `factum status`: the projections, what holds the log's readers back, and the store.

use clap::Args;
use factum_postgres::{Horizon, ProjectionReport, StoreReport};
use serde_json::{json, Value};

use crate::connect::Database;
use crate::error::CliError;
use crate::output::{self, seconds, Table};

/// A transaction open longer than this is named as holding readers back.
const STALL_AFTER_SECONDS: f64 = 1.0;

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// Only this projection.
    #[arg(long, value_name = "NAME")]
    projection: Option<String>,
    /// Projections and the horizon only: skip the store's size and the monitoring
    /// queries, which read the whole events table.
    #[arg(long)]
    brief: bool,
}

pub(crate) async fn run(db: &Database, args: StatusArgs, json: bool) -> Result<(), CliError> {
    let store = db.store().await?;
    let projections = store.projection_reports(args.projection.as_deref()).await?;
    if let Some(name) = &args.projection {
        if projections.is_empty() {
            return Err(CliError::NotFound(format!(
                "no projection named {name:?} has a checkpoint in this store"
            )));
        }
    }
    let projections: Vec<Value> = projections.iter().map(projection).collect();
    let horizon = horizon(&store.horizon().await?);
    let store_part = if args.brief { None } else { Some(store_summary(&store.store_report().await?)) };
    if json {
        return output::json_line(&json!({
            "projections": projections,
            "horizon": horizon,
            "store": store_part,
        }));
    }
    let mut text = String::new();
    let mut table = Table::new(&[
        "PROJECTION",
        "BUILD",
        "CHECKPOINT",
        "BEHIND",
        "BEHIND FOR",
        "LAST PROCESSED",
        "LEASE",
        "FAILURES",
        "REQUEST",
        "STOPPED",
    ]);
    let mut stops = String::new();
    for p in &projections {
        let lease = match p["lease"]["pid"].as_i64() {
            Some(pid) => format!(
                "pid {pid} {} {}",
                p["lease"]["application_name"].as_str().unwrap_or(""),
                p["lease"]["client_addr"].as_str().unwrap_or("local")
            ),
            None => "none (not running)".into(),
        };
        table.row(vec![
            p["name"].as_str().unwrap_or_default().to_owned(),
            p["build"].as_str().unwrap_or("-").to_owned(),
            format!("{}/{}", p["checkpoint"]["position"], p["checkpoint"]["transaction"]),
            p["behind_events"].to_string(),
            p["behind_seconds"].as_f64().map_or_else(|| "-".into(), seconds),
            p["last_processed_at"].as_str().unwrap_or("-").to_owned(),
            lease.trim_end().to_owned(),
            p["failures"].to_string(),
            p["request"]["kind"].as_str().unwrap_or("-").to_owned(),
            stopped_cell(&p["stopped"]),
        ]);
        if let Some(line) = stop_line(p) {
            stops.push_str(&line);
        }
    }
    if table.is_empty() {
        text.push_str("projections: none has a checkpoint yet\n");
    } else {
        text.push_str(&table.render());
        text.push_str("(BEHIND counts every event after the checkpoint; a projection scoped to some aggregate types reads only theirs)\n");
        text.push_str("(BUILD: a projection's versions and rebuilds are builds, named name@vVERSION.BUILD; readers read the live one: `factum projections builds NAME`)\n");
        text.push_str(&stops);
    }
    text.push('\n');
    text.push_str(&format!(
        "gap-safe horizon: transaction {}, {} committed event(s) waiting behind it\n",
        horizon["transaction"], horizon["waiting_events"]
    ));
    if let Some(holder) = horizon.get("held_back_by").filter(|h| !h.is_null()) {
        text.push_str(&format!(
            "  held back by pid {} (database {}, user {}, application {:?}, {}) open for {}: {}\n",
            holder["pid"],
            holder["database"].as_str().unwrap_or("?"),
            holder["user"].as_str().unwrap_or("?"),
            holder["application_name"].as_str().unwrap_or(""),
            holder["state"].as_str().unwrap_or("?"),
            holder["open_for_seconds"].as_f64().map_or_else(|| "?".into(), seconds),
            holder["query"].as_str().unwrap_or(""),
        ));
    }
    if let Some(s) = &store_part {
        text.push('\n');
        text.push_str(&format!(
            "store: {} event(s) in {} stream(s), {} bytes (table and indexes); {} stream(s) with a snapshot; \
             loading an aggregate reads {:.1} event(s) after its snapshot (or from the start) on average\n",
            s["events"], s["streams"], s["bytes"], s["snapshotted_streams"], s["tail_after_snapshot"].as_f64().unwrap_or(0.0)
        ));
        let mut by_type = Table::new(&["AGGREGATE TYPE", "EVENTS"]);
        for t in s["events_by_aggregate_type"].as_array().into_iter().flatten() {
            by_type.row(vec![t["aggregate_type"].as_str().unwrap_or("").to_owned(), t["events"].to_string()]);
        }
        let mut largest = Table::new(&["LARGEST AGGREGATES", "EVENTS"]);
        for t in s["largest_aggregates"].as_array().into_iter().flatten() {
            let id = format!(
                "{}/{}",
                t["aggregate_type"].as_str().unwrap_or(""),
                t["aggregate_id"].as_str().unwrap_or("")
            );
            largest.row(vec![id, t["events"].to_string()]);
        }
        if !by_type.is_empty() {
            text.push('\n');
            text.push_str(&by_type.render());
            text.push('\n');
            text.push_str(&largest.render());
        }
    }
    output::print(&text)
}

fn projection(p: &ProjectionReport) -> Value {
    json!({
        "name": p.name,
        "checkpoint": {
            "transaction": p.checkpoint.transaction,
            "position": p.checkpoint.position.0,
        },
        "last_processed_at": p.last_processed_at.to_rfc3339(),
        "behind_events": p.behind_events,
        "behind_seconds": p.behind_seconds,
        "failures": p.failures,
        "request": p.request.as_ref().map(|(kind, requested_at)| json!({ "kind": kind, "requested_at": requested_at })),
        // Set by the projection when its failure policy stopped it; cleared when its
        // checkpoint next moves (a reset, or getting past the event).
        "stopped": p.stopped,
        // The state of the projection build this checkpoint belongs to, if it is one.
        "build": p.build.map(|b| b.as_str()),
        "lease": p.lease.as_ref().map(|l| json!({
            "pid": l.pid,
            "application_name": l.application_name,
            "client_addr": l.client_addr,
        })),
    })
}

/// The STOPPED cell: where the failure policy stopped the projection, or `-`.
fn stopped_cell(stopped: &Value) -> String {
    match stopped["global_position"].as_i64() {
        Some(position) => format!("at {position}/{}", stopped["transaction_id"]),
        None => "-".into(),
    }
}

/// The line under the table that says why a projection stopped, if it did.
fn stop_line(p: &Value) -> Option<String> {
    let s = p.get("stopped").filter(|s| !s.is_null())?;
    Some(format!(
        "{} stopped by its failure policy at event {} ({}/{} version {}, position {}) after {} attempt(s), {}: {}\n",
        p["name"].as_str().unwrap_or_default(),
        s["event_id"].as_str().unwrap_or("?"),
        s["aggregate_type"].as_str().unwrap_or("?"),
        s["aggregate_id"].as_str().unwrap_or("?"),
        s["version"],
        s["global_position"],
        s["attempts"],
        s["failed_at"].as_str().unwrap_or("?"),
        s["error"].as_str().unwrap_or("").replace('\n', " "),
    ))
}

fn horizon(h: &Horizon) -> Value {
    let holder = match &h.oldest {
        Some(t) if t.open_for_seconds.is_some_and(|open| open >= STALL_AFTER_SECONDS) => json!({
            "pid": t.session.pid,
            "database": t.database,
            "user": t.user,
            "application_name": t.session.application_name,
            "state": t.state,
            "open_for_seconds": t.open_for_seconds,
            "query": t.query,
        }),
        _ => Value::Null,
    };
    json!({
        "transaction": h.transaction,
        "waiting_events": h.waiting_events,
        "held_back_by": holder,
    })
}

fn store_summary(s: &StoreReport) -> Value {
    json!({
        "events": s.events,
        "streams": s.streams,
        "snapshotted_streams": s.snapshotted_streams,
        "tail_after_snapshot": s.tail_after_snapshot,
        "bytes": s.bytes,
        "events_by_aggregate_type": s.by_aggregate_type.iter().map(|(t, n)| json!({ "aggregate_type": t, "events": n })).collect::<Vec<_>>(),
        "largest_aggregates": s.largest.iter().map(|(t, id, n)| json!({ "aggregate_type": t, "aggregate_id": id, "events": n })).collect::<Vec<_>>(),
    })
}
