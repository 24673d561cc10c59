//! The conformance suite: one set of cases, written once, that every backend passes.
//!
//! [`conformance_suite!`](crate::conformance_suite) turns each case into a test for a
//! backend, given an expression that makes a fresh store (and a guard to keep alive).

use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, SubsecRound, TimeZone, Utc};
use factum::store::{
    subscribe_all, subscribe_category, subscribe_stream, Checkpoint, ConsumerRequest, GlobalPosition,
    InvalidInput, LogSelector, OrderBy, Snapshot, SubscriptionOptions, VersionRange,
};
use factum::{
    EventFilter, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError, StreamId,
    Version,
};
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

pub use crate::builds::projection_builds;
pub use crate::history::concurrent_history;
pub use crate::loads::load_aggregate;
pub use crate::slices::projection_slices;
pub use crate::timers::{commands_run_once, durable_timers};

/// A shared handle to the store under test.
pub type Store = Arc<dyn EventStore>;

fn sid(t: &str, id: &str) -> StreamId {
    StreamId::new(t, id).expect("valid stream id")
}

fn ev(t: &str) -> NewEvent {
    NewEvent::new(t, json!({ "type": t }))
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version.0).collect()
}

async fn total(store: &Store) -> u64 {
    store.count(&EventFilter::new()).await.expect("count")
}

/// Follows the global log from the start, as a subscriber would, until `expect` events
/// have arrived (the gap-safe horizon may hold back events of transactions that have just
/// committed while an older transaction anywhere in the cluster is still open).
pub(crate) async fn read_everything(store: &Store, expect: usize) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut after = Checkpoint::START;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = store.read_all(after, 7).await.expect("read_all");
        match page.last() {
            Some(last) => {
                after = last.checkpoint();
                all.extend(page);
            }
            None if all.len() >= expect => return all,
            None => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "only {} of {expect} events arrived",
                    all.len()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Appends, then reads a stream whole, from a version, and in a range.
pub async fn append_and_read_stream(store: Store) {
    let s = sid("Order", "o-1");
    assert_eq!(store.stream_version(&s).await.unwrap(), Version::INITIAL);
    assert!(store.read_stream(&s, VersionRange::ALL).await.unwrap().is_empty());

    let r = store.append(&s, ExpectedVersion::NoStream, vec![ev("A"), ev("B"), ev("C")]).await.unwrap();
    assert_eq!((r.from_version, r.to_version), (Version(1), Version(3)));
    assert_eq!(r.positions.len(), 3);
    assert!(r.positions.windows(2).all(|w| w[0] < w[1]), "positions increase");
    assert!(!r.deduplicated);

    let r = store.append(&s, ExpectedVersion::Exact(Version(3)), vec![ev("D"), ev("E")]).await.unwrap();
    assert_eq!((r.from_version, r.to_version), (Version(4), Version(5)));
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(5));

    let all = store.read_stream(&s, VersionRange::ALL).await.unwrap();
    assert_eq!(versions(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["A", "B", "C", "D", "E"]);
    assert_eq!(versions(&store.read_stream(&s, VersionRange::from(Version(4))).await.unwrap()), [4, 5]);
    assert_eq!(versions(&store.read_stream(&s, VersionRange::after(Version(4))).await.unwrap()), [5]);
    assert_eq!(
        versions(&store.read_stream(&s, VersionRange::between(Version(2), Version(3))).await.unwrap()),
        [2, 3]
    );
    assert!(store.read_stream(&s, VersionRange::from(Version(6))).await.unwrap().is_empty());
    assert!(store.read_stream(&s, VersionRange::between(Version(4), Version(2))).await.unwrap().is_empty());
    // Another stream of the same type, and the same id under another type, are separate.
    assert!(store.read_stream(&sid("Order", "o-2"), VersionRange::ALL).await.unwrap().is_empty());
    assert!(store.read_stream(&sid("Customer", "o-1"), VersionRange::ALL).await.unwrap().is_empty());
}

/// Each expected-version mode, accepted and refused; a refusal writes nothing.
pub async fn expected_version_modes(store: Store) {
    let s = sid("Order", "o-1");
    let err = store.append(&s, ExpectedVersion::StreamExists, vec![ev("A")]).await.unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Conflict { actual: Version(0), expected: ExpectedVersion::StreamExists, .. }
        ),
        "{err:?}"
    );
    let err = store.append(&s, ExpectedVersion::Exact(Version(2)), vec![ev("A")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: Version(0), .. }), "{err:?}");

    store.append(&s, ExpectedVersion::Exact(Version(0)), vec![ev("A")]).await.unwrap();
    let err = store.append(&s, ExpectedVersion::NoStream, vec![ev("B")]).await.unwrap_err();
    assert!(matches!(
        err,
        StoreError::Conflict { actual: Version(1), expected: ExpectedVersion::NoStream, .. }
    ));
    assert!(err.is_conflict());
    let err = store.append(&s, ExpectedVersion::Exact(Version(0)), vec![ev("B")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: Version(1), .. }));
    let err = store.append(&s, ExpectedVersion::Exact(Version(7)), vec![ev("B")]).await.unwrap_err();
    assert!(matches!(
        err,
        StoreError::Conflict { actual: Version(1), expected: ExpectedVersion::Exact(Version(7)), .. }
    ));

    let r = store.append(&s, ExpectedVersion::StreamExists, vec![ev("B")]).await.unwrap();
    assert_eq!(r.to_version, Version(2));
    let r = store.append(&s, ExpectedVersion::Any, vec![ev("C"), ev("D")]).await.unwrap();
    assert_eq!((r.from_version, r.to_version), (Version(3), Version(4)));
    let fresh = sid("Order", "o-any");
    let r = store.append(&fresh, ExpectedVersion::Any, vec![ev("A")]).await.unwrap();
    assert_eq!(r.to_version, Version(1));

    assert_eq!(versions(&store.read_stream(&s, VersionRange::ALL).await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(total(&store).await, 5, "refused appends wrote nothing");
}

/// An exact retry returns the original result; any other reuse of an id is refused.
pub async fn idempotent_append(store: Store) {
    let s = sid("Order", "o-1");
    let batch = vec![ev("A"), ev("B")];
    let first = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    let retry = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(
        (retry.from_version, retry.to_version, &retry.positions),
        (first.from_version, first.to_version, &first.positions)
    );
    assert_eq!(total(&store).await, 2, "a retry stores nothing twice");

    // Same id, different content.
    let mut changed = batch[0].clone();
    changed.payload = json!({"changed": true});
    let err = store.append(&s, ExpectedVersion::Any, vec![changed]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEvent { event_id } if event_id == batch[0].event_id),
        "{err:?}"
    );
    // Part of the batch only, or mixed with a new event.
    let err = store.append(&s, ExpectedVersion::Any, vec![batch[1].clone()]).await.unwrap_err();
    assert!(matches!(err, StoreError::DuplicateEvent { .. }), "{err:?}");
    let fresh = ev("C");
    let err =
        store.append(&s, ExpectedVersion::Any, vec![fresh.clone(), batch[0].clone()]).await.unwrap_err();
    assert!(matches!(err, StoreError::DuplicateEvent { .. }), "{err:?}");
    // Same batch to another stream.
    let err = store.append(&sid("Order", "o-2"), ExpectedVersion::Any, batch.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::DuplicateEvent { .. }), "{err:?}");

    assert_eq!(total(&store).await, 2);
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(2));
    assert_eq!(store.stream_version(&sid("Order", "o-2")).await.unwrap(), Version(0));
}

