//! The conformance case of projections in slices: reads of one slice of the log, builds
//! that run in slices, and the instances that share them (see [`Slice`] and
//! [`ConsumerStore::heartbeat`](factum::store::ConsumerStore::heartbeat)).

use std::collections::HashSet;
use std::time::Duration;

use factum::store::{Checkpoint, GlobalPosition, LogSelector, Member, Slice, Switch};
use factum::{ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamId};
use serde_json::json;
use uuid::Uuid;

use crate::conformance::{read_everything, Store};

fn cp(n: u64) -> Checkpoint {
    Checkpoint { transaction: n, position: GlobalPosition(n) }
}

/// Reads one slice of the log at a time, in small pages, to its end.
async fn read_slice(store: &Store, selector: &LogSelector) -> Vec<RecordedEvent> {
    let mut after = Checkpoint::START;
    let mut got = Vec::new();
    while let Some(page) = store.read_log(after, selector, 3).await.unwrap() {
        assert!(page.to > after, "the checkpoint moves");
        got.extend(page.events);
        after = page.to;
        if !page.full {
            break;
        }
    }
    got
}

/// Slices: each event is read by exactly the slice of its stream, in log order, alone or
/// with a category; a build runs in one number of slices per version, is as far as its
/// slowest slice at a cut-over, and fences its slices once replaced; members are heard,
/// expire and leave.
pub async fn projection_slices(store: Store) {
    for i in 0..40 {
        let (t, id) =
            if i % 3 == 0 { ("Invoice", format!("i-{i}")) } else { ("Order", format!("o-{}", i % 17)) };
        let stream = StreamId::new(t, id).unwrap();
        store
            .append(&stream, ExpectedVersion::Any, vec![NewEvent::new("Noted", json!({ "i": i }))])
            .await
            .unwrap();
    }
    let all = read_everything(&store, 40).await;
    for base in [LogSelector::all(), LogSelector::category("Order").unwrap()] {
        let mut seen = HashSet::new();
        for slice in Slice::all(5).unwrap() {
            let got = read_slice(&store, &base.clone().in_slice(slice)).await;
            let want: Vec<&RecordedEvent> =
                all.iter().filter(|e| base.matches(e) && slice.contains(&e.stream)).collect();
            assert_eq!(
                got.iter().collect::<Vec<_>>(),
                want,
                "slice {slice} of {base:?}: its events, in log order"
            );
            for e in &got {
                assert!(seen.insert(e.event_id), "{} read by two slices", e.event_id);
            }
        }
        assert_eq!(seen.len(), all.iter().filter(|e| base.matches(e)).count(), "every event in some slice");
    }

    // One layout per version; a new version may have another, and is as far as its
    // slowest slice.
    let v1 = store.register_build("s", 1, 4, false).await.unwrap();
    assert_eq!((v1.slices, v1.consumers().len()), (4, 4));
    assert_eq!(v1.consumers()[3], "s#3/4");
    assert!(matches!(store.register_build("s", 1, 6, false).await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(store.register_build("s", 1, 6, true).await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(store.register_build("s", 1, 0, false).await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(store.register_build("s#1", 1, 1, false).await, Err(StoreError::InvalidInput(_))));
    let v2 = store.register_build("s", 2, 6, false).await.unwrap();
    assert_eq!(v2.slices, 6);
    for consumer in v1.consumers() {
        store.save_checkpoint(&consumer, cp(5)).await.unwrap();
    }
    // The live build's fastest slice is the bar: readers of that slice must not go back.
    store.save_checkpoint(&v1.consumers()[3], cp(8)).await.unwrap();
    for consumer in v2.consumers() {
        store.save_checkpoint(&consumer, cp(9)).await.unwrap();
    }
    store.save_checkpoint(&v2.consumers()[2], cp(3)).await.unwrap();
    assert_eq!(store.cut_over(&v2.id).await.unwrap(), Switch::Behind { live: cp(8), build: cp(3) });
    store.save_checkpoint(&v2.consumers()[2], cp(5)).await.unwrap();
    assert_eq!(store.cut_over(&v2.id).await.unwrap(), Switch::Behind { live: cp(8), build: cp(5) });
    store.save_checkpoint(&v2.consumers()[2], cp(8)).await.unwrap();
    assert!(matches!(store.cut_over(&v2.id).await.unwrap(), Switch::Switched { .. }));
    // The replaced build's slices take no more batches.
    assert!(!store.advance_checkpoint(&v1.consumers()[1], cp(5), cp(6)).await.unwrap());
    assert!(store.advance_checkpoint(&v2.consumers()[1], cp(9), cp(10)).await.unwrap());

    // Members: heard, expired, gone when they leave.
    let ttl = Duration::from_secs(5);
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let heard = store.heartbeat("s@v2", &Member::new(a, "host-a:1", vec![0, 2]), ttl).await.unwrap();
    assert_eq!(
        heard.iter().map(|m| (m.instance, m.holds.clone())).collect::<Vec<_>>(),
        vec![(a, vec![0, 2])]
    );
    store.heartbeat("s@v2", &Member::new(c, "host-c:1", vec![]), Duration::from_millis(100)).await.unwrap();
    let heard = store.heartbeat("s@v2", &Member::new(b, "host-b:1", vec![1]), ttl).await.unwrap();
    let mut ids: Vec<Uuid> = heard.iter().map(|m| m.instance).collect();
    ids.sort();
    let mut want = vec![a, b, c];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(heard.iter().find(|m| m.instance == b).unwrap().label, "host-b:1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard = store
        .heartbeat("s@v2", &Member::new(b, "host-b:1", vec![1]), Duration::from_millis(250))
        .await
        .unwrap();
    assert_eq!(
        heard.iter().map(|m| m.instance).collect::<Vec<_>>(),
        vec![b],
        "members not heard within the ttl"
    );
    store.leave("s@v2", b).await.unwrap();
    let short = Duration::from_millis(250);
    let heard = store.heartbeat("s@v2", &Member::new(a, "host-a:1", vec![0, 2]), short).await.unwrap();
    assert_eq!(heard.iter().map(|m| m.instance).collect::<Vec<_>>(), vec![a], "b left, c was not heard");
    assert!(
        store.heartbeat("other", &Member::new(a, "x", vec![]), ttl).await.unwrap().len() == 1,
        "per build"
    );
    // Bad input changes nothing and is typed.
    for bad in [
        store.heartbeat("", &Member::new(a, "x", vec![]), ttl).await,
        store.heartbeat("s@v2", &Member::new(a, "", vec![]), ttl).await,
        store.heartbeat("s@v2", &Member::new(a, "x", vec![]), Duration::ZERO).await,
    ] {
        assert!(matches!(bad, Err(StoreError::InvalidInput(_))), "{bad:?}");
    }
}
