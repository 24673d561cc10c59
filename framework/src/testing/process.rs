//! Given / when / then for process managers: the decisions of a [`Process`], without a
//! store.

use std::fmt::Debug;
use std::marker::PhantomData;

use chrono::Utc;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::aggregate::{Aggregate, AggregateCommand};
use crate::process::{Fired, Input, Process, ProcessError, ProcessInstance, Step, StepCommand};

/// A process instance built from the inputs it was given, each decided and folded as if
/// recorded, to run one more input through. See `docs/processes.md` for an example.
pub struct ProcessTest<P: Process> {
    instance: ProcessInstance<P>,
}

/// What the instance decided on the input, to check.
pub struct ProcessOutcome<P: Process> {
    /// The step recorded (none if the input was ignored), or why it could not be.
    pub step: Result<Option<Step<P::Event>>, ProcessError>,
    /// The instance after the step.
    pub instance: ProcessInstance<P>,
}

fn decide<P: Process>(
    instance: &ProcessInstance<P>,
    input: Input<P::Event>,
) -> Result<Option<Step<P::Event>>, ProcessError> {
    let command = StepCommand::<P> {
        correlation: "test".to_owned(),
        input,
        step_event: Uuid::now_v7(),
        _process: PhantomData,
    };
    Ok(instance.handle(&command)?.into_iter().next())
}

impl<P: Process> ProcessTest<P> {
    /// An instance that reacted to `inputs`, in order. Panics if one of their decisions
    /// cannot be recorded.
    pub fn given(inputs: impl IntoIterator<Item = Input<P::Event>>) -> Self {
        let mut instance = ProcessInstance::<P>::default();
        for input in inputs {
            match decide(&instance, input) {
                Ok(Some(step)) => instance.apply(&step),
                Ok(None) => {}
                Err(e) => panic!("a given input's decision cannot be recorded: {e}"),
            }
        }
        ProcessTest { instance }
    }

    /// Runs one more input.
    pub fn when(self, input: Input<P::Event>) -> ProcessOutcome<P> {
        let mut instance = self.instance;
        let step = decide(&instance, input);
        if let Ok(Some(step)) = &step {
            instance.apply(step);
        }
        ProcessOutcome { step, instance }
    }

    /// Fires the instance's timer `name` (as set; a timer it does not hold is ignored).
    pub fn when_timer(self, name: &str) -> ProcessOutcome<P> {
        let (timer_id, deadline) = self
            .instance
            .timers
            .get(name)
            .map_or_else(|| (Uuid::now_v7(), Utc::now()), |t| (t.id, t.deadline));
        let fired = Fired { name: name.to_owned(), timer_id, deadline };
        self.when(Input::Timer(fired))
    }
}

impl<P: Process> ProcessOutcome<P> {
    fn recorded(&self) -> &Step<P::Event> {
        match &self.step {
            Ok(Some(step)) => step,
            Ok(None) => panic!("the input was ignored: nothing recorded"),
            Err(e) => panic!("the decision cannot be recorded: {e}"),
        }
    }

    /// Expects these commands of `C`'s aggregate among those sent, in order (and no
    /// other of that aggregate).
    #[track_caller]
    pub fn then_sends<C>(self, expected: &[C]) -> Self
    where
        C: AggregateCommand + DeserializeOwned + PartialEq + Debug,
    {
        let sent: Vec<C> = self
            .recorded()
            .decision
            .commands
            .iter()
            .filter(|c| c.aggregate_type == <C::Aggregate as Aggregate>::TYPE)
            .map(|c| {
                serde_json::from_value(c.command.clone())
                    .unwrap_or_else(|e| panic!("a recorded command does not decode: {e}"))
            })
            .collect();
        assert_eq!(sent, expected, "the commands sent");
        self
    }

    /// Expects these timers set, by name, in order.
    #[track_caller]
    pub fn then_sets_timers(self, names: &[&str]) -> Self {
        let set: Vec<&str> = self.recorded().decision.timers_set.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(set, names, "the timers set");
        self
    }

    /// Expects these timers cancelled, by name, in order.
    #[track_caller]
    pub fn then_cancels_timers(self, names: &[&str]) -> Self {
        let cancelled: Vec<&str> =
            self.recorded().decision.timers_cancelled.iter().map(String::as_str).collect();
        assert_eq!(cancelled, names, "the timers cancelled");
        self
    }

    /// Expects the instance to end.
    #[track_caller]
    pub fn then_ends(self) -> Self {
        assert!(self.recorded().decision.ended, "the process did not end");
        self
    }

    /// Expects the input to be ignored: nothing recorded.
    #[track_caller]
    pub fn then_ignores(self) -> Self {
        match &self.step {
            Ok(None) => self,
            Ok(Some(step)) => panic!("expected the input ignored, but it recorded {:?}", step.decision),
            Err(e) => panic!("expected the input ignored, but its decision failed: {e}"),
        }
    }

    /// Expects the decision to be unrecordable (a command that does not serialize, a bad
    /// timer name), and checks the error.
    #[track_caller]
    pub fn then_fails(self, check: impl FnOnce(&ProcessError) -> bool) -> Self {
        match &self.step {
            Err(e) => assert!(check(e), "unexpected error: {e}"),
            Ok(step) => panic!("expected a failure, got {step:?}"),
        }
        self
    }
}
