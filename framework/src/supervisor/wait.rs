//! Read-your-writes: waiting until projections have processed the log up to a position.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Supervisor, SupervisorError};
use crate::projection::actor::ProjectionShared;
use crate::projection::ProjectionState;
use crate::store::{BuildState, Checkpoint, GlobalPosition, StoreError};

/// The first delay between two looks at a projection that is not there yet; it doubles to
/// [`POLL_MAX`].
const POLL_START: Duration = Duration::from_millis(2);
/// The longest delay between two looks (a projection that runs here wakes the wait as
/// soon as its checkpoint moves; one that runs elsewhere is looked at this often).
const POLL_MAX: Duration = Duration::from_millis(25);

/// Where a projection was last found behind, and when.
type Seen = Option<(Checkpoint, Instant)>;

/// What a wait is for: a position of the log (what the example's HTTP header carries), or
/// the exact checkpoint of an event, as a command's result gives it
/// ([`Executed::checkpoint`](crate::aggregate::Executed::checkpoint)). With a checkpoint,
/// a projection that this instance runs and that is already past it answers without a
/// round trip to the store. A position is first turned into the checkpoint of the event
/// stored there ([`EventLog::checkpoint_of`](crate::store::EventLog::checkpoint_of); the
/// PostgreSQL store knows its own recent appends' without a round trip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitTarget {
    /// Every event at or below this position.
    Position(GlobalPosition),
    /// Every event up to this checkpoint, in log order.
    Checkpoint(Checkpoint),
}

impl WaitTarget {
    /// The position waited for.
    pub fn position(&self) -> GlobalPosition {
        match self {
            WaitTarget::Position(p) => *p,
            WaitTarget::Checkpoint(c) => c.position,
        }
    }
}

impl From<GlobalPosition> for WaitTarget {
    fn from(position: GlobalPosition) -> Self {
        WaitTarget::Position(position)
    }
}

impl From<Checkpoint> for WaitTarget {
    fn from(checkpoint: Checkpoint) -> Self {
        WaitTarget::Checkpoint(checkpoint)
    }
}

/// Why a wait for projections ended without them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// These projections had not processed the log up to the position when the time
    /// was up.
    #[error("projections {behind:?} had not reached position {position} within {timeout:?}")]
    Timeout {
        /// The position waited for.
        position: GlobalPosition,
        /// The projections still behind it.
        behind: Vec<String>,
        /// How long the wait was allowed.
        timeout: Duration,
    },
    /// A projection is unknown, or the store failed.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
}

impl From<StoreError> for WaitError {
    fn from(e: StoreError) -> Self {
        WaitError::Supervisor(SupervisorError::Store(e))
    }
}

