//! The supervisor: the one actor an application starts for the read and operations
//! side. It owns the projection actors, the replay actor and the retention actor,
//! restarts a child that fails (with backoff), and shuts them all down gracefully.

mod actor;
pub(crate) mod builds;
mod config;
mod error;
mod health;
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
use crate::projection::actor::{ProjectionMsg, ProjectionShared};
use crate::projection::slices::{default_label, Allotment};
use crate::projection::{slice_sinks, EventHandler, ProjectionStatus, RetryReport};
use crate::store::{Checkpoint, EventFilter, EventStore, ProjectionFailure};

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

    /// The shared state of each of the projection's actors: one, or one per slice.
    fn group(&self, name: &str) -> Result<Vec<&Arc<ProjectionShared>>, SupervisorError> {
        let keys =
            self.inner.groups.get(name).ok_or_else(|| SupervisorError::UnknownProjection(name.to_owned()))?;
        Ok(keys.iter().filter_map(|k| self.inner.projections.get(k)).collect())
    }

    /// The projection's (first) actor's shared state.
    fn shared(&self, name: &str) -> Result<&Arc<ProjectionShared>, SupervisorError> {
        self.group(name)?
            .into_iter()
            .next()
            .ok_or_else(|| SupervisorError::UnknownProjection(name.to_owned()))
    }

    /// Whether the projection runs in slices.
    fn in_slices(&self, name: &str) -> Result<bool, SupervisorError> {
        Ok(self.group(name)?.len() > 1)
    }

    /// A projection's status: state, checkpoint, lag, last error; for a projection in
    /// slices, each slice's too.
    pub fn status(&self, projection: &str) -> Result<ProjectionStatus, SupervisorError> {
        let group: Vec<Arc<ProjectionShared>> = self.group(projection)?.into_iter().cloned().collect();
        Ok(slices::status(&group))
    }

    /// A projection's lag measured now: the events of the log after the checkpoint this
    /// instance last committed (for an instance standing by, after the start); for a
    /// projection in slices, its slowest slice's.
    pub async fn lag(&self, projection: &str) -> Result<u64, SupervisorError> {
        let mut lag = 0;
        for shared in self.group(projection)? {
            let checkpoint = shared.status().checkpoint;
            lag = lag.max(self.inner.store.count_after(checkpoint, &shared.selector.aggregate_types).await?);
        }
        Ok(lag)
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
        self.inner.groups.keys().filter_map(|name| self.status(name).ok()).collect()
    }

    /// The actor of the projection's child `key`.
    async fn child(&self, key: &str) -> Result<ActorRef<ProjectionMsg>, SupervisorError> {
        let child = ask(&self.actor, "the supervisor", |r| SupervisorMsg::Projection(key.to_owned(), r))
            .await
            .map_err(|_| SupervisorError::Stopped)?;
        child.ok_or_else(|| SupervisorError::Unavailable(format!("projection {key:?}")))
    }

    /// The projection's (first) actor.
    async fn projection(&self, name: &str) -> Result<ActorRef<ProjectionMsg>, SupervisorError> {
        let key = self
            .inner
            .groups
            .get(name)
            .and_then(|k| k.first())
            .ok_or_else(|| SupervisorError::UnknownProjection(name.to_owned()))?;
        self.child(key).await
    }

    /// Asks each of the projection's actors (each slice's), one after the other.
    async fn each<T: Send + 'static>(
        &self,
        projection: &str,
        message: impl Fn(RpcReplyPort<T>) -> ProjectionMsg,
    ) -> Result<Vec<T>, SupervisorError> {
        let keys = self
            .inner
            .groups
            .get(projection)
            .ok_or_else(|| SupervisorError::UnknownProjection(projection.to_owned()))?;
        let mut answers = Vec::with_capacity(keys.len());
        for key in keys {
            let actor = self.child(key).await?;
            answers.push(ask(&actor, projection, &message).await?);
        }
        Ok(answers)
    }

    /// Pauses a projection after its batch in flight.
    pub async fn pause(&self, projection: &str) -> Result<(), SupervisorError> {
        self.each(projection, ProjectionMsg::Pause).await.map(|_| ())
    }

    /// Resumes a paused projection, or one its failure policy stopped.
    pub async fn resume(&self, projection: &str) -> Result<(), SupervisorError> {
        self.each(projection, ProjectionMsg::Resume).await.map(|_| ())
    }

    /// Moves a projection's checkpoint: it goes on after `to` (the read model is left as
    /// it is; [`Checkpoint::START`] re-applies everything).
    pub async fn reset(&self, projection: &str, to: Checkpoint) -> Result<(), SupervisorError> {
        for answer in self.each(projection, |r| ProjectionMsg::Reset(to, r)).await? {
            answer?;
        }
        Ok(())
    }

    /// Rebuilds a projection while live traffic goes on.
    ///
    /// Where the projection's sink keeps each build's read model apart
    /// ([`ProjectionSink::keeps_builds_apart`](crate::projection::ProjectionSink::keeps_builds_apart),
    /// as `factum_postgres::ExactlyOnce::schema_per_build` does), the log is replayed into
    /// a fresh build beside the live one, which keeps serving; readers switch to the new
    /// build in one step once it has processed everything the live one has, and the old
    /// build stays, replaced, until [retired](Self::retire) ([`switch`](Self::switch)
    /// goes back to it). The report names the new build. Otherwise the read model is
    /// rebuilt in place ([`rebuild_in_place`](Self::rebuild_in_place)).
    pub async fn rebuild(&self, projection: &str) -> Result<ReplayReport, SupervisorError> {
        if self.in_slices(projection)? {
            return Err(SupervisorError::InSlices(projection.to_owned()));
        }
        let apart = self.shared(projection)?.sink.lock().await.keeps_builds_apart();
        if apart {
            self.rebuild_copy(projection).await
        } else {
            self.rebuild_in_place(projection).await
        }
    }

    /// Rebuilds a projection in place: clears its read model (the sink's clear hook) and
    /// resets its checkpoint in one step, replays the log into it through the replay
    /// actor, then lets it follow live again. Readers see the read model empty at first,
    /// then filling up.
    pub async fn rebuild_in_place(&self, projection: &str) -> Result<ReplayReport, SupervisorError> {
        if self.in_slices(projection)? {
            return Err(SupervisorError::InSlices(projection.to_owned()));
        }
        let actor = self.projection(projection).await?;
        ask(&actor, projection, ProjectionMsg::BeginRebuild).await??;
        let shared = self.shared(projection)?.clone();
        let consumer = shared
            .build()
            .map(|b| b.id.consumer())
            .ok_or_else(|| SupervisorError::Unavailable(format!("projection {projection:?}")))?;
        let report = match self.replay_actor().await {
            Ok(replay) => {
                ask(&replay, "the replay actor", |r| ReplayMsg::Projection { shared, consumer, reply: r })
                    .await
                    .and_then(|r| r)
            }
            Err(e) => Err(e),
        };
        // Whatever happened, the projection goes on from the checkpoint the replay left.
        let actor = self.projection(projection).await?;
        ask(&actor, projection, ProjectionMsg::EndRebuild).await?;
        report
    }

    /// A projection's recorded failures (events skipped by its failure policy).
    pub async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, SupervisorError> {
        // Recorded under the consumer name of the build this instance runs (each slice's).
        let mut failures = Vec::new();
        for shared in self.group(projection)? {
            let consumer =
                shared.build().map_or_else(|| shared.slice.consumer(projection), |b| shared.consumer_of(&b));
            failures.extend(self.inner.store.failures(&consumer).await?);
        }
        failures.sort_by_key(|f| f.checkpoint());
        Ok(failures)
    }

    /// Applies a projection's recorded failures again (once its handler is fixed);
    /// those that succeed are removed from the record.
    pub async fn retry_failures(&self, projection: &str) -> Result<RetryReport, SupervisorError> {
        let mut report = RetryReport::default();
        for answer in self.each(projection, ProjectionMsg::RetryFailures).await? {
            let one = answer?;
            report.resolved += one.resolved;
            report.still_failing += one.still_failing;
            report.missing += one.missing;
        }
        Ok(report)
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
