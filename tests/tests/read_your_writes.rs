//! Read-your-writes on a real PostgreSQL: a wait for projections after a write sees the
//! write in the read model, for projections that select a category, that stand by on
//! another instance, or that start after the write; and a wait that cannot be met ends in
//! time with the projections it names.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use factum::prelude::*;
use factum::store::GlobalPosition;
use factum::supervisor::WaitError;
use factum::{ExpectedVersion, NewEvent, Projection, StreamId, Supervisor, SupervisorConfig};
use factum_postgres::{ExactlyOnce, PostgresStore};
use factum_tests::recorder::Recorder;
use factum_tests::TestDb;
use serde_json::json;
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

/// Generous: the gap-safe horizon is cluster-wide, and other tests share the server.
const WAIT: Duration = Duration::from_secs(20);

fn sid(t: &str, id: &str) -> StreamId {
    StreamId::new(t, id).unwrap()
}

async fn recorded(pool: &PgPool, table: &str) -> HashSet<Uuid> {
    let rows: Vec<(Uuid,)> =
        sqlx::query_as(AssertSqlSafe(format!("SELECT event_id FROM {table}"))).fetch_all(pool).await.unwrap();
    rows.into_iter().map(|(id,)| id).collect()
}

async fn in_model(pool: &PgPool, table: &str, id: Uuid) -> bool {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE event_id = $1)")))
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn projections(store: &PostgresStore, pool: &PgPool) -> SupervisorConfig {
    SupervisorConfig::default()
        .projection(Projection::new(
            "all",
            ExactlyOnce::new(store.clone(), Recorder::create(pool, "rm_all").await),
        ))
        .projection(
            Projection::new(
                "orders",
                ExactlyOnce::new(store.clone(), Recorder::create(pool, "rm_orders").await),
            )
            .aggregate_types(["Order"]),
        )
}

/// 300 writes, alternately orders and customers, each read right after a wait on its
/// checkpoint or its position: the write is in every read model that selects it, and a
/// projection of orders does not hold a wait for a customer's event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_read_after_its_wait() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let pool = store.pool().clone();
    let supervisor =
        Supervisor::start(Arc::new(store.clone()), projections(&store, &pool).await).await.unwrap();
    let (mut missing, mut slowest) = (0, Duration::ZERO);
    for i in 0..300u32 {
        let kind = if i.is_multiple_of(2) { "Order" } else { "Customer" };
        let event = NewEvent::new("Happened", json!({ "i": i }));
        let id = event.event_id;
        let result = store
            .append(&sid(kind, &format!("{kind}-{}", i % 7)), ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
        let checkpoint = result.checkpoint().unwrap();
        let started = Instant::now();
        if i.is_multiple_of(3) {
            supervisor.wait_for(checkpoint.position, &[], WAIT).await.unwrap();
        } else {
            supervisor.wait_for(checkpoint, &["all", "orders"], WAIT).await.unwrap();
        }
        slowest = slowest.max(started.elapsed());
        missing += usize::from(!in_model(&pool, "rm_all", id).await);
        if kind == "Order" {
            missing += usize::from(!in_model(&pool, "rm_orders", id).await);
        } else {
            assert!(!in_model(&pool, "rm_orders", id).await, "orders select no customer");
        }
    }
    println!("300 writes read back after their waits; slowest wait {slowest:?}");
    assert_eq!(missing, 0, "every write was in the read models after its wait");
    supervisor.shutdown().await.unwrap();
}

/// Two instances: one runs the projections, the other stands by. A wait on the instance
/// standing by waits on the checkpoint they share, and sees the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_standing_by_waits_on_the_shared_checkpoint() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let pool = store.pool().clone();
    let first = Supervisor::start(Arc::new(store.clone()), projections(&store, &pool).await).await.unwrap();
    let other = db.store().await;
    let second = Supervisor::start(Arc::new(other.clone()), projections(&other, &pool).await).await.unwrap();
    for i in 0..40u32 {
        let event = NewEvent::new("Placed", json!({ "i": i }));
        let id = event.event_id;
        let result = store
            .append(&sid("Order", &format!("o-{i}")), ExpectedVersion::NoStream, vec![event])
            .await
            .unwrap();
        // Alternately on each instance: whichever holds the leases, the other waits too;
        // the second by position, whose checkpoint its store asks the database for.
        let checkpoint = result.checkpoint().unwrap();
        if i.is_multiple_of(2) {
            first.wait_for(checkpoint, &["orders"], WAIT).await.unwrap();
        } else {
            assert_eq!(other.checkpoint_of(checkpoint.position).await.unwrap(), Some(checkpoint));
            second.wait_for(checkpoint.position, &["orders"], WAIT).await.unwrap();
        }
        assert!(in_model(&pool, "rm_orders", id).await, "write {i} in the read model after the wait");
    }
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

