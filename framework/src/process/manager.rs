//! [`ProcessManager`]: runs a [`Process`] as a projection of the log, records each step
//! of an instance once, then sets its timers and sends its commands once.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::dispatch::{Dispatch, Sent, Typed};
use super::input::{Input, Refusal};
use super::sink::ProcessSink;
use super::step::{ProcessInstance, StepCommand};
use super::{Process, Subscription};
use crate::aggregate::{Aggregate, AggregateCommand, Factum};
use crate::projection::{FailurePolicy, HandlerError, Projection};
use crate::store::{validate, EventStore, InvalidInput, Metadata, StreamId, Timer, VersionRange};
use crate::task::AbortOnDrop;

/// How often the timers' holder looks for due timers unless told otherwise
/// ([`ProcessManager::timer_poll`]).
pub const DEFAULT_TIMER_POLL: Duration = Duration::from_secs(1);

/// How many instances step at once within a batch unless told otherwise
/// ([`ProcessManager::concurrency`]).
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The stripes of the instances' locks.
const LOCK_STRIPES: usize = 64;

/// The stripe of an instance's lock.
fn lock_of(correlation: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    correlation.hash(&mut hasher);
    (hasher.finish() % LOCK_STRIPES as u64) as usize
}

/// How deep refusals may chain (a refusal's step sends a command that is refused, ...).
const MAX_DEPTH: usize = 16;

/// Why a process cannot be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessConfigError {
    /// The process's name is not a valid stream category or projection name.
    #[error("invalid process name {name:?}: {source}")]
    InvalidName {
        /// The name.
        name: &'static str,
        /// Why.
        #[source]
        source: InvalidInput,
    },
}

/// Runs a [`Process`]: a projection that follows the events the process subscribes to
/// and steps each one's instance, and a timer service that fires its due timers (in one
/// instance at a time, under a lease of its own).
///
/// Register every command type a decision may send with [`sends`](Self::sends): a step
/// that names another is a failure of the process (recorded by its failure policy, its
/// command never lost: resumed, it is sent).
pub struct ProcessManager<P: Process> {
    factum: Factum,
    dispatch: HashMap<String, Arc<dyn Dispatch>>,
    batch_size: usize,
    failure: FailurePolicy,
    timer_poll: Duration,
    concurrency: usize,
    _process: PhantomData<fn() -> P>,
}

