//! The build a projection actor runs: registering it, preparing its read model, taking
//! up a newer one, the automatic cut-over once a new build has caught up, and the fresh
//! copy a rebuild builds beside the live one.

use super::{ProjectionActorState, ProjectionMsg};
use ractor::ActorRef;

use crate::projection::{ProjectionError, ProjectionState, SinkError};
use crate::store::{build_to_run, BuildState, Checkpoint, Lease, ProjectionBuild, StoreError, Switch};
use crate::supervisor::builds::bring_live;
use crate::task::AbortOnDrop;

fn sink_error(error: SinkError) -> StoreError {
    match error {
        SinkError::Store(e) => e,
        SinkError::Handler { error, .. } => StoreError::Backend(error.into_error()),
        SinkError::Fenced => StoreError::Backend("fenced while preparing a build".into()),
    }
}

impl ProjectionActorState {
    /// Finds the build of the declared version to run (registering one if there is
    /// none), and takes it up. A version older than the live one, with no build left,
    /// is superseded: it registers nothing and applies nothing.
    pub(super) async fn register(&mut self) -> Result<(), StoreError> {
        let (name, version) = (&self.shared.name, self.shared.version);
        // The slices here register and prepare the build one at a time.
        let allot = self.shared.allot.clone();
        let _preparing = match &allot {
            Some(a) => Some(a.preparing.lock().await),
            None => None,
        };
        let builds = self.shared.store.builds(name).await?;
        let newer_live = builds.iter().any(|b| b.state == BuildState::Live && b.id.version > version);
        let build = match build_to_run(&builds, version) {
            Some(build) => build.clone(),
            None if newer_live => {
                tracing::warn!(projection = %name, version, "a newer version is live; this one is not built again");
                self.shared.set_state(ProjectionState::Retired);
                return Ok(());
            }
            None => self.shared.store.register_build(name, version, self.shared.slice.count(), false).await?,
        };
        self.take_up(build).await
    }

    /// Makes `build` the one this instance runs, its read model prepared.
    async fn take_up(&mut self, build: ProjectionBuild) -> Result<(), StoreError> {
        self.shared.sink.lock().await.prepare(&build).await.map_err(sink_error)?;
        tracing::info!(projection = %self.shared.name, build = %build.id, state = %build.state, "projection build taken up");
        self.consumer = self.shared.consumer_of(&build);
        if let Some(a) = &self.shared.allot {
            a.following(&build.id.consumer());
        }
        self.shared.went_live(&build);
        self.build = Some(build.clone());
        self.shared.update(|s| s.build = Some(build));
        Ok(())
    }

    /// Before taking the lease: if the registry moved on (another instance rebuilt the
    /// projection), takes up the build to run now. `false` if there is none any more.
    pub(super) async fn follow_registry(&mut self) -> Result<bool, StoreError> {
        let builds = self.shared.store.builds(&self.shared.name).await?;
        let current = build_to_run(&builds, self.shared.version);
        match (current, &self.build) {
            (Some(now), _) if now.state == BuildState::Replaced => {
                // Replaced by another version, and nothing newer of this one: its build
                // takes no more batches.
                let now = now.clone();
                self.build = Some(now.clone());
                self.shared.update(|s| s.build = Some(now));
                self.stand_down();
                Ok(false)
            }
            (Some(now), Some(mine)) if now.id == mine.id => {
                if now.state != mine.state {
                    let now = now.clone();
                    self.shared.went_live(&now);
                    self.build = Some(now.clone());
                    self.shared.update(|s| s.build = Some(now));
                }
                Ok(true)
            }
            (Some(now), _) => {
                let now = now.clone();
                self.take_up(now).await?;
                Ok(true)
            }
            (None, _) => {
                self.shared.set_state(ProjectionState::Retired);
                Ok(false)
            }
        }
    }

