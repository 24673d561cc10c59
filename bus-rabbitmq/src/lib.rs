//! A RabbitMQ event bus for factum, on `lapin`: every stored event is published, and
//! subscribers receive them on queues bound with topic patterns.
//!
//! - [`Publisher`] is a projection: the [`Supervisor`](factum::Supervisor) runs it
//!   like any other, from its checkpoint, in one instance at a time (the projection's
//!   lease). It publishes each event to a durable topic exchange with its topic as the
//!   routing key, with publisher confirms and the `mandatory` flag, and moves its
//!   checkpoint over a batch only once every message of it was confirmed. While the
//!   broker is away or blocks the connection it waits, reconnects with backoff, and
//!   publishes again what was not confirmed. A nack or an unroutable return goes to the
//!   projection's failure policy.
//! - [`Subscriber`] consumes a durable queue (classic or quorum) bound with topic
//!   patterns, hands each message to a [`MessageHandler`] with bounded prefetch, acks
//!   after the handler succeeded, and after a bounded number of failures sends the
//!   message to a dead-letter exchange with the reason in a header.
//!   [`Deduplicated`] makes a PostgreSQL handler's effects happen once per event id.
//! - [`BusMetrics`] puts the counters and the publisher's lag in the application's
//!   registry.
//!
//! Delivery is at least once, in global log order per publisher; the guide
//! (`docs/event-bus.md`) lists exactly when a message can come twice.
//!
//! ```no_run
//! use std::sync::Arc;
//! use factum::{EventStore, HandlerError, InMemoryStore, Supervisor, SupervisorConfig};
//! use factum_rabbitmq::{BusEvent, MessageHandler, Publisher, PublisherConfig, Subscriber, SubscriberConfig};
//!
//! struct PrintOrders;
//!
//! #[async_trait::async_trait]
//! impl MessageHandler for PrintOrders {
//!     async fn handle(&mut self, event: &BusEvent) -> Result<(), HandlerError> {
//!         println!("{} {} {}", event.routing_key, event.stream, event.version);
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
//! let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
//! // Subscribe first: with `mandatory`, an event that no queue is bound for is a failure.
//! let subscriber =
//!     Subscriber::start(SubscriberConfig::new(url, "order-printer").bind(["order.#"]), PrintOrders).await?;
//! let publisher = Publisher::connect(store.clone(), PublisherConfig::new(url).topics(["order.#"])).await?;
//! let supervisor =
//!     Supervisor::start(store, SupervisorConfig::default().projection(publisher.into_projection())).await?;
//! // ... the application appends events; they reach the queue ...
//! supervisor.shutdown().await?;
//! subscriber.stop().await;
//! # Ok(()) }
//! ```
//!
//! ## Feature flags
//!
//! `factum-rabbitmq` has no Cargo features. It builds `lapin` with its `tokio` feature
//! only, so without a TLS backend: it connects with `amqp://` URLs, not `amqps://`. Its
//! spans continue the W3C trace context of each event when `factum`'s `opentelemetry`
//! feature is on (see `factum::trace`); the `traceparent` header is set in any case when
//! the event carries a context.

mod acks;
mod ahead;
mod config;
mod connect;
mod dedup;
mod delivery;
mod error;
mod lag;
mod message;
mod metrics;
mod publisher;
mod subscriber;
mod subscriber_config;

/// Compiles the Rust snippets of `docs/event-bus.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/event-bus.md")]
struct EventBusDocDoctests;

pub use config::{
    PublisherConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_EXCHANGE, DEFAULT_MAX_IN_FLIGHT, DEFAULT_PUBLISHER_NAME,
};
pub use dedup::{Deduplicated, PgMessageHandler, DEFAULT_DEDUP_TABLE};
pub use error::BusError;
pub use message::{headers, BusEvent, DecodeError};
pub use metrics::BusMetrics;
pub use publisher::Publisher;
pub use subscriber::{MessageHandler, Subscriber, SubscriberHandle};
pub use subscriber_config::SubscriberConfig;
