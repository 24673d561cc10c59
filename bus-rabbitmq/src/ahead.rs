//! Publishing ahead: while a batch's confirms are awaited, the publisher follows the log
//! itself and publishes what comes next, so that the broker's confirm latency holds back
//! the checkpoint rather than new events.
//!
//! It follows the log as every reader of the framework does: through
//! [`read_log`](factum::store::EventLog::read_log) with the projection's own
//! [`LogSelector`], selecting in the store, and, when a read after a wake-up finds nothing
//! yet (an event that just committed can sit behind the gap-safe horizon until an older
//! transaction ends), chasing the horizon with [`Chase`]. Reads are at least
//! [`READ_GAP`] apart; without a signal it polls every [`POLL`]. What it publishes is
//! matched against the next batch by event id; anything else (a failure, a reset, a batch
//! that does not start where reading ahead did) discards it, and the batch publishes its
//! events itself.
//!
//! What was read ahead is also the projection's next batch
//! ([`ProjectionSink::read_ahead`](factum::projection::ProjectionSink::read_ahead)), so
//! each event is read from PostgreSQL once, and it was made durable when it was read.

use std::collections::VecDeque;
use std::time::Duration;

use factum::store::{Chase, Checkpoint, LogPage, WakeSignal};
use factum::RecordedEvent;
use tokio::time::Instant;

use crate::delivery::{abandon, InFlight, STAGES};
use crate::publisher::Publisher;

/// The shortest time between two reads ahead: each is a gap-safe query on the store.
pub(crate) const READ_GAP: Duration = Duration::from_millis(2);
/// How often the log is read ahead without a signal.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// What was published ahead, and when to read next.
pub(crate) struct Ahead {
    /// Published ahead of the batch being confirmed, in log order.
    pub(crate) sent: VecDeque<InFlight>,
    /// Where reading ahead goes on from; `None` until the next batch says.
    pub(crate) after: Option<Checkpoint>,
    /// Where what was read ahead (`sent`) begins: the end of the last batch.
    pub(crate) from: Option<Checkpoint>,
    /// Changes when the log grows.
    pub(crate) signal: WakeSignal,
    /// Whether the signal still works (the store behind it may be gone).
    pub(crate) listening: bool,
    /// When the log was last read ahead.
    last_read: Instant,
    /// When to read next.
    read_at: Instant,
    /// Chasing the horizon after a wake-up.
    chase: Chase,
}

impl Ahead {
    pub(crate) fn new(mut signal: WakeSignal) -> Self {
        signal.borrow_and_update();
        Ahead {
            sent: VecDeque::new(),
            after: None,
            from: None,
            signal,
            listening: true,
            last_read: Instant::now(),
            read_at: Instant::now() + POLL,
            chase: Chase::default(),
        }
    }

    /// The signal changed (`open`), or its store is gone.
    pub(crate) fn grew(&mut self, open: bool) {
        if open {
            let now = Instant::now();
            self.chase.woken(now);
            self.read_at = (self.last_read + READ_GAP).max(now);
        } else {
            self.listening = false;
        }
    }

    /// When the next read ahead is due.
    pub(crate) fn next_read(&self) -> Instant {
        self.read_at
    }

    /// A read ahead ended: found events (`progressed`) or nothing.
    fn read(&mut self, progressed: bool) {
        let now = Instant::now();
        self.last_read = now;
        let delay = if progressed {
            self.chase.progressed();
            READ_GAP
        } else {
            self.chase.after_empty(now).map_or(POLL, |d| d.max(READ_GAP))
        };
        self.read_at = now + delay;
    }

    /// Forgets what was published ahead; reading ahead starts again after `from` (or
    /// after the batch that comes next).
    pub(crate) fn discard(&mut self, from: Option<Checkpoint>) {
        abandon(std::mem::take(&mut self.sent).into_iter().map(|f| f.confirm));
        self.after = from;
        self.from = from;
    }

    /// What was read ahead after `after` as the projection's next page, at most `limit`
    /// events: `None` unless reading ahead began there and went past it.
    pub(crate) fn page(&self, after: Checkpoint, limit: usize) -> Option<LogPage> {
        let read_to = self.after?;
        if self.from != Some(after) || read_to <= after || limit == 0 {
            return None;
        }
        let events: Vec<RecordedEvent> = self.sent.iter().take(limit).map(|f| f.event.clone()).collect();
        let to = if self.sent.len() > limit { events[limit - 1].checkpoint() } else { read_to };
        let n = events.len();
        Some(LogPage::new(events, to, n, limit))
    }

    /// How many of `events` lead with what was published ahead (those were made durable
    /// when they were read).
    pub(crate) fn leading(&self, events: &[RecordedEvent]) -> usize {
        self.sent.iter().zip(events).take_while(|(f, e)| f.event.event_id == e.event_id).count()
    }
}

impl Publisher {
    /// Whether there is room to publish ahead, and a place to read from.
    pub(crate) fn may_read_ahead(&self) -> bool {
        self.ahead.after.is_some() && self.ahead.sent.len() < self.config.max_in_flight
    }

    /// Reads the log after what was read ahead, and publishes what the projection
    /// selects, up to `max_in_flight` messages ahead.
    pub(crate) async fn read_ahead(&mut self) {
        let Some(after) = self.ahead.after else { return };
        let room =
            self.config.max_in_flight.saturating_sub(self.ahead.sent.len()).min(self.config.batch_size);
        if room == 0 || !self.link.as_ref().is_some_and(|l| l.connection.status().connected()) {
            return;
        }
        let started = Instant::now();
        let page = self.store.read_log(after, &self.selector, room).await;
        let Ok(page) = page else {
            self.ahead.read(false);
            return;
        };
        self.ahead.read(page.is_some());
        let Some(page) = page else { return };
        // Nothing leaves before it is durable: a failover must not take back what was published.
        let ids: Vec<_> = page.events.iter().map(|e| e.event_id).collect();
        if self.store.durable(&ids).await.is_err() {
            return;
        }
        tracing::trace!(
            target: STAGES,
            stage = "read_ahead",
            count = page.events.len() as u64,
            took_us = (self.ahead.last_read - started).as_micros() as u64
        );
        for event in page.events {
            let checkpoint = event.checkpoint();
            match self.publish(&event).await {
                Ok(confirm) => self.ahead.sent.push_back(InFlight { event, confirm }),
                // Left for its batch, which handles the failure.
                Err(_) => return,
            }
            self.ahead.after = Some(checkpoint);
        }
        // Past the events read but not selected, too.
        self.ahead.after = Some(page.to);
    }
}