    /// A build still building that has caught up with the log becomes live, if the
    /// projection switches on its own and it has caught up with the live build too.
    pub(super) async fn cut_over_if_caught_up(&mut self) -> Result<(), StoreError> {
        let Some(build) = &self.build else { return Ok(()) };
        if build.state != BuildState::Building
            || !self.shared.switch_automatically
            || self.lease.is_none()
            || self.shared.status().state != ProjectionState::Live
        {
            return Ok(());
        }
        match self.shared.store.cut_over(&build.id).await? {
            Switch::Switched { replaced } => {
                tracing::info!(projection = %self.shared.name, build = %build.id, replaced = ?replaced, "new build is live");
                if replaced.is_some() {
                    // Counted once per build, not once per slice that saw the switch.
                    let took = (chrono::Utc::now() - build.created_at).to_std().unwrap_or_default();
                    self.shared.metrics.projection_built(&self.shared.name, took);
                }
                let mut live = build.clone();
                live.state = BuildState::Live;
                live.live_at = Some(chrono::Utc::now());
                self.shared.went_live(&live);
                self.build = Some(live.clone());
                self.shared.update(|s| s.build = Some(live));
                self.schedule_retirement(self.shared.retire_after.unwrap_or_default());
            }
            Switch::Behind { live, build: at } => {
                tracing::debug!(projection = %self.shared.name, %live, build = %at, "new build not yet past the live one");
            }
            _ => {
                // Retired under it: stop.
                self.follow_registry().await?;
            }
        }
        Ok(())
    }

    /// Registers a fresh build of the version for a rebuild into a copy, takes its lease
    /// and prepares it. Only the instance that owns the projection does.
    pub(super) async fn begin_copy(&mut self) -> Result<(ProjectionBuild, Lease), ProjectionError> {
        self.owned().await?;
        if self.shared.slice.count() > 1 {
            return Err(ProjectionError::InSlices);
        }
        let store = self.shared.store.clone();
        let build = store.register_build(&self.shared.name, self.shared.version, 1, true).await?;
        let prepared = match store.try_lease(&build.id.consumer()).await {
            Ok(Some(lease)) => self.shared.sink.lock().await.prepare(&build).await.map(|()| lease),
            Ok(None) => Err(SinkError::Store(StoreError::Backend("the fresh build's lease is taken".into()))),
            Err(e) => Err(SinkError::Store(e)),
        };
        match prepared {
            Ok(lease) => Ok((build, lease)),
            Err(e) => {
                // Not left building: nothing would ever finish it.
                if let Err(retire) = store.retire_build(&build.id).await {
                    tracing::warn!(projection = %self.shared.name, build = %build.id, error = %retire, "could not retire a build that failed to start");
                }
                Err(ProjectionError::Sink(e))
            }
        }
    }

    /// Goes on with `build` (a copy that just became live), holding its `lease`; the
    /// lease of the build it ran is given up.
    pub(super) async fn adopt(&mut self, build: ProjectionBuild, lease: Lease) -> Result<(), StoreError> {
        self.consumer = self.shared.consumer_of(&build);
        self.shared.went_live(&build);
        self.build = Some(build.clone());
        self.set_lease(Some(lease));
        self.lease_gen += 1;
        let generation = self.lease_gen;
        self.myself.send_after(self.shared.lease_retry, move || ProjectionMsg::LeaseCheck(generation));
        self.prefetch = None;
        self.failing = None;
        self.not_before = None;
        self.lag_measured = None;
        self.checkpoint =
            self.shared.store.load_checkpoint(&self.consumer).await?.unwrap_or(Checkpoint::START);
        let cp = self.checkpoint;
        self.shared.update(|s| {
            s.build = Some(build);
            s.checkpoint = cp;
            s.lag = None;
        });
        self.schedule_retirement(self.shared.retire_after.unwrap_or_default());
        Ok(())
    }

