//! Deduplication by event id: an event delivered twice takes effect once.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use factum::store::Checkpoint;
use factum::{EventStore, HandlerError, Supervisor, SupervisorConfig};
use factum_rabbitmq::{
    BusEvent, Deduplicated, PgMessageHandler, Publisher, PublisherConfig, Subscriber, SubscriberConfig,
};
use factum_tests::{eventually, TestDb};
use sqlx::PgConnection;
use support::{amqp_url, append_events, Names};

struct CountEffects;

#[async_trait::async_trait]
impl PgMessageHandler for CountEffects {
    async fn handle(&mut self, tx: &mut PgConnection, event: &BusEvent) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (event_id) VALUES ($1)").bind(event.event_id).execute(tx).await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_event_takes_effect_once() {
    let url = amqp_url();
    let names = Names::new(&url, "dedup");
    let exchange = names.exchange("events");
    let db = TestDb::new().await;
    let store = db.store().await;
    let pool = store.pool().clone();
    // No primary key on purpose: a second effect would be a second row.
    sqlx::query("CREATE TABLE effects (event_id uuid NOT NULL)").execute(&pool).await.unwrap();
    let handler = Deduplicated::new(pool.clone(), "effects", CountEffects).await.unwrap();
    let duplicates = handler.duplicates();
    let config = SubscriberConfig::new(&url, names.queue("effects")).exchange(&exchange).bind(["#"]);
    let subscriber = Subscriber::start(config, handler).await.unwrap();

    let store: Arc<dyn EventStore> = Arc::new(store);
    let stored = append_events(store.as_ref(), "Order", 2, 10, |_| "order.x.y".into()).await;
    let config = PublisherConfig::new(&url).exchange(&exchange).name("dedup_bus");
    let publisher = Publisher::connect(store.clone(), config).await.unwrap();
    let supervisor =
        Supervisor::start(store.clone(), SupervisorConfig::default().projection(publisher.into_projection()))
            .await
            .unwrap();
    let rows = || {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM effects").fetch_one(&pool).await.unwrap() }
    };
    eventually(Duration::from_secs(20), "20 effects", || async { (rows().await == 20).then_some(()) }).await;

    // Publish everything again: every event arrives a second time.
    supervisor.reset("dedup_bus", Checkpoint::START).await.unwrap();
    eventually(Duration::from_secs(20), "20 duplicates acked", || async {
        (duplicates.load(Ordering::SeqCst) == 20).then_some(())
    })
    .await;
    assert_eq!(rows().await, 20, "no effect twice");
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM effects").fetch_one(&pool).await.unwrap();
    assert_eq!(distinct as usize, stored.len());
    let claims: i64 =
        sqlx::query_scalar("SELECT count(*) FROM factum_bus_processed WHERE consumer = 'effects'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(claims, 20);
    supervisor.shutdown().await.unwrap();
    subscriber.stop().await;
}
