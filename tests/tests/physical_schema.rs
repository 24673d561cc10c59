//! Schema version 7's physical schema: every filter of `query`, `count` and `stream` uses an
//! index (checked with EXPLAIN), the filters select the same events with and without the
//! query indexes, and a database at version 6 holding events upgrades to it.
//!
//! The test tables are small, and on small tables the planner rightly prefers reading the
//! table; so the EXPLAIN test runs with `enable_seqscan = off` and asserts more than "some
//! index": the filter's own index must appear with the filter's column in its index
//! condition, and no node may read the events table sequentially. `enable_seqscan = off`
//! only makes a sequential scan cost more; a filter that no index can serve still gets one.

use chrono::{Duration, Utc};
use factum::store::{Limits, OrderBy};
use factum::{EventFilter, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId, Version};
use factum_postgres::{migrations, PostgresStore, SchemaNames};
use factum_tests::TestDb;
use serde_json::{json, Value};
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

/// The fixture's events: 4 aggregate types, 40 streams, 4 event types with topics (one
/// without), half of them with a tenant in their metadata, all with tracing ids.
fn fixture(i: usize) -> (StreamId, NewEvent) {
    let kinds = [
        ("order.placed", Some("shop.order.placed")),
        ("order.paid", Some("shop.order.paid")),
        ("invoice.sent", Some("billing.invoice.sent")),
        ("audit.noted", None),
    ];
    let (event_type, topic) = kinds[i % kinds.len()];
    let types = ["Order", "Invoice", "Customer", "Audit"];
    let stream = StreamId::new(types[i % 40 / 10], format!("id-{}", i % 40)).unwrap();
    let mut metadata = Metadata {
        correlation_id: Some(Uuid::now_v7()),
        causation_id: Some(Uuid::now_v7()),
        ..Metadata::default()
    };
    if i.is_multiple_of(2) {
        metadata.tenant_id = Some(format!("tenant-{}", i % 6));
    }
    let mut event = NewEvent::new(event_type, json!({ "n": i })).with_metadata(metadata);
    if let Some(topic) = topic {
        event = event.with_topic(topic);
    }
    event.occurred_at = Utc::now() - Duration::minutes(600 - i as i64);
    (stream, event)
}

/// Appends the fixture's `n` events, one at a time, and analyzes the table. With mode
/// any, whose append function every schema version since 3 has: the version 6 test
/// appends before it migrates.
async fn fill(store: &dyn EventStore, db: &TestDb, schema: &str, n: usize) {
    for i in 0..n {
        let (stream, event) = fixture(i);
        store.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap();
    }
    let mut conn = db.connect().await;
    sqlx::query(AssertSqlSafe(format!("ANALYZE {schema}.events"))).execute(&mut conn).await.unwrap();
}

/// Each filter, with the index that must serve it and a column of its index condition.
/// A topic filter reaches the (event_type, topic) index through the event types of the
/// pairs whose topic matches (the filter sets no event type itself); the planner may or
/// may not add the topics to the condition. `|` separates indexes that serve the filter equally well.
fn filters(sample: &factum::RecordedEvent) -> Vec<(&'static str, EventFilter, &'static str, &'static str)> {
    let correlation = sample.metadata.correlation_id.unwrap().to_string();
    let from = sample.occurred_at;
    vec![
        (
            "event types",
            EventFilter::new().event_types(["order.paid", "audit.noted"]),
            "events_type_topic_idx",
            "event_type",
        ),
        (
            "exact topic",
            EventFilter::new().topics(["shop.order.placed"]),
            "events_type_topic_idx",
            "event_type",
        ),
        (
            "topic pattern",
            EventFilter::new().topics(["shop.*.paid", "billing.#"]),
            "events_type_topic_idx",
            "event_type",
        ),
        ("leading wildcard", EventFilter::new().topics(["*.order.*"]), "events_type_topic_idx", "event_type"),
        (
            "aggregate id",
            EventFilter::new().aggregate_id("id-3"),
            "events_stream_version_key",
            "aggregate_id",
        ),
        (
            "aggregate type and id",
            EventFilter::new().aggregate_type("Invoice").aggregate_id("id-12"),
            "events_stream_version_key",
            "aggregate_id",
        ),
        (
            "aggregate type",
            EventFilter::new().aggregate_type("Customer"),
            "events_category_idx|events_stream_version_key",
            "aggregate_type",
        ),
        (
            "time range",
            EventFilter::new().occurred_between(Some(from), Some(from + Duration::minutes(30))),
            "events_occurred_brin",
            "occurred_at",
        ),
        (
            "metadata key",
            EventFilter::new().metadata(json!({ "tenant_id": "tenant-2" })),
            "events_metadata_idx",
            "metadata",
        ),
        (
            "metadata correlation id",
            EventFilter::new().metadata(json!({ "correlation_id": correlation })),
            "events_tracing_brin",
            "correlation_id",
        ),
    ]
}

/// The `n`th event stored (by position), read with `query`: `read_all` stops at the
/// gap-safe horizon, which a transaction open elsewhere on a shared server holds back.
async fn nth(store: &dyn EventStore, n: usize) -> factum::RecordedEvent {
    let filter = EventFilter::new().order_by(OrderBy::GlobalPosition, true).limit(n);
    store.query(&filter).await.unwrap().pop().unwrap()
}

/// Every node of an EXPLAIN (FORMAT JSON) plan.
fn nodes(plan: &Value, out: &mut Vec<Value>) {
    out.push(plan.clone());
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for child in children {
            nodes(child, out);
        }
    }
}

