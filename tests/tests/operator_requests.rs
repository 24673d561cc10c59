//! Operators' requests to projections ([`ConsumerRequest`]), recorded in the store (as the
//! `factum` command line does) and carried out by the instance that holds the lease:
//! a rebuild, a reset to a position, a retry of recorded failures, and a request made
//! while no instance runs the projection.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use factum::prelude::*;
use factum::projection::FailurePolicy;
use factum::store::{Checkpoint, ConsumerRequest, VersionRange};
use factum::{
    ExpectedVersion, HandlerError, NewEvent, Projection, RecordedEvent, StreamId, Supervisor,
    SupervisorConfig,
};
use factum_postgres::{ExactlyOnce, PostgresStore};
use factum_tests::recorder::{Recorded, Recorder};
use factum_tests::{eventually, TestDb};
use serde_json::json;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

async fn seed(store: &PostgresStore, n: u64, poison: &[usize]) -> (HashSet<Uuid>, Vec<RecordedEvent>) {
    let stream = StreamId::new("Order", "o-1").unwrap();
    let mut events: Vec<NewEvent> = (0..n).map(|i| NewEvent::new("OrderNoted", json!({ "n": i }))).collect();
    for &p in poison {
        events[p].payload = json!({ "poison": true });
    }
    let ids = events.iter().map(|e| e.event_id).collect();
    store.append(&stream, ExpectedVersion::NoStream, events).await.unwrap();
    let stored = store.read_stream(&stream, VersionRange::ALL).await.unwrap();
    (ids, stored)
}

/// A recorder whose hook counts calls and fails poison events while `broken`.
fn counting(calls: Arc<AtomicU32>, broken: Arc<AtomicBool>) -> factum_tests::recorder::Hook {
    Arc::new(move |e: &RecordedEvent| -> Result<(), HandlerError> {
        calls.fetch_add(1, Ordering::SeqCst);
        if e.payload["poison"] == json!(true) && broken.load(Ordering::SeqCst) {
            return Err(HandlerError::msg("cannot digest"));
        }
        Ok(())
    })
}

async fn until_done(store: &PostgresStore, name: &str) {
    eventually(WAIT, &format!("{name}: request carried out"), || async {
        store.pending_request(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

async fn until_rows(store: &PostgresStore, table: &str, rows: u64) -> Recorded {
    eventually(WAIT, &format!("{table} holds {rows} rows"), || async {
        let r = Recorded::read(store.pool(), table).await;
        (r.rows == rows).then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_reset_and_retry_requests_are_carried_out_by_the_lease_holder() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (ids, stored) = seed(&store, 30, &[]).await;
    let calls = Arc::new(AtomicU32::new(0));
    let recorder = Recorder::create(store.pool(), "rm_requests")
        .await
        .with_hook(counting(calls.clone(), Arc::new(AtomicBool::new(false))));
    let config = SupervisorConfig::default()
        .projection(Projection::new("requests", ExactlyOnce::new(store.clone(), recorder)).batch_size(8));
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    until_rows(&store, "rm_requests", 30).await;
    assert_eq!(calls.load(Ordering::SeqCst), 30);

    // A rebuild: the read model is cleared and every event applied again, once.
    let pending = store
        .request("requests", ConsumerRequest::Reset { to: Checkpoint::START, clear: true })
        .await
        .unwrap();
    assert_eq!(store.pending_request("requests").await.unwrap(), Some(pending));
    until_done(&store, "requests").await;
    eventually(WAIT, "every event applied again", || async {
        (calls.load(Ordering::SeqCst) == 60).then_some(())
    })
    .await;
    until_rows(&store, "rm_requests", 30).await.assert_exactly(&ids, true);

    // A reset to a position without clearing: the events after it come again (the
    // recorder, keyed by nothing, shows them twice), those before it do not.
    let to = stored[19].checkpoint();
    store.request("requests", ConsumerRequest::Reset { to, clear: false }).await.unwrap();
    until_done(&store, "requests").await;
    let after = until_rows(&store, "rm_requests", 40).await;
    assert_eq!(after.ids, ids, "nothing but the log's events");
    assert_eq!(calls.load(Ordering::SeqCst), 70, "events 21..=30 applied once more");
    assert_eq!(store.load_checkpoint("requests").await.unwrap(), Some(stored[29].checkpoint()));
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_request_feeds_the_recorded_failures_again() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (ids, _) = seed(&store, 20, &[5, 12]).await;
    let calls = Arc::new(AtomicU32::new(0));
    let broken = Arc::new(AtomicBool::new(true));
    let recorder =
        Recorder::create(store.pool(), "rm_retry").await.with_hook(counting(calls, broken.clone()));
    let policy =
        FailurePolicy::retry_then_skip(2).backoff(Duration::from_millis(10), Duration::from_millis(20));
    let config = SupervisorConfig::default().projection(
        Projection::new("retry", ExactlyOnce::new(store.clone(), recorder)).batch_size(5).on_failure(policy),
    );
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    until_rows(&store, "rm_retry", 18).await;
    eventually(WAIT, "two failures recorded", || async {
        (store.failures("retry").await.unwrap().len() == 2).then_some(())
    })
    .await;

    broken.store(false, Ordering::SeqCst);
    store.request("retry", ConsumerRequest::RetryFailures).await.unwrap();
    until_done(&store, "retry").await;
    assert!(store.failures("retry").await.unwrap().is_empty(), "both resolved");
    // The two come after the rest: the read model holds each event once, out of order.
    let rows = until_rows(&store, "rm_retry", 20).await;
    assert_eq!(rows.ids, ids);
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_an_instance_to_take_the_lease() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (ids, _) = seed(&store, 10, &[]).await;
    let recorder = Recorder::create(store.pool(), "rm_later").await;
    // Rows that a rebuild must clear: the read model holds something the log does not.
    sqlx::query("INSERT INTO rm_later (event_id, stream, version, event_type) VALUES ($1, 'x', 1, 'Stale')")
        .bind(Uuid::new_v4())
        .execute(store.pool())
        .await
        .unwrap();
    store.save_checkpoint("later", Checkpoint::START).await.unwrap();
    let pending =
        store.request("later", ConsumerRequest::Reset { to: Checkpoint::START, clear: true }).await.unwrap();
    // A newer request replaces it; completing the older one removes nothing.
    let newer =
        store.request("later", ConsumerRequest::Reset { to: Checkpoint::START, clear: true }).await.unwrap();
    assert!(newer.requested_at > pending.requested_at);
    assert!(!store.complete_request("later", pending.requested_at).await.unwrap());
    assert_eq!(store.pending_request("later").await.unwrap(), Some(newer));

    let config = SupervisorConfig::default()
        .projection(Projection::new("later", ExactlyOnce::new(store.clone(), recorder)));
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    until_done(&store, "later").await;
    until_rows(&store, "rm_later", 10).await.assert_exactly(&ids, true);
    supervisor.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_are_validated() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let too_long = "x".repeat(300);
    assert!(store.pending_request(&too_long).await.is_err());
    let bad = store.request("bad\0name", ConsumerRequest::RetryFailures).await.unwrap_err();
    assert!(matches!(bad, factum::StoreError::InvalidInput(_)), "{bad:?}");
    assert_eq!(store.pending_request("nobody").await.unwrap(), None);
}
