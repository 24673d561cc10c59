//! Projection builds under the supervisor: a rebuild into a fresh copy while the live
//! build keeps serving, switching readers to another build (and back), and retiring one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;

use super::replay::catch_up;
use super::{ask, ReplayReport, Supervisor, SupervisorError};
use crate::metrics::Metrics;
use crate::projection::actor::{ProjectionMsg, ProjectionShared};
use crate::store::{BuildId, BuildState, EventStore, Lease, ProjectionBuild, Retired, Switch};

/// How long a build may take, once it has replayed the log, to catch up with the live
/// build closely enough to take over: the live build is held still for a moment at each
/// try, so this is only exceeded when the new build cannot keep up with the log.
const CUT_OVER_BUDGET: Duration = Duration::from_secs(60);

impl Supervisor {
    /// Rebuilds into a fresh build of the projection's version, beside the live one,
    /// which keeps serving and following the log; switches readers over once the new
    /// build has caught up (see [`rebuild`](Self::rebuild)).
    pub(super) async fn rebuild_copy(&self, projection: &str) -> Result<ReplayReport, SupervisorError> {
        let actor = self.projection(projection).await?;
        let (build, lease) = ask(&actor, projection, ProjectionMsg::BeginCopy).await??;
        tracing::info!(projection, build = %build.id, "rebuilding into a fresh copy");
        self.bring_live(projection, build, lease).await
    }

    async fn bring_live(
        &self,
        projection: &str,
        build: ProjectionBuild,
        lease: Lease,
    ) -> Result<ReplayReport, SupervisorError> {
        let shared = self.shared(projection)?.clone();
        let actor = self.projection(projection).await.ok();
        bring_live(&self.inner.store, &self.inner.metrics, &shared, build, lease, actor).await
    }

    /// Every build of a projection, oldest first, with its state (see
    /// [`BuildId`]).
    pub async fn builds(&self, projection: &str) -> Result<Vec<ProjectionBuild>, SupervisorError> {
        self.shared(projection)?;
        Ok(self.inner.store.builds(projection).await?)
    }

