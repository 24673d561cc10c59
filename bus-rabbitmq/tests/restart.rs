//! The publisher's process is killed with SIGKILL mid-way; a new publisher resumes from
//! the stored checkpoint: nothing is lost, and only events after the checkpoint are
//! published twice.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use factum::{EventStore, Supervisor, SupervisorConfig};
use factum_postgres::PostgresStore;
use factum_rabbitmq::{Publisher, PublisherConfig};
use factum_tests::TestDb;
use support::{amqp_url, append_events, collect, Names};
use uuid::Uuid;

const NAME: &str = "restart_bus";
const EVENTS: usize = 20_000;

async fn run_publisher(store: Arc<dyn EventStore>, url: &str, exchange: &str) -> Supervisor {
    let config = PublisherConfig::new(url).exchange(exchange).name(NAME).batch_size(100);
    let publisher = Publisher::connect(store.clone(), config).await.unwrap();
    Supervisor::start(store, SupervisorConfig::default().projection(publisher.into_projection()))
        .await
        .unwrap()
}

/// The child half of [`sigkill_resumes_from_the_checkpoint`]: publishes until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by sigkill_resumes_from_the_checkpoint in a child process"]
async fn child_publishes_until_killed() {
    let Ok(name) = std::env::var("FACTUM_CHILD_DB") else { return };
    let exchange = std::env::var("FACTUM_CHILD_EXCHANGE").unwrap();
    let store: Arc<dyn EventStore> =
        Arc::new(PostgresStore::connect(TestDb::config_for(&name)).await.unwrap());
    let _supervisor = run_publisher(store, &amqp_url(), &exchange).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_resumes_from_the_checkpoint() {
    let url = amqp_url();
    let names = Names::new(&url, "restart");
    let exchange = names.exchange("events");
    let (collector, subscriber) = collect(&url, &exchange, &names.queue("all"), &["#"]).await;
    let db = TestDb::new().await;
    let store: Arc<dyn EventStore> = Arc::new(db.store().await);
    let stored = append_events(store.as_ref(), "Order", 40, EVENTS / 40, |_| "order.x.y".into()).await;

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_publishes_until_killed", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("FACTUM_CHILD_DB", db.name())
        .env("FACTUM_CHILD_EXCHANGE", &exchange)
        .env("FACTUM_TEST_AMQP_URL", &url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while collector.len() < 2_000 {
        assert!(tokio::time::Instant::now() < deadline, "the child published nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status:?}");
    tokio::time::sleep(Duration::from_millis(300)).await; // what was in flight arrives
    let before = collector.counts().len();
    let checkpoint = store.load_checkpoint(NAME).await.unwrap().expect("the child moved its checkpoint");
    eprintln!("killed after {before} of {EVENTS} events delivered; checkpoint at {checkpoint}");
    assert!(before < EVENTS, "the child finished before it was killed; nothing tested");
    assert!(checkpoint.position.0 > 0);

    let supervisor = run_publisher(store.clone(), &url, &exchange).await;
    collector.until_distinct(EVENTS, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = collector.0.lock().unwrap().clone();
    let distinct: HashSet<Uuid> = received.iter().map(|r| r.event.event_id).collect();
    assert_eq!(distinct, stored.iter().map(|(id, _)| *id).collect::<HashSet<_>>());
    let duplicates = received.len() - distinct.len();
    eprintln!("restart: {} messages for {EVENTS} events, {duplicates} duplicates", received.len());
    let counts = collector.counts();
    for r in &received {
        if counts[&r.event.event_id] > 1 {
            assert!(
                r.event.position > checkpoint.position,
                "event at {} published twice, though the checkpoint covered it ({checkpoint})",
                r.event.position
            );
        }
    }
    supervisor.shutdown().await.unwrap();
    subscriber.stop().await;
}
