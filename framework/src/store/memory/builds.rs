//! The projection builds' registry in memory.

use async_trait::async_trait;
use chrono::Utc;

use super::{InMemoryStore, State};
use crate::store::builds::{build_to_run, BuildId, BuildState, ProjectionBuild, Retired, Switch};
use crate::store::op::{Builds, CutOver, Execute, RegisterBuild, ReopenBuild, RetireBuild};
use crate::store::{Checkpoint, StoreError};

#[async_trait]
impl Execute<RegisterBuild> for InMemoryStore {
    async fn execute(&self, op: RegisterBuild) -> Result<ProjectionBuild, StoreError> {
        let mut state = self.lock();
        let builds = state.builds.entry(op.projection().to_owned()).or_default();
        op.check_layout(builds)?;
        let of_version = || builds.iter().filter(|b| b.id.version == op.version());
        if !op.fresh() {
            if let Some(current) = build_to_run(builds, op.version()) {
                return Ok(current.clone());
            }
        }
        let number = of_version().map(|b| b.id.build).max().unwrap_or(0) + 1;
        let live = builds.iter().any(|b| b.state == BuildState::Live);
        let state = if live { BuildState::Building } else { BuildState::Live };
        let mut build =
            ProjectionBuild::new(BuildId::new(op.projection(), op.version(), number), state, None);
        build.slices = op.slice_count();
        builds.push(build.clone());
        Ok(build)
    }
}

#[async_trait]
impl Execute<Builds> for InMemoryStore {
    async fn execute(&self, op: Builds) -> Result<Vec<ProjectionBuild>, StoreError> {
        let mut builds = self.lock().builds.get(op.projection()).cloned().unwrap_or_default();
        builds.sort_by_key(|b| (b.id.version, b.id.build));
        Ok(builds)
    }
}

/// Whether `consumer` is a build that was replaced or retired: it takes no more batches.
pub(super) fn closed(state: &State, consumer: &str) -> bool {
    state.builds.values().flatten().any(|b| {
        matches!(b.state, BuildState::Replaced | BuildState::Retired)
            && b.consumers().iter().any(|c| c == consumer)
    })
}

#[async_trait]
impl Execute<ReopenBuild> for InMemoryStore {
    async fn execute(&self, op: ReopenBuild) -> Result<bool, StoreError> {
        let target = op.build();
        let mut state = self.lock();
        let build =
            state.builds.get_mut(&target.projection).and_then(|b| b.iter_mut().find(|b| &b.id == target));
        match build {
            Some(build) if build.state == BuildState::Replaced => {
                build.state = BuildState::Building;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl Execute<CutOver> for InMemoryStore {
    async fn execute(&self, op: CutOver) -> Result<Switch, StoreError> {
        let target = op.build();
        let mut state = self.lock();
        // A build in slices is as far as its slowest slice, and must have processed as much
        // as the live build's fastest one.
        let checkpoints = |build: &ProjectionBuild| -> Vec<Checkpoint> {
            build
                .consumers()
                .iter()
                .map(|c| state.checkpoints.get(c).copied().unwrap_or(Checkpoint::START))
                .collect()
        };
        let Some(builds) = state.builds.get(&target.projection) else {
            return Ok(Switch::Unknown);
        };
        let Some(index) = builds.iter().position(|b| &b.id == target && b.state != BuildState::Retired)
        else {
            return Ok(Switch::Unknown);
        };
        if builds[index].state == BuildState::Live {
            return Ok(Switch::Switched { replaced: None });
        }
        let live = builds.iter().position(|b| b.state == BuildState::Live);
        if let Some(live) = live {
            let live_at = checkpoints(&builds[live]).into_iter().max().unwrap_or(Checkpoint::START);
            let build_at = checkpoints(&builds[index]).into_iter().min().unwrap_or(Checkpoint::START);
            if build_at < live_at {
                return Ok(Switch::Behind { live: live_at, build: build_at });
            }
        }
        let builds = state.builds.get_mut(&target.projection).expect("looked up above");
        let replaced = live.map(|live| {
            builds[live].state = BuildState::Replaced;
            builds[live].id.clone()
        });
        builds[index].state = BuildState::Live;
        builds[index].live_at = Some(Utc::now());
        Ok(Switch::Switched { replaced })
    }
}

#[async_trait]
impl Execute<RetireBuild> for InMemoryStore {
    async fn execute(&self, op: RetireBuild) -> Result<Retired, StoreError> {
        let target = op.build();
        let mut state = self.lock();
        let Some(build) =
            state.builds.get_mut(&target.projection).and_then(|b| b.iter_mut().find(|b| &b.id == target))
        else {
            return Ok(Retired::Unknown);
        };
        match build.state {
            BuildState::Live => Ok(Retired::Live),
            BuildState::Retired => Ok(Retired::Retired),
            _ => {
                build.state = BuildState::Retired;
                build.retired_at = Some(Utc::now());
                Ok(Retired::Retired)
            }
        }
    }
}
