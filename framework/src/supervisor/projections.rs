//! The supervisor's requests about projections: their statuses, made of their slices'
//! where they run in slices, and what operators ask of them (pause, resume, reset,
//! rebuild, retry), sent to each of a projection's actors.

use std::sync::Arc;

use ractor::{ActorRef, RpcReplyPort};

use super::actor::SupervisorMsg;
use super::replay::ReplayMsg;
use super::{ask, health, slices, Health, ReplayReport, Supervisor, SupervisorError};
use crate::projection::actor::{ProjectionMsg, ProjectionShared};
use crate::projection::{ProjectionStatus, RetryReport};
use crate::store::{Checkpoint, ProjectionFailure};

impl Supervisor {
    /// The shared state of each of the projection's actors: one, or one per slice.
    pub(super) fn group(&self, name: &str) -> Result<Vec<&Arc<ProjectionShared>>, SupervisorError> {
        let keys =
            self.inner.groups.get(name).ok_or_else(|| SupervisorError::UnknownProjection(name.to_owned()))?;
        Ok(keys.iter().filter_map(|k| self.inner.projections.get(k)).collect())
    }

    /// The projection's (first) actor's shared state.
    pub(super) fn shared(&self, name: &str) -> Result<&Arc<ProjectionShared>, SupervisorError> {
        self.group(name)?
            .into_iter()
            .next()
            .ok_or_else(|| SupervisorError::UnknownProjection(name.to_owned()))
    }

    /// Whether the projection runs in slices.
    pub(super) fn in_slices(&self, name: &str) -> Result<bool, SupervisorError> {
        Ok(self.group(name)?.len() > 1)
    }

    /// A projection's status: state, checkpoint, lag, last error; for a projection in
    /// slices, each slice's too.
    pub fn status(&self, projection: &str) -> Result<ProjectionStatus, SupervisorError> {
        let group: Vec<Arc<ProjectionShared>> = self.group(projection)?.into_iter().cloned().collect();
        Ok(slices::status(&group))
    }

    /// A projection's lag measured now: the events of the log after the checkpoint this
    /// instance last committed (for an instance standing by, the checkpoint in the store);
    /// for a projection in slices, its slowest slice's.
    pub async fn lag(&self, projection: &str) -> Result<u64, SupervisorError> {
        let mut lag = 0;
        for shared in self.group(projection)? {
            let status = shared.status();
            let mut checkpoint = status.checkpoint;
            if status.state == crate::projection::ProjectionState::Standby {
                if let Some(build) = &status.build {
                    let consumer = shared.consumer_of(build);
                    checkpoint = self.inner.store.load_checkpoint(&consumer).await?.unwrap_or(checkpoint);
                }
            }
            lag = lag.max(self.inner.store.count_after(checkpoint, &shared.selector.aggregate_types).await?);
        }
        Ok(lag)
    }

    /// The service's health: [`HealthStatus::Unavailable`](super::HealthStatus::Unavailable) when the store does not answer
    /// within the probe's timeout, [`HealthStatus::Degraded`](super::HealthStatus::Degraded) while a projection is not
    /// live (or standing by for another instance) or lags beyond the bound, with one
    /// reason per cause. Answers within the probe's timeout whatever the store does.
    pub async fn health(&self) -> Health {
        health::check(self.inner.store.as_ref(), &self.statuses(), self.inner.health).await
    }

    /// Every projection's status, by name.
    pub fn statuses(&self) -> Vec<ProjectionStatus> {
        self.inner.groups.keys().filter_map(|name| self.status(name).ok()).collect()
    }

    /// The actor of the projection's child `key`.
    pub(super) async fn child(&self, key: &str) -> Result<ActorRef<ProjectionMsg>, SupervisorError> {
        let child = ask(&self.actor, "the supervisor", |r| SupervisorMsg::Projection(key.to_owned(), r))
            .await
            .map_err(|_| SupervisorError::Stopped)?;
        child.ok_or_else(|| SupervisorError::Unavailable(format!("projection {key:?}")))
    }

    /// The projection's (first) actor.
    pub(super) async fn projection(&self, name: &str) -> Result<ActorRef<ProjectionMsg>, SupervisorError> {
        let key = self
            .inner
            .groups
            .get(name)
            .and_then(|k| k.first())
            .ok_or_else(|| SupervisorError::UnknownProjection(name.to_owned()))?;
        self.child(key).await
    }