/// An event made from JSON text is stored as that text says, checked like any other, and
/// a retry of it is recognized.
pub async fn json_text_payloads(store: Store) {
    let s = sid("Order", "o-1");
    let text = |t: &str| serde_json::value::RawValue::from_string(t.to_owned()).expect("JSON");
    let e = NewEvent::from_json_text("Placed", text(r#"{"lines": [1, 2], "note": "a\\u0000b"}"#))
        .with_topic("order.placed");
    let first = store.append(&s, ExpectedVersion::NoStream, vec![e.clone()]).await.unwrap();
    let got = store.read_stream(&s, VersionRange::ALL).await.unwrap();
    assert_eq!(got[0].payload, json!({"lines": [1, 2], "note": "a\\u0000b"}));
    assert_eq!(got[0].topic.as_deref(), Some("order.placed"));
    let retry = store.append(&s, ExpectedVersion::NoStream, vec![e.clone()]).await.unwrap();
    assert!(retry.deduplicated && retry.positions == first.positions, "{retry:?}");
    // The same content as a value is the same append.
    let mut as_value = e.clone();
    as_value.payload = serde_json::from_str(e.payload_json().get()).unwrap();
    assert!(as_value.payload_text().is_none(), "setting the payload replaces the text");
    assert!(store.append(&s, ExpectedVersion::Any, vec![as_value]).await.unwrap().deduplicated);

    for bad in [r#"{"a": "x\u0000"}"#, r#"{"a\u0000": 1}"#] {
        let err =
            store.append(&s, ExpectedVersion::Any, vec![NewEvent::from_json_text("A", text(bad))]).await;
        assert!(
            matches!(err, Err(StoreError::InvalidInput(InvalidInput::ControlCharacter { .. }))),
            "{err:?}"
        );
    }
    let huge = format!("{{\"blob\": \"{}\"}}", "x".repeat(store.limits().max_payload_bytes));
    let err = store.append(&s, ExpectedVersion::Any, vec![NewEvent::from_json_text("A", text(&huge))]).await;
    assert!(matches!(err, Err(StoreError::InvalidInput(InvalidInput::TooLarge { .. }))), "{err:?}");
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(1), "refused appends store nothing");
}

/// An append to several streams stores all of them in one transaction or none; a
/// conflict names its stream.
pub async fn append_many_is_atomic(store: Store) {
    use factum::store::StreamAppend;
    let (a, b, c) = (sid("Account", "a"), sid("Account", "b"), sid("Account", "c"));
    store.append(&c, ExpectedVersion::NoStream, vec![ev("Opened")]).await.unwrap();
    let transfer = |expected_c| {
        vec![
            StreamAppend::new(a.clone(), ExpectedVersion::NoStream, vec![ev("Debited"), ev("Noted")]),
            StreamAppend::new(b.clone(), ExpectedVersion::Any, vec![ev("Credited")]),
            StreamAppend::new(c.clone(), expected_c, vec![ev("Audited")]),
        ]
    };
    // A conflict on the third stream: nothing of the append is stored.
    let err = store.append_many(transfer(ExpectedVersion::Exact(Version(5)))).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { stream, actual: Version(1), .. } if *stream == c),
        "{err:?}"
    );
    assert_eq!(store.stream_version(&a).await.unwrap(), Version(0));
    assert_eq!(store.stream_version(&b).await.unwrap(), Version(0));
    assert_eq!(total(&store).await, 1);

    let batch = transfer(ExpectedVersion::Exact(Version(1)));
    let results = store.append_many(batch.clone()).await.unwrap();
    let streams: Vec<_> =
        results.iter().map(|r| (r.stream.clone(), r.from_version.0, r.to_version.0)).collect();
    assert_eq!(streams, vec![(a.clone(), 1, 2), (b.clone(), 1, 1), (c.clone(), 2, 2)]);
    let stored = read_everything(&store, 5).await;
    let tx: std::collections::HashSet<u64> = stored[1..].iter().map(|e| e.transaction).collect();
    assert_eq!(tx.len(), 1, "one transaction: {stored:?}");
    // An exact retry is answered with the original results.
    let retry = store.append_many(batch.clone()).await.unwrap();
    assert!(retry.iter().all(|r| r.deduplicated));
    assert_eq!(
        retry.iter().map(|r| &r.positions).collect::<Vec<_>>(),
        results.iter().map(|r| &r.positions).collect::<Vec<_>>()
    );
    // Part of it again, with a new event: a duplicate, nothing stored.
    let mut partly = transfer(ExpectedVersion::Any);
    partly[0] = batch[0].clone();
    partly[0].expected = ExpectedVersion::Any;
    let err = store.append_many(partly).await.unwrap_err();
    assert!(matches!(err, StoreError::DuplicateEvent { .. }), "{err:?}");
    // Bad input: nothing, a stream twice, an id twice.
    assert!(matches!(store.append_many(vec![]).await, Err(StoreError::InvalidInput(_))));
    let twice = vec![
        StreamAppend::new(a.clone(), ExpectedVersion::Any, vec![ev("X")]),
        StreamAppend::new(a.clone(), ExpectedVersion::Any, vec![ev("Y")]),
    ];
    assert!(matches!(store.append_many(twice).await, Err(StoreError::InvalidInput(_))));
    let e = ev("Z");
    let same_id = vec![
        StreamAppend::new(a.clone(), ExpectedVersion::Any, vec![e.clone()]),
        StreamAppend::new(b.clone(), ExpectedVersion::Any, vec![e]),
    ];
    assert!(matches!(store.append_many(same_id).await, Err(StoreError::InvalidInput(_))));
    // Stream-exists on a new stream is a conflict on it.
    let err = store
        .append_many(vec![
            StreamAppend::new(a.clone(), ExpectedVersion::Any, vec![ev("X")]),
            StreamAppend::new(sid("Account", "new"), ExpectedVersion::StreamExists, vec![ev("Y")]),
        ])
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::Conflict { stream, .. } if stream.aggregate_id() == "new"), "{err:?}");
    assert_eq!(total(&store).await, 5);
}