impl<P: Process> std::fmt::Debug for ProcessManager<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessManager")
            .field("process", &P::NAME)
            .field("sends", &self.dispatch.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What the projection's handler and the timer service share.
pub(crate) struct Core<P: Process> {
    factum: Factum,
    /// One lock per stripe of instances: an instance's steps run one at a time here.
    locks: Vec<tokio::sync::Mutex<()>>,
    store: Arc<dyn EventStore>,
    dispatch: HashMap<String, Arc<dyn Dispatch>>,
    /// The namespace of the process's step ids.
    namespace: Uuid,
    _process: PhantomData<fn() -> P>,
}

impl<P: Process> ProcessManager<P> {
    /// A manager that runs the process's instances through `factum` (its actors, its
    /// live-actor cap, its store). Checks the process's name.
    pub fn new(factum: &Factum) -> Result<Self, ProcessConfigError> {
        let invalid = |source| ProcessConfigError::InvalidName { name: P::NAME, source };
        StreamId::new(P::NAME, "x").map_err(invalid)?;
        validate::consumer_name(P::NAME).map_err(invalid)?;
        if P::NAME.contains('#') {
            return Err(invalid(InvalidInput::OutOfRange {
                field: "process name",
                reason: "may not contain '#' (it separates a projection's slice)",
            }));
        }
        Ok(ProcessManager {
            factum: factum.clone(),
            dispatch: HashMap::new(),
            batch_size: 100,
            failure: FailurePolicy::default(),
            timer_poll: DEFAULT_TIMER_POLL,
            concurrency: DEFAULT_CONCURRENCY,
            _process: PhantomData,
        })
    }

    /// Lets the process send commands of type `C` (to `C`'s aggregate).
    #[must_use]
    pub fn sends<C>(mut self) -> Self
    where
        C: AggregateCommand + DeserializeOwned,
    {
        let key = <C::Aggregate as Aggregate>::TYPE.to_owned();
        self.dispatch.insert(key, Arc::new(Typed::<C>::new()));
        self
    }

    /// How many instances step at once within a batch (default
    /// [`DEFAULT_CONCURRENCY`]); each instance's events are stepped in log order.
    #[must_use]
    pub fn concurrency(mut self, instances: usize) -> Self {
        self.concurrency = instances.max(1);
        self
    }

    /// Events per batch of the projection (default 100).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// What happens to an input whose step fails (default: the projections' default).
    #[must_use]
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// How often the timers' holder looks for due timers (default
    /// [`DEFAULT_TIMER_POLL`]): a timer fires within about this long after its deadline.
    #[must_use]
    pub fn timer_poll(mut self, every: Duration) -> Self {
        self.timer_poll = every.max(Duration::from_millis(10));
        self
    }

    /// The projection that runs the process, for
    /// [`SupervisorConfig::projection`](crate::SupervisorConfig::projection), named
    /// [`P::NAME`](Process::NAME). It starts the timer service, which stops when the
    /// projection does. Needs a Tokio runtime.
    pub fn into_projection(self) -> Projection {
        let core = Arc::new(Core::<P> {
            locks: (0..LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            store: self.factum.store().clone(),
            factum: self.factum,
            dispatch: self.dispatch,
            namespace: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("factum.process/{}", P::NAME).as_bytes()),
            _process: PhantomData,
        });
        let timers = AbortOnDrop::new(tokio::spawn(super::timers::serve(core.clone(), self.timer_poll)));
        let Subscription { aggregate_types, event_types, topics } = P::subscription();
        let sink = ProcessSink { core, concurrency: self.concurrency, _timers: timers };
        Projection::new(P::NAME, sink)
            .aggregate_types(aggregate_types)
            .event_types(event_types)
            .topics(topics)
            .batch_size(self.batch_size)
            .on_failure(self.failure)
    }
}

impl<P: Process> Core<P> {
    /// Records the instance's step for `input` (once, under an id derived from
    /// `trigger`), sends its commands (each once), steps the refusals they met, in order,
    /// and then makes the instance's timer rows match its state. `firing` is the timer
    /// being fired, if any: its row stays until the whole step is done, so that a crash
    /// fires it again. Steps of one instance run one at a time in this process.
    pub(crate) fn step(
        &self,
        correlation: String,
        input: Input<P::Event>,
        trigger: Uuid,
        depth: usize,
        firing: Option<Uuid>,
    ) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(HandlerError::msg(format!(
                    "{}/{correlation}: refusals chained more than {MAX_DEPTH} deep",
                    P::NAME
                )));
            }
            let _serial = match depth {
                0 => Some(self.locks[lock_of(&correlation)].lock().await),
                _ => None,
            };
            let stream = StreamId::new(P::NAME, correlation.as_str())
                .map_err(|e| HandlerError::msg(format!("{} correlation {correlation:?}: {e}", P::NAME)))?;
            let step_id = self.step_id(trigger);
            let step_event = crate::aggregate::event_id_of(step_id, 0);
            let correlation_id = match &input {
                Input::Event(e) => e.metadata.correlation_id,
                _ => None,
            };
            let metadata = Metadata { correlation_id, ..Metadata::default() };
            let command = StepCommand::<P> {
                correlation: correlation.clone(),
                input,
                step_event,
                _process: PhantomData,
            };
            let executed = self
                .factum
                .run_once(command, step_id, metadata, true)
                .await
                .map_err(|e| HandlerError::msg(format!("{stream}: recording a step: {e}")))?;
            let Some(step) = executed.events.first() else { return Ok(()) };

            // The commands, each once: a command that landed (here or elsewhere, this
            // time or before a crash) is found by its id before it can be refused.
            let mut refusals = Vec::new();
            for (index, sent) in step.decision.commands.iter().enumerate() {
                let id = crate::aggregate::event_id_of(step_event, index);
                let refusal = |reason: String| Refusal {
                    command_id: id,
                    aggregate_type: sent.aggregate_type.clone(),
                    aggregate_id: sent.aggregate_id.clone(),
                    command: sent.command.clone(),
                    reason,
                    at: chrono::Utc::now(),
                };
                if executed.repeated && self.recorded(&stream, self.step_id(id)).await? {
                    // Its refusal is recorded (stepped again below, found recorded).
                    refusals.push(refusal(String::new()));
                    continue;
                }
                let Some(dispatch) = self.dispatch.get(&sent.aggregate_type) else {
                    return Err(HandlerError::msg(format!(
                        "{stream} sends a command to {}, a type not registered with ProcessManager::sends",
                        sent.aggregate_type
                    )));
                };
                let metadata = Metadata { correlation_id, ..Metadata::default() };
                match dispatch.send(&self.factum, sent, id, metadata, true).await {
                    Sent::Done => {}
                    Sent::Failed(reason) => return Err(HandlerError::msg(reason)),
                    Sent::Refused(reason) => refusals.push(refusal(reason)),
                }
            }
            for refusal in refusals {
                let id = refusal.command_id;
                self.step(correlation.clone(), Input::Refused(refusal), id, depth + 1, firing).await?;
            }

            // The timers the step touched, as the instance now holds them (a repeat, or a
            // refusal's step, may have changed them since), written with the instance's
            // version: idempotent, and a write from an older version (another process's
            // step racing this one) never replaces a newer one.
            let touched: Vec<&str> = step
                .decision
                .timers_set
                .iter()
                .map(|t| t.name.as_str())
                .chain(step.decision.timers_cancelled.iter().map(String::as_str))
                .collect();
            if step.decision.ended {
                self.store.cancel_timers(&stream, None, firing, executed.version).await?;
            } else if !touched.is_empty() {
                let (instance, version) = self
                    .factum
                    .load::<ProcessInstance<P>>(&correlation)
                    .await
                    .map_err(|e| HandlerError::msg(format!("{stream}: reading its timers: {e}")))?;
                for name in touched {
                    match instance.timers.get(name) {
                        Some(t) => {
                            let timer = Timer {
                                stream: stream.clone(),
                                name: t.name.clone(),
                                id: t.id,
                                deadline: t.deadline,
                                version,
                            };
                            self.store.set_timer(&timer).await?;
                        }
                        None => {
                            self.store.cancel_timers(&stream, Some(name), firing, version).await?;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// The id of the step an input with the id `trigger` records.
    fn step_id(&self, trigger: Uuid) -> Uuid {
        Uuid::new_v5(&self.namespace, trigger.as_bytes())
    }

    /// Whether the instance's stream holds the step recorded under `step_id` (asked only
    /// for a step found already recorded, about each of its commands).
    async fn recorded(&self, stream: &StreamId, step_id: Uuid) -> Result<bool, HandlerError> {
        let events = self.store.read_stream(stream, VersionRange::ALL).await?;
        Ok(events.iter().any(|e| e.metadata.causation_id == Some(step_id)))
    }

    pub(crate) fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }
}
