//! Projection versions across instances on a real PostgreSQL: a rolling deployment where
//! one instance still runs version 1 while two run version 2.

use std::time::Duration;

use async_trait::async_trait;
use factum::prelude::*;
use factum::projection::ProjectionState;
use factum::store::{BuildId, BuildState};
use factum::{
    EventStore, ExpectedVersion, HandlerError, NewEvent, Projection, RecordedEvent, StreamId, Supervisor,
    SupervisorConfig,
};
use factum_postgres::{ExactlyOnce, PgProjection, PostgresStore};
use factum_tests::{eventually, TestDb};
use serde_json::json;
use sqlx::PgConnection;

/// Counts each event once, by id, in a table of its build's schema: a write twice, or
/// into another version's table, shows.
struct Seen;

#[async_trait]
impl PgProjection for Seen {
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO seen (event_id) VALUES ($1)").bind(event.event_id).execute(tx).await?;
        Ok(())
    }

    async fn create(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS seen (event_id uuid PRIMARY KEY)").execute(tx).await?;
        Ok(())
    }
}

async fn instance(db: &TestDb, name: &str, version: u32) -> (PostgresStore, Supervisor) {
    instance_with(db, name, version, None).await
}

async fn instance_with(
    db: &TestDb,
    name: &str,
    version: u32,
    grace: Option<Duration>,
) -> (PostgresStore, Supervisor) {
    let store = db.store_with(db.config_with_app(name)).await;
    let mut projection = Projection::new("seen", ExactlyOnce::new(store.clone(), Seen).schema_per_build())
        .version(version)
        .batch_size(200);
    if let Some(grace) = grace {
        projection = projection.retire_replaced_after(grace);
    }
    let mut config = SupervisorConfig::default().lease_retry(Duration::from_millis(200));
    if version > 1 && name.contains("both") {
        // The old version beside the new one, in the same process.
        let old =
            Projection::new("seen", ExactlyOnce::new(store.clone(), Seen).schema_per_build()).batch_size(200);
        config = config.projection(old);
        projection = projection.batch_size(5);
    }
    let config = config.projection(projection);
    let supervisor = Supervisor::start(std::sync::Arc::new(store.clone()), config).await.unwrap();
    (store, supervisor)
}

async fn append(store: &dyn EventStore, round: u64, n: u64) {
    let stream = StreamId::new("Order", format!("o-{round}")).unwrap();
    let events = (0..n).map(|i| NewEvent::new("Placed", json!({ "i": i }))).collect();
    store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
}

async fn rows(store: &PostgresStore, build: &BuildId) -> i64 {
    let schema = factum_postgres::build_schema(&store.names().schema, build);
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{schema}\".seen")))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn runs(supervisor: &Supervisor) -> bool {
    !matches!(supervisor.status("seen").unwrap().state, ProjectionState::Standby | ProjectionState::Starting)
}

