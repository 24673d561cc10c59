//! [`Factum`]: the command side's runner, the one entry point an application builds at
//! start-up.

use std::sync::Arc;

use ractor::rpc::CallResult;
use ractor::RpcReplyPort;
use uuid::Uuid;

use super::actor::{AggregateMsg, Once};
use super::registry::Registry;
use super::{Aggregate, AggregateCommand, CommandError, Executed, FactumConfig};
use crate::metrics::Metrics;
use crate::store::{EventStore, Metadata, StreamId, Version};

/// What every actor shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) config: FactumConfig,
    pub(crate) metrics: Arc<Metrics>,
}

/// The command side of an application: routes each command to its aggregate's actor
/// (spawned on first use, passivated when idle), and reads aggregate state.
///
/// Build it once at start-up and keep it; it is cheap to clone and safe to share across
/// tasks. It needs a Tokio runtime.
#[derive(Clone)]
pub struct Factum {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Factum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factum").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

/// How often a command is re-sent to a fresh actor when the one it reached was stopping
/// (passivated, evicted, or stopped after a panic) before it ran the command.
const DELIVERY_ATTEMPTS: usize = 8;

impl Factum {
    /// A facade over `store` with default settings and metrics of its own.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self::with_config(store, FactumConfig::default(), Arc::new(Metrics::new()))
    }

