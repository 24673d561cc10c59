//! Two service instances run the same publisher: the projection's lease lets one
//! publish, the other stands by; each event is published once, and the lag gauges fall
//! to zero.

mod support;

use std::sync::Arc;
use std::time::Duration;

use factum::{EventStore, Supervisor, SupervisorConfig};
use factum_rabbitmq::{BusMetrics, Publisher, PublisherConfig};
use factum_tests::{eventually, TestDb};
use support::{amqp_url, append_events, collect, Names};

fn config(url: &str, exchange: &str, metrics: &BusMetrics) -> PublisherConfig {
    PublisherConfig::new(url)
        .exchange(exchange)
        .name("leased_bus")
        .batch_size(100)
        .lag_interval(Duration::from_millis(50))
        .metrics(metrics.clone())
}

async fn instance(db: &TestDb, url: &str, exchange: &str, metrics: &BusMetrics) -> Supervisor {
    let store: Arc<dyn EventStore> = Arc::new(db.store().await);
    let publisher = Publisher::connect(store.clone(), config(url, exchange, metrics)).await.unwrap();
    Supervisor::start(store, SupervisorConfig::default().projection(publisher.into_projection()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_instances_publishes() {
    let url = amqp_url();
    let names = Names::new(&url, "leases");
    let exchange = names.exchange("events");
    let (collector, subscriber) = collect(&url, &exchange, &names.queue("all"), &["#"]).await;
    let db = TestDb::new().await;
    let store = db.store().await;
    let stored = append_events(&store, "Order", 4, 500, |_| "order.x.y".into()).await;

    // A publisher that never runs still measures the lag of the checkpoint it shares.
    let watcher = BusMetrics::unregistered();
    let idle = Publisher::connect(Arc::new(store.clone()), config(&url, &exchange, &watcher)).await.unwrap();
    // The age comes from reading the oldest event, which waits for the gap-safe horizon
    // (another test's transaction can hold it back for a moment); the count does not.
    let (events, _) = eventually(Duration::from_secs(5), "a lag measured, with an age", || async {
        let lag = watcher.publisher_lag("leased_bus");
        (lag.0 > 0 && lag.1 > 0.0).then_some(lag)
    })
    .await;
    assert_eq!(events, stored.len() as i64);

    let (a, b) = (BusMetrics::unregistered(), BusMetrics::unregistered());
    let first = instance(&db, &url, &exchange, &a).await;
    let second = instance(&db, &url, &exchange, &b).await;
    collector.until_distinct(stored.len(), Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(collector.len(), stored.len(), "each event published once");
    let (pa, pb) = (a.published_count("leased_bus"), b.published_count("leased_bus"));
    assert_eq!(pa + pb, stored.len() as u64);
    assert!(pa == 0 || pb == 0, "only the lease holder publishes: {pa} and {pb}");

    eventually(Duration::from_secs(10), "zero lag", || async {
        (watcher.publisher_lag("leased_bus") == (0, 0.0)).then_some(())
    })
    .await;
    drop(idle);
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    subscriber.stop().await;
}
