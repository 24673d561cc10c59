//! Least privilege: connected as the runtime role, the service does everything it needs,
//! and nothing can rewrite history.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use factum::prelude::*;
use factum::projection::ProjectionState;
use factum::store::{Snapshot, VersionRange};
use factum::supervisor::{ReplayOptions, RetentionConfig, RetentionMode};
use factum::{
    EventFilter, EventHandler, ExpectedVersion, HandlerError, NewEvent, Projection, RecordedEvent, StreamId,
    Supervisor, SupervisorConfig, Version,
};
use factum_postgres::{create_roles, ExactlyOnce, PostgresConfig, PostgresStore, Roles, SchemaNames};
use factum_tests::recorder::{Recorded, Recorder};
use factum_tests::{eventually, TestDb};
use futures_util::StreamExt;
use serde_json::json;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

/// Drops the test's roles (cluster-wide) after its database is gone.
struct DropRoles(Roles);

impl Drop for DropRoles {
    fn drop(&mut self) {
        let roles = self.0.clone();
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    for role in [&roles.runtime, &roles.owner] {
                        let _ = sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
                            .execute(&mut conn)
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

struct Count(Arc<AtomicU64>);

#[async_trait]
impl EventHandler for Count {
    async fn handle(&mut self, _: &RecordedEvent) -> Result<(), HandlerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn fingerprint(conn: &mut PgConnection) -> String {
    sqlx::query_scalar(
        "SELECT md5(coalesce(string_agg(e::text, '|' ORDER BY global_position), '')) FROM events e",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_role_works_and_cannot_rewrite_history() {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let roles = Roles::new(format!("o_{suffix}"), format!("r_{suffix}"));
    let _cleanup = DropRoles(roles.clone());
    let db = TestDb::new().await;

    // Set up: the roles (as an admin, twice: harmless), the schema (as the owner).
    let mut admin = db.connect().await;
    create_roles(&mut admin, &SchemaNames::default(), &roles).await.unwrap();
    create_roles(&mut admin, &SchemaNames::default(), &roles).await.unwrap();
    let owner = PostgresStore::connect(PostgresConfig::from_options(db.options().username(&roles.owner)))
        .await
        .unwrap();
    assert_eq!(owner.migrate().await.unwrap(), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    owner.grant_runtime(&roles.runtime).await.unwrap();
    owner.grant_runtime(&roles.runtime).await.unwrap();
    Recorder::create(owner.pool(), "rm_priv").await;
    sqlx::query(AssertSqlSafe(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON rm_priv TO {}",
        roles.runtime
    )))
    .execute(owner.pool())
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!("GRANT USAGE ON SEQUENCE rm_priv_seq_seq TO {}", roles.runtime)))
        .execute(owner.pool())
        .await
        .unwrap();
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = $1",
    )
    .bind(&roles.runtime)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(owned, 0, "the runtime role owns nothing");

    // Everything the service does, as the runtime role.
    let runtime_options = db.options().username(&roles.runtime);
    let store = PostgresStore::connect(PostgresConfig::from_options(runtime_options.clone())).await.unwrap();
    assert_eq!(
        store.migrate().await.unwrap(),
        Vec::<i32>::new(),
        "nothing to apply, and no DDL needed to say so"
    );
    let stream = StreamId::new("Order", "o-1").unwrap();
    let ev = |t: &str| NewEvent::new(t, json!({ "t": t })).with_topic("order.lifecycle.placed");
    store.append(&stream, ExpectedVersion::NoStream, vec![ev("Placed"), ev("Confirmed")]).await.unwrap();
    store.append(&stream, ExpectedVersion::Exact(Version(2)), vec![ev("Shipped")]).await.unwrap();
    store.append(&stream, ExpectedVersion::Any, vec![ev("Noted")]).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    store.append_in(&mut tx, &stream, ExpectedVersion::Exact(Version(4)), vec![ev("Closed")]).await.unwrap();
    tx.commit().await.unwrap();
    let other = StreamId::new("Customer", "c-1").unwrap();
    store
        .append(&other, ExpectedVersion::NoStream, vec![NewEvent::new("Registered", json!({}))])
        .await
        .unwrap();
    assert_eq!(store.read_stream(&stream, VersionRange::ALL).await.unwrap().len(), 5);
    let filter = EventFilter::new().topics(["order.#"]);
    assert_eq!(store.query(&filter).await.unwrap().len(), 5);
    assert_eq!(store.count(&filter).await.unwrap(), 5);
    assert_eq!(store.stream(EventFilter::new()).collect::<Vec<_>>().await.len(), 6);
    let snapshot = Snapshot {
        stream: stream.clone(),
        version: Version(5),
        schema_version: 1,
        state: json!({ "state": "closed" }),
        created_at: chrono::Utc::now(),
    };
    store.save_snapshot(&snapshot).await.unwrap();
    assert_eq!(store.load_snapshot(&stream).await.unwrap().map(|s| s.version), Some(Version(5)));

    let projection = Projection::new("priv", ExactlyOnce::new(store.clone(), Recorder::existing("rm_priv")));
    let config = SupervisorConfig::default()
        .projection(projection)
        .retention(RetentionConfig::default().period(Duration::ZERO).mode(RetentionMode::Plain));
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    eventually(Duration::from_secs(30), "the projection live with every event", || async {
        let live = supervisor.status("priv").unwrap().state == ProjectionState::Live;
        (live && Recorded::read(store.pool(), "rm_priv").await.rows == 6).then_some(())
    })
    .await;
    let replayed = Arc::new(AtomicU64::new(0));
    let report = supervisor
        .replay(EventFilter::new().aggregate_type("Order"), Count(replayed.clone()), ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!((report.replayed, replayed.load(Ordering::SeqCst)), (5, 5));
    let rebuilt = supervisor.rebuild("priv").await.unwrap();
    assert_eq!(rebuilt.replayed, 6);

    // Every way around the immutability trigger, as the runtime role: refused.
    let mut conn = runtime_options.connect().await.unwrap();
    let before = fingerprint(&mut conn).await;
    let attempts = [
        ("UPDATE", vec!["UPDATE events SET event_type = 'Forged'"]),
        ("DELETE", vec!["DELETE FROM events"]),
        ("TRUNCATE", vec!["TRUNCATE events"]),
        ("ALTER TABLE … DISABLE TRIGGER", vec!["ALTER TABLE events DISABLE TRIGGER USER"]),
        ("DROP", vec!["DROP TABLE events"]),
        ("session variable", vec!["SET LOCAL factum.allow_delete = 'on'", "DELETE FROM events"]),
        ("replacing the retention function", vec!["CREATE OR REPLACE FUNCTION events_retain(TIMESTAMPTZ, BOOLEAN, TEXT[], BOOLEAN, INTEGER) RETURNS BIGINT LANGUAGE sql AS 'SELECT 0::bigint'"]),
    ];
    for (what, statements) in attempts {
        let mut tx = conn.begin().await.unwrap();
        let mut refused = None;
        for statement in statements {
            if let Err(e) = sqlx::query(statement).execute(&mut *tx).await {
                refused = Some(e);
                break;
            }
        }
        tx.rollback().await.ok();
        let code = refused
            .as_ref()
            .and_then(|e| e.as_database_error())
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{what}: expected a permission error, got {refused:?}");
        println!("privileges: {what} refused ({})", refused.unwrap());
    }
    assert_eq!(fingerprint(&mut conn).await, before, "the events table is byte-for-byte unchanged");

    // Events leave only through retention, which the runtime role may run.
    let report = supervisor.cleanup_now().await.unwrap();
    assert_eq!(report.deleted, 4, "everything but each stream's newest event");
    let left: Vec<i64> = sqlx::query_scalar("SELECT version FROM events ORDER BY global_position")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, vec![5, 1]);
    supervisor.shutdown().await.unwrap();
}