    /// Makes `build` the live build of its projection: switching to a new version whose
    /// projection switches manually, or back to the build a rebuild replaced. A build of
    /// the version this instance runs is first brought up to date (a replaced build was
    /// left where it was); a build of another version must be kept current by the
    /// instances that run it. Readers switch in one step, only once the build has
    /// processed everything the live build has; until then this waits (at most a minute)
    /// and then fails with [`SupervisorError::NotCaughtUp`], changing nothing.
    pub async fn switch(&self, projection: &str, build: &BuildId) -> Result<ReplayReport, SupervisorError> {
        let shared = self.shared(projection)?.clone();
        let store = &self.inner.store;
        let target = store
            .builds(projection)
            .await?
            .into_iter()
            .find(|b| &b.id == build && b.state != BuildState::Retired)
            .ok_or_else(|| SupervisorError::UnknownBuild(build.clone()))?;
        let ours = shared.build().is_some_and(|b| &b.id == build);
        if target.state == BuildState::Live || ours || build.version != shared.version {
            // Kept current by whoever follows it: wait for it to pass the live build.
            let started = Instant::now();
            loop {
                match store.cut_over(build).await? {
                    Switch::Switched { .. } => break,
                    Switch::Behind { live, build: at } => {
                        let waited = started.elapsed();
                        if waited > CUT_OVER_BUDGET {
                            return Err(SupervisorError::NotCaughtUp {
                                build: build.clone(),
                                at,
                                live,
                                waited,
                            });
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ => return Err(SupervisorError::UnknownBuild(build.clone())),
                }
            }
            if let Ok(actor) = self.projection(projection).await {
                actor.send_message(ProjectionMsg::Refresh).ok();
            }
            return Ok(ReplayReport { build: Some(build.clone()), ..ReplayReport::default() });
        }
        if target.slices > 1 || shared.slice.count() > 1 {
            // A build in slices is brought up to date by its slices' actors, wherever
            // they run: switch to it once they have (above), or declare a new version.
            return Err(SupervisorError::InSlices(projection.to_owned()));
        }
        let Some(lease) = store.try_lease(&build.consumer()).await? else {
            return Err(SupervisorError::BuildInUse(build.clone()));
        };
        if target.state == BuildState::Replaced {
            // Frozen where it was replaced: it takes batches again to catch up.
            store.reopen_build(build).await?;
        }
        shared.sink.lock().await.prepare(&target).await.map_err(SupervisorError::Handler)?;
        self.bring_live(projection, target, lease).await
    }

    /// Retires a build that is not live: nothing follows it any more, and its read model
    /// is dropped (PostgreSQL: its schema). Refused with [`SupervisorError::BuildInUse`]
    /// while it is live or an instance follows it.
    pub async fn retire(&self, projection: &str, build: &BuildId) -> Result<(), SupervisorError> {
        self.shared(projection)?;
        if build.projection != projection {
            return Err(SupervisorError::UnknownBuild(build.clone()));
        }
        let store = &self.inner.store;
        let target = store
            .builds(projection)
            .await?
            .into_iter()
            .find(|b| &b.id == build)
            .ok_or_else(|| SupervisorError::UnknownBuild(build.clone()))?;
        // Holding its leases (each slice's): no instance follows it while it goes, nor
        // after (an instance that takes a lease later finds it retired).
        let Some(_leases) = crate::store::lease_build(store.as_ref(), &target).await? else {
            return Err(SupervisorError::BuildInUse(build.clone()));
        };
        match store.retire_build(build).await? {
            Retired::Retired => {
                tracing::info!(projection, build = %build, "build retired");
                Ok(())
            }
            Retired::Live => Err(SupervisorError::BuildInUse(build.clone())),
            _ => Err(SupervisorError::UnknownBuild(build.clone())),
        }
    }
}

/// Replays the log into `build` (whose `lease` the caller holds), then makes it
/// live as soon as it has processed everything the live build has, and lets the
/// projection's actor go on with it.
pub(crate) async fn bring_live(
    store: &Arc<dyn EventStore>,
    metrics: &Metrics,
    shared: &ProjectionShared,
    build: ProjectionBuild,
    lease: Lease,
    actor: Option<ActorRef<ProjectionMsg>>,
) -> Result<ReplayReport, SupervisorError> {
    let projection = shared.name.as_str();
    let consumer = build.id.consumer();
    let started = Instant::now();
    let mut report = catch_up(store, metrics, shared, &consumer).await?;
    let caught_up = Instant::now();
    loop {
        if report.stopped_early {
            // A handler failed: readers stay on the live build.
            tracing::warn!(projection, build = %build.id, "rebuild stopped at a failing event; not switched");
            return Ok(report);
        }
        match store.cut_over(&build.id).await? {
            Switch::Switched { replaced } => {
                tracing::info!(projection, build = %build.id, replaced = ?replaced, "readers switched to the new build");
                break;
            }
            Switch::Behind { live, build: at } => {
                if !lease.is_held() {
                    // Its session broke: another instance may take the copy over.
                    return Err(SupervisorError::NotOwner(consumer));
                }
                let waited = caught_up.elapsed();
                if waited > CUT_OVER_BUDGET {
                    return Err(SupervisorError::NotCaughtUp { build: build.id, at, live, waited });
                }
                let more = catch_up(store, metrics, shared, &consumer).await?;
                if more.replayed == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                report.replayed += more.replayed;
                report.failed += more.failed;
                report.errors.extend(more.errors);
                report.stopped_early = more.stopped_early;
                report.checkpoint = more.checkpoint.or(report.checkpoint);
            }
            _ => return Err(SupervisorError::UnknownBuild(build.id)),
        }
    }
    let mut live = build;
    live.state = BuildState::Live;
    report.build = Some(live.id.clone());
    report.duration = started.elapsed();
    metrics.projection_built(projection, report.duration);
    match actor {
        Some(actor) if live.id.version == shared.version => {
            ask(&actor, projection, |r| ProjectionMsg::Adopt(live, lease, r)).await?;
        }
        _ => {}
    }
    Ok(report)
}
