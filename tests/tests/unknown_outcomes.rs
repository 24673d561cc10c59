//! Appends whose connection is lost after they were sent, on a private server: resolved
//! by their event ids to the true result, whether they committed or not; `durable`
//! waiting for the synchronous standbys; and host lists, in which the store finds the
//! server that accepts writes.
//!
//! A commit that waits for a synchronous standby which never comes
//! (`synchronous_standby_names = 'nobody'`) is committed locally and not yet answered:
//! terminating its backend then loses the answer of an append that committed, which is
//! what a failover does to an append in flight. An append blocked behind a table lock and
//! terminated is one that did not commit.

use std::time::Duration;

use factum::prelude::*;
use factum::store::VersionRange;
use factum::{ExpectedVersion, NewEvent, StoreError, StreamId};
use factum_postgres::{PoolSettings, PostgresConfig, PostgresStore};
use factum_tests::cluster::Cluster;
use serde_json::json;
use sqlx::PgPool;

async fn admin(cluster: &Cluster) -> PgPool {
    PgPool::connect(&cluster.url("postgres")).await.expect("admin pool")
}

async fn set_sync_standbys(admin: &PgPool, names: &str) {
    // `names` is one of this file's literals.
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'")))
        .execute(admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_reload_conf()").execute(admin).await.unwrap();
    // The reload reaches the backends at their next command.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Terminates the backend that waits on `wait_event` (`SyncRep`: its commit waits for a
/// standby; `relation`: it is blocked on a table lock), once one does.
async fn terminate_waiting(admin: &PgPool, wait_event: &str) {
    for _ in 0..200 {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE wait_event = $1 AND datname = current_database() \
             AND pid <> pg_backend_pid()",
        )
        .bind(wait_event)
        .fetch_all(admin)
        .await
        .unwrap();
        if let Some(pid) = pids.first() {
            sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(admin).await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no backend waited on {wait_event}");
}

async fn store(cluster: &Cluster, coalescing: bool) -> PostgresStore {
    let mut config = PostgresConfig::from_url(&cluster.url("postgres"))
        .unwrap()
        .with_pool(PoolSettings::default().operation_timeout(Duration::from_secs(3)));
    if !coalescing {
        config = config.with_coalescing(factum_postgres::Coalescing::off());
    }
    let store = PostgresStore::connect(config).await.expect("store");
    store.migrate().await.expect("migrate");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_whose_answer_was_lost_get_their_true_result() {
    let Some(cluster) = Cluster::start() else { return };
    let admin = admin(&cluster).await;
    let store = store(&cluster, true).await;

    // Committed, answer lost: found by its ids.
    let stream = StreamId::new("Order", "o-committed").unwrap();
    set_sync_standbys(&admin, "nobody").await;
    let append = tokio::spawn({
        let (store, stream) = (store.clone(), stream.clone());
        async move {
            store
                .append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new("Placed", json!({"n": 1}))])
                .await
        }
    });
    terminate_waiting(&admin, "SyncRep").await;
    set_sync_standbys(&admin, "").await;
    let result = append.await.unwrap().expect("the true result of a committed append");
    assert_eq!(result.to_version.0, 1);
    assert!(!result.deduplicated, "the caller's own append landed once");
    assert_eq!(store.read_stream(&stream, VersionRange::ALL).await.unwrap().len(), 1);
    assert_eq!(store.outcome_stats().committed, 1);

    // Not committed (blocked behind a lock when its connection was lost): stored by the
    // retry, once the lock is gone.
    let stream = StreamId::new("Order", "o-retried").unwrap();
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let append = tokio::spawn({
        let (store, stream) = (store.clone(), stream.clone());
        async move {
            store
                .append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new("Placed", json!({"n": 2}))])
                .await
        }
    });
    terminate_waiting(&admin, "relation").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.rollback().await.unwrap();
    let result = append.await.unwrap().expect("the retry stores it");
    assert_eq!(result.to_version.0, 1);
    assert_eq!(store.read_stream(&stream, VersionRange::ALL).await.unwrap().len(), 1);
    assert_eq!(store.outcome_stats().stored_by_retry, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_still_unknown_at_the_end_of_the_window_says_so() {
    let Some(cluster) = Cluster::start() else { return };
    let admin = admin(&cluster).await;
    let config = PostgresConfig::from_url(&cluster.url("postgres")).unwrap().with_pool(
        PoolSettings::default()
            .operation_timeout(Duration::from_secs(2))
            .outcome_timeout(Duration::from_secs(2)),
    );
    let store = PostgresStore::connect(config.with_coalescing(factum_postgres::Coalescing::off()))
        .await
        .expect("store");
    store.migrate().await.unwrap();
    let stream = StreamId::new("Order", "o-unknown").unwrap();
    let events = vec![NewEvent::new("Placed", json!({}))];
    // The table stays locked for longer than the resolution window: every retry waits
    // behind the lock too, and times out.
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let append = tokio::spawn({
        let (store, stream, events) = (store.clone(), stream.clone(), events.clone());
        async move { store.append(&stream, ExpectedVersion::NoStream, events).await }
    });
    terminate_waiting(&admin, "relation").await;
    let outcome = append.await.unwrap();
    assert!(matches!(outcome, Err(StoreError::OutcomeUnknown { .. })), "{outcome:?}");
    assert_eq!(store.outcome_stats().unresolved, 1);
    lock.rollback().await.unwrap();
    // Unknown it was: a retry that timed out may still commit once the lock is gone.
    // The same append again (the same ids) is stored once, whichever way it went.
    let again =
        store.append(&stream, ExpectedVersion::NoStream, events).await.expect("the same append again");
    assert_eq!(again.to_version.0, 1);
    assert_eq!(store.read_stream(&stream, VersionRange::ALL).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_waits_for_the_synchronous_standbys() {
    let Some(cluster) = Cluster::start() else { return };
    let admin = admin(&cluster).await;
    store(&cluster, true).await.durable(&[]).await.expect("no synchronous standbys: at once");
    set_sync_standbys(&admin, "nobody").await;
    // A fresh store: a session applies a configuration reload only after its next statement.
    let store = store(&cluster, true).await;
    let waited = store.durable(&[]).await;
    assert!(matches!(waited, Err(StoreError::Timeout { operation: "durable", .. })), "{waited:?}");
    set_sync_standbys(&admin, "").await;
    store.durable(&[]).await.expect("the standbys are not waited for any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_list_finds_the_server_that_accepts_writes() {
    let Some(cluster) = Cluster::start() else { return };
    // The first host refuses connections (nothing listens on port 1).
    let url = format!("postgresql://postgres@127.0.0.1:1,127.0.0.1:{}/postgres", cluster.port());
    let store = PostgresStore::connect(PostgresConfig::from_url(&url).unwrap()).await.expect("store");
    store.migrate().await.unwrap();
    let stream = StreamId::new("Order", "o-1").unwrap();
    store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new("Placed", json!({}))]).await.unwrap();
    assert_eq!(store.pool().connect_options().get_port(), cluster.port());

    // None accepts writes: unavailable, naming each.
    let none = PostgresConfig::from_url("postgresql://postgres@127.0.0.1:1,127.0.0.1:2/postgres")
        .unwrap()
        .with_pool(PoolSettings::default().connect_timeout(Duration::from_secs(2)));
    match PostgresStore::connect(none).await {
        Err(StoreError::Unavailable { reason }) => {
            assert!(reason.contains("127.0.0.1:1") && reason.contains("127.0.0.1:2"), "{reason}")
        }
        other => panic!("expected unavailable, got {:?}", other.map(|_| ())),
    }
}
