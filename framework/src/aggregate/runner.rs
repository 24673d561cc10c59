//! [`Factum`]: the one entry point an application builds at start-up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::RpcReplyPort;
use uuid::Uuid;

use crate::aggregate::actor::AggregateMsg;
use crate::aggregate::registry::Registry;
use crate::aggregate::{Aggregate, AggregateCommand, CommandError, Executed, SnapshotPolicy};
use crate::metrics::Metrics;
use crate::store::{EventStore, Metadata, StreamId, Version};

/// How the command side behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FactumConfig {
    /// Passivate an aggregate's actor after this long without a command (default 5 min).
    pub idle_timeout: Duration,
    /// At most this many live actors; the least recently used are passivated first
    /// (default 10,000).
    pub max_live_actors: usize,
    /// Re-run a command at most this many times after concurrency conflicts (default 5).
    pub max_conflict_retries: u32,
    /// The first retry's delay; it doubles per retry, with jitter (default 5 ms).
    pub retry_base_delay: Duration,
    /// The longest retry delay (default 250 ms).
    pub retry_max_delay: Duration,
    /// How long a caller waits for an actor's reply (default 30 s).
    pub command_timeout: Duration,
    /// Snapshot policies set at run time, by aggregate type; the others use their
    /// declared `snapshot_every`.
    snapshot_policies: BTreeMap<&'static str, SnapshotPolicy>,
}

impl Default for FactumConfig {
    fn default() -> Self {
        FactumConfig {
            idle_timeout: Duration::from_secs(300),
            max_live_actors: 10_000,
            max_conflict_retries: 5,
            retry_base_delay: Duration::from_millis(5),
            retry_max_delay: Duration::from_millis(250),
            command_timeout: Duration::from_secs(30),
            snapshot_policies: BTreeMap::new(),
        }
    }
}

impl FactumConfig {
    /// Sets the idle timeout.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the live-actor cap.
    #[must_use]
    pub fn max_live_actors(mut self, cap: usize) -> Self {
        self.max_live_actors = cap;
        self
    }

    /// Sets how many times a conflicting command is re-run.
    #[must_use]
    pub fn max_conflict_retries(mut self, retries: u32) -> Self {
        self.max_conflict_retries = retries;
        self
    }

    /// Sets the retry delays.
    #[must_use]
    pub fn retry_delays(mut self, base: Duration, max: Duration) -> Self {
        self.retry_base_delay = base;
        self.retry_max_delay = max;
        self
    }

    /// Sets when aggregates of type `A` are snapshotted, instead of their declared
    /// `#[aggregate(snapshot_every = N)]`. Setting it again for the same type replaces
    /// it.
    ///
    /// ```
    /// use factum::FactumConfig;
    /// use factum::aggregate::SnapshotPolicy;
    /// # #[derive(Default, Clone, serde::Serialize, serde::Deserialize, factum::Aggregate)]
    /// # #[aggregate(name = "Account", command = AccountCommand, event = AccountEvent, error = AccountError, snapshot_every = 100)]
    /// # struct Account { balance: i64 }
    /// # #[derive(factum::Command)]
    /// # #[command(id = id)]
    /// # enum AccountCommand { Deposit { id: String, amount: i64 } }
    /// # #[derive(serde::Serialize, serde::Deserialize, factum::DomainEvent)]
    /// # enum AccountEvent { Deposited { amount: i64 } }
    /// # #[derive(Debug, thiserror::Error)]
    /// # #[error("never")]
    /// # struct AccountError;
    /// # impl Account {
    /// #     fn handle(&self, c: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
    /// #         let AccountCommand::Deposit { amount, .. } = c;
    /// #         Ok(vec![AccountEvent::Deposited { amount: *amount }])
    /// #     }
    /// #     fn apply(&mut self, e: &AccountEvent) {
    /// #         let AccountEvent::Deposited { amount } = e;
    /// #         self.balance += amount;
    /// #     }
    /// # }
    /// # fn main() -> Result<(), factum::aggregate::SnapshotPolicyError> {
    /// // Declared `snapshot_every = 100`; this deployment wants every 20 events.
    /// let config = FactumConfig::default().snapshot_policy::<Account>(SnapshotPolicy::every(20)?);
    /// assert_eq!(config.snapshot_policy_of::<Account>(), SnapshotPolicy::every(20)?);
    /// assert_eq!(FactumConfig::default().snapshot_policy_of::<Account>(), SnapshotPolicy::every(100)?);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn snapshot_policy<A: Aggregate>(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshot_policies.insert(A::TYPE, policy);
        self
    }

    /// The snapshot policy of aggregates of type `A`: the one set with
    /// [`snapshot_policy`](Self::snapshot_policy), or else the declared one
    /// ([`SnapshotPolicy::declared`]).
    pub fn snapshot_policy_of<A: Aggregate>(&self) -> SnapshotPolicy {
        self.snapshot_policies.get(A::TYPE).cloned().unwrap_or_else(SnapshotPolicy::declared::<A>)
    }
}

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
        let stream = StreamId::new(<C::Aggregate as Aggregate>::TYPE, command.aggregate_id())
            .map_err(CommandError::InvalidCommand)?;
        metadata.correlation_id.get_or_insert_with(Uuid::now_v7);
        metadata.causation_id.get_or_insert_with(Uuid::now_v7);
        let command = Arc::new(command);
        self.deliver(&stream, |reply| AggregateMsg::Execute {
            command: command.clone(),
            metadata: metadata.clone(),
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
