//! The failure policy, applied to an event that failed: retry after a backoff, stop, or
//! skip it and record it.

use std::time::Instant;

use ractor::ActorRef;

use super::{Mode, ProjectionActorState, ProjectionMsg};
use crate::projection::{HandlerError, OnExhausted, ProjectionState, SinkError};
use crate::store::{Checkpoint, ProjectionFailure, RecordedEvent, StoreError};

impl ProjectionActorState {
    /// Applies the failure policy to `event`, which failed with `error`.
    pub(super) async fn failed(
        &mut self,
        myself: &ActorRef<ProjectionMsg>,
        event: &RecordedEvent,
        error: HandlerError,
    ) -> Result<bool, StoreError> {
        // Before counting the failure: if the checkpoint moved under this instance (another
        // one applied the batch), the failure is not this event's.
        let stored = self.shared.store.load_checkpoint(self.consumer()).await?.unwrap_or(Checkpoint::START);
        if stored != self.checkpoint {
            return self.fenced(myself).await;
        }
        let attempts = match self.failing {
            Some((id, n)) if id == event.event_id => n + 1,
            _ => 1,
        };
        self.failing = Some((event.event_id, attempts));
        let policy = self.shared.failure;
        self.shared.metrics.projection_events(&self.shared.name, "failed", 1);
        let message = error.to_string();
        self.shared.update(|s| {
            s.last_error = Some(format!("event {} ({}): {message}", event.event_id, event.position))
        });
        if attempts < policy.max_attempts {
            let delay = policy.delay(attempts);
            tracing::warn!(projection = %self.shared.name, event_id = %event.event_id, attempts, ?delay, error = %message, "projection handler failed; retrying");
            self.shared.set_state(ProjectionState::Retrying { attempts });
            self.not_before = Some(Instant::now() + delay);
            self.arm(myself, delay);
            return Ok(false);
        }
        match policy.on_exhausted {
            OnExhausted::Stop => {
                tracing::error!(projection = %self.shared.name, event_id = %event.event_id, attempts, error = %message, "projection stopped by its failure policy");
                // For operators, who see it in `factum status`; gone once the checkpoint moves.
                let stop = ProjectionFailure::new(&self.consumer, event, &message, attempts);
                if let Err(e) = self.shared.store.record_stop(&stop).await {
                    tracing::warn!(projection = %self.shared.name, error = %e, "could not record the stop in the store");
                }
                self.mode = Mode::Failed;
                self.shared.set_state(ProjectionState::Failed);
                Ok(false)
            }
            OnExhausted::SkipAndRecord => {
                let failure = ProjectionFailure::new(&self.consumer, event, &message, attempts);
                let result = self.shared.sink.lock().await.skip(&failure, self.checkpoint).await;
                match result {
                    Ok(()) => {
                        tracing::error!(projection = %self.shared.name, event_id = %event.event_id, attempts, error = %message, "projection skipped an event and recorded it");
                        self.checkpoint = event.checkpoint();
                        self.failing = None;
                        self.shared.metrics.projection_events(&self.shared.name, "skipped", 1);
                        self.shared.metrics.projection_progress(&self.shared.name, event.position.0, None);
                        let cp = self.checkpoint;
                        self.shared.update(|s| {
                            s.checkpoint = cp;
                            s.skipped += 1;
                        });
                        Ok(true)
                    }
                    Err(SinkError::Fenced) => self.fenced(myself).await,
                    Err(SinkError::Store(e)) => Err(e),
                    Err(SinkError::Handler { error, .. }) => Err(StoreError::Backend(error.into_error())),
                }
            }
        }
    }
}
