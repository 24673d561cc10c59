//! The overview's figures, sampled in the background so that a view reads memory only,
//! however large the store: the head of the log and the events since the last sample by
//! aggregate type, each projection's checkpoint, and (less often) the store's report.
//!
//! A ring keeps the last [`RING`] samples for the rates and sparklines; every figure
//! shown carries the time it was measured.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use factum::store::EventLog;
use factum::store::GlobalPosition;
use factum_postgres::{Horizon, ProjectionReport, StoreEstimate, StoreReport};

use crate::Shared;

/// Samples kept: five minutes at the default interval of 2 s.
pub(crate) const RING: usize = 150;
/// A range of new events longer than this is not counted by type (the sample would read
/// too much): its rates by type are left out.
const MAX_COUNTED: u64 = 200_000;
/// Projection reports (each counts what lies after a checkpoint) at most every this many
/// sample intervals.
const REPORTS_EVERY: u32 = 3;
/// The whole-table store report at most this often (and at least [`BACKOFF`] times as
/// long as it took apart).
const STORE_REPORT_EVERY: Duration = Duration::from_secs(300);

/// One sample.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) taken: Instant,
    /// Seconds since the previous sample (0 for the first).
    pub(crate) interval: f64,
    /// The head of the log.
    pub(crate) latest: u64,
    /// Events appended since the previous sample, by aggregate type; `None` when not
    /// counted (the first sample, or too many).
    pub(crate) by_type: Option<Vec<(String, u64)>>,
    /// Each projection: its name, checkpoint and events behind the head.
    pub(crate) projections: Vec<(String, u64, u64)>,
}

impl Sample {
    /// Events per second since the previous sample.
    pub(crate) fn rate(&self, previous: &Sample) -> f64 {
        if self.interval <= 0.0 {
            return 0.0;
        }
        self.latest.saturating_sub(previous.latest) as f64 / self.interval
    }
}

/// A figure and when it was measured.
#[derive(Clone, Debug)]
pub(crate) struct Measured<T> {
    pub(crate) value: T,
    pub(crate) at: Instant,
}

/// What the sampler last measured.
#[derive(Default)]
pub(crate) struct Samples {
    ring: Mutex<VecDeque<Sample>>,
    pub(crate) reports: Mutex<Option<Measured<Vec<ProjectionReport>>>>,
    pub(crate) horizon: Mutex<Option<Measured<Horizon>>>,
    pub(crate) estimate: Mutex<Option<Measured<StoreEstimate>>>,
    pub(crate) store: Mutex<Option<Measured<StoreReport>>>,
    /// The last sampling error, if the last sample failed.
    pub(crate) error: Mutex<Option<String>>,
    /// When a page was last viewed: the sampler pauses after [`IDLE`] without one.
    last_view: Mutex<Option<Instant>>,
    /// When the whole-table report is next due (`None`: now).
    store_due: Mutex<Option<Instant>>,
    /// Whether it runs.
    store_running: AtomicBool,
}

impl Samples {
    /// Notes a view: the sampler samples while the console is looked at.
    pub(crate) fn viewed(&self) {
        if let Ok(mut at) = self.last_view.lock() {
            *at = Some(Instant::now());
        }
    }

    fn idle(&self) -> bool {
        self.last_view.lock().map_or(true, |at| at.is_none_or(|at| at.elapsed() > IDLE))
    }

    /// The newest sample.
    pub(crate) fn latest(&self) -> Option<Sample> {
        self.ring.lock().ok().and_then(|r| r.back().cloned())
    }

    /// The ring, oldest first.
    pub(crate) fn ring(&self) -> Vec<Sample> {
        self.ring.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }

    fn push(&self, sample: Sample) {
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(sample);
        }
    }
}

/// The store's reports of `status`'s live build: one per slice (the projection's own name
/// before it has a build).
pub(crate) fn reports_of<'a>(
    status: &factum::projection::ProjectionStatus,
    reports: &'a [ProjectionReport],
) -> Vec<&'a ProjectionReport> {
    let consumers = status.build.as_ref().map_or_else(|| vec![status.name.clone()], |b| b.consumers());
    reports.iter().filter(|r| consumers.contains(&r.name)).collect()
}