    /// A facade with the given settings and metrics.
    pub fn with_config(store: Arc<dyn EventStore>, config: FactumConfig, metrics: Arc<Metrics>) -> Self {
        let registry = Arc::new(Registry::new(config.max_live_actors, config.idle_timeout));
        let store = metrics.instrument(store);
        Factum { shared: Arc::new(Shared { store, config, metrics }), registry }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.shared.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Live aggregate actors; never more than [`FactumConfig::max_live_actors`].
    pub fn live_aggregates(&self) -> usize {
        self.registry.live()
    }

    /// Runs a command on its aggregate, with a fresh correlation id.
    pub async fn execute<C: AggregateCommand>(
        &self,
        command: C,
    ) -> Result<Executed<C::Aggregate>, CommandError<<C::Aggregate as Aggregate>::Error>> {
        self.execute_with(command, Metadata::default()).await
    }

    /// Runs a command with metadata that is copied into every event it records. A missing
    /// correlation id is generated; a missing causation id becomes the command's own id.
    pub async fn execute_with<C: AggregateCommand>(
        &self,
        command: C,
        mut metadata: Metadata,
    ) -> Result<Executed<C::Aggregate>, CommandError<<C::Aggregate as Aggregate>::Error>> {
        metadata.correlation_id.get_or_insert_with(Uuid::now_v7);
        metadata.causation_id.get_or_insert_with(Uuid::now_v7);
        self.run(command, metadata, None).await
    }

    /// Runs a command at most once under `command_id`, however often it is sent: an
    /// idempotency key. Sending it again (after a timeout, a crash, a lost reply)
    /// returns what the first run recorded, with [`Executed::repeated`] set, and records
    /// nothing; two runs racing each other land once.
    ///
    /// The command id is the causation id of the events it records, and their ids
    /// derive from it, so the store's unique event ids refuse a second landing: a repeat
    /// that decides events finds them taken, and reports the first run's. A repeat whose
    /// decision would record nothing (no events, or a domain error) first reads the
    /// stream for events caused by the id. A run that recorded nothing left nothing to
    /// find: sending it again decides again, on the current state.
    ///
    /// ```
    /// # use factum::{Aggregate, Command, DomainEvent, Factum, InMemoryStore};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
    /// # #[aggregate(command = Cmd, event = Ev, error = std::convert::Infallible)]
    /// # struct Counter { n: u32 }
    /// # #[derive(Debug, Command)]
    /// # enum Cmd { Add { #[command(id)] id: String } }
    /// # #[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
    /// # enum Ev { Added }
    /// # impl Counter {
    /// #     fn handle(&self, _: &Cmd) -> Result<Vec<Ev>, std::convert::Infallible> { Ok(vec![Ev::Added]) }
    /// #     fn apply(&mut self, _: &Ev) { self.n += 1 }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let factum = Factum::new(std::sync::Arc::new(InMemoryStore::new()));
    /// let key = uuid::Uuid::now_v7(); // e.g. from the client's Idempotency-Key header
    /// let first = factum.execute_once(Cmd::Add { id: "c-1".into() }, key, Default::default()).await?;
    /// let again = factum.execute_once(Cmd::Add { id: "c-1".into() }, key, Default::default()).await?;
    /// assert!(!first.repeated && again.repeated);
    /// assert_eq!(again.version, first.version);
    /// assert_eq!(factum.load::<Counter>("c-1").await?.0.n, 1);
    /// # Ok(()) }
    /// ```
    pub async fn execute_once<C: AggregateCommand>(
        &self,
        command: C,
        command_id: Uuid,
        metadata: Metadata,
    ) -> Result<Executed<C::Aggregate>, CommandError<<C::Aggregate as Aggregate>::Error>> {
        self.run_once(command, command_id, metadata, true).await
    }

    /// [`execute_once`](Self::execute_once), without asking the store first when the
    /// caller knows the command cannot have run yet (`check_first` false).
    pub(crate) async fn run_once<C: AggregateCommand>(
        &self,
        command: C,
        command_id: Uuid,
        mut metadata: Metadata,
        check_first: bool,
    ) -> Result<Executed<C::Aggregate>, CommandError<<C::Aggregate as Aggregate>::Error>> {
        metadata.correlation_id.get_or_insert_with(Uuid::now_v7);
        metadata.causation_id = Some(command_id);
        self.run(command, metadata, Some(Once { id: command_id, check_first })).await
    }

    async fn run<C: AggregateCommand>(
        &self,
        command: C,
        metadata: Metadata,
        once: Option<Once>,
    ) -> Result<Executed<C::Aggregate>, CommandError<<C::Aggregate as Aggregate>::Error>> {
        let stream = StreamId::new(<C::Aggregate as Aggregate>::TYPE, command.aggregate_id())
            .map_err(CommandError::InvalidCommand)?;
        let command = Arc::new(command);
        let metadata = Arc::new(metadata);
        let caller = tracing::Span::current();
        self.deliver(&stream, |reply| AggregateMsg::Execute {
            command: command.clone(),
            metadata: metadata.clone(),
            once,
            caller: caller.clone(),
            reply,
        })
        .await
    }

    /// The aggregate's current state and version, through its live actor (loading it
    /// if needed, and catching up with events other processes appended). An aggregate
    /// with no events is at its default state, version 0.
    pub async fn load<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<(A, Version), CommandError<A::Error>> {
        let stream = StreamId::new(A::TYPE, aggregate_id).map_err(CommandError::InvalidCommand)?;
        self.deliver(&stream, |reply| AggregateMsg::State { reply }).await
    }

    /// Sends a message to the stream's live actor and waits for its reply. A message the
    /// actor never ran (it was stopping) is re-sent to a fresh actor; after a panic the
    /// actor is forgotten, so the next message starts a fresh one from the store.
    async fn deliver<A: Aggregate, R>(
        &self,
        stream: &StreamId,
        message: impl Fn(RpcReplyPort<Result<R, CommandError<A::Error>>>) -> AggregateMsg<A>,
    ) -> Result<R, CommandError<A::Error>>
    where
        R: Send + 'static,
    {
        let timeout = self.shared.config.command_timeout;
        for _ in 0..DELIVERY_ATTEMPTS {
            let (slot, actor) = self.registry.actor::<A>(&self.shared, stream).await?;
            match actor.call(&message, Some(timeout)).await {
                Ok(CallResult::Success(result)) => {
                    if matches!(result, Err(CommandError::Panicked { .. })) {
                        self.registry.remove(stream.aggregate_id(), &slot);
                    }
                    return result;
                }
                Ok(CallResult::Timeout) => {
                    return Err(CommandError::Unavailable(format!(
                        "no reply from {stream} within {timeout:?}"
                    )));
                }
                // The actor stopped before running the message: nothing ran; try again.
                Ok(CallResult::SenderError) | Err(_) => self.registry.remove(stream.aggregate_id(), &slot),
            }
        }
        Err(CommandError::Unavailable(format!("the actor for {stream} kept stopping")))
    }

    /// Passivates every live actor (each finishes the commands already queued).
    pub fn shutdown(&self) {
        self.registry.shutdown();
    }
}
