//! One step of the projection's loop: read the next page after the checkpoint (or take
//! the one read ahead), apply it through the sink, and move the checkpoint.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use ractor::ActorRef;

use super::Applied;
use super::{ProjectionActorState, ProjectionMsg, LAG_EVERY, STAGES};
use crate::projection::ProjectionState;
use crate::store::{LogPage, StoreError};
use crate::task::AbortOnDrop;

impl ProjectionActorState {
    pub(super) async fn measure_lag(&mut self, force: bool) -> Result<(), StoreError> {
        let due = match self.lag_measured {
            None => true,
            Some((at, cp)) => (force && cp != self.checkpoint) || at.elapsed() >= LAG_EVERY,
        };
        if !due {
            return Ok(());
        }
        let lag =
            self.shared.store.count_after(self.checkpoint, &self.shared.selector.aggregate_types).await?;
        self.lag_measured = Some((Instant::now(), self.checkpoint));
        self.shared.metrics.projection_progress(&self.shared.name, self.checkpoint.position.0, Some(lag));
        self.shared.update(|s| s.lag = Some(lag));
        Ok(())
    }

    /// The page after the checkpoint: the one the sink read ahead, or the one prefetched
    /// if it was read from there, else read now. With whether the sink read it.
    async fn next_page(&mut self) -> Result<(Option<LogPage>, bool), StoreError> {
        let (after, limit) = (self.checkpoint, self.shared.page_size);
        let mut sink = self.shared.sink.lock().await;
        // A panic there only means the page is read from the store.
        let ahead = catch_unwind(AssertUnwindSafe(|| sink.read_ahead(after, limit))).ok().flatten();
        drop(sink);
        if let Some(page) = ahead {
            if page.to > self.checkpoint {
                self.prefetch = None;
                return Ok((Some(page), true));
            }
        }
        Ok((self.read_page().await?, false))
    }

    async fn read_page(&mut self) -> Result<Option<LogPage>, StoreError> {
        if let Some((after, mut read)) = self.prefetch.take() {
            if after == self.checkpoint {
                match read.handle().await {
                    Ok(page) => return page,
                    // Panicked or aborted: read it again below.
                    Err(e) => tracing::debug!(projection = %self.shared.name, error = %e, "prefetch lost"),
                }
            }
        }
        self.shared.read_batch(self.checkpoint).await
    }

    /// Reads and applies one batch. Returns whether to go on reading at once.
    pub(super) async fn step(&mut self, myself: &ActorRef<ProjectionMsg>) -> Result<bool, StoreError> {
        let shared = self.shared.clone();
        let started = Instant::now();
        let (page, read_by_sink) = self.next_page().await?;
        tracing::trace!(
            target: STAGES,
            projection = %self.shared.name,
            stage = "read",
            count = page.as_ref().map_or(0, |p| p.events.len() as u64),
            took_us = started.elapsed().as_micros() as u64
        );
        let Some(LogPage { events: selected, to, full, .. }) = page else {
            if self.failing.is_none() {
                self.shared.set_state(ProjectionState::Live);
            }
            self.measure_lag(true).await?;
            if let Some(delay) = self.chase.after_empty(tokio::time::Instant::now()) {
                self.arm(myself, delay);
            }
            return Ok(false);
        };
        self.chase.progressed();
        if full && !read_by_sink {
            // Catching up: fetch the next page while this one is applied (a sink that
            // reads ahead reads it itself).
            let reader = shared.clone();
            let read = tokio::spawn(async move { reader.read_batch(to).await });
            self.prefetch = Some((to, AbortOnDrop::new(read)));
        }
        let consumer = self.consumer.clone();
        match shared.apply_page(&consumer, &selected, self.checkpoint, to).await? {
            Applied::All => {
                self.checkpoint = to;
                self.failing = None;
                self.shared.set_state(if full { ProjectionState::CatchingUp } else { ProjectionState::Live });
                // At most once a second while busy; the empty read that follows the
                // last batch measures it at once.
                self.measure_lag(false).await?;
                Ok(true)
            }
            Applied::Failed { index, error } => {
                if index > 0 {
                    self.checkpoint = selected[index - 1].checkpoint();
                }
                self.failed(myself, &selected[index], error).await
            }
            Applied::Again => Ok(true),
            Applied::Fenced => self.fenced(myself).await,
        }
    }
}
