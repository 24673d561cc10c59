//! Failures on both sides: the broker refusing (nack, unroutable) goes to the
//! publisher's failure policy; a failing or panicking subscriber handler ends in the
//! dead-letter queue after the bound, and the subscriber goes on.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use factum::projection::{FailurePolicy, ProjectionState};
use factum::{EventStore, HandlerError, InMemoryStore, Supervisor, SupervisorConfig};
use factum_rabbitmq::{
    headers, BusEvent, BusMetrics, MessageHandler, Publisher, PublisherConfig, Subscriber, SubscriberConfig,
};
use factum_tests::eventually;
use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use support::{amqp_url, append_events, Names};

fn fast(policy: FailurePolicy) -> FailurePolicy {
    policy.backoff(Duration::from_millis(10), Duration::from_millis(40))
}

async fn channel(url: &str) -> (Connection, Channel) {
    let conn = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// Everything in `queue` now, without waiting.
async fn drain(ch: &Channel, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let mut out = Vec::new();
    while let Some(m) = ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        out.push(m);
    }
    out
}

async fn publish(store: Arc<dyn EventStore>, config: PublisherConfig) -> Supervisor {
    let publisher = Publisher::connect(store.clone(), config).await.unwrap();
    Supervisor::start(store, SupervisorConfig::default().projection(publisher.into_projection()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_events_go_to_the_failure_policy() {
    let url = amqp_url();
    let names = Names::new(&url, "unroutable");
    let exchange = names.exchange("events");
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let stored = append_events(store.as_ref(), "Order", 1, 3, |_| "order.nobody.listens".into()).await;
    let metrics = BusMetrics::unregistered();
    let config = PublisherConfig::new(&url)
        .exchange(&exchange)
        .name("unroutable_bus")
        .metrics(metrics.clone())
        .on_failure(fast(FailurePolicy::retry_then_skip(2)));
    let supervisor = publish(store, config).await;

    let failures = eventually(Duration::from_secs(20), "three recorded failures", || async {
        let f = supervisor.failures("unroutable_bus").await.unwrap();
        (f.len() == 3).then_some(f)
    })
    .await;
    for (failure, (id, _)) in failures.iter().zip(&stored) {
        assert_eq!(failure.event_id, *id);
        assert_eq!(failure.attempts, 2);
        assert!(failure.error.contains("unroutable"), "{}", failure.error);
    }
    assert_eq!(metrics.confirmed_count("unroutable_bus"), 0, "an unroutable message is not confirmed");
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_event_stops_the_publisher_after_its_prefix_is_kept() {
    let url = amqp_url();
    let names = Names::new(&url, "nack");
    let exchange = names.exchange("events");
    let queue = names.queue("full");
    let (conn, ch) = channel(&url).await;
    // A queue that refuses (nacks) a publish once it holds two messages.
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(2));
    args.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    ch.queue_declare(queue.as_str().into(), options, args).await.unwrap();
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Topic,
        lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let stored = append_events(store.as_ref(), "Order", 1, 4, |_| "order.x.y".into()).await;
    let config = PublisherConfig::new(&url)
        .exchange(&exchange)
        .name("nack_bus")
        .on_failure(fast(FailurePolicy::retry_then_stop(3)));
    let supervisor = publish(store.clone(), config).await;
    let status = eventually(Duration::from_secs(20), "the publisher stops", || async {
        let s = supervisor.status("nack_bus").unwrap();
        (s.state == ProjectionState::Failed).then_some(s)
    })
    .await;
    assert!(status.last_error.as_deref().unwrap_or_default().contains("nacked"), "{status:?}");
    assert_eq!(status.handled, 2, "the two confirmed events are kept: {status:?}");
    let checkpoint = store.load_checkpoint("nack_bus").await.unwrap().unwrap();
    assert_eq!(checkpoint.position.0, 2, "the checkpoint stands on the last confirmed event");

    // Room again: resume publishes the rest.
    ch.queue_purge(queue.as_str().into(), QueuePurgeOptions::default()).await.unwrap();
    supervisor.resume("nack_bus").await.unwrap();
    let got = eventually(Duration::from_secs(20), "the last two events", || {
        let ch = ch.clone();
        let queue = queue.clone();
        async move {
            let got = drain(&ch, &queue).await;
            (!got.is_empty()).then_some(got)
        }
    })
    .await;
    let first = got[0].delivery.properties.message_id().as_ref().unwrap().to_string();
    assert_eq!(first, stored[2].0.to_string(), "resumes at the refused event");
    supervisor.shutdown().await.unwrap();
    conn.close(200, "done".into()).await.ok();
}

/// Fails (or panics) on chosen payloads, counting calls per payload.
#[derive(Clone, Default)]
struct Picky {
    calls: Arc<Mutex<std::collections::HashMap<u64, u32>>>,
    handled: Arc<AtomicU32>,
}

#[async_trait::async_trait]
impl MessageHandler for Picky {
    async fn handle(&mut self, event: &BusEvent) -> Result<(), HandlerError> {
        let n = event.payload["n"].as_u64().unwrap_or(u64::MAX);
        *self.calls.lock().unwrap().entry(n).or_default() += 1;
        match n {
            1 => Err(HandlerError::msg("the warehouse is closed")),
            2 => panic!("handler bug on {}", event.event_id),
            _ => {
                self.handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_panicking_handlers_end_in_the_dead_letter_queue() {
    let url = amqp_url();
    let names = Names::new(&url, "deadletter");
    let exchange = names.exchange("events");
    let queue = names.queue("picky");
    let handler = Picky::default();
    let metrics = BusMetrics::unregistered();
    let config = SubscriberConfig::new(&url, &queue)
        .exchange(&exchange)
        .bind(["order.#"])
        .max_attempts(3)
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .metrics(metrics.clone());
    let dlq = config.dead_letter_queue_name().to_owned();
    let subscriber = Subscriber::start(config, handler.clone()).await.unwrap();

    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let stored = append_events(store.as_ref(), "Order", 1, 6, |_| "order.lifecycle.placed".into()).await;
    let supervisor = publish(store, PublisherConfig::new(&url).exchange(&exchange).name("dl_bus")).await;

    eventually(Duration::from_secs(20), "the four good events", || async {
        (handler.handled.load(Ordering::SeqCst) == 4).then_some(())
    })
    .await;
    assert!(subscriber.is_running(), "a panicking handler does not end the subscriber");
    let (conn, ch) = channel(&url).await;
    let dead = eventually(Duration::from_secs(20), "two dead letters", || {
        let ch = ch.clone();
        let dlq = dlq.clone();
        async move {
            let got = drain(&ch, &dlq).await;
            (!got.is_empty()).then_some(got)
        }
    })
    .await;
    assert_eq!(dead.len(), 2, "the failing and the panicking event");
    for (m, (n, reason)) in dead.iter().zip([(1, "the warehouse is closed"), (2, "panicked")]) {
        let id = m.delivery.properties.message_id().as_ref().unwrap().to_string();
        assert_eq!(id, stored[n].0.to_string());
        let h = m.delivery.properties.headers().as_ref().unwrap().inner();
        let why = match h.get(headers::DEAD_LETTER_REASON) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("no reason header: {other:?}"),
        };
        assert!(why.contains(reason), "{why}");
        assert_eq!(h.get(headers::DEAD_LETTER_ATTEMPTS), Some(&AMQPValue::LongLongInt(3)));
        assert_eq!(handler.calls.lock().unwrap()[&(n as u64)], 3, "tried exactly the bound");
    }
    assert_eq!(metrics.handled_count(&queue, "dead_lettered"), 2);
    assert!(drain(&ch, &queue).await.is_empty(), "nothing left behind in the queue");
    supervisor.shutdown().await.unwrap();
    subscriber.stop().await;
    conn.close(200, "done".into()).await.ok();
}
