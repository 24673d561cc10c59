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
use std::sync::Mutex;
use std::time::{Duration, Instant};

use factum::store::AppendResult;
use factum::{ExpectedVersion, NewEvent, StoreError, StreamId};
use tokio::sync::oneshot;

use super::append::AppendFailure;
use super::coalescing::Coalescing;
use super::outcome::may_have_committed;
use super::streams::Part;
use super::PostgresStore;

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
                    counters.retried();
                    self.resolve_apart(p);
                    continue;
                }
                None => {
                    counters.retried();
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
