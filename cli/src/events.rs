//! `factum events`: query, count, follow (`tail`) and read one stream (`stream`).

use std::sync::Arc;

use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};
use factum::prelude::*;
use factum::store::{subscribe_all, Checkpoint, GlobalPosition, OrderBy, SubscriptionOptions, VersionRange};
use factum::{EventFilter, EventStore, RecordedEvent, StreamId};
use factum_postgres::sqlx;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::connect::Database;
use crate::error::CliError;
use crate::output::{self, Table};
use crate::time::parse_point;

#[derive(Subcommand, Debug)]
pub(crate) enum EventsCommand {
    /// The events matching the filters, newest first unless --asc.
    Query {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many events.
        #[arg(long, default_value_t = factum::store::DEFAULT_QUERY_LIMIT)]
        limit: usize,
        /// Skip this many matching events.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// The sort key.
        #[arg(long, value_enum, default_value_t = Order::Occurred)]
        order: Order,
        /// Oldest first.
        #[arg(long)]
        asc: bool,
    },
    /// How many events match the filters.
    Count {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Follow the log live (gap-safe, in log order), optionally filtered, until Ctrl-C.
    Tail {
        #[command(flatten)]
        filter: FilterArgs,
        /// Start at the beginning of the log rather than now.
        #[arg(long)]
        from_start: bool,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// One aggregate's history, as TYPE/ID (e.g. Order/o-1).
    Stream {
        /// The stream, as AGGREGATE_TYPE/AGGREGATE_ID.
        stream: String,
        /// Only events after this version.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

/// Every filter the store offers.
#[derive(Args, Debug, Clone)]
pub(crate) struct FilterArgs {
    /// Only this event type (repeatable).
    #[arg(long = "type", value_name = "EVENT_TYPE")]
    types: Vec<String>,
    /// Only topics matching this pattern, with RabbitMQ wildcards: order.# or
    /// order.items.* (repeatable).
    #[arg(long = "topic", value_name = "PATTERN")]
    topics: Vec<String>,
    /// Only this aggregate type.
    #[arg(long)]
    aggregate_type: Option<String>,
    /// Only this aggregate id.
    #[arg(long)]
    aggregate_id: Option<String>,
    /// Occurred at or after: a timestamp, a date, or a duration ago (30d, 12h).
    #[arg(long, value_name = "WHEN")]
    from: Option<String>,
    /// Occurred before: a timestamp, a date, or a duration ago.
    #[arg(long, value_name = "WHEN")]
    to: Option<String>,
    /// The metadata contains this JSON object, e.g. '{"tenant_id":"acme"}'.
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum Order {
    /// By when the events occurred.
    Occurred,
    /// By global position.
    Position,
}

impl FilterArgs {
    /// The store's filter (checked against the store's limits by the store itself).
    pub(crate) fn filter(&self) -> Result<EventFilter, CliError> {
        let now = Utc::now();
        let mut f =
            EventFilter::new().event_types(self.types.clone()).topics(self.topics.clone()).occurred_between(
                self.from.as_deref().map(|t| parse_point(t, now)).transpose()?,
                self.to.as_deref().map(|t| parse_point(t, now)).transpose()?,
            );
        if let Some(t) = &self.aggregate_type {
            f = f.aggregate_type(t.clone());
        }
        if let Some(id) = &self.aggregate_id {
            f = f.aggregate_id(id.clone());
        }
        if let Some(m) = &self.metadata {
            let value: Value = serde_json::from_str(m)
                .map_err(|e| CliError::Usage(format!("--metadata is not JSON: {e}")))?;
            f = f.metadata(value);
        }
        Ok(f)
    }
}

pub(crate) async fn run(db: &Database, command: EventsCommand, json: bool) -> Result<(), CliError> {
    match command {
        EventsCommand::Query { filter, limit, offset, order, asc } => {
            let order = match order {
                Order::Occurred => OrderBy::OccurredAt,
                Order::Position => OrderBy::GlobalPosition,
            };
            let filter = filter.filter()?.limit(limit).offset(offset).order_by(order, asc);
            filter.validate(&factum::store::Limits::default())?;
            let store = db.store().await?;
            print_events(&store.query(&filter).await?, json)
        }
        EventsCommand::Count { filter } => {
            let filter = filter.filter()?;
            filter.validate(&factum::store::Limits::default())?;
            let n = db.store().await?.count(&filter).await?;
            if json {
                output::json_line(&json!({ "count": n }))
            } else {
                output::print(&format!("{n}\n"))
            }
        }
        EventsCommand::Tail { filter, from_start, count } => tail(db, &filter, from_start, count, json).await,
        EventsCommand::Stream { stream, after } => {
            let (t, id) = stream.split_once('/').ok_or_else(|| {
                CliError::Usage(format!(
                    "a stream is AGGREGATE_TYPE/AGGREGATE_ID (e.g. Order/o-1), not {stream:?}"
                ))
            })?;
            let stream = StreamId::new(t, id)?;
            let store = db.store().await?;
            let events = store.read_stream(&stream, VersionRange::after(factum::Version(after))).await?;
            if events.is_empty() && after == 0 {
                return Err(CliError::NotFound(format!("no events in stream {t}/{id}")));
            }
            print_events(&events, json)
        }
    }
}

async fn tail(
    db: &Database,
    args: &FilterArgs,
    from_start: bool,
    count: Option<u64>,
    json: bool,
) -> Result<(), CliError> {
    let filter = args.filter()?;
    let limits = factum::store::Limits::default();
    let valid = filter.validate(&limits)?;
    let store = db.store().await?;
    // Now: everything older than the oldest running transaction is visible already.
    let after = if from_start {
        Checkpoint::START
    } else {
        let horizon: i64 = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(store.pool())
            .await?;
        Checkpoint {
            transaction: (horizon as u64).saturating_sub(1),
            position: GlobalPosition(i64::MAX as u64),
        }
    };
    let options = SubscriptionOptions::default().poll_interval(std::time::Duration::from_millis(500));
    let mut events = subscribe_all(Arc::new(store) as Arc<dyn EventStore>, after, options)?;
    let mut shown = 0u64;
    if !json {
        output::print(&format!("{}\n", HEADER.join("  ")))?;
    }
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(event) = next else { return Ok(()) };
        let event = event?;
        if !valid.matches(&event) {
            continue;
        }
        if json {
            output::json_line(&event_json(&event))?;
        } else {
            output::print(&format!("{}\n", row(&event).join("  ")))?;
        }
        shown += 1;
        if count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
    }
}

const HEADER: [&str; 7] = ["POSITION", "OCCURRED", "STREAM", "VERSION", "TYPE", "TOPIC", "EVENT ID"];

fn row(e: &RecordedEvent) -> Vec<String> {
    vec![
        e.position.0.to_string(),
        e.occurred_at.to_rfc3339(),
        format!("{}/{}", e.stream.aggregate_type(), e.stream.aggregate_id()),
        e.version.0.to_string(),
        e.event_type.clone(),
        e.topic.clone().unwrap_or_else(|| "-".into()),
        e.event_id.to_string(),
    ]
}

fn print_events(events: &[RecordedEvent], json: bool) -> Result<(), CliError> {
    if json {
        for e in events {
            output::json_line(&event_json(e))?;
        }
        return Ok(());
    }
    let mut table = Table::new(&HEADER);
    for e in events {
        table.row(row(e));
    }
    table.print()
}

/// An event as one JSON object: where it is, what it is, and its payload and metadata.
pub(crate) fn event_json(e: &RecordedEvent) -> Value {
    json!({
        "position": e.position.0,
        "transaction": e.transaction,
        "event_id": e.event_id,
        "aggregate_type": e.stream.aggregate_type(),
        "aggregate_id": e.stream.aggregate_id(),
        "version": e.version.0,
        "event_type": e.event_type,
        "schema_version": e.schema_version,
        "topic": e.topic,
        "occurred_at": e.occurred_at,
        "recorded_at": e.recorded_at,
        "metadata": serde_json::to_value(&e.metadata).unwrap_or(Value::Null),
        "payload": e.payload,
    })
}