/// The events `filter` selects, by the filter's own rules, from everything stored.
async fn expected(store: &dyn EventStore, filter: &EventFilter) -> Vec<Uuid> {
    let all = store.query(&EventFilter::new().limit(10_000)).await.unwrap();
    let valid = filter.validate(&Limits::default()).unwrap();
    let mut ids: Vec<Uuid> = all.iter().filter(|e| valid.matches(e)).map(|e| e.event_id).collect();
    ids.sort();
    ids
}

async fn selected(store: &dyn EventStore, filter: &EventFilter) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> =
        store.query(&filter.clone().limit(10_000)).await.unwrap().iter().map(|e| e.event_id).collect();
    ids.sort();
    assert_eq!(store.count(filter).await.unwrap(), ids.len() as u64, "count and query agree");
    ids
}

#[tokio::test]
async fn every_filter_uses_an_index() {
    let db = TestDb::new().await;
    let mut config = db.config();
    config.connect = config.connect.options([("enable_seqscan", "off")]);
    let store = db.store_with(config).await;
    let log: &dyn EventStore = &store;
    fill(log, &db, "public", 400).await;
    let sample = nth(log, 200).await;
    for (name, filter, index, column) in filters(&sample) {
        let plan = store.explain_query(&filter).await.unwrap();
        let mut all = Vec::new();
        nodes(&plan[0]["Plan"], &mut all);
        let seq = all.iter().any(|n| n["Node Type"] == "Seq Scan" && n["Relation Name"] == "events");
        assert!(!seq, "{name}: a sequential scan of events: {plan:#}");
        let served = all.iter().any(|n| {
            index.split('|').any(|i| n["Index Name"] == i)
                && n["Index Cond"].as_str().is_some_and(|c| c.contains(column))
        });
        assert!(served, "{name}: {index} does not serve {column}: {plan:#}");
        let want = expected(log, &filter).await;
        assert!(!want.is_empty(), "{name}: the fixture selects nothing");
        assert_eq!(selected(log, &filter).await, want, "{name}");
    }
}

#[tokio::test]
async fn filters_select_the_same_events_without_query_indexes() {
    let db = TestDb::new().await;
    let lean = db.config().with_schema(SchemaNames::in_schema("lean").query_indexes(false));
    let store = db.store_with(lean).await;
    let store: &dyn EventStore = &store;
    fill(store, &db, "lean", 200).await;
    let mut conn = db.connect().await;
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'lean' AND tablename = 'events' ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        indexes,
        [
            "events_category_idx",
            "events_event_id_key",
            "events_log_idx",
            "events_pkey",
            "events_stream_version_key"
        ],
        "only the log's own indexes"
    );
    let sample = nth(store, 100).await;
    for (name, filter, _, _) in filters(&sample) {
        let want = expected(store, &filter).await;
        assert!(!want.is_empty(), "{name}: the fixture selects nothing");
        assert_eq!(selected(store, &filter).await, want, "{name}");
    }
}

#[tokio::test]
async fn a_version_6_database_with_events_upgrades() {
    let db = TestDb::new().await;
    let names = SchemaNames::default();
    let mut conn = db.connect().await;
    for m in migrations(&names).iter().filter(|m| m.version <= 6) {
        sqlx::raw_sql(AssertSqlSafe(m.script(&names))).execute(&mut conn).await.unwrap();
    }
    let v6_indexes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'events'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(v6_indexes, 11, "version 6's indexes");
    // Events written at version 6.
    let pg = PostgresStore::connect(db.config()).await.unwrap();
    let store: &dyn EventStore = &pg;
    fill(store, &db, "public", 120).await;
    let before: String =
        sqlx::query_scalar("SELECT md5(string_agg(e::text, '|' ORDER BY global_position)) FROM events e")
            .fetch_one(&mut conn)
            .await
            .unwrap();

    assert_eq!(pg.migrate().await.unwrap(), vec![7, 8, 9, 10, 11, 12, 13, 14]);
    let after: String =
        sqlx::query_scalar("SELECT md5(string_agg(e::text, '|' ORDER BY global_position)) FROM events e")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(before, after, "the events are untouched");
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'events' ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        indexes,
        [
            "events_category_idx",
            "events_event_id_key",
            "events_log_idx",
            "events_metadata_idx",
            "events_occurred_brin",
            "events_pkey",
            "events_recorded_brin",
            "events_stream_version_key",
            "events_tracing_brin",
            "events_type_topic_idx",
        ]
    );
    // Schema version 11: the metadata index leaves the W3C trace context out.
    let gin: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND indexname = 'events_metadata_idx'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(gin.contains("'traceparent'") && gin.contains("'tracestate'"), "{gin}");
    // The old events are found through the new indexes, and appends go on.
    let sample = nth(store, 60).await;
    for (name, filter, _, _) in filters(&sample) {
        let want = expected(store, &filter).await;
        assert!(!want.is_empty(), "{name}: the fixture selects nothing");
        assert_eq!(selected(store, &filter).await, want, "{name}");
    }
    let (stream, event) = fixture(120);
    let version = store.stream_version(&stream).await.unwrap();
    assert_eq!(version, Version(3));
    store.append(&stream, ExpectedVersion::Exact(version), vec![event]).await.unwrap();
    assert!(pg.migrate().await.unwrap().is_empty(), "nothing left to apply");
    conn.close().await.unwrap();
}