/// Instance A runs version 1; B and C start with version 2 while A keeps serving and
/// events keep coming. Exactly one of B and C builds version 2, into its own tables;
/// once caught up it becomes live on its own, in one step; A's version 1 never writes
/// into version 2's tables, nor the reverse; each build holds each event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_builds_a_new_version_while_another_serves_the_old() {
    let db = TestDb::new().await;
    let (store, a) = instance(&db, "instance_a", 1).await;
    for round in 0..20 {
        append(&store, round, 100).await;
    }
    let v1 = BuildId::new("seen", 1, 1);
    let end = store.latest_position().await.unwrap().unwrap();
    a.wait_for(end, &["seen"], Duration::from_secs(60)).await.unwrap();
    assert_eq!(a.status("seen").unwrap().build.unwrap().state, BuildState::Live, "the first build is live");

    let (_, b) = instance(&db, "instance_b", 2).await;
    let (_, c) = instance(&db, "instance_c", 2).await;
    for round in 20..40 {
        append(&store, round, 50).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v2 = BuildId::new("seen", 2, 1);
    eventually(Duration::from_secs(60), "version 2 is live", || {
        let store = store.clone();
        let v2 = v2.clone();
        async move {
            let builds = store.builds("seen").await.unwrap();
            builds.iter().any(|b| b.id == v2 && b.state == BuildState::Live).then_some(())
        }
    })
    .await;
    let builds = store.builds("seen").await.unwrap();
    let states: Vec<_> = builds.iter().map(|b| (b.id.clone(), b.state)).collect();
    assert_eq!(
        states,
        [(v1.clone(), BuildState::Replaced), (v2.clone(), BuildState::Live)],
        "one build per version"
    );
    assert!(runs(&b) != runs(&c), "exactly one of the two version-2 instances builds it");

    // Version 2 holds everything, once. Version 1 was frozen by the cut-over: it holds
    // each event up to its checkpoint, once, and its instance stands down at the next
    // event (its batch is refused).
    append(&store, 99, 1).await;
    let end = store.latest_position().await.unwrap().unwrap();
    b.wait_for(end, &["seen"], Duration::from_secs(60)).await.unwrap();
    eventually(Duration::from_secs(30), "A stands down", || {
        let state = a.status("seen").unwrap().state;
        async move { (state == ProjectionState::Retired).then_some(()) }
    })
    .await;
    let total = store.count(&factum::EventFilter::new()).await.unwrap() as i64;
    assert_eq!(rows(&store, &v2).await, total, "version 2 holds each event once");
    let frozen = store.load_checkpoint("seen").await.unwrap().unwrap();
    let upto: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE (transaction_id, global_position) <= ($1, $2)")
            .bind(frozen.transaction as i64)
            .bind(frozen.position.0 as i64)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(rows(&store, &v1).await, upto, "version 1 holds each event up to where it was frozen, once");
    assert!(upto < total, "version 1 took nothing after the cut-over");

    // A version 1 instance that starts now finds version 1's build replaced: it stands
    // down; once retired, version 1 is not built again.
    for s in [a, b, c] {
        s.shutdown().await.unwrap();
    }
    let (_, a) = instance(&db, "instance_a_again", 1).await;
    eventually(Duration::from_secs(10), "A stands down at once", || {
        let state = a.status("seen").unwrap().state;
        async move { (state == ProjectionState::Retired).then_some(()) }
    })
    .await;
    a.shutdown().await.unwrap();
    let (_, b) = instance(&db, "instance_b_again", 2).await;
    b.retire("seen", &v1).await.expect("retire version 1");
    b.shutdown().await.unwrap();
    let (_, a) = instance(&db, "instance_a_last", 1).await;
    eventually(Duration::from_secs(10), "a retired version is not built again", || {
        let state = a.status("seen").unwrap().state;
        async move { (state == ProjectionState::Retired).then_some(()) }
    })
    .await;
    assert_eq!(store.builds("seen").await.unwrap().len(), 2, "no new build of version 1");
    a.shutdown().await.unwrap();
}

