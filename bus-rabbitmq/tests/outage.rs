//! Broker outages: a private broker is stopped for several seconds, three times, while
//! events are appended and published. Every stored event is delivered; the duplicates
//! are counted, printed, and each is one the guide says can occur.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use factum::{EventStore, ExpectedVersion, NewEvent, StreamId, Supervisor, SupervisorConfig};
use factum_rabbitmq::{BusMetrics, Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use factum_tests::TestDb;
use support::broker::PrivateBroker;
use support::Collector;
use uuid::Uuid;

const OUTAGES: usize = 3;
const OUTAGE: Duration = Duration::from_secs(3);
/// A broker shutting down can accept a connection and never answer it: an attempt is
/// given up well within the time between two outages, so that each outage finds the
/// publisher connected and publishing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_broker_outages_lose_nothing() {
    let broker = PrivateBroker::start();
    let url = broker.url();
    let exchange = "outage.events";
    let queue = "outage.all";
    let metrics = BusMetrics::unregistered();

    // A quorum queue, so that the test also covers them; it survives the restarts.
    let collector = Collector::default();
    let sub_config = SubscriberConfig::new(&url, queue)
        .exchange(exchange)
        .bind(["#"])
        .quorum(true)
        .prefetch(200)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .connect_timeout(CONNECT_TIMEOUT)
        .metrics(metrics.clone());
    let subscriber = Subscriber::start(sub_config, collector.clone()).await.unwrap();

    let db = TestDb::new().await;
    let store: Arc<dyn EventStore> = Arc::new(db.store().await);
    let config = PublisherConfig::new(&url)
        .exchange(exchange)
        .name("outage_bus")
        .batch_size(200)
        .confirm_timeout(Duration::from_secs(5))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .connect_timeout(CONNECT_TIMEOUT)
        .metrics(metrics.clone());
    let publisher = Publisher::connect(store.clone(), config).await.unwrap();
    let supervisor =
        Supervisor::start(store.clone(), SupervisorConfig::default().projection(publisher.into_projection()))
            .await
            .unwrap();

    // A writer appends ten events every 20 ms to 8 streams, outages or not.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (store, writing) = (store.clone(), writing.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut round = 0u64;
            while writing.load(Ordering::SeqCst) {
                let stream = StreamId::new("Order", format!("o-{}", round % 8)).unwrap();
                let batch: Vec<NewEvent> = (0..10)
                    .map(|i| {
                        NewEvent::new("Happened", serde_json::json!({ "round": round, "i": i }))
                            .with_topic("order.x.y")
                    })
                    .collect();
                ids.extend(batch.iter().map(|e| e.event_id));
                store.append(&stream, ExpectedVersion::Any, batch).await.unwrap();
                round += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ids
        })
    };

    let broker = Arc::new(broker);
    for n in 1..=OUTAGES {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.stop()).await.unwrap();
        eprintln!("outage {n}: broker stopped at {} messages received", collector.len());
        tokio::time::sleep(OUTAGE).await;
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.restart()).await.unwrap();
        eprintln!("outage {n}: broker back");
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    writing.store(false, Ordering::SeqCst);
    let stored: Vec<Uuid> = writer.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while collector.counts().len() < stored.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {} of {} events received; publisher {:?}, published {}, confirmed {}, reconnects {}; subscriber reconnects {}",
            collector.counts().len(),
            stored.len(),
            supervisor.status("outage_bus"),
            metrics.published_count("outage_bus"),
            metrics.confirmed_count("outage_bus"),
            metrics.reconnect_count("publisher", "outage_bus"),
            metrics.reconnect_count("subscriber", queue),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let received = collector.0.lock().unwrap().clone();
    let distinct: HashSet<Uuid> = received.iter().map(|r| r.event.event_id).collect();
    let want: HashSet<Uuid> = stored.iter().copied().collect();
    assert_eq!(distinct, want, "every stored event delivered, nothing else");
    let duplicates = received.len() - distinct.len();
    let redelivered = received.iter().filter(|r| r.event.redelivered).count();
    let published = metrics.published_count("outage_bus") as usize;
    let reconnects = metrics.reconnect_count("publisher", "outage_bus");
    eprintln!(
        "outage: {} events stored, {} messages received, {duplicates} duplicates; \
         publisher: {published} published ({} again after a lost connection), {reconnects} reconnects; \
         subscriber: {redelivered} redelivered by the broker, {} reconnects",
        stored.len(),
        received.len(),
        published - stored.len(),
        metrics.reconnect_count("subscriber", queue),
    );
    assert!(reconnects >= OUTAGES as u64, "the publisher reconnected after each outage");
    // The guide's two sources of duplicates: messages published again because their
    // confirms were lost with the connection, and messages the broker delivers again
    // because the subscriber's ack was lost with its connection.
    assert!(
        duplicates <= (published - stored.len()) + redelivered,
        "{duplicates} duplicates, more than republished ({}) + redelivered ({redelivered})",
        published - stored.len()
    );
    // First deliveries come in each stream's order.
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut seen = HashSet::new();
    for r in &received {
        if seen.insert(r.event.event_id) {
            let v = last.entry(r.event.stream.to_string()).or_default();
            assert!(r.event.version.0 > *v, "{} after {} in {}", r.event.version, v, r.event.stream);
            *v = r.event.version.0;
        }
    }

    supervisor.shutdown().await.unwrap();
    subscriber.stop().await;
}

/// The broker blocks publishers (a memory alarm, `connection.blocked`) for longer than
/// the confirm timeout: the publisher waits on the same connection instead of giving it
/// up, and everything arrives once the alarm clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_connection_is_waited_out() {
    let broker = PrivateBroker::start();
    let url = broker.url();
    let metrics = BusMetrics::unregistered();
    let collector = Collector::default();
    let sub_config = SubscriberConfig::new(&url, "blocked.all").exchange("blocked.events").bind(["#"]);
    let subscriber = Subscriber::start(sub_config, collector.clone()).await.unwrap();
    let db = TestDb::new().await;
    let store: Arc<dyn EventStore> = Arc::new(db.store().await);
    let config = PublisherConfig::new(&url)
        .exchange("blocked.events")
        .name("blocked_bus")
        .confirm_timeout(Duration::from_millis(500))
        .metrics(metrics.clone());
    let publisher = Publisher::connect(store.clone(), config).await.unwrap();

    broker.ctl(&["set_vm_memory_high_watermark", "0"]);
    let stream = StreamId::new("Order", "o-1").unwrap();
    let events: Vec<NewEvent> = (0..50)
        .map(|i| NewEvent::new("Happened", serde_json::json!({ "i": i })).with_topic("order.x.y"))
        .collect();
    store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
    let supervisor =
        Supervisor::start(store.clone(), SupervisorConfig::default().projection(publisher.into_projection()))
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(metrics.confirmed_count("blocked_bus"), 0, "nothing is confirmed while blocked");
    broker.ctl(&["set_vm_memory_high_watermark", "0.4"]);
    collector.until_distinct(50, Duration::from_secs(30)).await;
    assert_eq!(metrics.reconnect_count("publisher", "blocked_bus"), 0, "the blocked connection was kept");
    assert_eq!(metrics.published_count("blocked_bus"), 50, "nothing published twice");
    supervisor.shutdown().await.unwrap();
    subscriber.stop().await;
}
