//! Bad input at start-up: each misconfiguration is a typed error, before anything runs.

mod support;

use std::sync::Arc;

use factum::{EventStore, InMemoryStore};
use factum_rabbitmq::{BusError, Publisher, PublisherConfig, Subscriber, SubscriberConfig};
use lapin::options::ExchangeDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use support::{amqp_url, Collector, Names};

fn store() -> Arc<dyn EventStore> {
    Arc::new(InMemoryStore::new())
}

async fn publisher_error(config: PublisherConfig) -> BusError {
    Publisher::connect(store(), config).await.expect_err("start-up must fail")
}

#[tokio::test]
async fn a_url_that_is_not_amqp_is_invalid() {
    for url in ["http://127.0.0.1:5672", "not a url", "amqp://127.0.0.1:notaport"] {
        let err = publisher_error(PublisherConfig::new(url)).await;
        assert!(matches!(err, BusError::InvalidUrl { .. }), "{url}: {err:?}");
        let err = Subscriber::start(SubscriberConfig::new(url, "q"), Collector::default()).await.unwrap_err();
        assert!(matches!(err, BusError::InvalidUrl { .. }), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn a_port_where_nothing_listens_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("amqp://guest:secret@127.0.0.1:{port}/%2f");
    let err = publisher_error(PublisherConfig::new(&url)).await;
    assert!(matches!(err, BusError::Unreachable { .. }), "{err:?}");
    assert!(!err.to_string().contains("secret"), "the password is masked: {err}");
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let url = amqp_url().replacen("guest:guest@", "guest:wrong-password@", 1);
    let err = publisher_error(PublisherConfig::new(&url)).await;
    assert!(matches!(err, BusError::AccessRefused { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-password"), "the password is masked: {err}");
    let err = Subscriber::start(SubscriberConfig::new(&url, "q"), Collector::default()).await.unwrap_err();
    assert!(matches!(err, BusError::AccessRefused { .. }), "{err:?}");
}

#[tokio::test]
async fn an_exchange_of_another_type_is_a_mismatch() {
    let url = amqp_url();
    let names = Names::new(&url, "mismatch");
    let exchange = names.exchange("fanout");
    let conn = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    ch.exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
        .await
        .unwrap();

    let err = publisher_error(PublisherConfig::new(&url).exchange(&exchange)).await;
    match &err {
        BusError::ExchangeMismatch { exchange: e, .. } => assert_eq!(e, &exchange),
        other => panic!("expected ExchangeMismatch, got {other:?}"),
    }
    let config = SubscriberConfig::new(&url, names.queue("q")).exchange(&exchange).bind(["#"]);
    let err = Subscriber::start(config, Collector::default()).await.unwrap_err();
    assert!(matches!(err, BusError::ExchangeMismatch { .. }), "{err:?}");
    conn.close(200, "done".into()).await.ok();
}

#[tokio::test]
async fn bad_patterns_and_names_are_invalid_config() {
    let url = amqp_url();
    let err = publisher_error(PublisherConfig::new(&url).topics(["order..placed"])).await;
    assert!(matches!(err, BusError::InvalidConfig { field: "topics", .. }), "{err:?}");
    let err = publisher_error(PublisherConfig::new(&url).exchange("x".repeat(300))).await;
    assert!(matches!(err, BusError::InvalidConfig { field: "exchange", .. }), "{err:?}");
    let config = SubscriberConfig::new(&url, "").bind(["#"]);
    let err = Subscriber::start(config, Collector::default()).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidConfig { .. }), "{err:?}");
}
