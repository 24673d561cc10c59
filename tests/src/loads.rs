//! The conformance case of an aggregate's cold load in one read
//! ([`LogBackend::load_aggregate`](factum::store::LogBackend::load_aggregate)): the
//! snapshot and the events after it, or every event when the snapshot has another schema
//! version, across the backend's pages.

use chrono::{SubsecRound, Utc};
use factum::store::{AggregateLoad, EventPayload, Snapshot};
use factum::{ExpectedVersion, NewEvent, StreamId, Version};
use futures_util::TryStreamExt;
use serde_json::json;

use crate::conformance::Store;

/// More events than a page of PostgreSQL's load, so that the rest is read too.
const EVENTS: u64 = 1_200;

async fn load(
    store: &Store,
    stream: &StreamId,
    schema: u32,
) -> Option<(Option<Snapshot>, Vec<EventPayload>)> {
    let load = store.load_aggregate(stream, schema)?;
    let AggregateLoad { snapshot, events, .. } = load.await.expect("load");
    let events: Vec<EventPayload> = events.try_collect().await.expect("events");
    Some((snapshot, events))
}

fn versions(events: &[EventPayload]) -> Vec<u64> {
    events.iter().map(|e| e.version.0).collect()
}

/// `load_aggregate`: nothing for a stream that has nothing; every event without a
/// snapshot; the snapshot and the events after it when its schema version is the one
/// asked for; the snapshot and every event when it is another.
pub async fn load_aggregate(store: Store) {
    let s = StreamId::new("Order", "o-1").unwrap();
    let Some((snapshot, events)) = load(&store, &s, 1).await else {
        // The backend has no one-read load: the aggregates load in two reads.
        return;
    };
    assert!(snapshot.is_none() && events.is_empty(), "{snapshot:?} {events:?}");

    let batch: Vec<NewEvent> = (0..EVENTS)
        .map(|i| NewEvent::new("Line", json!({ "n": i, "text": format!("\u{5d0}\"{i}") })))
        .collect();
    store.append(&s, ExpectedVersion::NoStream, batch).await.unwrap();
    store
        .append(
            &StreamId::new("Order", "o-2").unwrap(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("X", json!({}))],
        )
        .await
        .unwrap();
    let (snapshot, events) = load(&store, &s, 1).await.unwrap();
    assert!(snapshot.is_none());
    assert_eq!(versions(&events), (1..=EVENTS).collect::<Vec<_>>());
    let last: serde_json::Value = serde_json::from_str(&events[events.len() - 1].payload).unwrap();
    assert_eq!(last, json!({ "n": EVENTS - 1, "text": format!("\u{5d0}\"{}", EVENTS - 1) }));

    let state = json!({ "lines": 100, "note": "<script>\u{202e}", "nested": { "list": [1, null] } });
    let saved = Snapshot {
        stream: s.clone(),
        version: Version(100),
        schema_version: 2,
        state: state.clone(),
        created_at: Utc::now().trunc_subsecs(6),
    };
    store.save_snapshot(&saved).await.unwrap();
    let (snapshot, events) = load(&store, &s, 2).await.unwrap();
    let snapshot = snapshot.expect("the snapshot");
    assert_eq!((snapshot.version, snapshot.schema_version, &snapshot.state), (Version(100), 2, &state));
    assert_eq!(snapshot.stream, s);
    assert_eq!(snapshot.created_at, saved.created_at);
    assert_eq!(versions(&events), (101..=EVENTS).collect::<Vec<_>>(), "the events after the snapshot");

    let (snapshot, events) = load(&store, &s, 3).await.unwrap();
    assert_eq!(snapshot.map(|s| s.schema_version), Some(2), "a snapshot of another schema is returned");
    assert_eq!(versions(&events), (1..=EVENTS).collect::<Vec<_>>(), "and every event");

    // A snapshot at the stream's head: nothing after it.
    store.save_snapshot(&Snapshot { version: Version(EVENTS), ..saved.clone() }).await.unwrap();
    let (snapshot, events) = load(&store, &s, 2).await.unwrap();
    assert_eq!(snapshot.map(|s| s.version), Some(Version(EVENTS)));
    assert!(events.is_empty());
}
