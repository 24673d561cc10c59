//! Projections in slices under the supervisor: one child per slice, one allotment per
//! projection that spreads the slices over the instances, and one status per projection
//! made of its slices'.

use std::sync::Arc;

use crate::projection::actor::ProjectionShared;
use crate::projection::slices::Allotment;
use crate::projection::{ProjectionState, ProjectionStatus};
use crate::store::EventStore;
use crate::task::AbortOnDrop;

/// The child key of slice `index` of the projection known as `key`.
pub(super) fn slice_key(key: &str, index: u16) -> String {
    format!("{key}#{index}")
}

/// A projection in slices running here: what its slices share, and its heartbeat.
pub(super) struct Sliced {
    pub(super) allot: Arc<Allotment>,
    beat: std::sync::Mutex<Option<AbortOnDrop<()>>>,
}

impl Sliced {
    pub(super) fn start(allot: Arc<Allotment>, store: Arc<dyn EventStore>) -> Self {
        let beat = allot.start(store);
        Sliced { allot, beat: std::sync::Mutex::new(Some(beat)) }
    }

    /// Stops the heartbeat and leaves the members, so that the other instances take
    /// the slices over at once (the slices' leases are already given up).
    pub(super) async fn leave(&self, store: &dyn EventStore) {
        self.beat.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.allot.leave(store).await;
    }
}

/// How unwell a state is, for the projection's state made of its slices'.
fn severity(state: &ProjectionState) -> u8 {
    match state {
        ProjectionState::Live => 0,
        ProjectionState::Standby => 1,
        ProjectionState::Starting => 2,
        ProjectionState::CatchingUp => 3,
        ProjectionState::Rebuilding => 4,
        ProjectionState::Paused => 5,
        ProjectionState::Retrying { .. } => 6,
        ProjectionState::WaitingForStore => 7,
        ProjectionState::Failed => 8,
        ProjectionState::Stopped => 9,
        ProjectionState::Retired => 10,
    }
}

/// The status of a projection made of its slices' (`shared`, by index).
pub(super) fn status(shared: &[Arc<ProjectionShared>]) -> ProjectionStatus {
    if let [one] = shared {
        return one.status();
    }
    let slices: Vec<ProjectionStatus> = shared
        .iter()
        .map(|p| {
            let mut s = p.status();
            s.holder = p.allot.as_ref().and_then(|a| a.holder(p.slice.index()));
            s
        })
        .collect();
    let mut total = slices[0].clone();
    total.slice = None;
    total.holder = None;
    // What this instance knows of a slice another one holds is where it last saw it: the
    // figures are the slices' that run here (all of them when none does).
    let here: Vec<&ProjectionStatus> =
        slices.iter().filter(|s| s.state != ProjectionState::Standby).collect();
    let counted: Vec<&ProjectionStatus> = if here.is_empty() { slices.iter().collect() } else { here };
    total.checkpoint = counted.iter().map(|s| s.checkpoint).min().unwrap_or_default();
    total.lag = counted.iter().filter_map(|s| s.lag).max();
    total.handled = slices.iter().map(|s| s.handled).sum();
    total.skipped = slices.iter().map(|s| s.skipped).sum();
    total.last_error = counted.iter().find_map(|s| s.last_error.clone());
    total.updated_at = slices.iter().map(|s| s.updated_at).max().unwrap_or(total.updated_at);
    let running = slices.iter().filter(|s| s.state != ProjectionState::Standby);
    total.state =
        running.max_by_key(|s| severity(&s.state)).map_or(ProjectionState::Standby, |s| s.state.clone());
    total.slices = slices;
    total
}

/// Refuses a slice count other than the one the registered builds of `version` run in
/// (two layouts never mix in one version). A store that does not answer within a few
/// seconds is not waited for: the projection's actor meets the same refusal when it
/// registers its build, and reports it.
pub(super) async fn check_layout(
    store: &dyn EventStore,
    name: &str,
    version: u32,
    slices: u16,
) -> Result<(), crate::store::InvalidInput> {
    let op = crate::store::op::RegisterBuild::new(name, version, false)?.slices(slices)?;
    match tokio::time::timeout(std::time::Duration::from_secs(5), store.builds(name)).await {
        Ok(Ok(builds)) => op.check_layout(&builds),
        _ => Ok(()),
    }
}
