//! The projection actor: one per projection, under the supervisor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use super::{ProjectionError, ProjectionState, RetryReport};
use crate::backoff::Backoff;
use crate::store::cursor::Chase;
use crate::store::{Checkpoint, Lease, LogPage, ProjectionBuild, StoreError};
use crate::task::AbortOnDrop;

mod builds;
mod failure;
mod lease;
mod live;
mod operations;
mod shared;
mod step;

use live::forward_wakes;
pub(crate) use shared::{Applied, ProjectionShared};

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
    Reset(Checkpoint, RpcReplyPort<Result<(), ProjectionError>>),
    /// Take the projection over for a rebuild: clear the read model, checkpoint at start.
    BeginRebuild(RpcReplyPort<Result<(), ProjectionError>>),
    EndRebuild(RpcReplyPort<()>),
    RetryFailures(RpcReplyPort<Result<RetryReport, ProjectionError>>),
    /// Register a fresh build of the projection's version to build a copy into, take its
    /// lease and prepare it (the owner only).
    BeginCopy(RpcReplyPort<Result<(ProjectionBuild, Lease), ProjectionError>>),
    /// Go on with `build`, now live, holding its `lease`.
    Adopt(ProjectionBuild, Lease, RpcReplyPort<()>),
    /// The registry changed (an operator switched builds): look at it again.
    Refresh,
    /// Retire the builds replaced longer ago than the projection's grace period.
    RetireReplaced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Running,
    Paused,
    Rebuilding,
    Failed,
}

/// The result of reading the next page ahead of time.
type Prefetched = Result<Option<LogPage>, StoreError>;

pub(crate) struct ProjectionActorState {
    shared: Arc<ProjectionShared>,
    myself: ActorRef<ProjectionMsg>,
    /// The build this instance runs, once registered, and its consumer name.
    build: Option<ProjectionBuild>,
    consumer: String,
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
    /// A rebuild's copy left unfinished, being resumed in the background.
    copying: Option<AbortOnDrop<()>>,
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
        // A restarted actor (its predecessor panicked, skipping `post_stop`) holds no lease:
        // its seat must not say otherwise, or the slice would never be taken again.
        if let Some(seat) = shared.seat() {
            seat.holding.store(false, Ordering::Release);
        }
        let wake_pending = Arc::new(AtomicBool::new(true));
        let forwarder = AbortOnDrop::new(forward_wakes(myself.clone(), &shared, wake_pending.clone()));
        shared.set_state(ProjectionState::Starting);
        myself.send_message(ProjectionMsg::Wake { signal: false })?;
        Ok(ProjectionActorState {
            shared,
            myself: myself.clone(),
            build: None,
            consumer: String::new(),
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
            copying: None,
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
                        let index = state.shared.slice.index();
                        if state.mode == Mode::Running
                            && state.shared.allot.as_ref().is_some_and(|a| a.should_release(index))
                        {
                            // Between two batches: the slice moves to another instance.
                            state.hand_over();
                            state.arm(&myself, state.shared.lease_retry);
                            return Ok(());
                        }
                        if let Err(e) = state.serve_request(&myself).await {
                            tracing::warn!(projection = %state.shared.name, error = %e, "operator request not carried out; trying again");
                        }
                    }
                    Some(_) if current => {
                        // Lost (its session broke): stand by, or take it again if free.
                        tracing::warn!(projection = %state.shared.name, "projection lease lost");
                        state.set_lease(None);
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
                    if let Ok(Some(cp)) = state.shared.store.load_checkpoint(&state.consumer).await {
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
            ProjectionMsg::BeginCopy(reply) => {
                let result = state.begin_copy().await;
                reply.send(result).ok();
            }
            ProjectionMsg::RetireReplaced => {
                if let Err(e) = state.retire_replaced().await {
                    tracing::warn!(projection = %state.shared.name, error = %e, "replaced builds not retired; trying again later");
                    state.schedule_retirement(std::time::Duration::from_secs(60));
                }
            }
            ProjectionMsg::Refresh => {
                if state.build.is_some() {
                    if let Err(e) = state.follow_registry().await {
                        state.store_failed(&myself, &e);
                    }
                }
            }
            ProjectionMsg::Adopt(build, lease, reply) => {
                if state.mode == Mode::Failed {
                    // The failure was the old build's: the new one starts afresh.
                    state.mode = Mode::Running;
                }
                if let Err(e) = state.adopt(build, lease).await {
                    state.store_failed(&myself, &e);
                }
                if state.mode == Mode::Running {
                    myself.send_message(ProjectionMsg::Wake { signal: false }).ok();
                }
                reply.send(()).ok();
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.set_lease(None);
        state.shared.set_state(ProjectionState::Stopped);
        Ok(())
    }
}
