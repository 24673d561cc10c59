//! A process instance as an aggregate: its stream records one step per input it
//! reacted to (the input and the decision), and its state folds those inputs. So an
//! instance runs in an aggregate actor (passivated when idle, under the live-actor cap,
//! snapshotted), and a step is recorded at most once through
//! [`Factum::execute_once`](crate::Factum::execute_once).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decision::{Decision, Recorded, TimerSet};
use super::input::{Input, StoredInput};
use super::Process;
use crate::aggregate::{Aggregate, AggregateCommand, Command, DomainEvent, EventCodecError};
use crate::store::Checkpoint;

/// A process instance: the process's state, the timers it has set, and whether it has
/// ended. Its stream is `<Process::NAME>/<correlation>`;
/// [`Factum::load::<ProcessInstance<P>>`](crate::Factum::load) reads one.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProcessInstance<P> {
    /// The process's own state.
    pub state: P,
    /// The timers set and not yet fired or cancelled, by name.
    pub timers: BTreeMap<String, TimerSet>,
    /// Whether the process has ended: later events and timers are ignored; refusals of
    /// the commands it sent still reach it.
    pub ended: bool,
    /// The newest event of the log it recorded a step for: an event at or before it that
    /// comes again (a batch repeated after a crash) is not decided again.
    pub last_event: Option<Checkpoint>,
}

/// One step of a process instance, as its stream records it: the input it reacted to,
/// and what it decided. Event types `EventReceived`, `CommandRefused` and `TimerFired`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step<E> {
    /// What the instance reacted to.
    pub input: Input<E>,
    /// What it decided.
    pub decision: Recorded,
}

/// What a process could not record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// A command or a timer of the decision cannot be recorded.
    #[error("the decision cannot be recorded: {0}")]
    Unrecordable(String),
}

/// The command that records one step of a process instance; built by the framework.
pub struct StepCommand<P: Process> {
    pub(crate) correlation: String,
    pub(crate) input: Input<P::Event>,
    /// The id the step's event gets (the timers' ids derive from it).
    pub(crate) step_event: uuid::Uuid,
    pub(crate) _process: PhantomData<fn() -> P>,
}

impl<P: Process> std::fmt::Debug for StepCommand<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepCommand")
            .field("process", &P::NAME)
            .field("correlation", &self.correlation)
            .finish()
    }
}

impl<P: Process> Command for StepCommand<P> {
    fn aggregate_id(&self) -> &str {
        &self.correlation
    }
}

impl<P: Process> AggregateCommand for StepCommand<P> {
    type Aggregate = ProcessInstance<P>;
}

impl<P: Process> Aggregate for ProcessInstance<P> {
    const TYPE: &'static str = P::NAME;
    const SNAPSHOT_EVERY: u64 = P::SNAPSHOT_EVERY;
    const SNAPSHOT_VERSION: u32 = P::SNAPSHOT_VERSION;

    type Command = StepCommand<P>;
    type Event = Step<P::Event>;
    type Error = ProcessError;

    fn handle(&self, command: &StepCommand<P>) -> Result<Vec<Step<P::Event>>, ProcessError> {
        let passed = match &command.input {
            // An event it already stepped past: decided before (a repeat finds the step).
            Input::Event(e) => self.last_event.is_some_and(|last| e.checkpoint() <= last),
            // A timer cancelled, set again since, or fired already.
            Input::Timer(fired) => self.timers.get(&fired.name).is_none_or(|t| t.id != fired.timer_id),
            Input::Refused(_) => false,
        };
        if passed || (self.ended && !matches!(command.input, Input::Refused(_))) {
            return Ok(Vec::new());
        }
        let mut decision = self.state.handle(&command.input);
        if !decision.record {
            if !matches!(command.input, Input::Refused(_)) {
                return Ok(Vec::new());
            }
            // A refusal is always recorded, so that a repeat never sends its command again.
            decision = Decision::new();
        }
        let mut decision = decision
            .into_recorded(command.input.time(), command.step_event)
            .map_err(ProcessError::Unrecordable)?;
        if self.ended {
            // An ended instance sets no timers (a refusal reaching it still counts).
            decision.timers_set.clear();
            decision.timers_cancelled.clear();
        }
        Ok(vec![Step { input: command.input.clone(), decision }])
    }

    fn apply(&mut self, step: &Step<P::Event>) {
        self.state.apply(&step.input);
        match &step.input {
            Input::Event(e) => self.last_event = self.last_event.max(Some(e.checkpoint())),
            Input::Timer(fired) => {
                if self.timers.get(&fired.name).is_some_and(|t| t.id == fired.timer_id) {
                    self.timers.remove(&fired.name);
                }
            }
            Input::Refused(_) => {}
        }
        for name in &step.decision.timers_cancelled {
            self.timers.remove(name);
        }
        for set in &step.decision.timers_set {
            self.timers.insert(set.name.clone(), set.clone());
        }
        if step.decision.ended {
            self.ended = true;
            self.timers.clear();
        }
    }
}

/// The recorded form of a step.
#[derive(Serialize, Deserialize)]
struct StoredStep {
    input: StoredInput,
    decision: Recorded,
}

const RECEIVED: &str = "EventReceived";
const REFUSED: &str = "CommandRefused";
const FIRED: &str = "TimerFired";

impl<E: DomainEvent + Clone> DomainEvent for Step<E> {
    fn event_type(&self) -> &'static str {
        match self.input {
            Input::Event(_) => RECEIVED,
            Input::Refused(_) => REFUSED,
            Input::Timer(_) => FIRED,
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn to_payload(&self) -> Result<Value, EventCodecError> {
        let stored = StoredStep { input: StoredInput::of(&self.input)?, decision: self.decision.clone() };
        serde_json::to_value(stored).map_err(|e| crate::aggregate::__private::malformed(self.event_type(), e))
    }

    fn from_stored(event_type: &str, schema_version: u32, payload: Value) -> Result<Self, EventCodecError> {
        if ![RECEIVED, REFUSED, FIRED].contains(&event_type) {
            return Err(EventCodecError::UnknownEventType { event_type: event_type.to_owned() });
        }
        if schema_version > 1 {
            return Err(EventCodecError::NewerSchema {
                event_type: event_type.to_owned(),
                stored: schema_version,
                supported: 1,
            });
        }
        let stored: StoredStep = serde_json::from_value(payload)
            .map_err(|e| crate::aggregate::__private::malformed(event_type, e))?;
        Ok(Step { input: stored.input.decode(event_type)?, decision: stored.decision })
    }
}
