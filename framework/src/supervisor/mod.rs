//! The supervisor: the one actor an application starts for the read and operations
//! side. It owns the projection actors, the replay actor and the retention actor,
//! restarts a child that fails (with backoff), and shuts them all down gracefully.

mod actor;
pub(crate) mod builds;
mod config;
mod error;
mod health;
mod projections;
mod replay;
mod retention;
mod slices;
mod wait;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, RpcReplyPort};

use crate::metrics::Metrics;
use crate::projection::actor::ProjectionShared;
use crate::projection::slices::{default_label, Allotment};
use crate::projection::{slice_sinks, EventHandler, ProjectionStatus};
use crate::store::{EventFilter, EventStore};

pub use config::SupervisorConfig;
pub use error::SupervisorError;
pub use health::{Health, HealthConfig, HealthStatus};
pub use replay::{ReplayError, ReplayOptions, ReplayProgress, ReplayReport};
pub use retention::{RetentionConfig, RetentionMode, RetentionReport};
pub use wait::{WaitError, WaitTarget};

use actor::{Inner, SupervisorActor, SupervisorMsg};
use replay::ReplayMsg;
use retention::{RetentionMsg, RetentionShared};

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
            .field("projections", &self.inner.groups.keys().collect::<Vec<_>>())
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
        let mut groups = BTreeMap::new();
        let mut sliced = Vec::new();
        // Several versions of one projection may run side by side (the old one serving
        // while the new one builds): the newest is known by the projection's name, the
        // others as `name@vN`, and they share what went live here.
        let newest: BTreeMap<String, u32> = config.projections.iter().fold(BTreeMap::new(), |mut m, p| {
            let v = m.entry(p.name.clone()).or_insert(p.version);
            *v = (*v).max(p.version);
            m
        });
        let live_here: BTreeMap<String, Arc<AtomicU32>> =
            newest.keys().map(|name| (name.clone(), Arc::new(AtomicU32::new(0)))).collect();
        for p in config.projections {
            let selector = p
                .selector(store.as_ref())
                .map_err(|source| SupervisorError::InvalidProjection { name: p.name.clone(), source })?;
            let key = if newest[&p.name] == p.version {
                p.name.clone()
            } else {
                format!("{}@v{}", p.name, p.version)
            };
            if groups.contains_key(&key) {
                return Err(SupervisorError::DuplicateProjection(p.name));
            }
            let invalid = |source| SupervisorError::InvalidProjection { name: p.name.clone(), source };
            slices::check_layout(store.as_ref(), &p.name, p.version, p.slices).await.map_err(invalid)?;
            let sinks = slice_sinks(&store, p.sink, p.slices).map_err(invalid)?;
            if p.version > 1 && !sinks[0].1.keeps_builds_apart() {
                // A new version would replay the log into the read model the live one fills.
                let source = crate::store::InvalidInput::OutOfRange {
                    field: "projection version",
                    reason: "a version above 1 needs a sink that keeps builds apart (ExactlyOnce::schema_per_build)",
                };
                return Err(SupervisorError::InvalidProjection { name: p.name, source });
            }
            let allot = (p.slices > 1).then(|| {
                let concurrency = p.slice_concurrency.unwrap_or(usize::from(p.slices));
                Arc::new(Allotment::new(p.slices, concurrency, default_label()))
            });
            if let Some(allot) = &allot {
                sliced.push(slices::Sliced::start(allot.clone(), store.clone()));
            }
            let page_size =
                (p.batch_size * usize::from(p.slices)).min(store.limits().max_query_limit).max(p.batch_size);
            let mut keys = Vec::new();
            for (slice, sink) in sinks {
                let mut status = ProjectionStatus::new(&p.name, p.version);
                status.slice = allot.is_some().then_some(slice);
                let shared = ProjectionShared {
                    name: p.name.clone(),
                    version: p.version,
                    switch_automatically: p.switch_automatically,
                    retire_after: p.retire_after,
                    live_here: live_here[&p.name].clone(),
                    selector: selector.clone().in_slice(slice),
                    page_size,
                    slice,
                    allot: allot.clone(),
                    failure: p.failure,
                    poll_interval: p.poll_interval,
                    lease_retry: config.lease_retry,
                    store: store.clone(),
                    sink: tokio::sync::Mutex::new(sink),
                    status: std::sync::Mutex::new(status),
                    changed: tokio::sync::Notify::new(),
                    metrics: metrics.clone(),
                };
                let child =
                    if allot.is_some() { slices::slice_key(&key, slice.index()) } else { key.clone() };
                projections.insert(child.clone(), Arc::new(shared));
                keys.push(child);
            }
            groups.insert(key, keys);
        }
        let retention = Arc::new(RetentionShared::new(
            store.clone(),
            metrics.clone(),
            config.retention,
            newest.into_keys().collect(),
        ));
        let inner = Arc::new(Inner {
            store,
            metrics,
            projections,
            groups,
            sliced,
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
        // The slices' leases are given up: the other instances take them over at once.
        for sliced in &self.inner.sliced {
            sliced.leave(self.inner.store.as_ref()).await;
        }
        self.actor.get_cell().wait(Some(self.inner.shutdown_timeout)).await.ok();
        Ok(())
    }
}
