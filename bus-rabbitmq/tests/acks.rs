//! Acks: the subscriber acks handled messages in batches (one `multiple` ack for many),
//! and every handled message is acked: after the subscriber stops, the broker has nothing
//! left to deliver again, neither after a burst nor after messages that came one by one.

mod support;

use std::sync::Arc;
use std::time::Duration;

use factum::{EventStore, InMemoryStore, Supervisor, SupervisorConfig};
use factum_rabbitmq::{Publisher, PublisherConfig};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use support::{amqp_url, append_events, collect, Names};

/// Ready messages and consumers of `queue`, as the broker counts them.
async fn queue_counts(url: &str, queue: &str) -> (u32, u32) {
    let conn = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    conn.close(200, "done".into()).await.ok();
    (q.message_count(), q.consumer_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handled_message_is_acked() {
    let url = amqp_url();
    let names = Names::new(&url, "acks");
    let exchange = names.exchange("events");
    let queue = names.queue("all");
    let (first, first_sub) = collect(&url, &exchange, &queue, &["#"]).await;

    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    // A burst (acks batched), then a trickle (each message acked when the queue is idle).
    let mut stored = append_events(store.as_ref(), "Order", 4, 500, |_| "order.x.y".into()).await;
    let config = PublisherConfig::new(&url).exchange(&exchange).name("acks_bus");
    let publisher = Publisher::connect(store.clone(), config).await.unwrap();
    let supervisor =
        Supervisor::start(store.clone(), SupervisorConfig::default().projection(publisher.into_projection()))
            .await
            .unwrap();
    first.until_distinct(2_000, Duration::from_secs(60)).await;
    for i in 0..5 {
        let more = append_events(store.as_ref(), &format!("Trickle{i}"), 1, 1, |_| "order.x.y".into()).await;
        stored.extend(more);
        first.until_distinct(stored.len(), Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    supervisor.shutdown().await.unwrap();
    first_sub.stop().await;
    assert_eq!(first.len(), stored.len(), "each message came once");

    // Nothing unacked was given back to the queue when the first subscriber left.
    let (ready, consumers) = queue_counts(&url, &queue).await;
    assert_eq!(consumers, 0, "the first subscriber is gone");
    assert_eq!(ready, 0, "no handled message is left unacked");
    let (second, second_sub) = collect(&url, &exchange, &queue, &["#"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    second_sub.stop().await;
    assert_eq!(second.len(), 0, "nothing is delivered again");
}
