//! The projection actor: one per projection, under the supervisor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{OnExhausted, ProjectionState, RetryReport, SinkError};
use crate::backoff::Backoff;
use crate::store::cursor::Chase;
use crate::store::{Checkpoint, Lease, LogPage, ProjectionFailure, RecordedEvent, StoreError};
use crate::supervisor::SupervisorError;

mod operations;
mod shared;

pub(crate) use shared::ProjectionShared;

pub(crate) enum ProjectionMsg {
    /// Read and apply what is new: `signal` if the log said it grew (a wake-up), else
    /// from a poll or from the actor itself.
    Wake {
        signal: bool,
    },
    /// The actor's one timer fired (retry backoff, lease retry, horizon chase).
    Tick,
    /// Time to check that the lease taken as generation `n` still stands.
    LeaseCheck(u64),
    Pause(RpcReplyPort<()>),
    Resume(RpcReplyPort<()>),
    Reset(Checkpoint, RpcReplyPort<Result<(), SupervisorError>>),
    /// Take the projection over for a rebuild: clear the read model, checkpoint at start.
    BeginRebuild(RpcReplyPort<Result<(), SupervisorError>>),
    EndRebuild(RpcReplyPort<()>),
    RetryFailures(RpcReplyPort<Result<RetryReport, SupervisorError>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Running,
    Paused,
    Rebuilding,
    Failed,
}

/// Aborts a task when dropped: the actor's state owns its helpers, and the state is
/// dropped however the actor ends (`post_stop` does not run after a panic or a kill).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The result of reading the next page ahead of time.
type Prefetched = Result<Option<LogPage>, StoreError>;

pub(crate) struct ProjectionActorState {
    shared: Arc<ProjectionShared>,
    myself: ActorRef<ProjectionMsg>,
    lease: Option<Lease>,
    /// Counts the leases taken, so that a check of an older one is ignored.
    lease_gen: u64,
    checkpoint: Checkpoint,
    mode: Mode,
    /// The event that is failing and its failed attempts so far.
    failing: Option<(Uuid, u32)>,
    /// No reading before this instant (a retry's backoff).
    not_before: Option<Instant>,
    /// After a wake-up: re-reading while what committed sits behind the horizon.
    chase: Chase,
    /// When the one pending timer fires, if one is armed.
    timer: Option<Instant>,
    /// When this instance last tried to take the lease and failed.
    lease_tried: Option<Instant>,
    /// Set by the wake forwarder when it has sent a `Wake` not yet handled.
    wake_pending: Arc<AtomicBool>,
    lag_measured: Option<(Instant, Checkpoint)>,
    /// While catching up: the read of the page after the batch being applied, started
    /// before applying it, and the checkpoint it reads after.
    prefetch: Option<(Checkpoint, AbortOnDrop<Prefetched>)>,
    /// While the store does not answer: the backoff before the next try.
    outage: Option<Backoff>,
    /// The checkpoint in memory may be stale (a batch failed on the store): read it again
    /// before the next batch.
    reload: bool,
    _forwarder: AbortOnDrop<()>,
}

/// The target of the trace events that stamp a projection's wake-ups and reads (for a
/// benchmark's breakdown of where latency goes; nothing is recorded unless enabled).
const STAGES: &str = "factum::projection::stages";
/// How long a lease check waits for the store to say whether an operator's request is
/// pending before leaving it to the next check.
const REQUEST_LOOK: Duration = Duration::from_millis(200);
/// How often lag is measured while a projection is busy.
const LAG_EVERY: Duration = Duration::from_secs(1);
/// The first and the longest wait between tries while the store does not answer: an
/// outage is waited out in place, and the projection goes on within a second of the
/// store's return.
const OUTAGE_START: Duration = Duration::from_millis(50);
const OUTAGE_MAX: Duration = Duration::from_millis(500);

pub(crate) struct ProjectionActor;

/// Forwards wake-ups (and poll ticks) as `Wake` messages, at most one pending at a time.
fn forward_wakes(
    myself: ActorRef<ProjectionMsg>,
    shared: &ProjectionShared,
    pending: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let mut signals = shared.selector.wake_signals(shared.store.as_ref());
    let poll = shared.poll_interval;
    tokio::spawn(async move {
        loop {
            let changed = futures_util::future::select_all(signals.iter_mut().map(|s| Box::pin(s.changed())));
            let signal = tokio::select! {
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
    fn name(&self) -> &str {
        &self.shared.name
    }

    /// Makes sure this instance holds the projection's lease, taking it if free; on
    /// taking it, starts from the stored checkpoint.
    async fn ensure_lease(&mut self) -> Result<bool, StoreError> {
        if self.lease.as_ref().is_some_and(Lease::is_held) {
            return Ok(true);
        }
        if self.lease.take().is_some() {
            // Just lost: wait one lease retry before taking it again, so that an instance
            // standing by gets it first.
            tracing::warn!(projection = %self.shared.name, "projection lease lost");
            self.lease_tried = Some(Instant::now());
            return Ok(false);
        }
        let Some(lease) = self.shared.store.try_lease(self.name()).await? else {
            return Ok(false);
        };
        self.checkpoint = self.shared.store.load_checkpoint(self.name()).await?.unwrap_or(Checkpoint::START);
        self.lease = Some(lease);
        self.lease_gen += 1;
        let generation = self.lease_gen;
        self.myself.send_after(self.shared.lease_retry, move || ProjectionMsg::LeaseCheck(generation));
        self.failing = None;
        tracing::info!(projection = %self.shared.name, checkpoint = %self.checkpoint, "projection lease taken");
        let cp = self.checkpoint;
        self.shared.update(|s| s.checkpoint = cp);
        Ok(true)
    }

    /// A commit was refused because the checkpoint moved under this instance: another
    /// one wrote it while both believed they held the lease (the other's session broke
    /// and it has not noticed yet). Nothing of the batch was kept. If this instance still
    /// holds the lease it goes on from the stored checkpoint; otherwise it stands by.
    async fn fenced(&mut self, myself: &ActorRef<ProjectionMsg>) -> Result<bool, StoreError> {
        if self.lease.as_ref().is_some_and(Lease::is_held) {
            tracing::warn!(projection = %self.shared.name, "checkpoint moved by another instance; re-reading it");
            self.checkpoint =
                self.shared.store.load_checkpoint(self.name()).await?.unwrap_or(Checkpoint::START);
            self.failing = None;
            Ok(true)
        } else {
            tracing::warn!(projection = %self.shared.name, "checkpoint moved by another instance; standing by");
            self.standby(myself);
            Ok(false)
        }
    }

    fn standby(&mut self, myself: &ActorRef<ProjectionMsg>) {
        self.lease = None;
        self.lease_tried = Some(Instant::now());
        self.shared.set_state(ProjectionState::Standby);
        self.arm(myself, self.shared.lease_retry);
    }

    /// Arms the actor's one timer to fire within `delay`.
    fn arm(&mut self, myself: &ActorRef<ProjectionMsg>, delay: Duration) {
        let at = Instant::now() + delay;
        if self.timer.is_some_and(|t| t <= at) {
            return;
        }
        self.timer = Some(at);
        myself.send_after(delay, || ProjectionMsg::Tick);
    }

    async fn measure_lag(&mut self, force: bool) -> Result<(), StoreError> {
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

    /// The page after the checkpoint: the one prefetched if it was read from there, else
    /// read now.
    async fn next_page(&mut self) -> Result<Option<LogPage>, StoreError> {
        if let Some((after, mut read)) = self.prefetch.take() {
            if after == self.checkpoint {
                match (&mut read.0).await {
                    Ok(page) => return page,
                    // Panicked or aborted: read it again below.
                    Err(e) => tracing::debug!(projection = %self.shared.name, error = %e, "prefetch lost"),
                }
            }
        }
        self.shared.read_batch(self.checkpoint).await
    }

    /// Reads and applies one batch. Returns whether to go on reading at once.
    async fn step(&mut self, myself: &ActorRef<ProjectionMsg>) -> Result<bool, StoreError> {
        let shared = self.shared.clone();
        let started = Instant::now();
        let page = self.next_page().await?;
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
        if full {
            // Catching up: fetch the next page while this one is applied.
            let reader = shared.clone();
            let read = tokio::spawn(async move { reader.read_batch(to).await });
            self.prefetch = Some((to, AbortOnDrop(read)));
        }
        let from = self.checkpoint;
        match shared.apply(&selected, from, to).await {
            Ok(()) => {
                self.advanced(to, selected.len() as u64);
                self.failing = None;
                self.shared.set_state(if full { ProjectionState::CatchingUp } else { ProjectionState::Live });
                // At most once a second while busy; the empty read that follows the
                // last batch measures it at once.
                self.measure_lag(false).await?;
                Ok(true)
            }
            Err(SinkError::Fenced) => self.fenced(myself).await,
            Err(SinkError::Store(e)) => Err(e),
            Err(SinkError::Handler { index, error, prefix_committed }) => {
                if index > 0 {
                    let prefix_to = selected[index - 1].checkpoint();
                    if !prefix_committed {
                        match shared.apply(&selected[..index], from, prefix_to).await {
                            Ok(()) => {}
                            Err(SinkError::Fenced) => return self.fenced(myself).await,
                            Err(SinkError::Store(e)) => return Err(e),
                            // It failed differently this time: start over from the checkpoint.
                            Err(SinkError::Handler { .. }) => return Ok(true),
                        }
                    }
                    self.advanced(prefix_to, index as u64);
                }
                self.failed(myself, &selected[index], error).await
            }
        }
    }

    fn advanced(&mut self, to: Checkpoint, handled: u64) {
        self.checkpoint = to;
        self.shared.metrics.projection_events(&self.shared.name, "handled", handled);
        self.shared.metrics.projection_progress(&self.shared.name, to.position.0, None);
        self.shared.update(|s| {
            s.checkpoint = to;
            s.handled += handled;
        });
    }

    /// Applies the failure policy to `event`, which failed with `error`.
    async fn failed(
        &mut self,
        myself: &ActorRef<ProjectionMsg>,
        event: &RecordedEvent,
        error: super::HandlerError,
    ) -> Result<bool, StoreError> {
        // Before counting the failure: if the checkpoint moved under this instance (another
        // one applied the batch), the failure is not this event's.
        let stored = self.shared.store.load_checkpoint(self.name()).await?.unwrap_or(Checkpoint::START);
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
                let stop = ProjectionFailure::new(&self.shared.name, event, &message, attempts);
                if let Err(e) = self.shared.store.record_stop(&stop).await {
                    tracing::warn!(projection = %self.shared.name, error = %e, "could not record the stop in the store");
                }
                self.mode = Mode::Failed;
                self.shared.set_state(ProjectionState::Failed);
                Ok(false)
            }
            OnExhausted::SkipAndRecord => {
                let failure = ProjectionFailure::new(&self.shared.name, event, &message, attempts);
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

    async fn wake(&mut self, myself: &ActorRef<ProjectionMsg>) -> Result<(), StoreError> {
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
        if self.lease.is_none() {
            if let Some(tried) = self.lease_tried {
                if tried.elapsed() < self.shared.lease_retry {
                    self.arm(myself, self.shared.lease_retry.saturating_sub(tried.elapsed()));
                    return Ok(());
                }
            }
        }
        if !self.ensure_lease().await? {
            self.standby(myself);
            return Ok(());
        }
        if self.reload {
            self.checkpoint =
                self.shared.store.load_checkpoint(self.name()).await?.unwrap_or(Checkpoint::START);
            self.prefetch = None;
            self.reload = false;
            let cp = self.checkpoint;
            self.shared.update(|s| s.checkpoint = cp);
        }
        let more = self.step(myself).await?;
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
    fn store_failed(&mut self, myself: &ActorRef<ProjectionMsg>, error: &StoreError) {
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

#[ractor::async_trait]
impl Actor for ProjectionActor {
    type Msg = ProjectionMsg;
    type State = ProjectionActorState;
    type Arguments = Arc<ProjectionShared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let wake_pending = Arc::new(AtomicBool::new(true));
        let forwarder = AbortOnDrop(forward_wakes(myself.clone(), &shared, wake_pending.clone()));
        shared.set_state(ProjectionState::Starting);
        myself.send_message(ProjectionMsg::Wake { signal: false })?;
        Ok(ProjectionActorState {
            shared,
            myself: myself.clone(),
            lease: None,
            lease_gen: 0,
            checkpoint: Checkpoint::START,
            mode: Mode::Running,
            failing: None,
            not_before: None,
            chase: Chase::default(),
            timer: None,
            lease_tried: None,
            wake_pending,
            lag_measured: None,
            prefetch: None,
            outage: None,
            reload: false,
            _forwarder: forwarder,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProjectionMsg::Wake { .. } | ProjectionMsg::Tick => {
                let from_log = match msg {
                    ProjectionMsg::Wake { signal } => {
                        state.wake_pending.swap(false, Ordering::AcqRel) && signal
                    }
                    _ => {
                        state.timer = None;
                        false
                    }
                };
                tracing::trace!(target: STAGES, projection = %state.shared.name, stage = "wake", signal = from_log);
                if from_log {
                    // The log grew: if the read comes back empty, what committed sits
                    // behind the horizon for a moment; re-read until it shows.
                    state.chase.woken(tokio::time::Instant::now());
                }
                if let Err(e) = state.wake(&myself).await {
                    state.store_failed(&myself, &e);
                }
            }
            ProjectionMsg::LeaseCheck(generation) => {
                let current = generation == state.lease_gen;
                match &state.lease {
                    Some(lease) if current && lease.is_held() => {
                        let every = state.shared.lease_retry;
                        myself.send_after(every, move || ProjectionMsg::LeaseCheck(generation));
                        if let Err(e) = state.serve_request(&myself).await {
                            tracing::warn!(projection = %state.shared.name, error = %e, "operator request not carried out; trying again");
                        }
                    }
                    Some(_) if current => {
                        // Lost (its session broke): stand by, or take it again if free.
                        tracing::warn!(projection = %state.shared.name, "projection lease lost");
                        state.lease = None;
                        state.lease_tried = Some(Instant::now());
                        state.shared.set_state(ProjectionState::Standby);
                        if let Err(e) = state.wake(&myself).await {
                            state.store_failed(&myself, &e);
                        }
                    }
                    _ => {}
                }
            }
            ProjectionMsg::Pause(reply) => {
                if state.mode == Mode::Running || state.mode == Mode::Failed {
                    state.mode = Mode::Paused;
                    state.shared.set_state(ProjectionState::Paused);
                }
                reply.send(()).ok();
            }
            ProjectionMsg::Resume(reply) => {
                if state.mode == Mode::Paused || state.mode == Mode::Failed {
                    state.mode = Mode::Running;
                    state.failing = None;
                    state.not_before = None;
                    state.shared.set_state(ProjectionState::CatchingUp);
                    myself.send_message(ProjectionMsg::Wake { signal: false }).ok();
                }
                reply.send(()).ok();
            }
            ProjectionMsg::Reset(to, reply) => {
                let result = state.reset(to, false).await;
                if state.mode == Mode::Running {
                    myself.send_message(ProjectionMsg::Wake { signal: false }).ok();
                }
                reply.send(result).ok();
            }
            ProjectionMsg::BeginRebuild(reply) => {
                let result = state.reset(Checkpoint::START, true).await;
                if result.is_ok() {
                    state.mode = Mode::Rebuilding;
                    state.shared.set_state(ProjectionState::Rebuilding);
                }
                reply.send(result).ok();
            }
            ProjectionMsg::EndRebuild(reply) => {
                if state.mode == Mode::Rebuilding {
                    state.mode = Mode::Running;
                    // The replay moved the checkpoint; take it from the store.
                    if let Ok(Some(cp)) = state.shared.store.load_checkpoint(&state.shared.name).await {
                        state.checkpoint = cp;
                    }
                    state.shared.set_state(ProjectionState::CatchingUp);
                    myself.send_message(ProjectionMsg::Wake { signal: false }).ok();
                }
                reply.send(()).ok();
            }
            ProjectionMsg::RetryFailures(reply) => {
                let result = state.retry_failures().await;
                reply.send(result).ok();
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.shared.set_state(ProjectionState::Stopped);
        Ok(())
    }
}
