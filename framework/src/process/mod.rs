//! Process managers: workflows across aggregates. A process listens to events of other
//! aggregates, finds its instance by a correlation taken from each event, decides
//! commands to send and timers to set, and keeps its own state event-sourced in a stream
//! of its own, `<NAME>/<correlation>`.
//!
//! ## The model
//!
//! A [`Process`] is declared like an aggregate: a state with a pure
//! [`handle`](Process::handle) that returns a [`Decision`] (commands, timers, the end) and
//! an [`apply`](Process::apply) that folds what it reacted to. Its inputs are events from
//! the log, refusals of the commands it sent, and its timers coming due ([`Input`]).
//!
//! Each process instance is a [`ProcessInstance`], run by an aggregate actor like any
//! aggregate: passivated when idle, under the same cap of live actors, snapshotted. A
//! [`ProcessManager`] feeds it: it follows the log as a projection (its checkpoint, lease,
//! fence, failure policy and operator requests are a projection's), and it serves the
//! process's durable timers.
//!
//! ## Exactly once
//!
//! For each input, in this order:
//!
//! 1. The step (the input and the decision) is appended to the instance's stream with
//!    [`Factum::execute_once`](crate::Factum::execute_once), under an id derived from the
//!    input (the event's id, the refused command's id, the timer's id). Handled again
//!    after a crash, the input finds its step already recorded and decides nothing new.
//! 2. Each command is sent with `execute_once`, under an id derived from the step's id and
//!    the command's place in it. The target aggregate's events carry that id as their
//!    causation and derive their own ids from it, so a command sent again lands at most
//!    once; for a step found already recorded, a command that landed or came back
//!    refused is not sent again.
//! 3. The refusals the commands met are stepped, in order.
//! 4. The timers the steps touched are made to match the instance's state in the store
//!    (idempotent). A timer's id derives from the step that set it, and a firing whose id
//!    the instance no longer holds (cancelled, set again, fired) decides nothing.
//! 5. Only then does the checkpoint move past the event (or the firing timer's row go).
//!
//! A crash anywhere repeats the input from 1, and each repetition finds what was done:
//! no step twice, no command twice, none lost. An event at or before the last one an
//! instance recorded is not decided again. Within a batch, instances step concurrently
//! ([`ProcessManager::concurrency`]), each one's events in log order; one instance's
//! steps run one at a time in a process.
//!
//! A command its aggregate refuses with a domain error (or as invalid) comes back as
//! [`Input::Refused`], so the process can compensate; other failures (the store away, a
//! conflict that outlasts its retries) are the projection's failures, retried by its
//! [`FailurePolicy`](crate::projection::FailurePolicy).
//!
//! ## An example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use factum::process::{Decision, Input, Process, ProcessInstance, ProcessManager, Received, Subscription};
//! use factum::{Aggregate, Command, DomainEvent, Factum, InMemoryStore, Supervisor, SupervisorConfig};
//! use serde::{Deserialize, Serialize};
//!
//! // Two aggregates: an account and its cards.
//! #[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
//! #[aggregate(command = AccountCommand, event = AccountEvent, error = std::convert::Infallible)]
//! struct Account;
//! #[derive(Debug, Clone, Serialize, Deserialize, Command)]
//! enum AccountCommand { Close { #[command(id)] account: String, card: String } }
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
//! enum AccountEvent { Closed { card: String } }
//! impl Account {
//!     fn handle(&self, AccountCommand::Close { card, .. }: &AccountCommand)
//!         -> Result<Vec<AccountEvent>, std::convert::Infallible> {
//!         Ok(vec![AccountEvent::Closed { card: card.clone() }])
//!     }
//!     fn apply(&mut self, _: &AccountEvent) {}
//! }
//!
//! #[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
//! #[aggregate(command = CardCommand, event = CardEvent, error = CardError)]
//! struct Card { blocked: bool }
//! #[derive(Debug, Clone, Serialize, Deserialize, Command)]
//! enum CardCommand { Block { #[command(id)] card: String } }
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
//! enum CardEvent { Blocked }
//! #[derive(Debug, thiserror::Error)]
//! enum CardError { #[error("already blocked")] AlreadyBlocked }
//! impl Card {
//!     fn handle(&self, _: &CardCommand) -> Result<Vec<CardEvent>, CardError> {
//!         if self.blocked { Err(CardError::AlreadyBlocked) } else { Ok(vec![CardEvent::Blocked]) }
//!     }
//!     fn apply(&mut self, _: &CardEvent) { self.blocked = true; }
//! }
//!
//! // The process: when an account closes, block its card, and end.
//! #[derive(Debug, Default, Clone, Serialize, Deserialize)]
//! struct CloseCards;
//!
//! impl Process for CloseCards {
//!     const NAME: &'static str = "close_cards";
//!     type Event = AccountEvent;
//!
//!     fn subscription() -> Subscription {
//!         Subscription::new().aggregate_types(["Account"])
//!     }
//!     fn correlate(event: &Received<AccountEvent>) -> Result<Option<String>, String> {
//!         Ok(Some(event.stream.aggregate_id().to_owned()))
//!     }
//!     fn handle(&self, input: &Input<AccountEvent>) -> Decision {
//!         match input {
//!             Input::Event(e) => match &e.event {
//!                 AccountEvent::Closed { card } => {
//!                     Decision::new().send(CardCommand::Block { card: card.clone() }).end()
//!                 }
//!             },
//!             _ => Decision::ignore(),
//!         }
//!     }
//!     fn apply(&mut self, _: &Input<AccountEvent>) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(InMemoryStore::new());
//! let factum = Factum::new(store.clone());
//! let manager = ProcessManager::<CloseCards>::new(&factum)?.sends::<CardCommand>();
//! let supervisor =
//!     Supervisor::start(store.clone(), SupervisorConfig::default().projection(manager.into_projection())).await?;
//!
//! factum.execute(AccountCommand::Close { account: "a-1".into(), card: "k-9".into() }).await?;
//! while !factum.load::<Card>("k-9").await?.0.blocked {
//!     tokio::time::sleep(Duration::from_millis(5)).await;
//! }
//! let (instance, _) = factum.load::<ProcessInstance<CloseCards>>("a-1").await?;
//! assert!(instance.ended);
//! supervisor.shutdown().await?;
//! # Ok(()) }
//! ```