    /// On taking the lease of the live build: a copy that a rebuild left unfinished (its
    /// process was stopped, or killed) is resumed where it stood, in the background,
    /// and made live once caught up, unless another instance already resumes it.
    pub(super) async fn resume_copy(&mut self) -> Result<(), StoreError> {
        if self.copying.as_mut().is_some_and(|c| !c.handle().is_finished()) {
            return Ok(());
        }
        let Some(mine) = self.build.as_ref().filter(|b| b.state == BuildState::Live) else {
            return Ok(());
        };
        let store = self.shared.store.clone();
        let builds = store.builds(&self.shared.name).await?;
        let mut abandoned: Vec<ProjectionBuild> = builds
            .into_iter()
            .filter(|b| {
                b.state == BuildState::Building
                    && b.id.version == mine.id.version
                    && b.id.build > mine.id.build
            })
            .collect();
        let Some(copy) = abandoned.pop() else {
            return Ok(());
        };
        // Older copies left building were superseded by the newest: retire those nobody
        // works on, so that none stays building for ever.
        for old in abandoned {
            if let Some(_lease) = store.try_lease(&old.id.consumer()).await? {
                store.retire_build(&old.id).await?;
                tracing::info!(projection = %self.shared.name, build = %old.id, "older unfinished copy retired");
            }
        }
        self.bring_live_in_background(copy).await
    }

    /// Brings `build` (of this instance's version) up to date in the background, holding
    /// its lease, and makes it live once it has caught up; nothing if another instance
    /// holds its lease (and does so).
    async fn bring_live_in_background(&mut self, build: ProjectionBuild) -> Result<(), StoreError> {
        let Some(lease) = self.shared.store.try_lease(&build.id.consumer()).await? else {
            return Ok(());
        };
        if build.state == BuildState::Replaced {
            self.shared.store.reopen_build(&build.id).await?;
        }
        self.shared.sink.lock().await.prepare(&build).await.map_err(sink_error)?;
        self.spawn_bring_live(build, lease);
        Ok(())
    }

    /// Rebuilds into a fresh copy in the background (an operator's reset from the start,
    /// for a sink that keeps builds apart): the live build keeps serving meanwhile.
    pub(super) async fn rebuild_in_background(&mut self) -> Result<(), ProjectionError> {
        let (build, lease) = self.begin_copy().await?;
        self.spawn_bring_live(build, lease);
        Ok(())
    }

    fn spawn_bring_live(&mut self, build: ProjectionBuild, lease: Lease) {
        tracing::info!(projection = %self.shared.name, build = %build.id, "bringing a build up to date to make it live");
        let (shared, actor) = (self.shared.clone(), self.myself.clone());
        self.copying = Some(AbortOnDrop::new(tokio::spawn(async move {
            let (store, metrics) = (shared.store.clone(), shared.metrics.clone());
            match bring_live(&store, &metrics, &shared, build, lease, Some(actor)).await {
                Ok(report) => {
                    tracing::info!(projection = %shared.name, replayed = report.replayed, "build brought up to date and live")
                }
                Err(e) => tracing::warn!(projection = %shared.name, error = %e, "build not brought live"),
            }
        })));
    }

    /// An operator's request to make build `number` of `version` live. A build of this
    /// instance's version is brought up to date first, in the background; a build of
    /// another version is switched to at once if it has caught up (the instances that
    /// run it keep it current).
    pub(super) async fn switch_to(&mut self, version: u32, number: u32) -> Result<(), StoreError> {
        let store = self.shared.store.clone();
        let builds = store.builds(&self.shared.name).await?;
        let Some(target) = builds.into_iter().find(|b| b.id.version == version && b.id.build == number)
        else {
            tracing::warn!(projection = %self.shared.name, version, build = number, "no such build to switch to");
            return Ok(());
        };
        match target.state {
            BuildState::Live | BuildState::Retired => Ok(()),
            _ if version == self.shared.version && (target.slices > 1 || self.shared.slice.count() > 1) => {
                tracing::warn!(projection = %self.shared.name, version, build = number, "a build of this version in slices is not brought up to date on request: declare a new version");
                Ok(())
            }
            _ if version == self.shared.version => self.bring_live_in_background(target).await,
            _ => {
                let switched = store.cut_over(&target.id).await?;
                tracing::info!(projection = %self.shared.name, build = %target.id, ?switched, "switch asked by an operator");
                self.follow_registry().await.map(|_| ())
            }
        }
    }