    /// Asks each of the projection's actors (each slice's), one after the other.
    async fn each<T: Send + 'static>(
        &self,
        projection: &str,
        message: impl Fn(RpcReplyPort<T>) -> ProjectionMsg,
    ) -> Result<Vec<T>, SupervisorError> {
        let keys = self
            .inner
            .groups
            .get(projection)
            .ok_or_else(|| SupervisorError::UnknownProjection(projection.to_owned()))?;
        let mut answers = Vec::with_capacity(keys.len());
        for key in keys {
            let actor = self.child(key).await?;
            answers.push(ask(&actor, projection, &message).await?);
        }
        Ok(answers)
    }

    /// Pauses a projection after its batch in flight.
    pub async fn pause(&self, projection: &str) -> Result<(), SupervisorError> {
        self.each(projection, ProjectionMsg::Pause).await.map(|_| ())
    }

    /// Resumes a paused projection, or one its failure policy stopped.
    pub async fn resume(&self, projection: &str) -> Result<(), SupervisorError> {
        self.each(projection, ProjectionMsg::Resume).await.map(|_| ())
    }

    /// Moves a projection's checkpoint: it goes on after `to` (the read model is left as
    /// it is; [`Checkpoint::START`] re-applies everything).
    pub async fn reset(&self, projection: &str, to: Checkpoint) -> Result<(), SupervisorError> {
        for answer in self.each(projection, |r| ProjectionMsg::Reset(to, r)).await? {
            answer?;
        }
        Ok(())
    }

    /// Rebuilds a projection while live traffic goes on.
    ///
    /// Where the projection's sink keeps each build's read model apart
    /// ([`ProjectionSink::keeps_builds_apart`](crate::projection::ProjectionSink::keeps_builds_apart),
    /// as `factum_postgres::ExactlyOnce::schema_per_build` does), the log is replayed into
    /// a fresh build beside the live one, which keeps serving; readers switch to the new
    /// build in one step once it has processed everything the live one has, and the old
    /// build stays, replaced, until [retired](Self::retire) ([`switch`](Self::switch)
    /// goes back to it). The report names the new build. Otherwise the read model is
    /// rebuilt in place ([`rebuild_in_place`](Self::rebuild_in_place)).
    pub async fn rebuild(&self, projection: &str) -> Result<ReplayReport, SupervisorError> {
        if self.in_slices(projection)? {
            return Err(SupervisorError::InSlices(projection.to_owned()));
        }
        let apart = self.shared(projection)?.sink.lock().await.keeps_builds_apart();
        if apart {
            self.rebuild_copy(projection).await
        } else {
            self.rebuild_in_place(projection).await
        }
    }

    /// Rebuilds a projection in place: clears its read model (the sink's clear hook) and
    /// resets its checkpoint in one step, replays the log into it through the replay
    /// actor, then lets it follow live again. Readers see the read model empty at first,
    /// then filling up.
    pub async fn rebuild_in_place(&self, projection: &str) -> Result<ReplayReport, SupervisorError> {
        if self.in_slices(projection)? {
            return Err(SupervisorError::InSlices(projection.to_owned()));
        }
        let actor = self.projection(projection).await?;
        ask(&actor, projection, ProjectionMsg::BeginRebuild).await??;
        let shared = self.shared(projection)?.clone();
        let consumer = shared
            .build()
            .map(|b| b.id.consumer())
            .ok_or_else(|| SupervisorError::Unavailable(format!("projection {projection:?}")))?;
        let report = match self.replay_actor().await {
            Ok(replay) => {
                ask(&replay, "the replay actor", |r| ReplayMsg::Projection { shared, consumer, reply: r })
                    .await
                    .and_then(|r| r)
            }
            Err(e) => Err(e),
        };
        // Whatever happened, the projection goes on from the checkpoint the replay left.
        let actor = self.projection(projection).await?;
        ask(&actor, projection, ProjectionMsg::EndRebuild).await?;
        report
    }

    /// A projection's recorded failures (events skipped by its failure policy).
    pub async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, SupervisorError> {
        // Recorded under the consumer name of the build this instance runs (each slice's).
        let mut failures = Vec::new();
        for shared in self.group(projection)? {
            let consumer =
                shared.build().map_or_else(|| shared.slice.consumer(projection), |b| shared.consumer_of(&b));
            failures.extend(self.inner.store.failures(&consumer).await?);
        }
        failures.sort_by_key(|f| f.checkpoint());
        Ok(failures)
    }

    /// Applies a projection's recorded failures again (once its handler is fixed);
    /// those that succeed are removed from the record.
    pub async fn retry_failures(&self, projection: &str) -> Result<RetryReport, SupervisorError> {
        let mut report = RetryReport::default();
        for answer in self.each(projection, ProjectionMsg::RetryFailures).await? {
            let one = answer?;
            report.resolved += one.resolved;
            report.still_failing += one.still_failing;
            report.missing += one.missing;
        }
        Ok(report)
    }
}
