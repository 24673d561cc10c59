//! The retention actor (the retention manager): deletes events past a retention
//! period, on an interval or on demand, through the store's delete-before path only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;

use super::SupervisorError;
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::store::{BuildState, EventStore, RetentionGuard};

/// What retention may delete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetentionMode {
    /// Events older than the period, except those a registered projection has not
    /// processed yet and those an aggregate still needs because no snapshot covers them.
    #[default]
    Safe,
    /// Every event older than the period (a plain delete). A projection that
    /// lags behind the period, or is rebuilt, misses what was deleted; an aggregate
    /// without a snapshot covering the deleted events loads a state without them.
    Plain,
}

/// Retention settings. Defaults: keep 90 days, clean up every 24 hours, safe mode, not
/// started (call [`Supervisor::start_retention`](crate::Supervisor::start_retention), or
/// set `start`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionConfig {
    /// Events recorded longer ago than this are deleted (default 90 days).
    pub period: Duration,
    /// How often the periodic clean-up runs (default 24 hours).
    pub interval: Duration,
    /// Safe (default) or plain.
    pub mode: RetentionMode,
    /// Start the periodic clean-up with the supervisor (default `false`).
    pub start: bool,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            period: Duration::from_secs(90 * 24 * 3600),
            interval: Duration::from_secs(24 * 3600),
            mode: RetentionMode::Safe,
            start: false,
        }
    }
}

impl RetentionConfig {
    /// Sets the retention period.
    #[must_use]
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Sets the clean-up interval.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_secs(1));
        self
    }

    /// Sets the mode.
    #[must_use]
    pub fn mode(mut self, mode: RetentionMode) -> Self {
        self.mode = mode;
        self
    }

    /// Starts the periodic clean-up with the supervisor.
    #[must_use]
    pub fn start(mut self, start: bool) -> Self {
        self.start = start;
        self
    }
}

/// What a clean-up did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Events deleted.
    pub deleted: u64,
    /// Events recorded before this were candidates.
    pub cutoff: DateTime<Utc>,
    /// The mode it ran in.
    pub mode: RetentionMode,
    /// How long it took.
    pub duration: Duration,
}

pub(crate) struct RetentionShared {
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    config: RetentionConfig,
    projections: Vec<String>,
    running: AtomicBool,
}

impl RetentionShared {
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        metrics: Arc<Metrics>,
        config: RetentionConfig,
        projections: Vec<String>,
    ) -> Self {
        let running = AtomicBool::new(config.start);
        RetentionShared { store, metrics, config, projections, running }
    }

    async fn cleanup(&self) -> Result<RetentionReport, SupervisorError> {
        let started = Instant::now();
        let period = chrono::Duration::from_std(self.config.period).unwrap_or(chrono::Duration::MAX);
        let cutoff = Utc::now().checked_sub_signed(period).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let deleted = match self.config.mode {
            RetentionMode::Safe => {
                // Every build (each of its slices) that may still read the log counts: the live one, one being
                // built from the start, and one replaced that may be switched back to.
                let mut consumers = Vec::new();
                for name in &self.projections {
                    let builds = self.store.builds(name).await?;
                    consumers.extend(
                        builds.iter().filter(|b| b.state != BuildState::Retired).flat_map(|b| b.consumers()),
                    );
                    if builds.is_empty() {
                        consumers.push(name.clone());
                    }
                }
                let guard = RetentionGuard::safe(consumers);
                self.store.delete_before_guarded(cutoff, &guard).await?
            }
            RetentionMode::Plain => self.store.delete_before(cutoff).await?,
        };
        let duration = started.elapsed();
        self.metrics.cleanup_finished(deleted, duration);
        tracing::info!(deleted, %cutoff, mode = ?self.config.mode, ?duration, "retention clean-up");
        Ok(RetentionReport { deleted, cutoff, mode: self.config.mode, duration })
    }
}

pub(crate) enum RetentionMsg {
    Tick,
    /// A periodic clean-up failed on the store: try it again.
    Retry,
    Start(RpcReplyPort<()>),
    Stop(RpcReplyPort<()>),
    CleanupNow(RpcReplyPort<Result<RetentionReport, SupervisorError>>),
}

pub(crate) struct RetentionActor;

pub(crate) struct RetentionState {
    shared: Arc<RetentionShared>,
    timer: Option<JoinHandle<()>>,
    /// While a periodic clean-up waits for the store: the backoff before its next try.
    outage: Option<Backoff>,
}

/// The longest wait between tries of a clean-up that failed on the store.
const OUTAGE_MAX: Duration = Duration::from_secs(1);

impl Drop for RetentionState {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

impl RetentionState {
    fn arm(&mut self, myself: &ActorRef<RetentionMsg>) {
        if self.timer.is_none() {
            self.timer = Some(myself.send_interval(self.shared.config.interval, || RetentionMsg::Tick));
        }
    }
}

#[ractor::async_trait]
impl Actor for RetentionActor {
    type Msg = RetentionMsg;
    type State = RetentionState;
    type Arguments = Arc<RetentionShared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = RetentionState { shared, timer: None, outage: None };
        if state.shared.running.load(Ordering::Acquire) {
            state.arm(&myself);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RetentionMsg::Tick | RetentionMsg::Retry => {
                let retry = matches!(msg, RetentionMsg::Retry);
                // One try at a time: a tick while a retry is pending leaves it to the retry.
                if retry != state.outage.is_some() || !state.shared.running.load(Ordering::Acquire) {
                    if retry {
                        state.outage = None;
                    }
                    return Ok(());
                }
                match state.shared.cleanup().await {
                    Ok(_) => state.outage = None,
                    // An outage is waited out in place, a second apart at most.
                    Err(SupervisorError::Store(e)) => {
                        let backoff = state
                            .outage
                            .get_or_insert_with(|| Backoff::new(Duration::from_millis(50), OUTAGE_MAX));
                        let delay = backoff.next_delay();
                        tracing::warn!(error = %e, ?delay, "retention clean-up failed on the store; trying again");
                        myself.send_after(delay, || RetentionMsg::Retry);
                    }
                    Err(e) => tracing::error!(error = %e, "retention clean-up failed"),
                }
            }
            RetentionMsg::Start(reply) => {
                state.shared.running.store(true, Ordering::Release);
                state.arm(&myself);
                reply.send(()).ok();
            }
            RetentionMsg::Stop(reply) => {
                state.shared.running.store(false, Ordering::Release);
                if let Some(t) = state.timer.take() {
                    t.abort();
                }
                reply.send(()).ok();
            }
            RetentionMsg::CleanupNow(reply) => {
                reply.send(state.shared.cleanup().await).ok();
            }
        }
        Ok(())
    }
}
