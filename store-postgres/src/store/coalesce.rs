//! The coalescing writer: appends of the command path (at a version the writer knows)
//! from many aggregates share transactions.
//!
//! An append is queued and taken by the next flush. A flush is started at once while
//! fewer than [`Coalescing::max_in_flight`] are running, so an idle store adds no
//! latency: an append that finds nothing queued and a flush slot free is flushed alone,
//! in its caller's task, by the same statement as without coalescing.
//! Under load, appends that arrive while flushes commit go into the next one, up to
//! [`Coalescing::max_appends`] appends and [`Coalescing::max_bytes`] of payload, and
//! one append per stream (another append to the same stream waits for the next flush).
//! There is no writer task: whoever holds a flush slot when it finishes (the caller of
//! a lone append, or a flushing task) hands it to a task that flushes what was queued
//! meanwhile, and that task goes on, flush after flush, until the queue is empty.
//!
//! A flush is one autocommit statement (`append_streams.sql`) in which each append keeps
//! its own meaning: its version check is its own, it is stored whole or not at all, and
//! it is acknowledged only after the statement commits. An append whose stream is not at
//! its version is stored by nobody and is then tried alone, which answers it exactly as
//! without coalescing (the conflict with the stream's version, or the original result of
//! an exact retry). A flush that fails as a whole (a duplicate id, a version taken by a
//! writer elsewhere, a lost connection) has its appends tried alone, each with its own
//! outcome; an append whose flush committed before the connection was lost is found by
//! its event ids and answered with its result (see `outcome.rs`: it waits for a server
//! that accepts writes to find out).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use factum::store::AppendResult;
use factum::{ExpectedVersion, NewEvent, StoreError, StreamId};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use super::append::AppendFailure;
use super::outcome::may_have_committed;
use super::streams::Part;
use super::PostgresStore;

/// How appends share transactions. On by default; [`Coalescing::off`] gives every append
/// a transaction of its own.
///
/// ```
/// use factum_postgres::{Coalescing, PostgresConfig};
/// let config = PostgresConfig::from_url("postgres://postgres@127.0.0.1/app")?
///     .with_coalescing(Coalescing::default().max_appends(64));
/// assert!(config.coalescing.enabled);
/// let direct = config.with_coalescing(Coalescing::off());
/// assert!(!direct.coalescing.enabled);
/// # Ok::<(), factum_postgres::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Coalescing {
    /// Whether appends at a known version (`Exact`, `NoStream`) are coalesced (default
    /// on). Appends of mode any or stream-exists always run alone.
    pub enabled: bool,
    /// The most appends in one flush (default 256).
    pub max_appends: usize,
    /// The most payload bytes in one flush (default 4 MiB); an append larger than this
    /// is flushed alone.
    pub max_bytes: usize,
    /// How many flushes may run at once (default 1), each on a connection of its own.
    pub max_in_flight: usize,
}

impl Default for Coalescing {
    fn default() -> Self {
        Coalescing { enabled: true, max_appends: 256, max_bytes: 4 << 20, max_in_flight: 1 }
    }
}

impl Coalescing {
    /// No coalescing: each append in a transaction of its own.
    pub fn off() -> Self {
        Coalescing { enabled: false, ..Coalescing::default() }
    }

    /// Sets the most appends in one flush (at least 1).
    #[must_use]
    pub fn max_appends(mut self, n: usize) -> Self {
        self.max_appends = n.max(1);
        self
    }

    /// Sets the most payload bytes in one flush.
    #[must_use]
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets how many flushes may run at once (at least 1).
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }
}

/// Figures of the coalescing writer since the store was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushStats {
    /// Flushes run.
    pub flushes: u64,
    /// Appends they carried.
    pub appends: u64,
    /// The most appends in one flush.
    pub largest: u64,
    /// Appends tried alone after their flush did not store them.
    pub retried_alone: u64,
    /// Time appends spent queued before their flush started, in all.
    pub waited: Duration,
}

pub(crate) struct Counters {
    flushes: AtomicU64,
    appends: AtomicU64,
    largest: AtomicU64,
    retried_alone: AtomicU64,
    waited_ns: AtomicU64,
    /// Appends per flush.
    sizes: Histogram,
    /// Seconds each append waited for its flush to start.
    waits: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            flushes: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            largest: AtomicU64::new(0),
            retried_alone: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
            sizes: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            waits: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
        }
    }
}

