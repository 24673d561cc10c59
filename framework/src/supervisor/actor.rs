//! The supervisor's actor: it spawns the projection, replay and retention actors as its
//! children, restarts one that fails (with backoff), and stops them all on shutdown.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::task::JoinHandle;

use super::replay::{ReplayActor, ReplayMsg};
use super::retention::{RetentionActor, RetentionMsg, RetentionShared};
use super::{HealthConfig, SupervisorError};
use crate::metrics::Metrics;
use crate::projection::actor::{ProjectionActor, ProjectionMsg, ProjectionShared};
use crate::store::EventStore;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum ChildKey {
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

pub(super) struct Inner {
    pub(super) store: Arc<dyn EventStore>,
    pub(super) metrics: Arc<Metrics>,
    /// Every child projection actor's shared state, by child key (a slice's key is its
    /// projection's with `#index`).
    pub(super) projections: BTreeMap<String, Arc<ProjectionShared>>,
    /// Each projection's child keys, by the name callers know it by: one key, or one
    /// per slice.
    pub(super) groups: BTreeMap<String, Vec<String>>,
    /// The projections in slices running here.
    pub(super) sliced: Vec<super::slices::Sliced>,
    pub(super) retention: Arc<RetentionShared>,
    pub(super) restart_initial: Duration,
    pub(super) restart_max: Duration,
    pub(super) shutdown_timeout: Duration,
    pub(super) storage_interval: Duration,
    pub(super) health: HealthConfig,
}

pub(super) enum SupervisorMsg {
    Restart(ChildKey),
    Projection(String, RpcReplyPort<Option<ActorRef<ProjectionMsg>>>),
    Replay(RpcReplyPort<Option<ActorRef<ReplayMsg>>>),
    Retention(RpcReplyPort<Option<ActorRef<RetentionMsg>>>),
    Shutdown(RpcReplyPort<()>),
}

pub(super) struct SupervisorActor;

pub(super) struct SupervisorState {
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
