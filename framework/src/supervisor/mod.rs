//! The supervisor: the one actor an application starts for the read and operations
//! side. It owns the projection actors, the replay actor and the retention actor,
//! restarts a child that fails (with backoff), and shuts them all down gracefully.

mod config;
mod error;
mod health;
mod replay;
mod retention;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::projection::actor::{ProjectionActor, ProjectionMsg, ProjectionShared};
use crate::projection::{handler_sink, EventHandler, ProjectionStatus, RetryReport};
use crate::store::{Checkpoint, EventFilter, EventStore, ProjectionFailure};

pub use config::SupervisorConfig;
pub use error::SupervisorError;
pub use health::{Health, HealthConfig, HealthStatus};
pub use replay::{ReplayError, ReplayOptions, ReplayProgress, ReplayReport};
pub use retention::{RetentionConfig, RetentionMode, RetentionReport};

use replay::{ReplayActor, ReplayMsg};
use retention::{RetentionActor, RetentionMsg, RetentionShared};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ChildKey {
    Projection(String),
    Replay,
    Retention,
}

impl ChildKey {
    fn label(&self) -> String {
        match self {
            ChildKey::Projection(name) => format!("projection:{name}"),
            ChildKey::Replay => "replay".to_owned(),
            ChildKey::Retention => "retention".to_owned(),
        }
    }
}

struct Inner {
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    projections: BTreeMap<String, Arc<ProjectionShared>>,
    retention: Arc<RetentionShared>,
    restart_initial: Duration,
    restart_max: Duration,
    shutdown_timeout: Duration,
    storage_interval: Duration,
    health: HealthConfig,
}

enum SupervisorMsg {
    Restart(ChildKey),
    Projection(String, RpcReplyPort<Option<ActorRef<ProjectionMsg>>>),
    Replay(RpcReplyPort<Option<ActorRef<ReplayMsg>>>),
    Retention(RpcReplyPort<Option<ActorRef<RetentionMsg>>>),
    Shutdown(RpcReplyPort<()>),
}

struct SupervisorActor;

struct SupervisorState {
    inner: Arc<Inner>,
    children: HashMap<ActorId, ChildKey>,
    projections: HashMap<String, ActorRef<ProjectionMsg>>,
    replay: Option<ActorRef<ReplayMsg>>,
    retention: Option<ActorRef<RetentionMsg>>,
    /// Per child: consecutive failures, and when it was last started.
    health: HashMap<ChildKey, (u32, Instant)>,
    shutting_down: bool,
    storage: JoinHandle<()>,
}

impl Drop for SupervisorState {
    fn drop(&mut self) {
        self.storage.abort();
    }
}

/// A child that ran this long before failing starts over with the shortest delay.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

impl SupervisorState {
    async fn spawn(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        key: ChildKey,
    ) -> Result<(), SupervisorError> {
        let cell = myself.get_cell();
        let spawned = match &key {
            ChildKey::Projection(name) => {
                let Some(shared) = self.inner.projections.get(name) else { return Ok(()) };
                Actor::spawn_linked(None, ProjectionActor, shared.clone(), cell).await.map(|(a, _)| {
                    let id = a.get_id();
                    self.projections.insert(name.clone(), a);
                    id
                })
            }
            ChildKey::Replay => {
                let args = (self.inner.store.clone(), self.inner.metrics.clone());
                Actor::spawn_linked(None, ReplayActor, args, cell).await.map(|(a, _)| {
                    let id = a.get_id();
                    self.replay = Some(a);
                    id
                })
            }
            ChildKey::Retention => {
                Actor::spawn_linked(None, RetentionActor, self.inner.retention.clone(), cell).await.map(
                    |(a, _)| {
                        let id = a.get_id();
                        self.retention = Some(a);
                        id
                    },
                )
            }
        };
        let id = spawned.map_err(|e| SupervisorError::Spawn { what: key.label(), reason: e.to_string() })?;
        let failures = self.health.get(&key).map_or(0, |h| h.0);
        self.health.insert(key.clone(), (failures, Instant::now()));
        self.children.insert(id, key);
        Ok(())
    }

