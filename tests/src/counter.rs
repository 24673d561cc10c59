//! A small aggregate for the command-path tests: a counter that can be incremented,
//! refuses to go above a limit, and can be told to panic.

use factum::{Aggregate, Command, DomainEvent};
use serde::{Deserialize, Serialize};

/// The counter's state.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "Counter", command = CounterCommand, event = CounterEvent, error = CounterError, snapshot_every = 5)]
pub struct Counter {
    /// The current value.
    pub value: i64,
    /// How many increments were applied.
    pub increments: u64,
}

/// Commands for a counter.
#[derive(Debug, Clone, Command)]
#[command(id = id)]
pub enum CounterCommand {
    /// Add `by` (1 to 1,000).
    Increment {
        /// The counter.
        id: String,
        /// How much.
        by: i64,
    },
    /// Set the value back to zero.
    Reset {
        /// The counter.
        id: String,
    },
    /// Decide nothing.
    Noop {
        /// The counter.
        id: String,
    },
    /// Panic in `handle`.
    PanicInHandle {
        /// The counter.
        id: String,
    },
}

/// Events of a counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum CounterEvent {
    /// The counter went up. Version 2 renamed `amount` to `by`.
    #[event(name = "counter.incremented", version = 2, topic = "counter.value.incremented", upcast = upcast_incremented)]
    Incremented {
        /// How much.
        by: i64,
    },
    /// The counter was reset.
    #[event(topic = "counter.value.reset")]
    Reset,
}

/// Version 1 of `counter.incremented` stored `{"amount": n}`.
pub fn upcast_incremented(from: u32, mut payload: serde_json::Value) -> Result<serde_json::Value, String> {
    match from {
        1 => {
            let amount = payload.get_mut("amount").map(serde_json::Value::take).ok_or("missing amount")?;
            Ok(serde_json::json!({ "by": amount }))
        }
        other => Err(format!("unknown version {other}")),
    }
}

/// Why a counter refused a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CounterError {
    /// The increment was outside 1..=1000.
    #[error("increment {0} is outside 1..=1000")]
    BadIncrement(i64),
}

impl Counter {
    /// The decision.
    pub fn handle(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, CounterError> {
        match command {
            CounterCommand::Increment { by, .. } if !(1..=1000).contains(by) => {
                Err(CounterError::BadIncrement(*by))
            }
            CounterCommand::Increment { by, .. } => Ok(vec![CounterEvent::Incremented { by: *by }]),
            CounterCommand::Reset { .. } => Ok(vec![CounterEvent::Reset]),
            CounterCommand::Noop { .. } => Ok(vec![]),
            CounterCommand::PanicInHandle { .. } => panic!("handle panicked on purpose"),
        }
    }

    /// The fold.
    pub fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Incremented { by } => {
                self.value += by;
                self.increments += 1;
            }
            CounterEvent::Reset => self.value = 0,
        }
    }
}

/// Folds events from nothing, as a full replay does.
pub fn fold(events: &[CounterEvent]) -> Counter {
    let mut c = Counter::default();
    for e in events {
        c.apply(e);
    }
    c
}
