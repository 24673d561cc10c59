//! What the projection actor does for the supervisor and for operators: reset, rebuild
//! and retry, asked through its messages or recorded in the store as a request.

use ractor::ActorRef;

use super::{Mode, ProjectionActorState, ProjectionMsg, REQUEST_LOOK};
use crate::projection::{ProjectionError, ProjectionState, RetryReport, SinkError};
use crate::store::{Checkpoint, ConsumerRequest, ProjectionFailure, VersionRange};

impl ProjectionActorState {
    /// The lease, for an operation that needs this instance to own the projection.
    pub(super) async fn owned(&mut self) -> Result<(), ProjectionError> {
        if self.ensure_lease().await? {
            Ok(())
        } else {
            Err(ProjectionError::NotOwner(self.shared.name.clone()))
        }
    }

    pub(super) async fn reset(&mut self, to: Checkpoint, clear: bool) -> Result<(), ProjectionError> {
        if clear && self.shared.slice.count() > 1 {
            // Clearing the read model would clear the other slices' rows too.
            return Err(ProjectionError::InSlices);
        }
        self.owned().await?;
        let result = self.shared.sink.lock().await.reset(&self.consumer, to, clear).await;
        match result {
            Ok(()) => {}
            Err(SinkError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(ProjectionError::Sink(e)),
        }
        self.checkpoint = to;
        self.failing = None;
        self.not_before = None;
        self.lag_measured = None;
        self.prefetch = None;
        self.shared.update(|s| {
            s.checkpoint = to;
            s.last_error = None;
            // Measured again at the next read; the old figure no longer holds.
            s.lag = None;
        });
        self.shared.metrics.projection_progress(&self.shared.name, to.position.0, None);
        Ok(())
    }

    /// Carries out an operator's pending request (recorded in the store, for example by
    /// the `factum` command line), then removes it. Asked at every lease check, so a
    /// request is carried out within about a second by the instance holding the lease.
    /// Doing one twice (a crash between carrying it out and removing it) is harmless: a
    /// reset goes to the same checkpoint, and a retry finds the resolved failures gone.
    pub(super) async fn serve_request(
        &mut self,
        myself: &ActorRef<ProjectionMsg>,
    ) -> Result<(), ProjectionError> {
        // Not while the store is failing (the outage wait goes first), and never long: the
        // actor handles nothing else meanwhile, so a look that does not answer at once is
        // left to the next lease check.
        if (self.mode != Mode::Running && self.mode != Mode::Failed) || self.outage.is_some() {
            return Ok(());
        }
        let look = self.shared.store.pending_request(self.consumer());
        let Ok(found) = tokio::time::timeout(REQUEST_LOOK, look).await else {
            return Ok(());
        };
        let Some(pending) = found? else {
            return Ok(());
        };
        let fresh_copy =
            matches!(pending.request, ConsumerRequest::Reset { to: Checkpoint::START, clear: true })
                && self.shared.sink.lock().await.keeps_builds_apart();
        match pending.request {
            ConsumerRequest::Reset { clear: true, .. } if self.shared.slice.count() > 1 => {
                // Not asked again every second: logged, and the request is done with.
                tracing::error!(projection = %self.shared.name, slice = %self.shared.slice, "a projection in slices is not cleared and rebuilt on request: declare a new version");
            }
            ConsumerRequest::Reset { .. } if fresh_copy => {
                // A rebuild from the start: into a fresh copy, while this build serves.
                // One that cannot start is not asked again every second: it is logged.
                match self.rebuild_in_background().await {
                    Ok(()) => {
                        tracing::info!(projection = %self.shared.name, "rebuild into a fresh copy at an operator's request")
                    }
                    Err(ProjectionError::Store(e)) => return Err(e.into()),
                    Err(e) => {
                        tracing::error!(projection = %self.shared.name, error = %e, "the operator's rebuild could not start")
                    }
                }
            }
            ConsumerRequest::Reset { to, clear } => {
                self.reset(to, clear).await?;
                if self.mode == Mode::Failed {
                    self.mode = Mode::Running;
                }
                self.shared.set_state(ProjectionState::CatchingUp);
                tracing::info!(projection = %self.shared.name, checkpoint = %to, clear, "projection reset by an operator's request");
            }
            ConsumerRequest::Switch { version, build } => {
                self.switch_to(version, build).await?;
            }
            ConsumerRequest::RetryFailures => {
                let report = self.retry_failures().await?;
                tracing::info!(projection = %self.shared.name, resolved = report.resolved, still_failing = report.still_failing, missing = report.missing, "recorded failures retried at an operator's request");
            }
        }
        self.shared.store.complete_request(self.consumer(), pending.requested_at).await?;
        myself.send_message(ProjectionMsg::Wake { signal: false }).ok();
        Ok(())
    }

    pub(super) async fn retry_failures(&mut self) -> Result<RetryReport, ProjectionError> {
        self.owned().await?;
        let mut report = RetryReport::default();
        let store = self.shared.store.clone();
        for failure in store.failures(&self.consumer).await? {
            let range = VersionRange::between(failure.version, failure.version);
            let found = store.read_stream(&failure.stream, range).await?;
            let Some(event) = found.into_iter().find(|e| e.event_id == failure.event_id) else {
                report.missing += 1;
                continue;
            };
            let result = self.shared.sink.lock().await.retry_failed(&self.consumer, &event).await;
            match result {
                Ok(()) => report.resolved += 1,
                Err(SinkError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(projection = %self.shared.name, event_id = %event.event_id, error = %e, "recorded failure failed again");
                    // The record says so: one attempt more, this error, now.
                    let again = ProjectionFailure::new(
                        &self.consumer,
                        &event,
                        &e,
                        failure.attempts.saturating_add(1),
                    );
                    store.record_failure(&again).await?;
                    report.still_failing += 1;
                }
            }
        }
        Ok(report)
    }
}
