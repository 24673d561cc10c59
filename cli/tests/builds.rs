//! `factum projections builds | switch | retire | reset` against a running service whose
//! projection keeps its builds apart: a rebuild into a fresh copy, a switch back to the
//! build it replaced, and retiring one.

mod support;

use std::sync::Arc;
use std::time::Duration;

use factum::prelude::*;
use factum::{
    ExpectedVersion, HandlerError, NewEvent, Projection, RecordedEvent, StreamId, Supervisor,
    SupervisorConfig,
};
use factum_postgres::sqlx::{self, PgConnection};
use factum_postgres::{ExactlyOnce, PgProjection, PostgresStore};
use factum_tests::{eventually, TestDb};
use serde_json::json;
use support::run;

/// One row per event, in its build's schema.
struct Seen;

#[async_trait::async_trait]
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

fn states(listed: &[serde_json::Value]) -> Vec<(String, String)> {
    listed
        .iter()
        .map(|b| (format!("{}.{}", b["version"], b["build"]), b["state"].as_str().unwrap().to_owned()))
        .collect()
}

async fn live(store: &PostgresStore) -> Option<String> {
    let builds = store.builds("seen").await.unwrap();
    builds
        .iter()
        .find(|b| b.state == factum::store::BuildState::Live)
        .map(|b| format!("{}.{}", b.id.version, b.id.build))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_switch_back_and_retire_from_the_command_line() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let url = db.url();
    let url = Some(url.as_str());
    for i in 0..20 {
        let stream = StreamId::new("Order", format!("o-{i}")).unwrap();
        store.append(&stream, ExpectedVersion::Any, vec![NewEvent::new("Placed", json!({}))]).await.unwrap();
    }
    let service = db.store().await;
    let projection = Projection::new("seen", ExactlyOnce::new(service.clone(), Seen).schema_per_build());
    let config = SupervisorConfig::default().projection(projection).lease_retry(Duration::from_millis(200));
    let supervisor = Supervisor::start(Arc::new(service), config).await.unwrap();
    let end = store.latest_position().await.unwrap().unwrap();
    supervisor.wait_for(end, &["seen"], Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        states(&run(url, &["projections", "builds", "seen", "--json"]).await.json_lines()),
        [("1.1".into(), "live".into())]
    );

    // A reset from the start rebuilds into a fresh copy, carried out by the service.
    run(url, &["projections", "reset", "seen", "--wait", "30"]).await.ok();
    eventually(Duration::from_secs(30), "the copy is live", || {
        let store = store.clone();
        async move { (live(&store).await.as_deref() == Some("1.2")).then_some(()) }
    })
    .await;
    let listed = run(url, &["projections", "builds", "seen", "--json"]).await.json_lines();
    assert_eq!(states(&listed), [("1.1".into(), "replaced".into()), ("1.2".into(), "live".into())]);
    assert_eq!(listed[1]["consumer"], "seen@v1.2");
    let status = run(url, &["status", "--json", "--brief"]).await.json_lines();
    let rows = status[0]["projections"].as_array().unwrap();
    assert!(rows.iter().any(|p| p["name"] == "seen@v1.2" && p["build"] == "live"), "{rows:?}");

    // Events after the switch, then back to the replaced build: brought up to date first.
    for i in 20..30 {
        let stream = StreamId::new("Order", format!("o-{i}")).unwrap();
        store.append(&stream, ExpectedVersion::Any, vec![NewEvent::new("Placed", json!({}))]).await.unwrap();
    }
    let back = run(url, &["projections", "switch", "seen", "1.1", "--wait", "30"]).await;
    assert_eq!(back.ok(), "seen: build 1.1 is live\n");
    let end = store.latest_position().await.unwrap().unwrap();
    supervisor.wait_for(end, &["seen"], Duration::from_secs(30)).await.unwrap();
    let mut read = store.read_models(&["seen"]).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM seen").fetch_one(&mut *read).await.unwrap();
    drop(read);
    assert_eq!(rows, 30, "the build switched back to holds every event once");

    // Retiring: not the live build, not a build in use; the replaced one, yes.
    run(url, &["projections", "retire", "seen", "1.1"]).await.fails(2, "followed by a running instance");
    run(url, &["projections", "retire", "seen", "7"]).await.fails(3, "no build 7");
    run(url, &["projections", "switch", "seen", "x.1"]).await.fails(2, "is not a build");
    let retired = run(url, &["projections", "retire", "seen", "1.2"]).await;
    assert_eq!(retired.ok(), "seen: build 1.2 retired, its read model dropped\n");
    let listed = run(url, &["projections", "builds", "seen", "--json"]).await.json_lines();
    assert_eq!(states(&listed), [("1.1".into(), "live".into()), ("1.2".into(), "retired".into())]);
    supervisor.shutdown().await.unwrap();
}