    /// Looks at the replaced builds again in `after` (if the projection retires them).
    pub(super) fn schedule_retirement(&self, after: std::time::Duration) {
        if self.shared.retire_after.is_some() {
            self.myself.send_after(after, || ProjectionMsg::RetireReplaced);
        }
    }

    /// Retires the builds of this projection replaced longer ago than its grace period
    /// (counted from when the live build went live), and looks again when the next one
    /// is due. Only the holder of the live build does; a build another instance follows
    /// is left alone.
    pub(super) async fn retire_replaced(&mut self) -> Result<(), StoreError> {
        let Some(grace) = self.shared.retire_after else { return Ok(()) };
        let live_here =
            self.build.as_ref().is_some_and(|b| b.state == BuildState::Live) && self.lease.is_some();
        if !live_here {
            return Ok(());
        }
        let store = self.shared.store.clone();
        let builds = store.builds(&self.shared.name).await?;
        let Some(since) = builds.iter().find(|b| b.state == BuildState::Live).and_then(|b| b.live_at) else {
            return Ok(());
        };
        let Some(due) = chrono::Duration::from_std(grace).ok().and_then(|g| since.checked_add_signed(g))
        else {
            return Ok(()); // never, in practice
        };
        let now = chrono::Utc::now();
        if now < due {
            self.schedule_retirement((due - now).to_std().unwrap_or_default());
            return Ok(());
        }
        for replaced in builds.iter().filter(|b| b.state == BuildState::Replaced) {
            let Some(_leases) = crate::store::lease_build(store.as_ref(), replaced).await? else {
                // Followed elsewhere: look again later.
                self.schedule_retirement(grace.max(self.shared.lease_retry));
                continue;
            };
            store.retire_build(&replaced.id).await?;
            tracing::info!(projection = %self.shared.name, build = %replaced.id, ?grace, "replaced build retired after its grace period");
        }
        Ok(())
    }

    /// An older version that ran beside a newer one in this process, until the newer one
    /// went live: it gives its lease up and applies nothing more, so that its build can
    /// be retired (or switched back to, brought up to date first).
    pub(super) fn stand_down(&mut self) {
        tracing::info!(projection = %self.shared.name, version = self.shared.version, "a newer version is live here; this one stands down");
        self.set_lease(None);
        self.prefetch = None;
        self.shared.set_state(ProjectionState::Retired);
    }

    /// After a refused batch: if this build was replaced or retired meanwhile (a
    /// cut-over, here or in another instance), gives its lease up and takes up the build
    /// to run now, or stands down when there is none of this version. `true` if so.
    pub(super) async fn left_behind(&mut self, myself: &ActorRef<ProjectionMsg>) -> Result<bool, StoreError> {
        let Some(mine) = self.build.clone() else { return Ok(false) };
        let builds = self.shared.store.builds(&self.shared.name).await?;
        let closed = builds
            .iter()
            .find(|b| b.id == mine.id)
            .is_none_or(|b| matches!(b.state, BuildState::Replaced | BuildState::Retired));
        if !closed {
            return Ok(false);
        }
        tracing::info!(projection = %self.shared.name, build = %mine.id, "build replaced; going on with the build to run now");
        self.set_lease(None);
        self.prefetch = None;
        match build_to_run(&builds, self.shared.version) {
            Some(next) if next.id != mine.id && next.state != BuildState::Replaced => {
                let next = next.clone();
                self.take_up(next).await?;
                self.standby(myself);
            }
            _ => {
                if let Some(now) = builds.into_iter().find(|b| b.id == mine.id) {
                    self.build = Some(now.clone());
                    self.shared.update(|s| s.build = Some(now));
                }
                self.stand_down();
            }
        }
        Ok(true)
    }
}