/// Every field of an event survives the round trip.
pub async fn event_fields_round_trip(store: Store) {
    let s = sid("Order", "o-1");
    let mut meta = Metadata {
        correlation_id: Some(Uuid::now_v7()),
        causation_id: Some(Uuid::now_v7()),
        user_id: Some("user-1".into()),
        tenant_id: Some("tenant-ä".into()),
        ..Metadata::default()
    };
    meta.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
    meta.tracestate = Some("congo=t61rcWkgMzE".parse().unwrap());
    meta.custom.insert("trace_id".into(), json!("abc"));
    meta.custom.insert("nested".into(), json!({"k": [1, 2]}));
    let occurred =
        Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap() + ChronoDuration::nanoseconds(123_456_789);
    let mut e = NewEvent::new(
        "OrderPlaced",
        json!({"customer": "c-1", "lines": [{"sku": "A", "qty": 2}], "note": "ünïcødé ✓"}),
    )
    .with_topic("order.lifecycle.placed")
    .with_metadata(meta.clone())
    .with_schema_version(3);
    e.occurred_at = occurred;
    let before = Utc::now().trunc_subsecs(6) - ChronoDuration::seconds(5);
    let r = store.append(&s, ExpectedVersion::NoStream, vec![e.clone()]).await.unwrap();
    let got = store.read_stream(&s, VersionRange::ALL).await.unwrap().remove(0);
    assert_eq!(got.event_id, e.event_id);
    assert_eq!(got.stream, s);
    assert_eq!(got.version, Version(1));
    assert_eq!(got.position, r.positions[0]);
    assert_eq!(got.event_type, "OrderPlaced");
    assert_eq!(got.schema_version, 3);
    assert_eq!(got.topic.as_deref(), Some("order.lifecycle.placed"));
    assert_eq!(got.payload, e.payload);
    assert_eq!(got.metadata, meta);
    // The trace context filters like any key (no index covers it, the result is the same).
    for filter in [
        json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}),
        json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant_id": "tenant-ä"}),
    ] {
        let found = store.query(&EventFilter::new().metadata(filter.clone())).await.unwrap();
        assert_eq!(found.iter().map(|e| e.event_id).collect::<Vec<_>>(), [e.event_id], "{filter}");
    }
    let other = json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01"});
    assert!(store.query(&EventFilter::new().metadata(other)).await.unwrap().is_empty());
    assert_eq!(got.occurred_at, occurred.trunc_subsecs(6), "microsecond precision");
    assert!(got.recorded_at >= before && got.recorded_at <= Utc::now() + ChronoDuration::seconds(5));
    assert!(got.transaction > 0);

    let plain = store.append(&s, ExpectedVersion::Any, vec![ev("Plain")]).await.unwrap();
    let got = store.read_stream(&s, VersionRange::from(plain.from_version)).await.unwrap().remove(0);
    assert_eq!(got.topic, None);
    assert!(got.metadata.is_empty());
}

/// `read_payloads`, the aggregate load path: the events after a version, in order, each
/// with its type, schema version and payload text equal to what `read_stream` returns.
pub async fn read_payloads(store: Store) {
    let s = sid("Order", "o-1");
    let none: Vec<_> = store.read_payloads(&s, Version::INITIAL).collect().await;
    assert!(none.is_empty(), "{none:?}");
    let mut events: Vec<NewEvent> = (0..250)
        .map(|i| {
            NewEvent::new("Line", json!({"n": i, "text": format!("ä\"{i}"), "nested": {"list": [i, null]}}))
        })
        .collect();
    events[7] = events[7].clone().with_schema_version(4);
    store.append(&s, ExpectedVersion::NoStream, events).await.unwrap();
    store.append(&sid("Order", "o-2"), ExpectedVersion::NoStream, vec![ev("Other")]).await.unwrap();
    let recorded = store.read_stream(&s, VersionRange::ALL).await.unwrap();
    for after in [0, 1, 7, 249, 250, 300] {
        let payloads: Vec<_> = store.read_payloads(&s, Version(after)).collect().await;
        let payloads: Vec<_> = payloads.into_iter().map(|p| p.expect("payload")).collect();
        let expected: Vec<_> = recorded.iter().filter(|e| e.version.0 > after).collect();
        assert_eq!(payloads.len(), expected.len(), "after {after}");
        for (p, e) in payloads.iter().zip(expected) {
            assert_eq!(
                (p.version, &p.event_type, p.schema_version),
                (e.version, &e.event_type, e.schema_version)
            );
            let parsed: serde_json::Value = serde_json::from_str(&p.payload).expect("payload is JSON text");
            assert_eq!(parsed, e.payload);
        }
    }
    assert_eq!(recorded[7].schema_version, 4);
}

/// Streams counted, in all categories and in one.
pub async fn count_streams(store: Store) {
    assert_eq!(store.count_streams(None).await.unwrap(), 0);
    for (t, id) in [("Order", "o-1"), ("Order", "o-2"), ("Customer", "c-1")] {
        store.append(&sid(t, id), ExpectedVersion::Any, vec![ev("X"), ev("Y")]).await.unwrap();
    }
    assert_eq!(store.count_streams(None).await.unwrap(), 3);
    assert_eq!(store.count_streams(Some("Order")).await.unwrap(), 2);
    assert_eq!(store.count_streams(Some("Invoice")).await.unwrap(), 0);
    assert!(matches!(store.count_streams(Some("")).await, Err(StoreError::InvalidInput(_))));
}

/// Waiting for durability returns at once on a store without synchronous standbys, for
/// events that are stored; one not in the log is refused; nothing changes in the log.
pub async fn durable(store: Store) {
    store.durable(&[]).await.unwrap();
    let event = ev("X");
    let id = event.event_id;
    store.append(&sid("Order", "o-1"), ExpectedVersion::NoStream, vec![event]).await.unwrap();
    store.durable(&[id, id]).await.unwrap();
    let gone = store.durable(&[id, Uuid::new_v4()]).await;
    assert!(matches!(gone, Err(StoreError::Unavailable { .. })), "{gone:?}");
    assert_eq!(store.read_stream(&sid("Order", "o-1"), VersionRange::ALL).await.unwrap().len(), 1);
}

