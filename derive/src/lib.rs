//! Derive macros for [factum](https://docs.rs/factum): `#[derive(DomainEvent)]`,
//! `#[derive(Command)]` and `#[derive(Aggregate)]`. Use them through the `factum` crate,
//! which re-exports them beside the traits they implement.
//!
//! Each derive reports every misuse of its attributes at once, on the offending token,
//! and still implements its trait (with what was given, or bodies that never run), so
//! that a mistake is reported once rather than again at every use of the type.
//!
//! ## Feature flags
//!
//! This crate has no Cargo features: the three derives are always available.

mod aggregate;
mod attrs;
mod command;
mod event;
mod process;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `factum::DomainEvent` for an enum of events.
///
/// Per variant: `#[event(name = "...", version = N, topic = "a.b.c", upcast = path)]`,
/// all optional: the name defaults to the variant's, the version to 1; `upcast` names a
/// `fn(u32, serde_json::Value) -> Result<serde_json::Value, String>` that turns a payload
/// stored at an older version into the current shape.
///
/// A payload is stored as the variant's content and decoded through the variant's Rust
/// name: `#[serde(rename)]` on a variant, and `#[serde(rename_all)]`, `#[serde(tag)]` or
/// `#[serde(untagged)]` on the enum, are compile errors.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(&input).into()
}

/// Implements `factum::Command`: mark the aggregate id field of each variant with
/// `#[command(id)]`, or name it once on the enum with `#[command(id = field)]`.
#[proc_macro_derive(Command, attributes(command))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    command::expand(&input).into()
}

/// Implements `factum::Aggregate` for a state struct:
/// `#[aggregate(name = "Order", command = OrderCommand, event = OrderEvent, error = OrderError,
/// snapshot_every = 50)]`. The struct's inherent `fn handle(&self, &Command)` and
/// `fn apply(&mut self, &Event)` are the decision and the fold (or name others with
/// `handle = path` and `apply = path`).
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    aggregate::expand(&input).into()
}

/// Implements `factum::process::Process` for a process manager's state struct:
/// `#[process(name = "ship_deadline", event = OrderEvent, aggregate_types = ["Order"],
/// event_types = ["OrderConfirmed", "OrderShipped"], topics = [], snapshot_every = 50)]`
/// (the lists select the events the process reads; empty or absent, all). The struct's
/// inherent `fn correlate(&Received<Event>) -> Result<Option<String>, String>`,
/// `fn handle(&self, &Input<Event>) -> Decision` and `fn apply(&mut self, &Input<Event>)`
/// are the correlation, the decision and the fold.
#[proc_macro_derive(Process, attributes(process))]
pub fn derive_process(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    process::expand(&input).into()
}
