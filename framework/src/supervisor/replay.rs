//! The replay actor (the replay service): feeds the events matching a filter to a
//! handler in batches, and rebuilds projections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::SupervisorError;
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::projection::actor::{Applied, ProjectionShared};
use crate::projection::{catch_panic, EventHandler};
use crate::store::cursor::{CHASE_MAX, CHASE_START};
use crate::store::{Checkpoint, EventFilter, EventStore, LogPage, OrderBy, RecordedEvent, StoreError};

mod options;

pub use options::{ReplayError, ReplayOptions, ReplayProgress, ReplayReport};

const MAX_ERRORS: usize = 100;

/// How long a rebuild waits in place for a store that does not answer before it gives
/// up, and the longest wait between its tries.
const OUTAGE_BUDGET: Duration = Duration::from_secs(300);
const OUTAGE_MAX: Duration = Duration::from_secs(1);
/// How long a rebuild chases a held-back horizon for what was stored when it began.
const HORIZON_BUDGET: Duration = Duration::from_secs(30);

/// A rebuild's wait for the store: an outage is waited out, not a reason to stop.
struct Outage {
    backoff: Backoff,
    since: Option<Instant>,
}

impl Default for Outage {
    fn default() -> Self {
        Outage { backoff: Backoff::new(Duration::from_millis(50), OUTAGE_MAX), since: None }
    }
}

impl Outage {
    /// Waits before the next try, or gives `error` up once the store has failed for
    /// longer than [`OUTAGE_BUDGET`].
    async fn wait(&mut self, what: &str, error: StoreError) -> Result<(), SupervisorError> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= OUTAGE_BUDGET {
            return Err(error.into());
        }
        let delay = self.backoff.next_delay();
        tracing::warn!(replay = %what, error = %error, ?delay, "store failed; the rebuild waits for it");
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

pub(crate) enum ReplayMsg {
    Replay {
        filter: Box<EventFilter>,
        handler: Box<dyn EventHandler>,
        options: ReplayOptions,
        reply: RpcReplyPort<Result<ReplayReport, SupervisorError>>,
    },
    Projection {
        shared: Arc<ProjectionShared>,
        consumer: String,
        reply: RpcReplyPort<Result<ReplayReport, SupervisorError>>,
    },
}

pub(crate) struct ReplayActor;

pub(crate) struct ReplayState {
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
}

struct Run {
    report: ReplayReport,
    started: Instant,
    last_progress: Instant,
    what: String,
}

impl Run {
    fn new(what: String) -> Self {
        tracing::info!(replay = %what, "replay started");
        Run { report: ReplayReport::default(), started: Instant::now(), last_progress: Instant::now(), what }
    }

    fn fail(&mut self, event: &RecordedEvent, error: String) {
        self.report.failed += 1;
        tracing::warn!(replay = %self.what, event_id = %event.event_id, position = %event.position, error, "replay handler failed");
        if self.report.errors.len() < MAX_ERRORS {
            self.report.errors.push(ReplayError {
                event_id: event.event_id,
                position: event.position,
                error,
            });
        }
    }

    fn progress(&mut self, options: &ReplayOptions) {
        if self.last_progress.elapsed() < options.progress_every {
            return;
        }
        self.last_progress = Instant::now();
        let p = ReplayProgress {
            replayed: self.report.replayed,
            failed: self.report.failed,
            elapsed: self.started.elapsed(),
        };
        let rate = p.replayed as f64 / p.elapsed.as_secs_f64().max(1e-9);
        tracing::info!(replay = %self.what, replayed = p.replayed, failed = p.failed, rate = rate as u64, "replay progress");
        if let Some(f) = &options.on_progress {
            f(p);
        }
    }

    fn finish(mut self, metrics: &Metrics) -> ReplayReport {
        self.report.duration = self.started.elapsed();
        metrics.replay_finished(self.report.replayed, self.report.failed, self.report.duration);
        tracing::info!(replay = %self.what, replayed = self.report.replayed, failed = self.report.failed, duration = ?self.report.duration, "replay finished");
        self.report
    }
}

impl ReplayState {
    async fn replay(
        &self,
        filter: EventFilter,
        mut handler: Box<dyn EventHandler>,
        options: ReplayOptions,
    ) -> Result<ReplayReport, SupervisorError> {
        // A replay goes through history in the order it happened, whatever the filter says.
        let filter = filter.order_by(OrderBy::GlobalPosition, true);
        filter.validate(self.store.limits()).map_err(crate::store::StoreError::from)?;
        let mut run = Run::new("filter".to_owned());
        let mut batches = self.store.stream(filter).chunks(options.batch_size);
        'outer: while let Some(batch) = batches.next().await {
            for item in batch {
                let event = item?;
                match catch_panic(handler.handle(&event)).await {
                    Ok(()) => run.report.replayed += 1,
                    Err(e) => {
                        run.fail(&event, e.to_string());
                        if !options.continue_on_error {
                            run.report.stopped_early = true;
                            break 'outer;
                        }
                    }
                }
            }
            run.progress(&options);
        }
        Ok(run.finish(&self.metrics))
    }