/// With a grace period, the build a new version replaced is retired once the grace has
/// passed and no instance follows it any more: its schema is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_build_is_retired_after_the_grace_period() {
    let db = TestDb::new().await;
    let (store, a) = instance(&db, "instance_a", 1).await;
    append(&store, 0, 100).await;
    let end = store.latest_position().await.unwrap().unwrap();
    a.wait_for(end, &["seen"], Duration::from_secs(30)).await.unwrap();
    let (_, b) = instance_with(&db, "instance_b", 2, Some(Duration::from_millis(300))).await;
    let v1 = BuildId::new("seen", 1, 1);
    let state_of_v1 = || {
        let store = store.clone();
        let v1 = v1.clone();
        async move { store.builds("seen").await.unwrap().into_iter().find(|b| b.id == v1).unwrap().state }
    };
    eventually(Duration::from_secs(30), "version 2 live", || {
        let next = state_of_v1();
        async move { (next.await == BuildState::Replaced).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(state_of_v1().await, BuildState::Replaced, "A still holds version 1's lease: left alone");
    a.shutdown().await.unwrap();
    eventually(Duration::from_secs(30), "version 1 retired once nobody follows it", || {
        let next = state_of_v1();
        async move { (next.await == BuildState::Retired).then_some(()) }
    })
    .await;
    let schema = factum_postgres::build_schema(&store.names().schema, &v1);
    let left: Option<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = $1")
            .bind(&schema)
            .fetch_optional(store.pool())
            .await
            .unwrap();
    assert_eq!(left, None, "its schema is gone");
    b.shutdown().await.unwrap();
}

/// One instance deploys version 2 while still declaring version 1: version 1 keeps
/// following the log (its readers see new events) while version 2 builds, version 2
/// goes live once caught up, and version 1 then stands down, so that it can be retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_keeps_the_old_version_current_while_the_new_one_builds() {
    let db = TestDb::new().await;
    let (store, a) = instance(&db, "instance_a", 1).await;
    for round in 0..10 {
        append(&store, round, 300).await;
    }
    let end = store.latest_position().await.unwrap().unwrap();
    a.wait_for(end, &["seen"], Duration::from_secs(60)).await.unwrap();
    a.shutdown().await.unwrap();

    // Version 2 (in batches of 5: it takes a while) beside version 1.
    let (_, both) = instance(&db, "instance_both", 2).await;
    eventually(Duration::from_secs(30), "version 2 building", || {
        let status = both.status("seen").unwrap();
        async move { status.build.filter(|b| b.state == BuildState::Building).map(|_| ()) }
    })
    .await;
    let written = store
        .append(
            &StreamId::new("Order", "new").unwrap(),
            ExpectedVersion::Any,
            vec![NewEvent::new("Placed", json!({}))],
        )
        .await
        .unwrap();
    let at = written.checkpoint().unwrap();
    eventually(Duration::from_secs(30), "version 1 follows the new event while version 2 builds", || {
        let store = store.clone();
        async move { store.load_checkpoint("seen").await.unwrap().filter(|c| *c >= at) }
    })
    .await;
    let v2_state = both.status("seen").unwrap().build.unwrap().state;
    println!("version 1 applied the new event while version 2 was {v2_state}");

    eventually(Duration::from_secs(120), "version 2 live", || {
        let status = both.status("seen").unwrap();
        async move { status.build.filter(|b| b.state == BuildState::Live).map(|_| ()) }
    })
    .await;
    eventually(Duration::from_secs(30), "version 1 stands down", || {
        let state = both.status("seen@v1").unwrap().state;
        async move { (state == ProjectionState::Retired).then_some(()) }
    })
    .await;
    let total = store.count(&factum::EventFilter::new()).await.unwrap() as i64;
    assert_eq!(rows(&store, &BuildId::new("seen", 2, 1)).await, total, "version 2 holds each event once");
    let v1 = BuildId::new("seen", 1, 1);
    assert_eq!(rows(&store, &v1).await, total, "version 1 held each event once, up to the cut-over");
    both.retire("seen", &v1).await.expect("version 1 retires once it stood down");
    both.shutdown().await.unwrap();
}

/// A projection that kept its read model in place, started again with a schema per
/// build: its new schema starts empty, so it replays the log from the start into it
/// rather than going on from its old checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_read_model_into_a_schema_per_build_replays_it() {
    let db = TestDb::new().await;
    let store = db.store().await;
    sqlx::query("CREATE TABLE seen (event_id uuid PRIMARY KEY)").execute(store.pool()).await.unwrap();
    for round in 0..5 {
        append(&store, round, 10).await;
    }
    let in_place = Projection::new("seen", ExactlyOnce::new(store.clone(), Seen));
    let supervisor = Supervisor::start(
        std::sync::Arc::new(store.clone()),
        SupervisorConfig::default().projection(in_place),
    )
    .await
    .unwrap();
    let end = store.latest_position().await.unwrap().unwrap();
    supervisor.wait_for(end, &["seen"], Duration::from_secs(30)).await.unwrap();
    supervisor.shutdown().await.unwrap();

    let (_, apart) = instance(&db, "apart", 1).await;
    eventually(Duration::from_secs(30), "the build taken up", || {
        let build = apart.status("seen").unwrap().build;
        async move { build.map(|_| ()) }
    })
    .await;
    apart.wait_for(end, &["seen"], Duration::from_secs(30)).await.unwrap();
    assert_eq!(rows(&store, &BuildId::new("seen", 1, 1)).await, 50, "every event, replayed into the schema");
    apart.shutdown().await.unwrap();
}

/// Two rebuilds left unfinished (their processes gone): the next holder of the live
/// build resumes the newer copy and makes it live, and retires the older one, so that
/// no copy stays building for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_copies_the_newest_resumed_the_older_retired() {
    let db = TestDb::new().await;
    let (store, a) = instance(&db, "instance_a", 1).await;
    append(&store, 0, 40).await;
    let end = store.latest_position().await.unwrap().unwrap();
    a.wait_for(end, &["seen"], Duration::from_secs(30)).await.unwrap();
    a.shutdown().await.unwrap();
    for _ in 0..2 {
        store.register_build("seen", 1, 1, true).await.unwrap();
    }
    let (_, b) = instance(&db, "instance_b", 1).await;
    eventually(Duration::from_secs(30), "the newest copy live, the older retired", || {
        let store = store.clone();
        async move {
            let builds = store.builds("seen").await.unwrap();
            let states: Vec<_> = builds.iter().map(|b| (b.id.build, b.state)).collect();
            (states == [(1, BuildState::Replaced), (2, BuildState::Retired), (3, BuildState::Live)])
                .then_some(())
        }
    })
    .await;
    b.wait_for(end, &["seen"], Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        rows(&store, &BuildId::new("seen", 1, 3)).await,
        40,
        "the resumed copy holds every event once"
    );
    b.shutdown().await.unwrap();
}