/// What a reader at a checkpoint has yet to read up to a position, in its category or in
/// the whole log.
pub async fn unread(store: Store) {
    let order = store.append(&sid("Order", "o-1"), ExpectedVersion::Any, vec![ev("X")]).await.unwrap();
    let customer = store.append(&sid("Customer", "c-1"), ExpectedVersion::Any, vec![ev("Y")]).await.unwrap();
    let (at_order, at_customer) = (order.checkpoint().unwrap(), customer.checkpoint().unwrap());
    let up_to = at_customer.position;
    assert!(store.unread(Checkpoint::START, up_to, None).await.unwrap());
    assert!(store.unread(Checkpoint::START, up_to, Some("Order")).await.unwrap());
    // Past the order, a reader of orders has nothing left up to the customer's event; a
    // reader of the whole log has the customer's event left.
    assert!(!store.unread(at_order, up_to, Some("Order")).await.unwrap());
    assert!(store.unread(at_order, up_to, None).await.unwrap());
    assert!(!store.unread(at_customer, up_to, None).await.unwrap());
    // Only up to the position; and a position the log has not reached is still to come.
    assert!(!store.unread(at_order, at_order.position, None).await.unwrap());
    let beyond = GlobalPosition(up_to.0 + 1_000);
    assert!(store.unread(at_customer, beyond, None).await.unwrap(), "the log has not reached it");
    // Each event's checkpoint, by its position.
    assert_eq!(store.checkpoint_of(at_order.position).await.unwrap(), Some(at_order));
    assert_eq!(store.checkpoint_of(at_customer.position).await.unwrap(), Some(at_customer));
    assert_eq!(store.checkpoint_of(beyond).await.unwrap(), None);
    assert!(matches!(
        store.unread(Checkpoint::START, up_to, Some("")).await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// The global log and categories, paged by checkpoint; the latest position.
pub async fn read_all_and_category(store: Store) {
    assert!(store.read_all(Checkpoint::START, 10).await.unwrap().is_empty());
    assert_eq!(store.latest_position().await.unwrap(), None);
    let mut expected = Vec::new();
    for i in 0..5 {
        for (t, id) in [("Order", format!("o-{i}")), ("Customer", format!("c-{i}"))] {
            let r = store.append(&sid(t, &id), ExpectedVersion::Any, vec![ev("X"), ev("Y")]).await.unwrap();
            expected.extend(r.positions);
        }
    }
    let all = read_everything(&store, expected.len()).await;
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), expected, "every event once, in order");
    assert!(all.windows(2).all(|w| w[0].checkpoint() < w[1].checkpoint()));
    assert_eq!(store.latest_position().await.unwrap(), expected.last().copied());

    let mut orders = Vec::new();
    let mut after = Checkpoint::START;
    loop {
        let page = store.read_category("Order", after, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.checkpoint();
        orders.extend(page);
    }
    assert_eq!(orders.len(), 10);
    assert!(orders.iter().all(|e| e.stream.aggregate_type() == "Order"));
    assert!(store.read_category("Nothing", Checkpoint::START, 10).await.unwrap().is_empty());
    let tail = store.read_all(all[7].checkpoint(), 100).await.unwrap();
    assert_eq!(tail.len(), 12);
    assert_eq!(tail[0].position, all[8].position);
}

async fn seed_for_queries(store: &Store) -> Vec<RecordedEvent> {
    let base = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let specs = [
        ("app", "a1", "app.registered", Some("app.lifecycle.registered"), json!({"user_id": "u1"})),
        ("app", "a1", "app.installed", Some("app.lifecycle.installed"), json!({"user_id": "u2"})),
        (
            "app",
            "a2",
            "app.registered",
            Some("app.lifecycle.registered"),
            json!({"user_id": "u1", "tags": ["x", "y"]}),
        ),
        ("app", "a2", "settings.updated", Some("app.settings.updated"), json!({"user_id": "u3"})),
        ("hook", "h1", "hook.triggered", Some("hook.triggered.order_created"), json!({"user_id": "u1"})),
        ("hook", "h1", "hook.completed", Some("hook.trigger.completed"), json!({})),
        ("activity", "x1", "activity.received", Some("activity.request.received"), json!({"user_id": "u2"})),
        ("activity", "x1", "untopical", None, json!({})),
    ];
    let mut out = Vec::new();
    for (i, (t, id, ty, topic, meta)) in specs.into_iter().enumerate() {
        let mut e = NewEvent::new(ty, json!({ "i": i })).with_metadata(Metadata::from_json(meta));
        e.topic = topic.map(str::to_owned);
        // Occurrence order deliberately differs from append order.
        e.occurred_at = base + ChronoDuration::minutes(((i * 5) % 8) as i64);
        store.append(&sid(t, id), ExpectedVersion::Any, vec![e]).await.unwrap();
    }
    out.extend(read_everything(store, 8).await);
    out
}

fn idx(events: &[RecordedEvent]) -> Vec<i64> {
    events.iter().map(|e| e.payload["i"].as_i64().unwrap()).collect()
}

/// Every query filter, each alone and combined, with ordering and pagination, and count.
pub async fn query_filters(store: Store) {
    let all = seed_for_queries(&store).await;
    assert_eq!(all.len(), 8);
    let q = |f: EventFilter| {
        let store = store.clone();
        async move {
            let mut got = idx(&store.query(&f).await.unwrap());
            let n = store.count(&f).await.unwrap();
            if f.limit.is_none() && f.offset == 0 {
                assert_eq!(n as usize, got.len(), "count agrees with query for {f:?}");
            }
            got.sort_unstable();
            got
        }
    };
    assert_eq!(q(EventFilter::new()).await, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(q(EventFilter::new().event_types(["app.registered"])).await, [0, 2]);
    assert_eq!(q(EventFilter::new().event_types(["app.registered", "hook.triggered"])).await, [0, 2, 4]);
    assert_eq!(q(EventFilter::new().topics(["app.lifecycle.#"])).await, [0, 1, 2]);
    assert_eq!(q(EventFilter::new().topics(["app.#"])).await, [0, 1, 2, 3]);
    assert_eq!(q(EventFilter::new().topics(["hook.triggered.*"])).await, [4]);
    assert_eq!(q(EventFilter::new().topics(["*.*.registered"])).await, [0, 2]);
    assert_eq!(q(EventFilter::new().topics(["#.completed"])).await, [5]);
    assert_eq!(q(EventFilter::new().topics(["#"])).await, [0, 1, 2, 3, 4, 5, 6], "no topic never matches");
    assert_eq!(q(EventFilter::new().topics(["app.settings.updated"])).await, [3], "exact topic");
    assert_eq!(
        q(EventFilter::new().topics(["app.lifecycle.#", "hook.#", "activity.#"])).await,
        [0, 1, 2, 4, 5, 6]
    );
    assert_eq!(q(EventFilter::new().topics(["app.*"])).await, Vec::<i64>::new());
    assert_eq!(q(EventFilter::new().aggregate_id("a2")).await, [2, 3]);
    assert_eq!(q(EventFilter::new().aggregate_type("hook")).await, [4, 5]);
    assert_eq!(q(EventFilter::new().metadata(json!({"user_id": "u1"}))).await, [0, 2, 4]);
    assert_eq!(q(EventFilter::new().metadata(json!({"tags": ["y"]}))).await, [2]);
    assert_eq!(q(EventFilter::new().metadata(json!({}))).await, [0, 1, 2, 3, 4, 5, 6, 7]);
    let base = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    // Minutes: i -> (i*5)%8 = 0,5,2,7,4,1,6,3.
    let from_to = EventFilter::new()
        .occurred_between(Some(base + ChronoDuration::minutes(2)), Some(base + ChronoDuration::minutes(5)));
    assert_eq!(q(from_to).await, [2, 4, 7], "from inclusive, to exclusive");
    assert_eq!(
        q(EventFilter::new()
            .aggregate_type("app")
            .topics(["app.lifecycle.#"])
            .metadata(json!({"user_id": "u1"})))
        .await,
        [0, 2]
    );

    // Ordering: default is occurred_at descending.
    let ordered = |f: EventFilter| {
        let store = store.clone();
        async move { idx(&store.query(&f).await.unwrap()) }
    };
    assert_eq!(ordered(EventFilter::new()).await, [3, 6, 1, 4, 7, 2, 5, 0]);
    assert_eq!(
        ordered(EventFilter::new().order_by(OrderBy::OccurredAt, true)).await,
        [0, 5, 2, 7, 4, 1, 6, 3]
    );
    assert_eq!(
        ordered(EventFilter::new().order_by(OrderBy::GlobalPosition, true)).await,
        [0, 1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(
        ordered(EventFilter::new().order_by(OrderBy::GlobalPosition, false)).await,
        [7, 6, 5, 4, 3, 2, 1, 0]
    );
    // Pagination.
    let page = EventFilter::new().order_by(OrderBy::GlobalPosition, true).limit(3);
    assert_eq!(ordered(page.clone()).await, [0, 1, 2]);
    assert_eq!(ordered(page.clone().offset(3)).await, [3, 4, 5]);
    assert_eq!(ordered(page.clone().offset(6)).await, [6, 7]);
    assert_eq!(ordered(page.offset(8)).await, Vec::<i64>::new());
    assert_eq!(store.count(&EventFilter::new().limit(2).offset(1)).await.unwrap(), 8, "count ignores paging");
}

/// Without a limit a query returns 100 events (the default).
pub async fn query_default_limit(store: Store) {
    let s = sid("Bulk", "b-1");
    let batch: Vec<NewEvent> = (0..130).map(|_| ev("E")).collect();
    store.append(&s, ExpectedVersion::NoStream, batch).await.unwrap();
    assert_eq!(store.query(&EventFilter::new()).await.unwrap().len(), 100);
    assert_eq!(store.query(&EventFilter::new().limit(120)).await.unwrap().len(), 120);
    assert_eq!(store.count(&EventFilter::new()).await.unwrap(), 130);
}

/// The streaming query yields every match, in order, and may be dropped early.
pub async fn stream_query(store: Store) {
    for i in 0..3 {
        let batch: Vec<NewEvent> = (0..150).map(|_| ev(if i == 1 { "Skip" } else { "Keep" })).collect();
        store.append(&sid("S", &format!("s-{i}")), ExpectedVersion::Any, batch).await.unwrap();
    }
    let f = EventFilter::new().event_types(["Keep"]).order_by(OrderBy::GlobalPosition, true);
    let got: Vec<RecordedEvent> = store.stream(f.clone()).map(|r| r.unwrap()).collect().await;
    assert_eq!(got.len(), 300, "more than one buffer's worth, no limit");
    assert!(got.windows(2).all(|w| w[0].position < w[1].position));
    assert!(got.iter().all(|e| e.event_type == "Keep"));
    let limited: Vec<_> = store.stream(f.clone().limit(10).offset(5)).collect().await;
    assert_eq!(limited.len(), 10);
    let mut early = store.stream(f);
    assert!(early.next().await.unwrap().is_ok());
    drop(early);
    let bad: Vec<_> = store.stream(EventFilter::new().topics(["a..b"])).collect().await;
    assert!(matches!(bad.as_slice(), [Err(StoreError::InvalidInput(_))]));
}

/// Deleting before a cutoff removes exactly the older events; versions continue.
pub async fn delete_before(store: Store) {
    let s = sid("Order", "o-1");
    store.append(&s, ExpectedVersion::NoStream, vec![ev("A"), ev("B")]).await.unwrap();
    assert_eq!(store.delete_before(Utc::now() - ChronoDuration::hours(1)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.append(&s, ExpectedVersion::Exact(Version(2)), vec![ev("C")]).await.unwrap();
    store.append(&sid("Order", "o-2"), ExpectedVersion::NoStream, vec![ev("D")]).await.unwrap();
    assert_eq!(store.delete_before(cutoff).await.unwrap(), 2);
    assert_eq!(versions(&store.read_stream(&s, VersionRange::ALL).await.unwrap()), [3]);
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(3), "versions are kept");
    let r = store.append(&s, ExpectedVersion::Exact(Version(3)), vec![ev("E")]).await.unwrap();
    assert_eq!(r.to_version, Version(4));
    assert_eq!(total(&store).await, 3);
    assert_eq!(read_everything(&store, 3).await.len(), 3);

    // Each stream's newest event stays, and with it the stream's version: an append at a
    // version the deletion went past is a conflict, never a second event at that version.
    let old = sid("Order", "o-3");
    store.append(&old, ExpectedVersion::NoStream, vec![ev("F"), ev("G")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.delete_before(Utc::now()).await.unwrap(), 2, "o-1 v3 and o-3 v1");
    let mut left: Vec<String> =
        store.query(&EventFilter::new()).await.unwrap().into_iter().map(|e| e.event_type).collect();
    left.sort();
    assert_eq!(left, ["D", "E", "G"]);
    assert_eq!(store.stream_version(&old).await.unwrap(), Version(2));
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(Version(1))] {
        let err = store.append(&old, expected, vec![ev("H")]).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { actual: Version(2), .. }), "{expected:?}: {err:?}");
    }
    let r = store.append(&old, ExpectedVersion::Exact(Version(2)), vec![ev("H")]).await.unwrap();
    assert_eq!((r.from_version, r.to_version), (Version(3), Version(3)));
    let r = store.append(&sid("Order", "o-2"), ExpectedVersion::Any, vec![ev("I")]).await.unwrap();
    assert_eq!(r.to_version, Version(2));
}

/// Snapshots: save, load, replace with a newer one (never an older one), delete.
pub async fn snapshots(store: Store) {
    let s = sid("Order", "o-1");
    assert_eq!(store.load_snapshot(&s).await.unwrap(), None);
    let snap = |v: u64, state: serde_json::Value| Snapshot {
        stream: s.clone(),
        version: Version(v),
        schema_version: 2,
        state,
        created_at: Utc::now().trunc_subsecs(6),
    };
    let first = snap(10, json!({"total": 10}));
    store.save_snapshot(&first).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(first));
    let newer = snap(20, json!({"total": 20}));
    store.save_snapshot(&newer).await.unwrap();
    store.save_snapshot(&snap(15, json!({"total": 15}))).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(newer), "an older snapshot never wins");
    assert_eq!(store.load_snapshot(&sid("Order", "o-2")).await.unwrap(), None);
    let err = store.save_snapshot(&snap(0, json!({}))).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)));
    let err = store.save_snapshot(&snap(30, json!({"bad": "a\u{0}b"}))).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(InvalidInput::ControlCharacter { .. })));
    assert!(store.delete_snapshot(&s).await.unwrap());
    assert!(!store.delete_snapshot(&s).await.unwrap());
    assert_eq!(store.load_snapshot(&s).await.unwrap(), None);
}

