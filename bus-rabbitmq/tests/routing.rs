//! Routing: every event reaches a queue bound with `#`; queues bound with narrower
//! patterns get exactly their subsets; the message carries the documented properties.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use factum::{EventStore, Supervisor, SupervisorConfig};
use factum_rabbitmq::{BusMetrics, Publisher, PublisherConfig};
use factum_tests::TestDb;
use support::{amqp_url, append_events, collect, Names};
use uuid::Uuid;

/// Topics that exercise the patterns' edges: `order.items` and `order.items.a.b` do not
/// match `order.items.*`; `customer` alone matches `customer.#`.
const TOPICS: [&str; 8] = [
    "order.items.added",
    "order.items.removed",
    "order.items",
    "order.items.added.twice",
    "order.lifecycle.placed",
    "customer.profile.registered",
    "customer",
    "payment.captured",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_reach_their_queues_exactly() {
    let url = amqp_url();
    let names = Names::new(&url, "routing");
    let exchange = names.exchange("events");
    let (all, all_sub) = collect(&url, &exchange, &names.queue("all"), &["#"]).await;
    let (items, items_sub) = collect(&url, &exchange, &names.queue("items"), &["order.items.*"]).await;
    let (customers, customers_sub) =
        collect(&url, &exchange, &names.queue("customers"), &["customer.#"]).await;

    let db = TestDb::new().await;
    let store: Arc<dyn EventStore> = Arc::new(db.store().await);
    // A topic drawn per event from a cheap generator, so the subsets are not in blocks.
    let stored = append_events(store.as_ref(), "Order", 20, 500, |i| {
        TOPICS[(i.wrapping_mul(2_654_435_761) >> 7) % TOPICS.len()].to_owned()
    })
    .await;
    assert_eq!(stored.len(), 10_000);

    let metrics = BusMetrics::unregistered();
    // Publishing ahead on: each event still comes once, in log order.
    let config = PublisherConfig::new(&url)
        .exchange(&exchange)
        .name("routing_bus")
        .max_in_flight(5_000)
        .metrics(metrics.clone());
    let publisher = Publisher::connect(store.clone(), config).await.unwrap();
    let supervisor =
        Supervisor::start(store.clone(), SupervisorConfig::default().projection(publisher.into_projection()))
            .await
            .unwrap();

    let expect = |pred: &dyn Fn(&str) -> bool| -> HashSet<Uuid> {
        stored.iter().filter(|(_, t)| pred(t)).map(|(id, _)| *id).collect()
    };
    let want_all = expect(&|_| true);
    let want_items = expect(&|t| t.starts_with("order.items.") && t.split('.').count() == 3);
    let want_customers = expect(&|t| t == "customer" || t.starts_with("customer."));
    assert!(!want_items.is_empty() && !want_customers.is_empty());

    all.until_distinct(want_all.len(), Duration::from_secs(120)).await;
    items.until_distinct(want_items.len(), Duration::from_secs(30)).await;
    customers.until_distinct(want_customers.len(), Duration::from_secs(30)).await;
    // Let any stray message arrive before comparing sets.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, got, want) in [
        ("#", &all, &want_all),
        ("order.items.*", &items, &want_items),
        ("customer.#", &customers, &want_customers),
    ] {
        let ids: HashSet<Uuid> = got.ids().into_iter().collect();
        assert_eq!(&ids, want, "queue bound with {name}");
        assert_eq!(got.len(), want.len(), "queue bound with {name}: no event twice without a failure");
    }
    assert_eq!(metrics.confirmed_count("routing_bus"), 10_000);

    // Global log order, and the documented properties, on the `#` queue.
    let received = all.0.lock().unwrap().clone();
    assert!(received.windows(2).all(|w| w[0].event.position < w[1].event.position), "log order");
    let by_id: std::collections::HashMap<Uuid, &str> =
        stored.iter().map(|(id, t)| (*id, t.as_str())).collect();
    for r in &received {
        let e = &r.event;
        assert_eq!(e.routing_key, by_id[&e.event_id]);
        assert_eq!(e.event_type, "Happened");
        assert_eq!(e.stream.aggregate_type(), "Order");
        assert!(e.version.0 >= 1 && e.version.0 <= 500);
        assert_eq!(e.payload["n"].as_u64(), Some(e.version.0 - 1));
    }

    supervisor.shutdown().await.unwrap();
    for s in [all_sub, items_sub, customers_sub] {
        s.stop().await;
    }
}