impl Counters {
    /// Counts a flush of appends that waited `waits` for it.
    fn flushed(&self, waits: impl Iterator<Item = Duration>) {
        let (mut n, mut waited) = (0u64, 0u64);
        for wait in waits {
            self.waits.observe(wait.as_secs_f64());
            waited += wait.as_nanos() as u64;
            n += 1;
        }
        self.sizes.observe(n as f64);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.appends.fetch_add(n, Ordering::Relaxed);
        self.largest.fetch_max(n, Ordering::Relaxed);
        self.waited_ns.fetch_add(waited, Ordering::Relaxed);
    }

    /// Registers the flush sizes and waits as `append_flush_size` and
    /// `append_flush_wait_seconds` (`factum_…` in the framework's registry).
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "append_flush_size",
            "Appends per flush of the coalescing writer",
            self.sizes.clone(),
        );
        registry.register(
            "append_flush_wait_seconds",
            "Time an append waited for its flush to start",
            self.waits.clone(),
        );
    }

    pub(crate) fn snapshot(&self) -> FlushStats {
        FlushStats {
            flushes: self.flushes.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
            retried_alone: self.retried_alone.load(Ordering::Relaxed),
            waited: Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed)),
        }
    }
}

/// An append waiting for its flush.
pub(crate) struct Pending {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    bytes: usize,
    queued: Instant,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// The appends waiting for a flush, and how many flushes are running.
#[derive(Default)]
pub(crate) struct Coalescer {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    in_flight: usize,
}

impl Coalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a queue and a count, each changed in one step: a panic elsewhere
        // cannot leave it half-changed.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where an append goes: flushed alone in its caller's task, or queued for a flush.
enum Route {
    Alone(Vec<NewEvent>),
    Queued(oneshot::Receiver<Result<AppendResult, StoreError>>),
}

/// A flush slot, held by an append flushed alone in its caller's task or by a flushing
/// task. Dropping it (the append finished, its caller gave up on it, a flush panicked)
/// passes the slot on to the appends queued meanwhile, or frees it.
struct Slot<'a> {
    store: &'a PostgresStore,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.store.pass_slot();
    }
}

