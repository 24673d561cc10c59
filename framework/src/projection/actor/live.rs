//! Following the log: wake-ups forwarded to the actor, and the step each one takes: make
//! sure of the build and the lease, read and apply what is new, cut over once caught up;
//! and waiting out a store that does not answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use tokio::task::JoinHandle;

use super::{Mode, ProjectionActorState, ProjectionMsg, ProjectionShared, OUTAGE_MAX, OUTAGE_START};
use crate::backoff::Backoff;
use crate::projection::ProjectionState;
use crate::store::{Checkpoint, StoreError};

/// Forwards wake-ups (and poll ticks) as `Wake` messages, at most one pending at a time.
pub(super) fn forward_wakes(
    myself: ActorRef<ProjectionMsg>,
    shared: &ProjectionShared,
    pending: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let mut signals = shared.selector.wake_signals(shared.store.as_ref());
    let poll = shared.poll_interval;
    let seat = shared.seat().cloned();
    tokio::spawn(async move {
        loop {
            let changed = futures_util::future::select_all(signals.iter_mut().map(|s| Box::pin(s.changed())));
            let poked = async {
                match &seat {
                    Some(seat) => seat.poke.notified().await,
                    None => std::future::pending().await,
                }
            };
            let signal = tokio::select! {
                () = poked => false,
                (r, _, _) = changed => match r {
                    Ok(()) => true,
                    Err(_) => {
                        // The store is gone; the poll timer is all that is left.
                        tokio::time::sleep(poll).await;
                        false
                    }
                },
                () = tokio::time::sleep(poll) => false,
            };
            if !pending.swap(true, Ordering::AcqRel)
                && myself.send_message(ProjectionMsg::Wake { signal }).is_err()
            {
                return;
            }
        }
    })
}

impl ProjectionActorState {
    /// The name the build's checkpoint, lease and fence hang on.
    pub(super) fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Arms the actor's one timer to fire within `delay`.
    pub(super) fn arm(&mut self, myself: &ActorRef<ProjectionMsg>, delay: Duration) {
        let at = Instant::now() + delay;
        if self.timer.is_some_and(|t| t <= at) {
            return;
        }
        self.timer = Some(at);
        myself.send_after(delay, || ProjectionMsg::Tick);
    }

    pub(super) async fn wake(&mut self, myself: &ActorRef<ProjectionMsg>) -> Result<(), StoreError> {
        if self.mode != Mode::Running {
            return Ok(());
        }
        if let Some(at) = self.not_before {
            let now = Instant::now();
            if now < at {
                self.arm(myself, at - now);
                return Ok(());
            }
            self.not_before = None;
        }
        if self.shared.superseded() {
            if self.shared.status().state != ProjectionState::Retired {
                self.stand_down();
            }
            return Ok(());
        }
        if self.build.is_none() {
            self.register().await?;
        }
        if self.shared.status().state == ProjectionState::Retired {
            return Ok(());
        }
        if self.shared.seat().is_some_and(|s| s.poked.swap(false, Ordering::AcqRel)) {
            // The slices' allotment says this slice's lease should change hands now.
            self.lease_tried = None;
        }
        if self.lease.is_none() {
            if let Some(tried) = self.lease_tried {
                if tried.elapsed() < self.shared.lease_retry {
                    self.arm(myself, self.shared.lease_retry.saturating_sub(tried.elapsed()));
                    return Ok(());
                }
            }
        }
        if !self.ensure_lease().await? {
            if self.shared.status().state != ProjectionState::Retired {
                self.standby(myself);
            }
            return Ok(());
        }
        if self.reload {
            self.checkpoint =
                self.shared.store.load_checkpoint(self.consumer()).await?.unwrap_or(Checkpoint::START);
            self.prefetch = None;
            self.reload = false;
            let cp = self.checkpoint;
            self.shared.update(|s| s.checkpoint = cp);
        }
        let more = match &self.shared.allot {
            // Slices here apply at most so many batches at once.
            Some(allot) => {
                let allot = allot.clone();
                let _permit = allot.running.acquire().await;
                self.step(myself).await?
            }
            None => self.step(myself).await?,
        };
        if !more {
            self.cut_over_if_caught_up().await?;
        }
        if self.outage.take().is_some() {
            tracing::info!(projection = %self.shared.name, "store answers again; projection goes on");
        }
        if more {
            // More may be waiting; go on after whatever else is in the mailbox.
            myself.send_message(ProjectionMsg::Wake { signal: false }).ok();
        }
        Ok(())
    }

    /// The store failed: not a crash of the projection. Wait in place with a short
    /// capped backoff, then read the checkpoint again and go on.
    pub(super) fn store_failed(&mut self, myself: &ActorRef<ProjectionMsg>, error: &StoreError) {
        let delay = self.outage.get_or_insert_with(|| Backoff::new(OUTAGE_START, OUTAGE_MAX)).next_delay();
        if delay == OUTAGE_START {
            tracing::warn!(projection = %self.shared.name, error = %error, "store failed; projection waits for it");
        } else {
            tracing::debug!(projection = %self.shared.name, error = %error, ?delay, "store still failing");
        }
        self.reload = true;
        self.prefetch = None;
        self.shared.update(|s| {
            s.last_error = Some(format!("store: {error}"));
            s.state = ProjectionState::WaitingForStore;
        });
        self.not_before = Some(Instant::now() + delay);
        self.arm(myself, delay);
    }
}
