//! # factum
//!
//! An actor-based event-sourcing framework for Rust on PostgreSQL: application teams
//! declare aggregates, commands and events with derive macros; every live aggregate is a
//! `ractor` actor; projections keep read models current; a supervisor runs them with
//! replay and retention, inside the application's own service.
//!
//! ## A tour
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use factum::{Aggregate, Command, DomainEvent, EventHandler, Factum, HandlerError, InMemoryStore};
//! use factum::{Projection, RecordedEvent, Supervisor, SupervisorConfig};
//! use serde::{Deserialize, Serialize};
//!
//! // The write side: an aggregate decides (handle) and folds (apply).
//! #[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
//! #[aggregate(command = AccountCommand, event = AccountEvent, error = AccountError)]
//! struct Account { balance: i64 }
//!
//! #[derive(Debug, Command)]
//! enum AccountCommand { Deposit { #[command(id)] account: String, amount: i64 } }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
//! enum AccountEvent { #[event(topic = "account.money.deposited")] Deposited { amount: i64 } }
//!
//! #[derive(Debug, thiserror::Error)]
//! enum AccountError { #[error("amounts are positive")] NotPositive }
//!
//! impl Account {
//!     fn handle(&self, AccountCommand::Deposit { amount, .. }: &AccountCommand)
//!         -> Result<Vec<AccountEvent>, AccountError> {
//!         if *amount > 0 { Ok(vec![AccountEvent::Deposited { amount: *amount }]) } else { Err(AccountError::NotPositive) }
//!     }
//!     fn apply(&mut self, AccountEvent::Deposited { amount }: &AccountEvent) { self.balance += amount; }
//! }
//!
//! // The read side: a projection (at least once, here into memory).
//! #[derive(Clone, Default)]
//! struct Deposits(Arc<std::sync::Mutex<i64>>);
//!
//! #[async_trait::async_trait]
//! impl EventHandler for Deposits {
//!     async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
//!         *self.0.lock().map_err(|_| "poisoned")? += event.payload["amount"].as_i64().unwrap_or(0);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(InMemoryStore::new()); // or factum_postgres::PostgresStore
//! let deposits = Deposits::default();
//! let supervisor = Supervisor::start(
//!     store.clone(),
//!     SupervisorConfig::default().projection(Projection::with_handler("deposits", deposits.clone())),
//! )
//! .await?;
//! let factum = Factum::new(store);
//! factum.execute(AccountCommand::Deposit { account: "a-1".into(), amount: 30 }).await?;
//! factum.execute(AccountCommand::Deposit { account: "a-1".into(), amount: 12 }).await?;
//! assert_eq!(factum.load::<Account>("a-1").await?.0.balance, 42);
//! while supervisor.lag("deposits").await? > 0 {
//!     tokio::time::sleep(Duration::from_millis(5)).await;
//! }
//! assert_eq!(*deposits.0.lock().unwrap(), 42);
//! supervisor.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! ## Where things are
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`aggregate`] | [`Aggregate`], [`Command`], [`DomainEvent`] and their derives, [`CommandError`], snapshot policies |
//! | [`store`] | the [`EventStore`] and its four roles ([`EventLog`](store::EventLog), [`SnapshotStore`](store::SnapshotStore), [`ConsumerStore`](store::ConsumerStore), [`RetentionStore`](store::RetentionStore)), each operation's type and the trait a backend executes it by ([`store::op`], [`store::backend`]), the values they exchange, filters, subscriptions, the log cursor, [`InMemoryStore`] |
//! | [`projection`] | [`Projection`], [`EventHandler`], sinks, failure policies |
//! | [`process`] | process managers: workflows across aggregates, exactly once, with durable timers |
//! | [`supervisor`] | [`Supervisor`], health, replay, retention |
//! | [`metrics`] | [`Metrics`], the Prometheus registry |
//! | [`testing`] | given-when-then tests of aggregates |
//! | [`prelude`] | the store's role traits, for calling a concrete store |
//!
//! The names an application uses most are also at the root. The PostgreSQL backend is
//! the `factum-postgres` crate, the RabbitMQ bus `factum-rabbitmq`.
//!
//! ## Guarantees
//!
//! - Versions within a stream are gapless from 1; two appends with the same expected
//!   version: exactly one wins, the other gets [`StoreError::Conflict`].
//! - An event id is stored at most once; an exact retry of an append returns the
//!   original result.
//! - Reading the global log after a [`Checkpoint`](store::Checkpoint) never skips an event
//!   that commits late (see [`EventLog`](store::EventLog)).
//! - A command acknowledged as `Ok` is committed; an aggregate's state changes only after
//!   its events commit.
//!
//! ## Feature flags
//!
//! The in-memory store, the aggregate actors, projections, the supervisor, the test kit
//! ([`testing`]), the metrics and the re-exported derive macros are always built. One
//! feature is optional, and off by default:
//!
//! - **`opentelemetry`**: W3C trace context recorded with each event and continued by
//!   projections and bus subscribers, through the application's `tracing-opentelemetry`
//!   layer (see [`trace`]). Without it, the functions of [`trace`] do nothing.

pub mod aggregate;
pub mod backoff;
pub mod metrics;
pub mod process;
pub mod projection;
pub mod store;
pub mod supervisor;
pub mod task;
pub mod testing;
pub mod trace;

/// The store's role traits, whose methods a concrete store ([`InMemoryStore`], a
/// PostgreSQL store) is called through: `use factum::prelude::*;`. A `dyn EventStore` or a
/// generic `S: EventStore` needs no import.
pub mod prelude {
    pub use crate::store::{
        BuildStore, ConsumerStore, EventLog, EventStore, LogBackend, RetentionStore, SnapshotStore,
        TimerStore,
    };
}

#[doc(hidden)]
pub use aggregate::__private;
pub use aggregate::{Aggregate, Command, CommandError, DomainEvent, Factum, FactumConfig};
pub use metrics::Metrics;
pub use projection::{EventHandler, HandlerError, Projection};
pub use store::{
    EventFilter, EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, RecordedEvent, StoreError,
    StreamId, Version,
};
pub use supervisor::{Supervisor, SupervisorConfig};
