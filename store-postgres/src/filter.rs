//! The `WHERE` clause of [`query`](factum::store::EventLog::query),
//! [`count`](factum::store::EventLog::count) and [`stream`](factum::store::EventLog::stream), written
//! so that each filter reaches an index of schema version 7 (`sql/indexes/query.sql`):
//!
//! - event types: the `(event_type, topic)` index;
//! - topics: the same index, probed for the `(event type, topic)` pairs whose topic
//!   matches, which `{events}_topic_pairs` enumerates along it;
//! - an aggregate id alone: the stream index, once per aggregate type
//!   (`{events}_aggregate_types`), which is one of the log's own indexes;
//! - time ranges: the BRIN on `occurred_at`;
//! - metadata: the tracing ids through their columns' BRIN, the other keys through the
//!   partial GIN on the rest of the metadata.
//!
//! Each of these clauses only narrows what the plain criterion, always present, selects,
//! so the results do not depend on which indexes exist.

use factum::store::ValidFilter;
use serde_json::{Map, Value};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::config::SchemaNames;
use crate::schema::expand;

/// The metadata keys that have columns of their own, each summarized by the tracing BRIN.
const TRACING_KEYS: [&str; 2] = ["correlation_id", "causation_id"];

/// The metadata keys no index covers: the W3C trace context, unique to each trace.
const UNINDEXED_KEYS: [&str; 2] = ["traceparent", "tracestate"];

/// The metadata without the tracing ids and the trace context: the expression the partial
/// GIN indexes, and (with `<> '{}'`) its predicate.
const METADATA_REST: &str = "(metadata - 'correlation_id' - 'causation_id' - 'traceparent' - 'tracestate')";

/// `base` (a `SELECT … FROM events`) with the filter's `WHERE` clause.
pub(crate) fn filtered(base: &str, f: &ValidFilter<'_>, names: &SchemaNames) -> QueryBuilder<Postgres> {
    let filter = f.filter;
    let indexed = names.query_indexes;
    let mut qb = QueryBuilder::new(base.to_owned());
    qb.push(" WHERE TRUE");
    if !filter.event_types.is_empty() {
        qb.push(" AND event_type = ANY(").push_bind(filter.event_types.clone()).push(")");
    }
    if !f.topics.is_empty() {
        let (exact, wild): (Vec<_>, Vec<_>) = f.topics.iter().partition(|p| p.is_exact());
        let exact: Vec<String> = exact.iter().map(|p| p.as_str().to_owned()).collect();
        let regexes: Vec<String> = wild.iter().map(|p| p.to_postgres_regex()).collect();
        push_topic_match(&mut qb, "topic", &exact, &regexes);
        if indexed {
            let pairs = expand("{schema}.{events}_topic_pairs()", names);
            for column in ["event_type", "topic"] {
                qb.push(format_args!(
                    " AND {column} = ANY(ARRAY(SELECT p.{column} FROM {pairs} p WHERE TRUE"
                ));
                push_topic_match(&mut qb, "p.topic", &exact, &regexes);
                qb.push("))");
            }
        }
    }
    if let Some(id) = &filter.aggregate_id {
        qb.push(" AND aggregate_id = ").push_bind(id.clone());
        if filter.aggregate_type.is_none() {
            qb.push(expand(
                " AND aggregate_type = ANY(ARRAY(SELECT {schema}.{events}_aggregate_types()))",
                names,
            ));
        }
    }
    if let Some(t) = &filter.aggregate_type {
        qb.push(" AND aggregate_type = ").push_bind(t.clone());
    }
    if let Some(from) = filter.from {
        qb.push(" AND occurred_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        qb.push(" AND occurred_at < ").push_bind(to);
    }
    if let Some(m) = f.metadata {
        qb.push(" AND metadata @> ").push_bind(Value::Object(m.clone()));
        if indexed {
            push_metadata_index(&mut qb, m);
        }
    }
    qb
}

/// ` AND (column = ANY(exact) OR ('.' || column) ~ ANY(regexes))`, with the empty parts left out.
fn push_topic_match(qb: &mut QueryBuilder<Postgres>, column: &str, exact: &[String], regexes: &[String]) {
    qb.push(" AND (FALSE");
    if !exact.is_empty() {
        qb.push(format_args!(" OR {column} = ANY(")).push_bind(exact.to_vec()).push(")");
    }
    if !regexes.is_empty() {
        qb.push(format_args!(" OR ('.' || {column}) ~ ANY(")).push_bind(regexes.to_vec()).push(")");
    }
    qb.push(")");
}

/// The clauses that let a metadata containment use the indexes: a tracing id given as a
/// UUID also matches its column; any other key but the trace context matches the rest of
/// the metadata, which is then not empty (the partial GIN's predicate).
fn push_metadata_index(qb: &mut QueryBuilder<Postgres>, m: &Map<String, Value>) {
    for key in TRACING_KEYS {
        if let Some(id) = m.get(key).and_then(Value::as_str).and_then(|s| s.parse::<Uuid>().ok()) {
            qb.push(format_args!(" AND {key} = ")).push_bind(id);
        }
    }
    let rest: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| !TRACING_KEYS.contains(&k.as_str()) && !UNINDEXED_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !rest.is_empty() {
        qb.push(format_args!(" AND {METADATA_REST} @> ")).push_bind(Value::Object(rest));
        qb.push(format_args!(" AND {METADATA_REST} <> '{{}}'::jsonb"));
    }
}
