//! The projection's lease: taking it, noticing it lost, and standing by.

use std::time::Instant;

use ractor::ActorRef;

use super::{ProjectionActorState, ProjectionMsg};
use crate::projection::ProjectionState;
use crate::store::{Checkpoint, Lease, StoreError};

impl ProjectionActorState {
    /// Makes sure this instance holds the projection's lease, taking it if free; on
    /// taking it, starts from the stored checkpoint.
    pub(super) async fn ensure_lease(&mut self) -> Result<bool, StoreError> {
        let index = self.shared.slice.index();
        if self.lease.as_ref().is_some_and(Lease::is_held) {
            // A paused slice stays where it is paused.
            if self.mode == super::Mode::Running
                && self.shared.allot.as_ref().is_some_and(|a| a.should_release(index))
            {
                self.hand_over();
                return Ok(false);
            }
            return Ok(true);
        }
        if self.lease.is_some() {
            self.set_lease(None);
            // Just lost: wait one lease retry before taking it again, so that an instance
            // standing by gets it first.
            tracing::warn!(projection = %self.shared.name, "projection lease lost");
            self.lease_tried = Some(Instant::now());
            return Ok(false);
        }
        if self.build.is_none() {
            self.register().await?;
        }
        if self.build.is_some() && self.shared.allot.as_ref().is_some_and(|a| !a.may_take(index)) {
            // This instance runs its share of the slices already (asked before the
            // registry, so that a slice standing by costs the store nothing).
            return Ok(false);
        }
        // The registry may have moved on while this instance stood by (a rebuild made
        // a newer build live): take up the build to run now.
        if self.build.is_none() || !self.follow_registry().await? {
            return Ok(false);
        }
        // Slices trying at once take no more than the share between them.
        let allot = self.shared.allot.clone();
        let reservation = match &allot {
            Some(a) => match a.reserve(index) {
                Some(r) => Some(r),
                None => return Ok(false),
            },
            None => None,
        };
        let Some(lease) = self.shared.store.try_lease(self.consumer()).await? else {
            return Ok(false);
        };
        self.checkpoint =
            self.shared.store.load_checkpoint(self.consumer()).await?.unwrap_or(Checkpoint::START);
        self.set_lease(Some(lease));
        drop(reservation);
        self.lease_gen += 1;
        let generation = self.lease_gen;
        self.myself.send_after(self.shared.lease_retry, move || ProjectionMsg::LeaseCheck(generation));
        self.failing = None;
        tracing::info!(projection = %self.shared.name, checkpoint = %self.checkpoint, "projection lease taken");
        let cp = self.checkpoint;
        self.shared.update(|s| s.checkpoint = cp);
        self.schedule_retirement(std::time::Duration::ZERO);
        if let Err(e) = self.resume_copy().await {
            tracing::warn!(projection = %self.shared.name, error = %e, "could not look for an unfinished rebuild");
        }
        Ok(true)
    }

    /// A commit was refused because the checkpoint moved under this instance: another
    /// one wrote it while both believed they held the lease (the other's session broke
    /// and it has not noticed yet). Nothing of the batch was kept. If this instance still
    /// holds the lease it goes on from the stored checkpoint; otherwise it stands by.
    pub(super) async fn fenced(&mut self, myself: &ActorRef<ProjectionMsg>) -> Result<bool, StoreError> {
        if self.left_behind(myself).await? {
            return Ok(false);
        }
        if self.lease.as_ref().is_some_and(Lease::is_held) {
            tracing::warn!(projection = %self.shared.name, "checkpoint moved by another instance; re-reading it");
            self.checkpoint =
                self.shared.store.load_checkpoint(self.consumer()).await?.unwrap_or(Checkpoint::START);
            self.failing = None;
            Ok(true)
        } else {
            tracing::warn!(projection = %self.shared.name, "checkpoint moved by another instance; standing by");
            self.standby(myself);
            Ok(false)
        }
    }

    /// Holds `lease`, or none; the slice's seat says which.
    pub(super) fn set_lease(&mut self, lease: Option<Lease>) {
        if let Some(seat) = self.shared.seat() {
            seat.holding.store(lease.is_some(), std::sync::atomic::Ordering::Release);
        }
        self.lease = lease;
    }

    /// Gives this slice's lease up between two batches, so that another instance runs
    /// it: the last batch has committed, and the next holder starts from its checkpoint.
    pub(super) fn hand_over(&mut self) {
        tracing::info!(projection = %self.shared.name, slice = %self.shared.slice, "slice handed over to another instance");
        self.prefetch = None;
        self.set_lease(None);
        self.lease_tried = Some(Instant::now());
        self.shared.set_state(ProjectionState::Standby);
    }

    pub(super) fn standby(&mut self, myself: &ActorRef<ProjectionMsg>) {
        self.set_lease(None);
        self.lease_tried = Some(Instant::now());
        self.shared.set_state(ProjectionState::Standby);
        self.arm(myself, self.shared.lease_retry);
    }
}
