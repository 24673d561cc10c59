//! The publisher reads each event from the store once: what it read ahead while it
//! waited for confirms is the projection's next batch, not read again.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use factum::{EventStore, ExpectedVersion, NewEvent, StreamId, Supervisor, SupervisorConfig};
use factum_rabbitmq::{BusMetrics, Publisher, PublisherConfig};
use factum_tests::faulty::Faulty;
use factum_tests::TestDb;
use support::{amqp_url, collect, Names};

/// Events appended while the publisher follows the log.
const EVENTS: usize = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_ahead_are_not_read_again() {
    let url = amqp_url();
    let names = Names::new(&url, "reads");
    let exchange = names.exchange("events");
    let (received, _sub) = collect(&url, &exchange, &names.queue("all"), &["#"]).await;

    let db = TestDb::new().await;
    let counting = Faulty::new(db.store().await);
    let store: Arc<dyn EventStore> = counting.clone();
    let metrics = BusMetrics::unregistered();
    let config = PublisherConfig::new(&url).exchange(&exchange).name("reads_bus").metrics(metrics.clone());
    let publisher = Publisher::connect(store.clone(), config).await.unwrap();
    let supervisor =
        Supervisor::start(store.clone(), SupervisorConfig::default().projection(publisher.into_projection()))
            .await
            .unwrap();

    // A steady trickle, so that new events keep arriving while confirms are awaited:
    // what the publisher reads ahead then.
    for i in 0..EVENTS / 10 {
        let stream = StreamId::new("Order", format!("o-{}", i % 50)).unwrap();
        let batch: Vec<NewEvent> = (0..10)
            .map(|k| NewEvent::new("Happened", serde_json::json!({ "k": k })).with_topic("order.x"))
            .collect();
        store.append(&stream, ExpectedVersion::Any, batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    received.until_distinct(EVENTS, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    supervisor.shutdown().await.unwrap();

    assert!(received.counts().values().all(|&n| n == 1), "each event came once");
    assert_eq!(received.ids().len(), EVENTS);
    let read = counting.events_read.load(Ordering::SeqCst);
    println!("{EVENTS} events published; the log's reads returned {read}");
    assert!(read >= EVENTS as u64, "every event was read: {read}");
    // Reading each event twice (once ahead, once in the batch) would be 2x; a few are
    // read again after a batch that did not start where reading ahead did.
    assert!(read <= EVENTS as u64 * 11 / 10, "each event read about once: {read} reads for {EVENTS} events");
}