/// Checkpoints: none at first, saved, overwritten, per consumer.
pub async fn checkpoints(store: Store) {
    assert_eq!(store.load_checkpoint("orders").await.unwrap(), None);
    let cp = Checkpoint { transaction: 42, position: factum::store::GlobalPosition(7) };
    store.save_checkpoint("orders", cp).await.unwrap();
    assert_eq!(store.load_checkpoint("orders").await.unwrap(), Some(cp));
    let later = Checkpoint { transaction: 50, position: factum::store::GlobalPosition(9) };
    store.save_checkpoint("orders", later).await.unwrap();
    assert_eq!(store.load_checkpoint("orders").await.unwrap(), Some(later));
    assert_eq!(store.load_checkpoint("customers").await.unwrap(), None);
    assert!(matches!(store.load_checkpoint("").await, Err(StoreError::InvalidInput(_))));
    let huge = Checkpoint { transaction: u64::MAX, position: factum::store::GlobalPosition(1) };
    assert!(matches!(store.save_checkpoint("orders", huge).await, Err(StoreError::InvalidInput(_))));
    assert_eq!(store.load_checkpoint("orders").await.unwrap(), Some(later));
}

async fn next_within(stream: &mut factum::store::EventStream) -> RecordedEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("subscription delivered within 10 s")
        .expect("subscription ended")
        .expect("subscription error")
}

/// Subscriptions to all, a category and a stream catch up, then follow live appends.
pub async fn subscriptions(store: Store) {
    let o1 = sid("Order", "o-1");
    let c1 = sid("Customer", "c-1");
    store.append(&o1, ExpectedVersion::NoStream, vec![ev("O1"), ev("O2")]).await.unwrap();
    store.append(&c1, ExpectedVersion::NoStream, vec![ev("C1")]).await.unwrap();
    let opts = SubscriptionOptions::default().batch_size(2).poll_interval(Duration::from_millis(200));
    let mut all = subscribe_all(store.clone(), Checkpoint::START, opts).unwrap();
    let mut orders = subscribe_category(store.clone(), "Order", Checkpoint::START, opts).unwrap();
    let mut one = subscribe_stream(store.clone(), o1.clone(), Version(1), opts).unwrap();
    for want in ["O1", "O2", "C1"] {
        assert_eq!(next_within(&mut all).await.event_type, want);
    }
    assert_eq!(next_within(&mut orders).await.event_type, "O1");
    assert_eq!(next_within(&mut orders).await.event_type, "O2");
    assert_eq!(next_within(&mut one).await.event_type, "O2");

    store.append(&c1, ExpectedVersion::Any, vec![ev("C2")]).await.unwrap();
    store.append(&o1, ExpectedVersion::Any, vec![ev("O3")]).await.unwrap();
    assert_eq!(next_within(&mut all).await.event_type, "C2");
    assert_eq!(next_within(&mut all).await.event_type, "O3");
    assert_eq!(next_within(&mut orders).await.event_type, "O3", "the category skips other types");
    let o3 = next_within(&mut one).await;
    assert_eq!((o3.event_type.as_str(), o3.version), ("O3", Version(3)));
    assert!(matches!(
        subscribe_category(store.clone(), "", Checkpoint::START, opts),
        Err(StoreError::InvalidInput(_))
    ));
}

