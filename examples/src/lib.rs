//! # factum-example
//!
//! The order and customer domains on factum, as a long-running HTTP service: two
//! aggregates declared with the derive macros ([`customer`], [`order`]), three
//! exactly-once projections into PostgreSQL ([`read_models`]), two process managers
//! ([`processes`]), an axum JSON API
//! ([`http`]) described by an OpenAPI document generated from its handlers
//! ([`openapi`]), and a load simulation ([`simulate`]). It uses only factum's public API.
//!
//! Run it with `scripts/example.sh` (see the README); `factum-example --help` lists the
//! flags.

pub mod app;
pub mod customer;
pub mod http;
pub mod openapi;
pub mod order;
pub mod processes;
pub mod read_models;
pub mod simulate;
pub mod telemetry;
pub mod validate;

pub use app::{App, AppError, Bus, StartError};