impl Supervisor {
    /// Waits until each of `projections` (every projection of this supervisor when the
    /// slice is empty) has processed every event up to `target` that it reads, or until
    /// `timeout` has passed: read-your-writes, after a command whose result gave the
    /// target.
    ///
    /// It is correct:
    /// - for projections that select some categories, event types or topics: a
    ///   projection whose checkpoint stops short of an event it never reads (another
    ///   category's) counts as past it;
    /// - for projections that run on another instance, or have not started: it asks the
    ///   checkpoint stored in the store, which every instance shares;
    /// - across a restart of the database: a failed look is retried until the time is up.
    ///
    /// Errors: [`WaitError::Timeout`], naming the projections still behind, at most a few
    /// milliseconds after `timeout`; an unknown projection.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn run(supervisor: factum::Supervisor, position: factum::store::GlobalPosition) -> Result<(), factum::supervisor::WaitError> {
    /// supervisor.wait_for(position, &["order_summary"], Duration::from_secs(5)).await?;
    /// // The read model `order_summary` now reflects every event up to `position`.
    /// # Ok(()) }
    /// ```
    pub async fn wait_for(
        &self,
        target: impl Into<WaitTarget>,
        projections: &[&str],
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let mut target = target.into();
        let deadline = Instant::now() + timeout;
        if let WaitTarget::Position(position) = target {
            // The event's checkpoint, where the store knows it (without a round trip when
            // this process wrote it): then a projection past it answers at once.
            let known = tokio::time::timeout_at(deadline, self.inner.store.checkpoint_of(position)).await;
            if let Ok(Ok(Some(checkpoint))) = known {
                target = WaitTarget::Checkpoint(checkpoint);
            }
        }
        let shared: Vec<Arc<ProjectionShared>> = if projections.is_empty() {
            self.inner.projections.values().cloned().collect()
        } else {
            let mut all = Vec::new();
            for name in projections {
                all.extend(self.group(name)?.into_iter().cloned());
            }
            all
        };
        // Each projection with the checkpoint it was last found behind at.
        let mut pending: Vec<(Arc<ProjectionShared>, Seen)> = shared.into_iter().map(|p| (p, None)).collect();
        let mut delay = POLL_START;
        loop {
            // Made before the looks, so that no change after them is missed.
            let changed: Vec<_> = pending.iter().map(|(p, _)| p.changed.notified()).collect();
            let mut behind = Vec::new();
            for (p, seen) in &pending {
                let mut seen = *seen;
                match tokio::time::timeout_at(deadline, self.reached(p, target, &mut seen)).await {
                    Ok(Ok(true)) => {}
                    // The store failed: look again, until the time is up.
                    Ok(Ok(false)) | Ok(Err(_)) | Err(_) => behind.push((p.clone(), seen)),
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout {
                    position: target.position(),
                    behind: behind.iter().map(|(p, _)| p.name.clone()).collect(),
                    timeout,
                });
            }
            // A projection already there may wake the wait too: it only looks again.
            tokio::select! {
                () = tokio::time::sleep(delay.min(deadline - now)) => delay = (delay * 2).min(POLL_MAX),
                _ = futures_util::future::select_all(changed.into_iter().map(Box::pin)) => {}
            }
            pending = behind;
        }
    }

    /// Whether `p` has processed every event up to `target` that it reads. `seen` is the
    /// checkpoint it was last found behind at, and when: from there, the store is not
    /// asked again until the checkpoint moves, or for [`POLL_MAX`] (the log may have
    /// reached the position meanwhile).
    async fn reached(
        &self,
        p: &ProjectionShared,
        target: WaitTarget,
        seen: &mut Seen,
    ) -> Result<bool, StoreError> {
        let status = p.status();
        let live_here = status.build.as_ref().is_some_and(|b| b.state == BuildState::Live);
        let here = live_here && !matches!(status.state, ProjectionState::Starting | ProjectionState::Standby);
        // Where the projection's live build is (the one readers read): this instance's
        // own view while it runs it (no round trip), else the checkpoint every instance
        // shares.
        let at = if here {
            status.checkpoint
        } else {
            let builds = self.inner.store.builds(&p.name).await?;
            let live = builds.iter().find(|b| b.state == BuildState::Live);
            // This slice's consumer of the live build; for a live build in another number
            // of slices (another version), that build is as far as its slowest slice.
            let consumers = match live {
                Some(b) if b.slices == p.slice.count() => vec![p.consumer_of(b)],
                Some(b) => b.consumers(),
                None => vec![p.slice.consumer(&p.name)],
            };
            let mut at = None::<Checkpoint>;
            for consumer in consumers {
                let cp = self.inner.store.load_checkpoint(&consumer).await?.unwrap_or(Checkpoint::START);
                at = Some(at.map_or(cp, |a| a.min(cp)));
            }
            at.unwrap_or(Checkpoint::START)
        };
        let category = p.selector.single_category();
        if let WaitTarget::Checkpoint(c) = target {
            if at >= c {
                return Ok(true);
            }
            // A projection that reads the whole log moves past every event: while it
            // runs here, its own progress says when.
            if here && category.is_none() {
                return Ok(false);
            }
        }
        if seen.is_some_and(|(behind_at, asked)| behind_at == at && asked.elapsed() < POLL_MAX) {
            return Ok(false);
        }
        let unread = self.inner.store.unread(at, target.position(), category).await?;
        *seen = Some((at, Instant::now()));
        Ok(!unread)
    }
}
