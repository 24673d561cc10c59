//! `factum status`: the projections, what holds the log's readers back, and the store.

use chrono::{DateTime, Utc};
use clap::Args;
use factum_postgres::sqlx::{self, postgres::PgRow, Row};
use factum_postgres::PostgresStore;
use serde_json::{json, Value};

use crate::connect::Database;
use crate::error::CliError;
use crate::output::{self, seconds, Table};

const PROJECTIONS: &str = include_str!("../sql/projections.sql");
const HORIZON: &str = include_str!("../sql/horizon.sql");
const STORE: &str = include_str!("../sql/store.sql");
const BY_TYPE: &str = include_str!("../sql/by_type.sql");
const LARGEST: &str = include_str!("../sql/largest.sql");

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
    let names = store.names().clone();
    let sql = |t: &str| names.expand(t);
    let projections = sqlx::query(&sql(PROJECTIONS)?).bind(&args.projection).fetch_all(store.pool()).await?;
    if let Some(name) = &args.projection {
        if projections.is_empty() {
            return Err(CliError::NotFound(format!(
                "no projection named {name:?} has a checkpoint in this store"
            )));
        }
    }
    let projections: Vec<Value> = projections.iter().map(projection).collect::<Result<_, _>>()?;
    let horizon = horizon(&sqlx::query(&sql(HORIZON)?).fetch_one(store.pool()).await?)?;
    let store_part = if args.brief { None } else { Some(store_summary(&store, &sql).await?) };
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

fn projection(row: &PgRow) -> Result<Value, CliError> {
    let get = |e: factum_postgres::sqlx::Error| CliError::Sql(format!("reading a projection's row: {e}"));
    let pid: Option<i32> = row.try_get(9).map_err(get)?;
    let request: Option<String> = row.try_get(7).map_err(get)?;
    let requested_at: Option<DateTime<Utc>> = row.try_get(8).map_err(get)?;
    let last: DateTime<Utc> = row.try_get(3).map_err(get)?;
    Ok(json!({
        "name": row.try_get::<String, _>(0).map_err(get)?,
        "checkpoint": {
            "transaction": row.try_get::<i64, _>(1).map_err(get)?,
            "position": row.try_get::<i64, _>(2).map_err(get)?,
        },
        "last_processed_at": last.to_rfc3339(),
        "behind_events": row.try_get::<i64, _>(4).map_err(get)?,
        "behind_seconds": row.try_get::<Option<f64>, _>(5).map_err(get)?,
        "failures": row.try_get::<i64, _>(6).map_err(get)?,
        "request": request.map(|kind| json!({ "kind": kind, "requested_at": requested_at })),
        // Set by the projection when its failure policy stopped it; cleared when its
        // checkpoint next moves (a reset, or getting past the event).
        "stopped": row.try_get::<Option<Value>, _>(12).map_err(get)?,
        "lease": pid.map(|pid| json!({
            "pid": pid,
            "application_name": row.try_get::<Option<String>, _>(10).ok().flatten(),
            "client_addr": row.try_get::<Option<String>, _>(11).ok().flatten(),
        })),
    }))
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

fn horizon(row: &PgRow) -> Result<Value, CliError> {
    let get = |e: factum_postgres::sqlx::Error| CliError::Sql(format!("reading the horizon: {e}"));
    let open_for: Option<f64> = row.try_get(7).map_err(get)?;
    let holder = match open_for {
        Some(open) if open >= STALL_AFTER_SECONDS => json!({
            "pid": row.try_get::<Option<i32>, _>(2).map_err(get)?,
            "database": row.try_get::<Option<String>, _>(3).map_err(get)?,
            "user": row.try_get::<Option<String>, _>(4).map_err(get)?,
            "application_name": row.try_get::<Option<String>, _>(5).map_err(get)?,
            "state": row.try_get::<Option<String>, _>(6).map_err(get)?,
            "open_for_seconds": open,
            "query": row.try_get::<Option<String>, _>(8).map_err(get)?,
        }),
        _ => Value::Null,
    };
    Ok(json!({
        "transaction": row.try_get::<i64, _>(0).map_err(get)?,
        "waiting_events": row.try_get::<i64, _>(1).map_err(get)?,
        "held_back_by": holder,
    }))
}

async fn store_summary(
    store: &PostgresStore,
    sql: &impl Fn(&str) -> Result<String, factum_postgres::ConfigError>,
) -> Result<Value, CliError> {
    let row = sqlx::query(&sql(STORE)?).fetch_one(store.pool()).await?;
    let get = |e: factum_postgres::sqlx::Error| CliError::Sql(format!("reading the store's summary: {e}"));
    let by_type = sqlx::query_as::<_, (String, i64)>(&sql(BY_TYPE)?).fetch_all(store.pool()).await?;
    let largest = sqlx::query_as::<_, (String, String, i64)>(&sql(LARGEST)?).fetch_all(store.pool()).await?;
    Ok(json!({
        "events": row.try_get::<i64, _>(0).map_err(get)?,
        "streams": row.try_get::<i64, _>(1).map_err(get)?,
        "snapshotted_streams": row.try_get::<i64, _>(2).map_err(get)?,
        "tail_after_snapshot": row.try_get::<f64, _>(3).map_err(get)?,
        "bytes": row.try_get::<Option<i64>, _>(4).map_err(get)?,
        "events_by_aggregate_type": by_type.iter().map(|(t, n)| json!({ "aggregate_type": t, "events": n })).collect::<Vec<_>>(),
        "largest_aggregates": largest.iter().map(|(t, id, n)| json!({ "aggregate_type": t, "aggregate_id": id, "events": n })).collect::<Vec<_>>(),
    }))
}
