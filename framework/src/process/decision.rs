//! What a process decides on an input: commands to send, timers to set or cancel, and
//! whether it has ended. Recorded in the process's stream before anything is sent.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Aggregate, AggregateCommand};

/// What [`Process::handle`](super::Process::handle) returns.
///
/// ```
/// # use std::time::Duration;
/// # use factum::process::Decision;
/// # use factum::{Aggregate, Command, DomainEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
/// # #[aggregate(command = OrderCommand, event = OrderEvent, error = std::convert::Infallible)]
/// # struct Order;
/// # #[derive(Debug, Clone, Serialize, Deserialize, Command)]
/// # enum OrderCommand { Cancel { #[command(id)] order_id: String, reason: String } }
/// # #[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
/// # enum OrderEvent { Cancelled }
/// # impl Order {
/// #     fn handle(&self, _: &OrderCommand) -> Result<Vec<OrderEvent>, std::convert::Infallible> { Ok(vec![]) }
/// #     fn apply(&mut self, _: &OrderEvent) {}
/// # }
/// # fn main() {
/// let decision = Decision::new()
///     .send(OrderCommand::Cancel { order_id: "o-1".into(), reason: "late".into() })
///     .cancel_timer("ship-by")
///     .set_timer_after("reminder", Duration::from_secs(3600))
///     .end();
/// assert_eq!(decision.commands().len(), 1);
/// assert_eq!(decision.commands()[0].aggregate_type, "Order");
/// assert!(decision.ends());
/// # }
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct Decision {
    pub(crate) record: bool,
    pub(crate) commands: Vec<SentCommand>,
    pub(crate) encode_error: Option<String>,
    pub(crate) set: Vec<(String, When)>,
    pub(crate) cancel: Vec<String>,
    pub(crate) end: bool,
}

/// When a timer is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum When {
    At(DateTime<Utc>),
    After(Duration),
}

impl Decision {
    /// Records the input (so that [`Process::apply`](super::Process::apply) folds it), and
    /// nothing else yet: add commands, timers, or the end.
    pub fn new() -> Self {
        Decision { record: true, ..Decision::default() }
    }

    /// Records nothing: the input does not concern this process instance, and its state
    /// does not change (`apply` is not called). Costs no write.
    pub fn ignore() -> Self {
        Decision::default()
    }

    /// Sends a command to its aggregate, at most once. Its type must be registered with
    /// [`ProcessManager::sends`](super::ProcessManager::sends), so that it can be sent
    /// again from the record after a crash.
    pub fn send<C>(mut self, command: C) -> Self
    where
        C: AggregateCommand + Serialize,
    {
        self.record = true;
        match serde_json::to_value(&command) {
            Ok(value) => self.commands.push(SentCommand {
                aggregate_type: <C::Aggregate as Aggregate>::TYPE.to_owned(),
                aggregate_id: command.aggregate_id().to_owned(),
                command: value,
            }),
            Err(e) => {
                self.encode_error.get_or_insert_with(|| {
                    format!("a command for {} cannot be serialized: {e}", <C::Aggregate as Aggregate>::TYPE)
                });
            }
        }
        self
    }

    /// Sets the timer `name` to fire at `deadline` (replacing a timer of that name).
    pub fn set_timer(mut self, name: impl Into<String>, deadline: DateTime<Utc>) -> Self {
        self.record = true;
        self.set.push((name.into(), When::At(deadline)));
        self
    }

    /// Sets the timer `name` to fire `after` the input's [`time`](super::Input::time).
    pub fn set_timer_after(mut self, name: impl Into<String>, after: Duration) -> Self {
        self.record = true;
        self.set.push((name.into(), When::After(after)));
        self
    }

    /// Cancels the timer `name`, if it is set.
    pub fn cancel_timer(mut self, name: impl Into<String>) -> Self {
        self.record = true;
        self.cancel.push(name.into());
        self
    }

    /// Ends the process instance: its timers are cancelled, and later events and timers
    /// are ignored (refusals of the commands it sent, this decision's included, still
    /// reach it).
    pub fn end(mut self) -> Self {
        self.record = true;
        self.end = true;
        self
    }

    /// The commands to send, in order.
    pub fn commands(&self) -> &[SentCommand] {
        &self.commands
    }

    /// The names of the timers set, in order.
    pub fn timers_set(&self) -> impl Iterator<Item = &str> {
        self.set.iter().map(|(name, _)| name.as_str())
    }

    /// The names of the timers cancelled, in order.
    pub fn timers_cancelled(&self) -> impl Iterator<Item = &str> {
        self.cancel.iter().map(String::as_str)
    }

    /// Whether the process ends.
    pub fn ends(&self) -> bool {
        self.end
    }

    /// Whether the input is recorded at all (not [`ignore`](Self::ignore)d).
    pub fn records(&self) -> bool {
        self.record
    }
}

/// A command a process sends, as its stream records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentCommand {
    /// The aggregate type it goes to.
    pub aggregate_type: String,
    /// The aggregate it goes to.
    pub aggregate_id: String,
    /// The command, serialized.
    pub command: Value,
}

/// A timer set by a step, with its deadline resolved and its id: derived from the step's
/// and the name, so that only this setting of the name fires as it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerSet {
    /// Its name.
    pub name: String,
    /// When it is due.
    pub deadline: DateTime<Utc>,
    /// Its id.
    pub id: uuid::Uuid,
}

/// A decision as its step records it: what was sent, set, cancelled, and whether the
/// process ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The commands sent, in order.
    #[serde(default)]
    pub commands: Vec<SentCommand>,
    /// The timers set.
    #[serde(default)]
    pub timers_set: Vec<TimerSet>,
    /// The timers cancelled.
    #[serde(default)]
    pub timers_cancelled: Vec<String>,
    /// Whether the process ended.
    #[serde(default)]
    pub ended: bool,
}

impl Decision {
    /// The decision as recorded, with deadlines resolved against `now` (the input's time)
    /// and the timers' ids derived from the step's event id `step`.
    pub(crate) fn into_recorded(self, now: DateTime<Utc>, step: uuid::Uuid) -> Result<Recorded, String> {
        if let Some(e) = self.encode_error {
            return Err(e);
        }
        for name in self.set.iter().map(|(n, _)| n).chain(&self.cancel) {
            crate::store::validate::name("timer name", name).map_err(|e| e.to_string())?;
        }
        let timers_set = self
            .set
            .into_iter()
            .map(|(name, when)| {
                let deadline = match when {
                    When::At(at) => at,
                    When::After(after) => chrono::Duration::from_std(after)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                };
                let id = uuid::Uuid::new_v5(&step, name.as_bytes());
                TimerSet { name, deadline, id }
            })
            .collect();
        Ok(Recorded { commands: self.commands, timers_set, timers_cancelled: self.cancel, ended: self.end })
    }
}