    /// Replays the log into a projection's sink from its checkpoint (reset by the
    /// rebuild) up to the live end, a batch per transaction, stopping at the first
    /// error: the projection's own failure policy takes over from there.
    async fn rebuild(
        &self,
        shared: &ProjectionShared,
        consumer: &str,
    ) -> Result<ReplayReport, SupervisorError> {
        catch_up(&self.store, &self.metrics, shared, consumer).await
    }
}

/// Replays the log into the build `consumer` of a projection, through its sink, from the
/// build's checkpoint up to the live end, a batch per transaction, stopping at the first
/// error: the projection's own failure policy takes over from there. What rebuilds do,
/// in place or into a fresh copy.
pub(super) async fn catch_up(
    store: &Arc<dyn EventStore>,
    metrics: &Metrics,
    shared: &ProjectionShared,
    consumer: &str,
) -> Result<ReplayReport, SupervisorError> {
    {
        let mut run = Run::new(format!("rebuild of {consumer}"));
        let options = ReplayOptions::default();
        let mut outage = Outage::default();
        let mut checkpoint = loop {
            match store.load_checkpoint(consumer).await {
                Ok(cp) => break cp.unwrap_or(Checkpoint::START),
                Err(e) => outage.wait(&run.what, e).await?,
            }
        };
        // The rebuild replays at least what its projection had stored when it began: while a
        // transaction elsewhere holds the gap-safe horizon back, it chases the horizon rather
        // than stopping short (at most HORIZON_BUDGET; the live projection goes on after it).
        // What it must read is counted in the projection's categories, and what it has read
        // is counted the same way (a page reports how many events it read).
        let in_scope = loop {
            match store.count_after(checkpoint, &shared.selector.aggregate_types).await {
                Ok(n) => break n,
                Err(e) => outage.wait(&run.what, e).await?,
            }
        };
        let counts_exactly = shared.selector.aggregate_types.len() <= 1;
        let mut read_so_far = 0u64;
        let mut held_back = Backoff::new(CHASE_START, CHASE_MAX);
        let mut held_since: Option<Instant> = None;
        loop {
            let page = match shared.read_batch(checkpoint).await {
                Ok(page) => page,
                Err(e) => {
                    outage.wait(&run.what, e).await?;
                    continue;
                }
            };
            let Some(LogPage { events: selected, to, read, .. }) = page else {
                let since = *held_since.get_or_insert_with(Instant::now);
                if !counts_exactly || read_so_far >= in_scope || since.elapsed() >= HORIZON_BUDGET {
                    break;
                }
                tokio::time::sleep(held_back.next_delay()).await;
                continue;
            };
            read_so_far += read as u64;
            held_back.reset();
            held_since = None;
            match shared.apply_page(consumer, &selected, checkpoint, to).await {
                Ok(Applied::All) => {
                    outage = Outage::default();
                    checkpoint = to;
                    run.report.replayed += selected.len() as u64;
                }
                Ok(Applied::Failed { index, error }) => {
                    if index > 0 {
                        checkpoint = selected[index - 1].checkpoint();
                        run.report.replayed += index as u64;
                    }
                    run.fail(&selected[index], error.to_string());
                    run.report.stopped_early = true;
                    break;
                }
                // Nothing more applied: read again from the checkpoint.
                Ok(Applied::Again) => {}
                Ok(Applied::Fenced) => return Err(SupervisorError::NotOwner(consumer.to_owned())),
                Err(e) => {
                    // The batch may have committed: go on from the stored checkpoint.
                    outage.wait(&run.what, e).await?;
                    checkpoint = loop {
                        match store.load_checkpoint(consumer).await {
                            Ok(cp) => break cp.unwrap_or(Checkpoint::START),
                            Err(e) => outage.wait(&run.what, e).await?,
                        }
                    };
                }
            }
            run.progress(&options);
        }
        let mut report = run.finish(metrics);
        report.checkpoint = Some(checkpoint);
        Ok(report)
    }
}

#[ractor::async_trait]
impl Actor for ReplayActor {
    type Msg = ReplayMsg;
    type State = ReplayState;
    type Arguments = (Arc<dyn EventStore>, Arc<Metrics>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (store, metrics): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ReplayState { store, metrics })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ReplayMsg::Replay { filter, handler, options, reply } => {
                reply.send(state.replay(*filter, handler, options).await).ok();
            }
            ReplayMsg::Projection { shared, consumer, reply } => {
                reply.send(state.rebuild(&shared, &consumer).await).ok();
            }
        }
        Ok(())
    }
}