mod decision;
mod dispatch;
mod input;
mod manager;
mod sink;
mod step;
mod timers;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aggregate::{DomainEvent, DEFAULT_SNAPSHOT_EVERY};

pub use decision::{Decision, Recorded, SentCommand, TimerSet};
pub use factum_derive::Process;
pub use input::{Fired, Input, Received, Refusal};
pub use manager::{ProcessConfigError, ProcessManager, DEFAULT_CONCURRENCY, DEFAULT_TIMER_POLL};
pub use step::{ProcessError, ProcessInstance, Step, StepCommand};

/// A process manager's declaration: which events it listens to, how an event finds its
/// instance, and the pure decision and fold of one instance.
///
/// The state is serialized in snapshots, like an aggregate's.
pub trait Process: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The process's name: the category of its instances' streams, and the name of the
    /// projection that feeds it (checkpoint, lease, status, operator requests).
    const NAME: &'static str;
    /// Snapshot an instance every this many steps (0: never).
    const SNAPSHOT_EVERY: u64 = DEFAULT_SNAPSHOT_EVERY;
    /// The schema version of the serialized state (see
    /// [`Aggregate::SNAPSHOT_VERSION`](crate::Aggregate::SNAPSHOT_VERSION)).
    const SNAPSHOT_VERSION: u32 = 1;

    /// The events it listens to, decoded from the log: usually an enum with
    /// `#[derive(DomainEvent)]` whose variants are named after the events of other
    /// aggregates (`#[event(name = "OrderPlaced")]`) and hold the fields it needs. Events
    /// the subscription selects but `Event` does not know are passed over.
    type Event: DomainEvent + Clone + std::fmt::Debug;

    /// Which events of the log it reads (selected in the store).
    fn subscription() -> Subscription;

    /// The instance an event belongs to: `Ok(Some(id))`, or `Ok(None)` when the event is
    /// of no instance. `Err(reason)` for an event it cannot take a correlation from (a
    /// missing field, an invalid id): a failure, handled by the failure policy and
    /// recorded with the reason.
    fn correlate(event: &Received<Self::Event>) -> Result<Option<String>, String>;

    /// Decides on an input, without side effects: commands to send, timers to set or
    /// cancel, the end; or [`Decision::ignore`] for an input that changes nothing.
    fn handle(&self, input: &Input<Self::Event>) -> Decision;

    /// Folds an input whose decision was recorded into the state.
    fn apply(&mut self, input: &Input<Self::Event>);
}

/// The events of the log a process reads: by aggregate type, event type and topic
/// pattern, as a projection selects them. Empty lists select everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    pub(crate) aggregate_types: Vec<String>,
    pub(crate) event_types: Vec<String>,
    pub(crate) topics: Vec<String>,
}

impl Subscription {
    /// Every event (narrow it down).
    pub fn new() -> Self {
        Subscription::default()
    }

    /// Only events of these aggregate types (categories).
    #[must_use]
    pub fn aggregate_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.aggregate_types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Only events of these event types.
    #[must_use]
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Only events whose topic matches one of these patterns (`*` one word, `#` any).
    #[must_use]
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.topics.extend(patterns.into_iter().map(Into::into));
        self
    }
}
