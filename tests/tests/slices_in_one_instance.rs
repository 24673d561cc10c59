//! Projections in slices within one instance, on the in-memory store: the slices run
//! concurrently within their bound, and retention's safe mode keeps what the slowest
//! slice has not processed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use factum::prelude::*;
use factum::store::Slice;
use factum::{
    ExpectedVersion, HandlerError, NewEvent, Projection, RecordedEvent, StreamId, Supervisor,
    SupervisorConfig,
};
use factum_tests::eventually;
use serde_json::json;

/// Counts the handlers running at once.
struct Gauge {
    now: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
    handled: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl factum::EventHandler for Gauge {
    async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), HandlerError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.now.fetch_sub(1, SeqCst);
        self.handled.fetch_add(1, SeqCst);
        Ok(())
    }
}

/// In one instance (here on the in-memory store), the slices apply their batches
/// concurrently, at most `slice_concurrency` at once, and every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_in_one_instance_run_concurrently_within_the_bound() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    for (concurrency, at_least) in [(2, 2), (8, 3)] {
        let store = Arc::new(factum::InMemoryStore::new());
        for n in 0..400 {
            let stream = StreamId::new("Acc", format!("a-{}", n % 80)).unwrap();
            store
                .append(&stream, ExpectedVersion::Any, vec![NewEvent::new("Deposited", json!({}))])
                .await
                .unwrap();
        }
        let (now, most, handled) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (m, h) = (most.clone(), handled.clone());
        let projection = Projection::sliced_handler("gauge", 8, move |_| Gauge {
            now: now.clone(),
            most: m.clone(),
            handled: h.clone(),
        })
        .slice_concurrency(concurrency)
        .batch_size(10);
        let supervisor = Supervisor::start(store.clone(), SupervisorConfig::default().projection(projection))
            .await
            .unwrap();
        eventually(Duration::from_secs(30), "every event handled", || async {
            (handled.load(SeqCst) >= 400).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(handled.load(SeqCst), 400, "each event once");
        let most = most.load(SeqCst);
        println!("slices: 8 slices, slice_concurrency {concurrency}: at most {most} handlers at once");
        assert!(most <= concurrency, "{most} at once, bound {concurrency}");
        assert!(most >= at_least, "only {most} at once with a bound of {concurrency}");
        let status = supervisor.status("gauge").unwrap();
        assert_eq!(status.slices.len(), 8);
        supervisor.shutdown().await.unwrap();
    }
}

/// Retention's safe mode keeps what any slice has not processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_what_any_slice_has_not_processed() {
    use factum::supervisor::{RetentionConfig, RetentionMode};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let store = Arc::new(factum::InMemoryStore::new());
    let mut streams = Vec::new();
    for i in 0..8 {
        let stream = StreamId::new("Acc", format!("a-{i}")).unwrap();
        let events = (0..5).map(|_| NewEvent::new("Deposited", json!({}))).collect();
        store.append(&stream, ExpectedVersion::NoStream, events).await.unwrap();
        let snapshot = factum::store::Snapshot {
            stream: stream.clone(),
            version: factum::Version(5),
            schema_version: 1,
            state: json!({}),
            created_at: chrono::Utc::now(),
        };
        store.save_snapshot(&snapshot).await.unwrap();
        streams.push(stream);
    }
    let (now, most, handled) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let h = handled.clone();
    let projection = Projection::sliced_handler("kept", 4, move |_| Gauge {
        now: now.clone(),
        most: most.clone(),
        handled: h.clone(),
    });
    let config = SupervisorConfig::default()
        .projection(projection)
        .retention(RetentionConfig::default().period(Duration::ZERO).mode(RetentionMode::Safe));
    let supervisor = Supervisor::start(store.clone(), config).await.unwrap();
    eventually(Duration::from_secs(30), "every event handled", || async {
        (handled.load(SeqCst) >= 40).then_some(())
    })
    .await;
    supervisor.pause("kept").await.unwrap();
    // One slice is sent back to the start: it has processed nothing, so nothing goes (a
    // slice's checkpoint is a position in the whole log: what lies after it is kept,
    // whichever slice its stream is in).
    let behind = Slice::of(&streams[0], 4).unwrap().consumer("kept");
    let at = store.load_checkpoint(&behind).await.unwrap().unwrap();
    store.save_checkpoint(&behind, factum::store::Checkpoint::START).await.unwrap();
    assert_eq!(supervisor.cleanup_now().await.unwrap().deleted, 0);
    // Back where it was: every slice has processed everything, and each stream keeps
    // only its newest event (its snapshot covers the rest).
    store.save_checkpoint(&behind, at).await.unwrap();
    assert_eq!(supervisor.cleanup_now().await.unwrap().deleted, 8 * 4);
    for s in &streams {
        assert_eq!(
            store.read_stream(s, factum::store::VersionRange::from(factum::Version(1))).await.unwrap().len(),
            1
        );
    }
    supervisor.shutdown().await.unwrap();
}