/// Writes made before the projections start: a wait right after the start does not end
/// before they have been applied, although the projections have no checkpoint yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_covers_projections_that_have_not_started() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let pool = store.pool().clone();
    let mut ids = HashSet::new();
    let mut last = None;
    for i in 0..500u32 {
        let event = NewEvent::new("Placed", json!({ "i": i }));
        ids.insert(event.event_id);
        last = store
            .append(&sid("Order", &format!("o-{}", i % 13)), ExpectedVersion::Any, vec![event])
            .await
            .unwrap()
            .checkpoint();
    }
    let config = projections(&store, &pool).await;
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    supervisor.wait_for(last.unwrap().position, &["orders", "all"], WAIT).await.unwrap();
    assert_eq!(recorded(&pool, "rm_orders").await, ids);
    assert_eq!(recorded(&pool, "rm_all").await, ids);
    supervisor.shutdown().await.unwrap();
}

/// A wait on a position the log never reaches ends with the typed error, naming the
/// projections behind, within its timeout and 100 ms; an unknown projection is an error
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_cannot_be_met_times_out_in_time() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let pool = store.pool().clone();
    let supervisor =
        Supervisor::start(Arc::new(store.clone()), projections(&store, &pool).await).await.unwrap();
    let result = store
        .append(&sid("Order", "o-1"), ExpectedVersion::NoStream, vec![NewEvent::new("Placed", json!({}))])
        .await
        .unwrap();
    supervisor.wait_for(result.checkpoint().unwrap(), &[], WAIT).await.unwrap();

    let never = GlobalPosition(result.positions[0].0 + 1_000);
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = supervisor.wait_for(never, &["orders"], timeout).await.unwrap_err();
    let took = started.elapsed();
    match err {
        WaitError::Timeout { position, behind, .. } => {
            assert_eq!(position, never);
            assert_eq!(behind, ["orders"]);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(took >= timeout && took <= timeout + Duration::from_millis(100), "ended after {took:?}");
    assert!(matches!(
        supervisor.wait_for(never, &["nope"], timeout).await,
        Err(WaitError::Supervisor(factum::supervisor::SupervisorError::UnknownProjection(_)))
    ));
    supervisor.shutdown().await.unwrap();
}

/// A wait that spans a database restart: the projection cannot apply the write while the
/// server is down, the wait keeps asking, and it ends as soon as the projection has
/// applied the write once the server is back, well within its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_spans_a_database_restart() {
    let Some(cluster) = factum_tests::cluster::Cluster::start() else { return };
    let config = factum_postgres::PostgresConfig::from_url(&cluster.url("postgres")).unwrap();
    let store = PostgresStore::connect(config).await.unwrap();
    store.migrate().await.unwrap();
    let recorder = Recorder::create(store.pool(), "rm_restart").await;
    let projection = Projection::new("restart", ExactlyOnce::new(store.clone(), recorder));
    let supervisor =
        Supervisor::start(Arc::new(store.clone()), SupervisorConfig::default().projection(projection))
            .await
            .unwrap();
    let first = store
        .append(&sid("Order", "o-1"), ExpectedVersion::Any, vec![NewEvent::new("Placed", json!({}))])
        .await
        .unwrap();
    supervisor.wait_for(first.checkpoint().unwrap(), &["restart"], WAIT).await.unwrap();

    // The projection is held, the write lands, then the server goes down under the wait.
    supervisor.pause("restart").await.unwrap();
    let event = NewEvent::new("Placed", json!({}));
    let id = event.event_id;
    let written = store.append(&sid("Order", "o-2"), ExpectedVersion::Any, vec![event]).await.unwrap();
    let waiting = {
        let supervisor = supervisor.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = supervisor
                .wait_for(written.checkpoint().unwrap(), &["restart"], Duration::from_secs(60))
                .await;
            (outcome, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.stop_immediate();
    let down = Duration::from_secs(2);
    tokio::time::sleep(down).await;
    assert!(!waiting.is_finished(), "the wait goes on while the server is down");
    cluster.start_server();
    assert!(cluster.wait_listening(Duration::from_secs(30)), "the server is back");
    let back = Instant::now();
    supervisor.resume("restart").await.unwrap();

    let (outcome, took) = waiting.await.unwrap();
    outcome.expect("the wait ends once the projection has the write");
    println!("wait across a restart: {took:?} in all, {:?} after the server came back", back.elapsed());
    assert!(took >= down, "the wait spanned the outage");
    assert!(back.elapsed() < Duration::from_secs(10), "and ended soon after the server came back");
    assert!(in_model(store.pool(), "rm_restart", id).await, "the write is in the read model");
    supervisor.shutdown().await.unwrap();
}