impl PostgresStore {
    /// Appends through the coalescing writer.
    pub(crate) async fn append_coalesced(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let max_in_flight = self.inner.coalescing.max_in_flight;
        let route = {
            let mut state = self.inner.coalescer.lock();
            // Nothing queued and a flush slot free: this append is a flush of its own, run
            // here, without a hop through another task.
            if state.queue.is_empty() && state.in_flight < max_in_flight {
                state.in_flight += 1;
                Route::Alone(events)
            } else {
                let bytes = events.iter().map(|e| e.payload_text().map_or(256, |t| t.get().len())).sum();
                let (reply, answer) = oneshot::channel();
                let queued = Instant::now();
                state.queue.push_back(Pending {
                    stream: stream.clone(),
                    expected,
                    events,
                    bytes,
                    queued,
                    reply,
                });
                if state.in_flight < max_in_flight {
                    state.in_flight += 1;
                    tokio::spawn(self.clone().flushing());
                }
                Route::Queued(answer)
            }
        };
        match route {
            Route::Queued(answer) => answer.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable {
                    reason: "the flush of this append ended without an answer".into(),
                })
            }),
            Route::Alone(events) => {
                let first = {
                    let _slot = Slot { store: self };
                    self.inner.flush_counters.flushed(std::iter::once(Duration::ZERO));
                    self.bounded("append", self.append_alone(stream, expected, &events)).await
                };
                // Resolved without the flush slot: the appends queued behind it go on
                // (failing fast while no server accepts writes) instead of waiting.
                match first {
                    Err(e) if may_have_committed(&e) => {
                        self.append_resolved(stream, expected, &events, true).await
                    }
                    other => other,
                }
            }
        }
    }

    /// A flush slot's task: flushes what is queued, flush after flush, until the queue
    /// is empty, then frees the slot. Appends that arrive while a flush commits go into
    /// the next one, with no other task between the two.
    async fn flushing(self) {
        // Should a flush panic, the slot is passed on all the same.
        let slot = Slot { store: &self };
        loop {
            let batch = {
                let mut state = self.inner.coalescer.lock();
                let batch = take_flush(&mut state.queue, &self.inner.coalescing);
                if batch.is_empty() {
                    state.in_flight -= 1;
                    std::mem::forget(slot);
                    return;
                }
                batch
            };
            self.flush(batch).await;
        }
    }

    /// Gives a flush slot up: to a task that flushes the appends queued meanwhile, or
    /// back to the pool of slots when none are.
    fn pass_slot(&self) {
        let mut state = self.inner.coalescer.lock();
        if !state.queue.is_empty() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(self.clone().flushing());
                return;
            }
        }
        state.in_flight -= 1;
    }

    /// Runs one flush and answers its appends.
    async fn flush(&self, mut batch: Vec<Pending>) {
        let counters = &self.inner.flush_counters;
        let now = Instant::now();
        counters.flushed(batch.iter().map(|p| now.duration_since(p.queued)));
        if batch.len() == 1 {
            let p = batch.remove(0);
            let result = self.bounded("append", self.append_alone(&p.stream, p.expected, &p.events)).await;
            match result {
                Err(e) if may_have_committed(&e) => self.resolve_apart(p),
                result => {
                    let _ = p.reply.send(result);
                }
            }
            return;
        }
        // Whether the flush was sent and its connection lost: its appends may have
        // committed, and are resolved by their ids.
        let mut sent = false;
        let outcome = match self.inner.conns.get().await {
            Ok(mut conn) => {
                let parts: Vec<Part<'_>> = batch
                    .iter()
                    .map(|p| Part { stream: &p.stream, expected: p.expected, events: &p.events })
                    .collect();
                let outcome = match tokio::time::timeout(
                    self.inner.timeout,
                    self.append_streams_on(&mut conn, &parts, false),
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        self.inner.avail.suspect_stall();
                        Err(AppendFailure::Other(StoreError::Timeout {
                            operation: "append",
                            after: self.inner.timeout,
                        }))
                    }
                };
                sent =
                    matches!(&outcome, Err(AppendFailure::Other(e)) if super::outcome::may_have_committed(e));
                // A statement refused (a stored id, a version taken) leaves the
                // connection sound; any other failure may not.
                let sound = matches!(
                    outcome,
                    Ok(_)
                        | Err(AppendFailure::Duplicate)
                        | Err(AppendFailure::VersionTaken)
                        | Err(AppendFailure::Other(StoreError::RetryTransaction { .. }))
                );
                conn.release(&if sound {
                    Ok(())
                } else {
                    Err(StoreError::Unavailable { reason: String::new() })
                });
                outcome.ok()
            }
            Err(_) => None,
        };
        let results = outcome.unwrap_or_else(|| batch.iter().map(|_| None).collect());
        for (p, result) in batch.into_iter().zip(results) {
            let result = match result {
                Some(result) => {
                    self.committed(p.stream.aggregate_type());
                    Ok(result)
                }
                None if sent => {
                    counters.retried_alone.fetch_add(1, Ordering::Relaxed);
                    self.resolve_apart(p);
                    continue;
                }
                None => {
                    counters.retried_alone.fetch_add(1, Ordering::Relaxed);
                    match self.bounded("append", self.append_alone(&p.stream, p.expected, &p.events)).await {
                        Err(e) if may_have_committed(&e) => {
                            self.resolve_apart(p);
                            continue;
                        }
                        result => result,
                    }
                }
            };
            let _ = p.reply.send(result);
        }
    }

    /// Resolves an append of unknown outcome in a task of its own and answers it from
    /// there, so that the flushing task goes on with the appends queued behind it.
    fn resolve_apart(&self, p: Pending) {
        let store = self.clone();
        tokio::spawn(async move {
            let result = store.append_resolved(&p.stream, p.expected, &p.events, true).await;
            let _ = p.reply.send(result);
        });
    }
}

/// The next flush from the front of the queue: appends to distinct streams, within the
/// count and byte bounds; the others stay queued, in order.
fn take_flush(queue: &mut VecDeque<Pending>, config: &Coalescing) -> Vec<Pending> {
    let mut batch = Vec::new();
    let mut streams = HashSet::new();
    let mut bytes = 0;
    let mut rest = VecDeque::with_capacity(queue.len());
    while let Some(p) = queue.pop_front() {
        let fits =
            batch.is_empty() || (batch.len() < config.max_appends && bytes + p.bytes <= config.max_bytes);
        if fits && !streams.contains(&p.stream) {
            bytes += p.bytes;
            streams.insert(p.stream.clone());
            batch.push(p);
        } else {
            rest.push_back(p);
            if batch.len() >= config.max_appends {
                break;
            }
        }
    }
    rest.append(queue);
    *queue = rest;
    batch
}
