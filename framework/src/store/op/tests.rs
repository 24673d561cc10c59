use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::json;

use super::{Execute, Operation, StreamEvents};
use crate::prelude::*;
use crate::store::{
    AppendResult, Checkpoint, EventFilter, EventStream, ExpectedVersion, InMemoryStore, Limits, NewEvent,
    PayloadStream, StoreError, StreamId, Version, WakeSignal,
};

/// A third-party backend that stores nothing itself and counts the operations that reach
/// it: one generic impl covers them all.
#[derive(Default)]
struct Counting {
    inner: InMemoryStore,
    calls: AtomicUsize,
}

#[async_trait]
impl<Op: Operation> Execute<Op> for Counting
where
    InMemoryStore: Execute<Op>,
{
    async fn execute(&self, op: Op) -> Result<Op::Output, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.execute(op).await
    }
}

impl LogBackend for Counting {
    fn limits(&self) -> &Limits {
        self.inner.limits()
    }
    fn read_payloads<'a>(&'a self, stream: &'a StreamId, after: Version) -> PayloadStream<'a> {
        self.inner.read_payloads(stream, after)
    }
    fn stream_events(&self, filter: StreamEvents) -> EventStream {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.stream_events(filter)
    }
    fn wake_signal(&self) -> WakeSignal {
        self.inner.wake_signal()
    }
}

#[tokio::test]
async fn a_backend_gets_only_valid_input() {
    let store = Counting::default();
    let s = StreamId::new("Order", "o-1").unwrap();
    let too_big = "x".repeat(store.limits().max_payload_bytes);
    let bad: [Result<AppendResult, StoreError>; 3] = [
        store.append(&s, ExpectedVersion::Any, vec![]).await,
        store.append(&s, ExpectedVersion::Any, vec![NewEvent::new("", json!({}))]).await,
        store.append(&s, ExpectedVersion::Any, vec![NewEvent::new("E", json!({ "b": too_big }))]).await,
    ];
    assert!(bad.iter().all(|r| matches!(r, Err(StoreError::InvalidInput(_)))), "{bad:?}");
    assert!(matches!(store.read_all(Checkpoint::START, 0).await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(store.read_category("", Checkpoint::START, 1).await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(store.load_checkpoint("").await, Err(StoreError::InvalidInput(_))));
    let bad_filter = EventFilter::new().topics(["a..b"]);
    assert!(matches!(store.query(&bad_filter).await, Err(StoreError::InvalidInput(_))));
    let streamed: Vec<_> = futures_util::StreamExt::collect(store.stream(bad_filter)).await;
    assert!(matches!(streamed.as_slice(), [Err(StoreError::InvalidInput(_))]), "{streamed:?}");
    assert_eq!(store.calls.load(Ordering::SeqCst), 0, "no invalid call reached the backend");

    store.append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("E", json!({}))]).await.unwrap();
    assert_eq!(store.query(&EventFilter::new()).await.unwrap().len(), 1);
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    assert_eq!(store.calls.load(Ordering::SeqCst), 3, "valid calls reach it");
}
