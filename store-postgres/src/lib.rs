//! # factum-postgres
//!
//! The PostgreSQL backend of [`factum`]: an [`EventStore`](factum::EventStore) on
//! `sqlx`, with embedded migrations, a one-round-trip append, gap-safe reads of the global
//! log, topic-pattern queries, snapshots, checkpoints and `LISTEN/NOTIFY` wake-ups.
//!
//! ```no_run
//! use factum::prelude::*;
//! use factum::{ExpectedVersion, NewEvent, StreamId};
//! use factum_postgres::{PostgresConfig, PostgresStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // DATABASE_URL, or DATABASE_HOST / DATABASE_NAME / DATABASE_USER / DATABASE_PASSWORD / DATABASE_PORT.
//! let store = PostgresStore::connect(PostgresConfig::from_env()?).await?;
//! store.migrate().await?; // create or upgrade the schema
//! let order = StreamId::new("Order", "ord-123")?;
//! store
//!     .append(&order, ExpectedVersion::NoStream, vec![NewEvent::new("OrderPlaced", serde_json::json!({}))])
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ## Schema
//!
//! Tables `events`, `event_streams` (one row per stream: its version), `snapshots` and
//! `projection_positions` in schema `public` by default; every name is configurable
//! through [`SchemaNames`]. `UPDATE` on events is refused by a trigger; `DELETE` is
//! allowed only through [`delete_before`](factum::store::RetentionStore::delete_before).
//!
//! ## Feature flags
//!
//! `factum-postgres` has no Cargo features. It builds `sqlx` (re-exported as
//! [`sqlx`]) with its `runtime-tokio`, `postgres`, `uuid`, `chrono` and
//! `json` features only, so without a TLS backend: a connection that requires TLS
//! (`sslmode=require`) is refused. An application that needs TLS enables one of sqlx's
//! TLS features (for example `tls-rustls`) in its own dependency on the same sqlx version;
//! Cargo builds that one sqlx with the union of the features.

mod admin;
mod availability;
mod classify;
mod config;
mod conns;
mod filter;
mod glance;
mod hosts;
mod lease;
mod listener;
mod names;
mod projection;
mod read_models;
mod roles;
mod rows;
mod schema;
mod store;

pub use admin::{Horizon, OldestTransaction, ProjectionReport, SessionInfo, StoreReport};
pub use config::{ConfigError, PoolSettings, PostgresConfig, SchemaNames};
pub use glance::StoreEstimate;
pub use projection::{ExactlyOnce, PgProjection};
pub use read_models::ReadModels;
pub use roles::{create_roles, Roles};
pub use schema::{migrations, Migration, MigrationStatus};
pub use store::{build_schema, Coalescing, FlushStats, OutcomeStats, PostgresStore, STREAM_BUFFER};

/// The `sqlx` this crate is built on. A [`PgProjection`] writes through its
/// `sqlx::PgConnection`; use this one (`use factum_postgres::sqlx;`) rather than adding
/// `sqlx` yourself, so that the two versions cannot drift apart.
pub use sqlx;