    /// A child ended while the supervisor runs: forget it and restart it after a backoff.
    fn child_down(&mut self, myself: &ActorRef<SupervisorMsg>, id: ActorId, why: &str) {
        let Some(key) = self.children.remove(&id) else { return };
        match &key {
            ChildKey::Projection(name) => {
                self.projections.remove(name);
            }
            ChildKey::Replay => self.replay = None,
            ChildKey::Retention => self.retention = None,
        }
        if self.shutting_down {
            return;
        }
        let (failures, started) = self.health.get(&key).copied().unwrap_or((0, Instant::now()));
        let failures = if started.elapsed() >= HEALTHY_AFTER { 1 } else { failures + 1 };
        self.health.insert(key.clone(), (failures, started));
        let delay = crate::backoff::Backoff::after_failures(
            self.inner.restart_initial,
            self.inner.restart_max,
            failures,
        );
        tracing::warn!(child = %key.label(), failures, ?delay, why, "supervised child went down; restarting");
        self.inner.metrics.restarted(&key.label());
        myself.send_after(delay, move || SupervisorMsg::Restart(key));
    }
}

#[ractor::async_trait]
impl Actor for SupervisorActor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Inner>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        inner: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let storage = {
            let (store, metrics, every) =
                (inner.store.clone(), inner.metrics.clone(), inner.storage_interval);
            tokio::spawn(async move {
                loop {
                    match store.storage_bytes().await {
                        Ok(Some(bytes)) => metrics.store_size(bytes),
                        Ok(None) => return,
                        Err(e) => tracing::debug!(error = %e, "cannot measure the events table"),
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        let mut state = SupervisorState {
            inner: inner.clone(),
            children: HashMap::new(),
            projections: HashMap::new(),
            replay: None,
            retention: None,
            health: HashMap::new(),
            shutting_down: false,
            storage,
        };
        let mut keys = vec![ChildKey::Replay, ChildKey::Retention];
        keys.extend(inner.projections.keys().cloned().map(ChildKey::Projection));
        for key in keys {
            state.spawn(&myself, key).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restart(key) => {
                if state.shutting_down {
                    return Ok(());
                }
                if let Err(e) = state.spawn(&myself, key.clone()).await {
                    tracing::error!(child = %key.label(), error = %e, "restart failed; trying again");
                    let delay = state.inner.restart_max;
                    myself.send_after(delay, move || SupervisorMsg::Restart(key));
                }
            }
            SupervisorMsg::Projection(name, reply) => {
                reply.send(state.projections.get(&name).cloned()).ok();
            }
            SupervisorMsg::Replay(reply) => {
                reply.send(state.replay.clone()).ok();
            }
            SupervisorMsg::Retention(reply) => {
                reply.send(state.retention.clone()).ok();
            }
            SupervisorMsg::Shutdown(reply) => {
                state.shutting_down = true;
                let timeout = Some(state.inner.shutdown_timeout);
                // Projections first: each finishes its batch in flight and commits it.
                let stops =
                    state.projections.values().map(|a| a.stop_and_wait(Some("shutdown".into()), timeout));
                for (result, name) in
                    futures_util::future::join_all(stops).await.into_iter().zip(state.projections.keys())
                {
                    if let Err(e) = result {
                        tracing::warn!(projection = %name, error = %e, "projection did not stop in time");
                    }
                }
                for cell in [
                    state.replay.as_ref().map(|a| a.get_cell()),
                    state.retention.as_ref().map(|a| a.get_cell()),
                ]
                .into_iter()
                .flatten()
                {
                    cell.stop_and_wait(Some("shutdown".into()), timeout).await.ok();
                }
                reply.send(()).ok();
                myself.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                state.child_down(&myself, cell.get_id(), &error.to_string());
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                state.child_down(&myself, cell.get_id(), reason.as_deref().unwrap_or("stopped"));
            }
            _ => {}
        }
        Ok(())
    }
}

/// The read and operations side of an application: projections, replay and retention
/// under one supervising actor. Start it once; cheap to clone.
///
/// ```
/// use std::sync::Arc;
/// use factum::{EventHandler, HandlerError, InMemoryStore, Projection, RecordedEvent, Supervisor, SupervisorConfig};
///
/// struct Log;
///
/// #[async_trait::async_trait]
/// impl EventHandler for Log {
///     async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
///         println!("{} {}", event.position, event.event_type);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Arc::new(InMemoryStore::new());
/// let supervisor =
///     Supervisor::start(store, SupervisorConfig::default().projection(Projection::with_handler("log", Log))).await?;
/// assert_eq!(supervisor.status("log")?.name, "log");
/// supervisor.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Supervisor {
    actor: ActorRef<SupervisorMsg>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("projections", &self.inner.projections.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

async fn ask<M, T>(
    actor: &ActorRef<M>,
    what: &str,
    message: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, SupervisorError>
where
    M: ractor::Message,
    T: Send + 'static,
{
    match actor.call(message, None).await {
        Ok(CallResult::Success(t)) => Ok(t),
        Ok(CallResult::Timeout) | Ok(CallResult::SenderError) | Err(_) => {
            Err(SupervisorError::Unavailable(what.to_owned()))
        }
    }
}

impl Supervisor {
    /// Starts the supervisor over `store` with its projections, replay and retention
    /// actors. Refuses a bad projection definition before anything starts.
    pub async fn start(
        store: Arc<dyn EventStore>,
        config: SupervisorConfig,
    ) -> Result<Self, SupervisorError> {
        let metrics = config.metrics.unwrap_or_default();
        let store = metrics.instrument(store);
        let mut projections = BTreeMap::new();
        for p in config.projections {
            let selector = p
                .selector(store.as_ref())
                .map_err(|source| SupervisorError::InvalidProjection { name: p.name.clone(), source })?;
            if projections.contains_key(&p.name) {
                return Err(SupervisorError::DuplicateProjection(p.name));
            }
            let shared = ProjectionShared {
                name: p.name.clone(),
                selector,
                batch_size: p.batch_size,
                failure: p.failure,
                poll_interval: p.poll_interval,
                lease_retry: config.lease_retry,
                store: store.clone(),
                sink: tokio::sync::Mutex::new(handler_sink(store.clone(), p.sink)),
                status: std::sync::Mutex::new(ProjectionStatus::new(&p.name)),
                metrics: metrics.clone(),
            };
            projections.insert(p.name, Arc::new(shared));
        }
        let retention = Arc::new(RetentionShared::new(
            store.clone(),
            metrics.clone(),
            config.retention,
            projections.keys().cloned().collect(),
        ));
        let inner = Arc::new(Inner {
            store,
            metrics,
            projections,
            retention,
            restart_initial: config.restart_initial,
            restart_max: config.restart_max,
            shutdown_timeout: config.shutdown_timeout,
            storage_interval: config.storage_interval,
            health: config.health,
        });
        let (actor, _) = Actor::spawn(None, SupervisorActor, inner.clone())
            .await
            .map_err(|e| SupervisorError::Spawn { what: "supervisor".into(), reason: e.to_string() })?;
        Ok(Supervisor { actor, inner })
    }

    /// The metrics the supervisor records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    fn shared(&self, name: &str) -> Result<&Arc<ProjectionShared>, SupervisorError> {
        self.inner.projections.get(name).ok_or_else(|| SupervisorError::UnknownProjection(name.to_owned()))
    }

    /// A projection's status: state, checkpoint, lag, last error.
    pub fn status(&self, projection: &str) -> Result<ProjectionStatus, SupervisorError> {
        Ok(self.shared(projection)?.status())
    }

    /// A projection's lag measured now: the events of the log after the checkpoint this
    /// instance last committed (for an instance standing by, after the start).
    pub async fn lag(&self, projection: &str) -> Result<u64, SupervisorError> {
        let shared = self.shared(projection)?;
        let checkpoint = shared.status().checkpoint;
        Ok(self.inner.store.count_after(checkpoint, &shared.selector.aggregate_types).await?)
    }

    /// The service's health: [`HealthStatus::Unavailable`] when the store does not answer
    /// within the probe's timeout, [`HealthStatus::Degraded`] while a projection is not
    /// live (or standing by for another instance) or lags beyond the bound, with one
    /// reason per cause. Answers within the probe's timeout whatever the store does.
    pub async fn health(&self) -> Health {
        health::check(self.inner.store.as_ref(), &self.statuses(), self.inner.health).await
    }

    /// Every projection's status, by name.
    pub fn statuses(&self) -> Vec<ProjectionStatus> {
        self.inner.projections.values().map(|p| p.status()).collect()
    }

    async fn projection(&self, name: &str) -> Result<ActorRef<ProjectionMsg>, SupervisorError> {
        self.shared(name)?;
        let child = ask(&self.actor, "the supervisor", |r| SupervisorMsg::Projection(name.to_owned(), r))
            .await
            .map_err(|_| SupervisorError::Stopped)?;
        child.ok_or_else(|| SupervisorError::Unavailable(format!("projection {name:?}")))
    }

    /// Pauses a projection after its batch in flight.
    pub async fn pause(&self, projection: &str) -> Result<(), SupervisorError> {
        let actor = self.projection(projection).await?;
        ask(&actor, projection, ProjectionMsg::Pause).await
    }

    /// Resumes a paused projection, or one its failure policy stopped.
    pub async fn resume(&self, projection: &str) -> Result<(), SupervisorError> {
        let actor = self.projection(projection).await?;
        ask(&actor, projection, ProjectionMsg::Resume).await
    }

    /// Moves a projection's checkpoint: it goes on after `to` (the read model is left as
    /// it is; [`Checkpoint::START`] re-applies everything).
    pub async fn reset(&self, projection: &str, to: Checkpoint) -> Result<(), SupervisorError> {
        let actor = self.projection(projection).await?;
        ask(&actor, projection, |r| ProjectionMsg::Reset(to, r)).await?
    }

    /// Rebuilds a projection while live traffic goes on: clears its read model (the
    /// sink's clear hook) and resets its checkpoint in one step, replays the log into it
    /// through the replay actor, then lets it follow live again.
    pub async fn rebuild(&self, projection: &str) -> Result<ReplayReport, SupervisorError> {
        let actor = self.projection(projection).await?;
        ask(&actor, projection, ProjectionMsg::BeginRebuild).await??;
        let shared = self.shared(projection)?.clone();
        let report = match self.replay_actor().await {
            Ok(replay) => ask(&replay, "the replay actor", |r| ReplayMsg::Projection { shared, reply: r })
                .await
                .and_then(|r| r),
            Err(e) => Err(e),
        };
        // Whatever happened, the projection goes on from the checkpoint the replay left.
        let actor = self.projection(projection).await?;
        ask(&actor, projection, ProjectionMsg::EndRebuild).await?;
        report
    }

    /// A projection's recorded failures (events skipped by its failure policy).
    pub async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, SupervisorError> {
        self.shared(projection)?;
        Ok(self.inner.store.failures(projection).await?)
    }

    /// Applies a projection's recorded failures again (once its handler is fixed);
    /// those that succeed are removed from the record.
    pub async fn retry_failures(&self, projection: &str) -> Result<RetryReport, SupervisorError> {
        let actor = self.projection(projection).await?;
        ask(&actor, projection, ProjectionMsg::RetryFailures).await?
    }

    async fn replay_actor(&self) -> Result<ActorRef<ReplayMsg>, SupervisorError> {
        ask(&self.actor, "the supervisor", SupervisorMsg::Replay)
            .await
            .map_err(|_| SupervisorError::Stopped)?
            .ok_or_else(|| SupervisorError::Unavailable("the replay actor".into()))
    }

    async fn retention_actor(&self) -> Result<ActorRef<RetentionMsg>, SupervisorError> {
        ask(&self.actor, "the supervisor", SupervisorMsg::Retention)
            .await
            .map_err(|_| SupervisorError::Stopped)?
            .ok_or_else(|| SupervisorError::Unavailable("the retention actor".into()))
    }

    /// Replays the events matching `filter` to `handler` oldest first (in global
    /// position order, whatever the filter's order; its limit and offset apply), in batches
    /// (the replay service). Stops at the first error unless
    /// `continue_on_error`; the report says how many were replayed and failed.
    pub async fn replay(
        &self,
        filter: EventFilter,
        handler: impl EventHandler,
        options: ReplayOptions,
    ) -> Result<ReplayReport, SupervisorError> {
        let replay = self.replay_actor().await?;
        let handler: Box<dyn EventHandler> = Box::new(handler);
        ask(&replay, "the replay actor", |reply| ReplayMsg::Replay {
            filter: Box::new(filter),
            handler,
            options,
            reply,
        })
        .await?
    }

    /// Runs a retention clean-up now (whether or not the periodic one is started).
    pub async fn cleanup_now(&self) -> Result<RetentionReport, SupervisorError> {
        let retention = self.retention_actor().await?;
        ask(&retention, "the retention actor", RetentionMsg::CleanupNow).await?
    }

    /// Starts the periodic retention clean-up.
    pub async fn start_retention(&self) -> Result<(), SupervisorError> {
        let retention = self.retention_actor().await?;
        ask(&retention, "the retention actor", RetentionMsg::Start).await
    }

    /// Stops the periodic retention clean-up.
    pub async fn stop_retention(&self) -> Result<(), SupervisorError> {
        let retention = self.retention_actor().await?;
        ask(&retention, "the retention actor", RetentionMsg::Stop).await
    }

    /// Shuts everything down gracefully: each projection finishes its batch in flight
    /// and commits its checkpoint, then the children and the supervisor stop.
    pub async fn shutdown(&self) -> Result<(), SupervisorError> {
        ask(&self.actor, "the supervisor", SupervisorMsg::Shutdown)
            .await
            .map_err(|_| SupervisorError::Stopped)?;
        self.actor.get_cell().wait(Some(self.inner.shutdown_timeout)).await.ok();
        Ok(())
    }
}