/// A projection's checkpoint: this instance's where it runs the projection (and all its
/// slices), else the slowest of the store's reports (another instance runs it).
pub(crate) fn checkpoint_of(
    status: &factum::projection::ProjectionStatus,
    reports: &[&ProjectionReport],
) -> u64 {
    use factum::projection::ProjectionState::Standby;
    let elsewhere = status.state == Standby || status.slices.iter().any(|s| s.state == Standby);
    match reports.iter().map(|r| r.checkpoint.position.0).min() {
        Some(stored) if elsewhere => stored,
        _ => status.checkpoint.position.0,
    }
}

/// Reads a measured figure.
pub(crate) fn read<T: Clone>(slot: &Mutex<Option<Measured<T>>>) -> Option<Measured<T>> {
    slot.lock().ok().and_then(|m| m.clone())
}

fn set<T>(slot: &Mutex<Option<Measured<T>>>, value: T) {
    if let Ok(mut m) = slot.lock() {
        *m = Some(Measured { value, at: Instant::now() });
    }
}

/// The sampler pauses after this long without a view of the console.
const IDLE: Duration = Duration::from_secs(600);

/// A slow statement waits this many times its own duration before it runs again, so that
/// the console's share of the database stays small however large the store grows.
const BACKOFF: u32 = 20;

fn next(at: Instant, took: Duration, floor: Duration) -> Option<Instant> {
    Some(at + floor.max(took * BACKOFF))
}

/// Starts the sampler; it stops when the console is dropped.
pub(crate) fn start(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    let every = shared.config.sample_every;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reports_due: Option<Instant> = None;
        loop {
            tick.tick().await;
            let Some(shared) = Weak::upgrade(&weak) else { return };
            if shared.samples.idle() {
                continue;
            }
            let error = sample(&shared, &mut reports_due).await.err().map(|e| e.to_string());
            if let Some(e) = &error {
                tracing::debug!(error = %e, "console sample failed");
            }
            if let Ok(mut slot) = shared.samples.error.lock() {
                *slot = error;
            };
        }
    });
}

async fn sample(shared: &Arc<Shared>, reports_due: &mut Option<Instant>) -> Result<(), factum::StoreError> {
    let store = &shared.store;
    let samples = &shared.samples;
    let latest = store.latest_position().await?.map_or(0, |p| p.0);
    let previous = samples.ring.lock().ok().and_then(|r| r.back().cloned());
    let by_type = match &previous {
        Some(p) if latest.saturating_sub(p.latest) <= MAX_COUNTED => {
            Some(store.counts_by_type(GlobalPosition(p.latest), GlobalPosition(latest)).await?)
        }
        _ => None,
    };
    let reports = read(&samples.reports).map(|r| r.value).unwrap_or_default();
    let projections = shared
        .supervisor
        .statuses()
        .into_iter()
        .map(|s| {
            let checkpoint = checkpoint_of(&s, &reports_of(&s, &reports));
            (s.name, checkpoint, latest.saturating_sub(checkpoint))
        })
        .collect();
    let taken = Instant::now();
    let interval = previous.map_or(0.0, |p| taken.duration_since(p.taken).as_secs_f64());
    samples.push(Sample { taken, interval, latest, by_type, projections });
    set(&samples.horizon, store.horizon().await?);
    let now = Instant::now();
    if reports_due.is_none_or(|at| now >= at) {
        // Each projection's report counts what lies after its checkpoint. Due again later
        // whether it succeeds or not (a statement that timed out is not sent every tick).
        let reports = store.projection_reports(None).await;
        *reports_due = next(now, now.elapsed(), shared.config.sample_every * REPORTS_EVERY);
        set(&samples.reports, reports?);
        set(&samples.estimate, store.estimate().await?);
    }
    let due_store = samples.store_due.lock().map(|d| d.is_none_or(|at| now >= at)).unwrap_or(false);
    if due_store && !samples.store_running.swap(true, Ordering::AcqRel) {
        // The whole table: in a task of its own, so the samples go on meanwhile.
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            let started = Instant::now();
            match shared.store.store_report().await {
                Ok(report) => set(&shared.samples.store, report),
                Err(e) => tracing::debug!(error = %e, "the console's store report failed"),
            }
            if let Ok(mut at) = shared.samples.store_due.lock() {
                *at = next(started, started.elapsed(), STORE_REPORT_EVERY);
            }
            shared.samples.store_running.store(false, Ordering::Release);
        });
    }
    Ok(())
}
