use factum::{Aggregate, Command, DomainEvent};

#[derive(Command)]
struct C {
    #[command(id)]
    id: String,
}

#[derive(serde::Serialize, serde::Deserialize, DomainEvent)]
enum E {
    Happened,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Er;

// No inherent `handle` or `apply`: the calls would recurse into the trait methods.
#[derive(Default, Clone, serde::Serialize, serde::Deserialize, Aggregate)]
#[aggregate(command = C, event = E, error = Er)]
struct Order {}

fn main() {}