/// Bad input of every kind gets a typed error and changes nothing.
pub async fn bad_input(store: Store) {
    let s = sid("Order", "o-1");
    store.append(&s, ExpectedVersion::NoStream, vec![ev("A")]).await.unwrap();
    let before = total(&store).await;
    let invalid = |r: Result<factum::store::AppendResult, StoreError>| match r {
        Err(StoreError::InvalidInput(e)) => e,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert_eq!(invalid(store.append(&s, ExpectedVersion::Any, vec![]).await), InvalidInput::EmptyBatch);
    assert!(matches!(
        invalid(store.append(&s, ExpectedVersion::Any, vec![ev("")]).await),
        InvalidInput::Empty { .. }
    ));
    assert!(matches!(
        invalid(store.append(&s, ExpectedVersion::Any, vec![ev(&"x".repeat(256))]).await),
        InvalidInput::TooLong { .. }
    ));
    assert!(matches!(
        invalid(store.append(&s, ExpectedVersion::Any, vec![ev("A\u{0}B")]).await),
        InvalidInput::ControlCharacter { .. }
    ));
    assert!(matches!(
        invalid(
            store.append(&s, ExpectedVersion::Any, vec![NewEvent::new("A", json!({"k": "v\u{0}"}))]).await
        ),
        InvalidInput::ControlCharacter { .. }
    ));
    let huge = NewEvent::new("A", json!({ "blob": "x".repeat(store.limits().max_payload_bytes) }));
    assert!(matches!(
        invalid(store.append(&s, ExpectedVersion::Any, vec![huge]).await),
        InvalidInput::TooLarge { .. }
    ));
    assert!(matches!(
        invalid(store.append(&s, ExpectedVersion::Any, vec![ev("A").with_topic("bad topic")]).await),
        InvalidInput::InvalidTopic { .. }
    ));
    assert!(matches!(
        invalid(store.append(&s, ExpectedVersion::Any, vec![ev("A").with_topic("a.#")]).await),
        InvalidInput::InvalidTopic { .. }
    ));
    let dup = ev("A");
    assert!(matches!(
        invalid(store.append(&s, ExpectedVersion::Any, vec![dup.clone(), dup]).await),
        InvalidInput::DuplicateIdInBatch(_)
    ));
    // A good event in a batch with a bad one is not written either.
    assert!(store.append(&s, ExpectedVersion::Any, vec![ev("Good"), ev("")]).await.is_err());
    for (t, id) in [("", "x"), ("x", ""), ("x\u{0}", "y"), ("x", "y\n")] {
        assert!(StreamId::new(t, id).is_err(), "{t:?}/{id:?}");
    }

    // Filters: invalid ones are refused, hostile strings are data.
    let refused = |f: EventFilter| {
        let store = store.clone();
        async move {
            assert!(matches!(store.query(&f).await, Err(StoreError::InvalidInput(_))), "query {f:?}");
            assert!(matches!(store.count(&f).await, Err(StoreError::InvalidInput(_))), "count {f:?}");
        }
    };
    refused(EventFilter::new().topics(["a..b"])).await;
    refused(EventFilter::new().topics(["app.(x|y)"])).await;
    refused(EventFilter::new().topics(["'; DROP TABLE events; --"])).await;
    refused(EventFilter::new().event_types(["a\u{0}"])).await;
    refused(EventFilter::new().aggregate_id("")).await;
    refused(EventFilter::new().limit(0)).await;
    refused(EventFilter::new().limit(store.limits().max_query_limit + 1)).await;
    refused(EventFilter::new().metadata(json!(["not", "an", "object"]))).await;
    refused(EventFilter::new().metadata(json!({"k": "\u{0}"}))).await;
    for hostile in ["'; DROP TABLE events; --", "\" OR 1=1 --", "%", "_", "\\", "$1", "ö'\""] {
        let f = EventFilter::new()
            .event_types([hostile])
            .aggregate_id(hostile)
            .aggregate_type(hostile)
            .metadata(json!({ hostile: hostile }));
        assert!(store.query(&f).await.unwrap().is_empty(), "{hostile:?}");
        assert_eq!(store.count(&EventFilter::new().aggregate_id(hostile)).await.unwrap(), 0);
        let hs = StreamId::new(hostile, hostile).unwrap();
        assert!(store.read_stream(&hs, VersionRange::ALL).await.unwrap().is_empty());
    }
    assert!(matches!(store.read_all(Checkpoint::START, 0).await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(store.read_category("", Checkpoint::START, 10).await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(
        store.save_checkpoint("a\u{0}", Checkpoint::START).await,
        Err(StoreError::InvalidInput(_))
    ));

    assert_eq!(total(&store).await, before, "nothing was written");
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(1));
}

/// Checkpoints move only from where the writer believes they are: the fence that keeps
/// an instance that lost its lease from writing.
pub async fn checkpoint_fencing(store: Store) {
    let a = Checkpoint { transaction: 3, position: factum::store::GlobalPosition(7) };
    let b = Checkpoint { transaction: 4, position: factum::store::GlobalPosition(9) };
    assert!(!store.advance_checkpoint("p", a, b).await.unwrap(), "no checkpoint yet: it is at the start");
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None, "a refused move writes nothing");
    assert!(store.advance_checkpoint("p", Checkpoint::START, a).await.unwrap());
    assert!(!store.advance_checkpoint("p", Checkpoint::START, b).await.unwrap(), "stale: the start");
    assert!(store.advance_checkpoint("p", a, b).await.unwrap());
    assert!(!store.advance_checkpoint("p", a, b).await.unwrap(), "stale: moved on");
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(b));
    store.save_checkpoint("p", a).await.unwrap();
    assert!(!store.advance_checkpoint("p", b, a).await.unwrap());
    assert!(store.advance_checkpoint("p", a, b).await.unwrap());
    assert!(store.advance_checkpoint("q", Checkpoint::START, a).await.unwrap(), "consumers are independent");
    assert!(matches!(
        store.advance_checkpoint("", Checkpoint::START, a).await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// A consumer's lease is held once until dropped; names are independent and checked.
pub async fn leases(store: Store) {
    let lease = store.try_lease("p").await.unwrap().expect("a free name is granted");
    assert!(lease.is_held());
    assert!(store.try_lease("p").await.unwrap().is_none(), "held: not granted twice");
    let other = store.try_lease("q").await.unwrap();
    assert!(other.is_some(), "another name is free");
    drop(lease);
    // Releasing can take a round trip on backends that hold leases in a session.
    crate::eventually(Duration::from_secs(5), "the released lease is granted again", || {
        let store = store.clone();
        async move { store.try_lease("p").await.unwrap() }
    })
    .await;
    assert!(matches!(store.try_lease("a\u{0}").await, Err(StoreError::InvalidInput(_))));
}

/// Recorded failures: listed in log order, re-recording replaces, resolving removes.
pub async fn recorded_failures(store: Store) {
    let s = sid("Order", "o-1");
    store.append(&s, ExpectedVersion::NoStream, vec![ev("A"), ev("B")]).await.unwrap();
    let events = store.read_stream(&s, VersionRange::ALL).await.unwrap();
    for e in events.iter().rev() {
        store.record_failure(&factum::store::ProjectionFailure::new("p", e, "boom", 3)).await.unwrap();
    }
    store.record_failure(&factum::store::ProjectionFailure::new("q", &events[0], "other", 1)).await.unwrap();
    let mut again = factum::store::ProjectionFailure::new("p", &events[1], "boom again", 5);
    again.failed_at = again.failed_at.trunc_subsecs(6);
    store.record_failure(&again).await.unwrap();
    let found = store.failures("p").await.unwrap();
    assert_eq!(
        found.iter().map(|f| f.event_id).collect::<Vec<_>>(),
        vec![events[0].event_id, events[1].event_id]
    );
    assert_eq!(found[1], again, "every field round-trips; re-recording replaced the first record");
    assert_eq!(
        (found[0].stream.clone(), found[0].version, found[0].checkpoint()),
        (s.clone(), Version(1), events[0].checkpoint())
    );
    assert!(store.resolve_failure("p", events[0].event_id).await.unwrap());
    assert!(!store.resolve_failure("p", events[0].event_id).await.unwrap());
    assert_eq!(store.failures("p").await.unwrap().len(), 1);
    assert_eq!(store.failures("q").await.unwrap().len(), 1);
    assert!(store.failures("nobody").await.unwrap().is_empty());
}

/// A projection's stop: recorded (for a projection with or without a checkpoint), read
/// back whole, replaced by a later one, and cleared when the checkpoint is advanced or
/// saved, and by nothing else.
pub async fn projection_stops(store: Store) {
    let s = sid("Order", "o-1");
    store.append(&s, ExpectedVersion::NoStream, vec![ev("A"), ev("B")]).await.unwrap();
    let events = store.read_stream(&s, VersionRange::ALL).await.unwrap();
    assert_eq!(store.stopped("p").await.unwrap(), None, "nothing recorded yet");

    // A projection that stopped at its first event has no checkpoint yet.
    let mut first = factum::store::ProjectionFailure::new("p", &events[0], "boom", 3);
    first.failed_at = first.failed_at.trunc_subsecs(6);
    store.record_stop(&first).await.unwrap();
    assert_eq!(store.stopped("p").await.unwrap(), Some(first.clone()), "every field round-trips");
    assert_eq!(store.load_checkpoint("p").await.unwrap().unwrap_or(Checkpoint::START), Checkpoint::START);
    assert_eq!(store.stopped("q").await.unwrap(), None, "another projection's stop is its own");

    // Still stopped while nothing moves; a failed advance (fenced) does not clear it.
    assert!(!store.advance_checkpoint("p", events[1].checkpoint(), events[1].checkpoint()).await.unwrap());
    assert_eq!(store.stopped("p").await.unwrap(), Some(first.clone()));

    // It got past the event: advancing the checkpoint clears the stop.
    assert!(store.advance_checkpoint("p", Checkpoint::START, events[0].checkpoint()).await.unwrap());
    assert_eq!(store.stopped("p").await.unwrap(), None);

    // Stopped again, at the next event, and the record replaced; a reset clears it.
    store.record_stop(&first).await.unwrap();
    let mut second = factum::store::ProjectionFailure::new("p", &events[1], "boom again", 5);
    second.failed_at = second.failed_at.trunc_subsecs(6);
    store.record_stop(&second).await.unwrap();
    assert_eq!(store.stopped("p").await.unwrap(), Some(second));
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(events[0].checkpoint()), "recording kept it");
    store.save_checkpoint("p", events[0].checkpoint()).await.unwrap();
    assert_eq!(store.stopped("p").await.unwrap(), None);

    let bad = factum::store::ProjectionFailure::new("", &events[0], "x", 1);
    assert!(matches!(store.record_stop(&bad).await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(store.stopped("").await, Err(StoreError::InvalidInput(_))));
}

/// Lag: how many events of the log lie after a checkpoint.
pub async fn count_after(store: Store) {
    let s = sid("Order", "o-1");
    store.append(&s, ExpectedVersion::NoStream, vec![ev("A"), ev("B"), ev("C")]).await.unwrap();
    store.append(&sid("Customer", "c-1"), ExpectedVersion::NoStream, vec![ev("D")]).await.unwrap();
    let all = read_everything(&store, 4).await;
    assert_eq!(store.count_after(Checkpoint::START, &[]).await.unwrap(), 4);
    assert_eq!(store.count_after(all[1].checkpoint(), &[]).await.unwrap(), 2);
    assert_eq!(store.count_after(all[3].checkpoint(), &[]).await.unwrap(), 0);
    // Scoped to categories: a projection of Orders caught up with the last Order event has
    // no lag, whatever other categories appended after it.
    let orders = ["Order".to_owned()];
    assert_eq!(store.count_after(Checkpoint::START, &orders).await.unwrap(), 3);
    assert_eq!(store.count_after(all[2].checkpoint(), &orders).await.unwrap(), 0);
    let both = ["Customer".to_owned(), "Order".to_owned()];
    assert_eq!(store.count_after(all[1].checkpoint(), &both).await.unwrap(), 2);
    assert_eq!(store.count_after(all[2].checkpoint(), &["Nothing".to_owned()]).await.unwrap(), 0);
    // Bad input is refused the same way by every backend.
    let too_far = Checkpoint { transaction: u64::MAX, position: factum::store::GlobalPosition(0) };
    assert!(matches!(store.count_after(too_far, &[]).await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(
        store.count_after(Checkpoint::START, &[String::new()]).await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// Retention's safe mode keeps what a consumer has not processed and what no snapshot
/// covers; the plain delete keeps nothing older than the cutoff.
pub async fn guarded_delete(store: Store) {
    let a = sid("Order", "a");
    let b = sid("Order", "b");
    store.append(&a, ExpectedVersion::NoStream, vec![ev("A1"), ev("A2"), ev("A3")]).await.unwrap();
    store.append(&b, ExpectedVersion::NoStream, vec![ev("B1"), ev("B2")]).await.unwrap();
    let all = read_everything(&store, 5).await;
    let snap = |stream: &StreamId, v: u64| Snapshot {
        stream: stream.clone(),
        version: Version(v),
        schema_version: 1,
        state: json!({}),
        created_at: Utc::now(),
    };
    store.save_snapshot(&snap(&a, 3)).await.unwrap();
    store.save_snapshot(&snap(&b, 1)).await.unwrap();
    // "p" has processed A1..A3 and B1; "q" has processed nothing.
    let a3 = all.iter().find(|e| e.stream == a && e.version == Version(3)).unwrap();
    let b1 = all.iter().find(|e| e.stream == b && e.version == Version(1)).unwrap();
    store.save_checkpoint("p", a3.checkpoint().max(b1.checkpoint())).await.unwrap();
    let future = Utc::now() + ChronoDuration::seconds(5);

    let guard = factum::store::RetentionGuard::safe(["p", "q"]);
    assert_eq!(store.delete_before_guarded(future, &guard).await.unwrap(), 0, "q has processed nothing");
    let past = Utc::now() - ChronoDuration::days(1);
    assert_eq!(
        store.delete_before_guarded(past, &factum::store::RetentionGuard::default()).await.unwrap(),
        0
    );

    let guard = factum::store::RetentionGuard::safe(["p"]);
    assert_eq!(
        store.delete_before_guarded(future, &guard).await.unwrap(),
        3,
        "A1, A2 and B1 (A3 is a's newest)"
    );
    let left = store.query(&EventFilter::new()).await.unwrap();
    assert_eq!(left.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["B2", "A3"], "newest first");
    // Appends go on numbering after what was deleted; the snapshot plus tail still load.
    let r = store.append(&a, ExpectedVersion::Exact(Version(3)), vec![ev("A4")]).await.unwrap();
    assert_eq!(r.to_version, Version(4));
    assert_eq!(versions(&store.read_stream(&a, VersionRange::after(Version(3))).await.unwrap()), vec![4]);

    let mut unsnapshotted_only = factum::store::RetentionGuard::default();
    unsnapshotted_only.unsnapshotted = true;
    assert_eq!(
        store.delete_before_guarded(future, &unsnapshotted_only).await.unwrap(),
        1,
        "A3, covered now that A4 is newer; B2 and A4 uncovered"
    );
    assert!(matches!(
        store.delete_before_guarded(future, &factum::store::RetentionGuard::safe([""])).await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// A category's wake-up signal changes after an append to that category.
pub async fn category_wake_ups(store: Store) {
    let mut orders = store.category_wake_signal("Order");
    let mut all = store.wake_signal();
    // Let a listener connect (and send its connection wake-up) before appending.
    tokio::time::sleep(Duration::from_millis(300)).await;
    orders.borrow_and_update();
    all.borrow_and_update();
    store.append(&sid("Order", "o-1"), ExpectedVersion::NoStream, vec![ev("A")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), orders.changed()).await.expect("woken").unwrap();
    tokio::time::timeout(Duration::from_secs(10), all.changed()).await.expect("woken").unwrap();
}

/// The log cursor: a page of the log as a selector sees it, the checkpoint moving past
/// what the selector skips, and the same pages read whole and selected.
pub async fn read_log_selects(store: Store) {
    assert_eq!(store.read_log(Checkpoint::START, &LogSelector::all(), 10).await.unwrap(), None);
    for (t, id, ty, topic) in [
        ("Order", "o-1", "Placed", "order.lifecycle.placed"),
        ("Customer", "c-1", "Registered", "customer.profile.registered"),
        ("Order", "o-1", "ItemAdded", "order.items.added"),
        ("Invoice", "i-1", "Issued", "invoice.issued"),
        ("Order", "o-2", "Placed", "order.lifecycle.placed"),
        ("Customer", "c-1", "Renamed", "customer.profile.renamed"),
    ] {
        let e = NewEvent::new(ty, json!({ "ty": ty })).with_topic(topic);
        store.append(&sid(t, id), ExpectedVersion::Any, vec![e]).await.unwrap();
    }
    // Readable once no older transaction anywhere in the cluster holds the horizon back.
    let all = read_everything(&store, 6).await;
    let ids = |events: &[RecordedEvent]| events.iter().map(|e| e.event_id).collect::<Vec<_>>();
    let sel = |types: &[&str], events: &[&str], topics: &[&str]| {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        LogSelector::new(s(types), s(events), &s(topics)).unwrap()
    };
    let cases = [
        sel(&[], &[], &[]),
        sel(&["Order"], &[], &[]),
        sel(&["Order", "Customer"], &[], &[]),
        sel(&[], &["Placed", "Renamed"], &[]),
        sel(&[], &[], &["customer.#", "order.items.*"]),
        sel(&["Order"], &["Placed"], &["order.lifecycle.*"]),
        sel(&["Invoice"], &["Nothing"], &[]),
    ];
    for selector in &cases {
        // Page by page, in pages of 2: the selected events are exactly the matching ones,
        // in log order, and the checkpoint moves over every event read.
        let mut after = Checkpoint::START;
        let mut got = Vec::new();
        while let Some(page) = store.read_log(after, selector, 2).await.unwrap() {
            assert!(page.to > after, "{selector:?}: the checkpoint moves");
            assert!(page.events.iter().all(|e| e.checkpoint() > after && e.checkpoint() <= page.to));
            got.extend(page.events);
            after = page.to;
            if !page.full {
                break;
            }
        }
        let want: Vec<RecordedEvent> = match selector.single_category() {
            Some(c) => all.iter().filter(|e| e.stream.aggregate_type() == c).cloned().collect(),
            None => all.clone(),
        };
        let want: Vec<RecordedEvent> = want.into_iter().filter(|e| selector.matches(e)).collect();
        assert_eq!(ids(&got), ids(&want), "{selector:?}");
        assert_eq!(got, want, "{selector:?}: every field");
        assert_eq!(
            store.read_log(after, selector, 2).await.unwrap(),
            None,
            "{selector:?}: nothing after the end"
        );
    }
    // A page whose events are all skipped still moves the reader past them.
    let page = store.read_log(Checkpoint::START, &sel(&[], &["Issued"], &[]), 3).await.unwrap().unwrap();
    assert!(page.events.is_empty() && page.full);
    assert_eq!(page.to, all[2].checkpoint());
    // Bad input changes nothing and is typed.
    assert!(matches!(
        store.read_log(Checkpoint::START, &LogSelector::all(), 0).await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// Operators' requests: recorded, replaced by a newer one, completed only as the one made.
pub async fn consumer_requests(store: Store) {
    assert_eq!(store.pending_request("p").await.unwrap(), None);
    let to = Checkpoint { transaction: 3, position: factum::store::GlobalPosition(7) };
    let first = store.request("p", ConsumerRequest::Reset { to, clear: true }).await.unwrap();
    assert_eq!(first.request, ConsumerRequest::Reset { to, clear: true });
    assert_eq!(store.pending_request("p").await.unwrap(), Some(first));
    let second = store.request("p", ConsumerRequest::RetryFailures).await.unwrap();
    assert!(second.requested_at > first.requested_at);
    assert!(!store.complete_request("p", first.requested_at).await.unwrap(), "an older request");
    assert_eq!(store.pending_request("p").await.unwrap(), Some(second));
    assert!(store.complete_request("p", second.requested_at).await.unwrap());
    assert_eq!(store.pending_request("p").await.unwrap(), None);
    assert_eq!(store.pending_request("q").await.unwrap(), None, "per consumer");
    assert!(matches!(
        store.request("", ConsumerRequest::RetryFailures).await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// Generates one `#[tokio::test]` per conformance case for a backend.
///
/// `$make` is an async expression evaluating to `(Arc<dyn EventStore>, guard)`; the guard
/// is kept alive for the test's duration.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            append_and_read_stream, expected_version_modes, idempotent_append, json_text_payloads, append_many_is_atomic,
            event_fields_round_trip, read_payloads, load_aggregate, count_streams, durable, unread, read_all_and_category, query_filters, query_default_limit,
            stream_query, delete_before, snapshots, checkpoints, subscriptions, bad_input,
            checkpoint_fencing, leases, recorded_failures, projection_stops, count_after, guarded_delete, category_wake_ups,
            read_log_selects, consumer_requests, projection_builds, projection_slices, concurrent_history,
            durable_timers, commands_run_once);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}
