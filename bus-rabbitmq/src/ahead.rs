//! Publishing ahead: while a batch's confirms are awaited, the publisher follows the log
//! itself and publishes what comes next, so that the broker's confirm latency holds back
//! the checkpoint rather than new events.
//!
//! It reads when the store says the log grew (its wake-up signal: at once for appends in
//! this process, by `NOTIFY` for others), at most every [`READ_GAP`], and goes on reading
//! for [`CHASE`] after the last signal, since an event that just committed can sit behind
//! the gap-safe horizon until an older transaction ends. Without a signal it polls every
//! [`POLL`]. What it publishes is matched against the next batch by event id; anything
//! else (a failure, a reset, a batch that does not start where reading ahead did)
//! discards it, and the batch publishes its events itself.

use std::collections::VecDeque;
use std::time::Duration;

use factum::store::{Checkpoint, WakeSignal};
use factum::RecordedEvent;
use tokio::time::Instant;

use crate::delivery::{abandon, InFlight, STAGES};
use crate::publisher::Publisher;

/// The shortest time between two reads ahead: each is a gap-safe query on the store.
pub(crate) const READ_GAP: Duration = Duration::from_millis(2);
/// How long after the log last said it grew reads go on every [`READ_GAP`].
pub(crate) const CHASE: Duration = Duration::from_millis(6);
/// How often the log is read ahead without a signal.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// What was published ahead, and when to read next.
pub(crate) struct Ahead {
    /// Published ahead of the batch being confirmed, in log order.
    pub(crate) sent: VecDeque<InFlight>,
    /// Where reading ahead goes on from; `None` until the next batch says.
    pub(crate) after: Option<Checkpoint>,
    /// Changes when the log grows.
    pub(crate) signal: WakeSignal,
    /// Whether the signal still works (the store behind it may be gone).
    pub(crate) listening: bool,
    /// When the log was last read ahead.
    last_read: Instant,
    /// Until when to read every [`READ_GAP`].
    chase_until: Option<Instant>,
}

impl Ahead {
    pub(crate) fn new(mut signal: WakeSignal) -> Self {
        signal.borrow_and_update();
        Ahead {
            sent: VecDeque::new(),
            after: None,
            signal,
            listening: true,
            last_read: Instant::now(),
            chase_until: None,
        }
    }

    /// The signal changed (`open`), or its store is gone.
    pub(crate) fn grew(&mut self, open: bool) {
        if open {
            self.chase_until = Some(Instant::now() + CHASE);
        } else {
            self.listening = false;
        }
    }

    /// When the next read ahead is due.
    pub(crate) fn next_read(&self, now: Instant) -> Instant {
        match self.chase_until {
            Some(until) if now < until || self.last_read < until => self.last_read + READ_GAP,
            _ => self.last_read + POLL,
        }
    }

    /// Forgets what was published ahead; reading ahead starts again after `from` (or
    /// after the batch that comes next).
    pub(crate) fn discard(&mut self, from: Option<Checkpoint>) {
        abandon(std::mem::take(&mut self.sent).into_iter().map(|f| f.confirm));
        self.after = from;
    }
}

impl Publisher {
    /// Whether there is room to publish ahead, and a place to read from.
    pub(crate) fn may_read_ahead(&self) -> bool {
        self.ahead.after.is_some() && self.ahead.sent.len() < self.config.max_in_flight
    }

    /// Whether the projection selects `event` (the same filters it was given).
    fn selects(&self, event: &RecordedEvent) -> bool {
        let c = &self.config;
        (c.aggregate_types.is_empty() || c.aggregate_types.iter().any(|t| t == event.stream.aggregate_type()))
            && (c.event_types.is_empty() || c.event_types.contains(&event.event_type))
            && (self.topics.is_empty()
                || event.topic.as_deref().is_some_and(|t| self.topics.iter().any(|p| p.matches(t))))
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
        let page = match self.config.aggregate_types.as_slice() {
            [one] => self.store.read_category(one, after, room).await,
            _ => self.store.read_all(after, room).await,
        };
        self.ahead.last_read = Instant::now();
        let Ok(page) = page else { return };
        tracing::trace!(
            target: STAGES,
            stage = "read_ahead",
            count = page.len() as u64,
            took_us = (self.ahead.last_read - started).as_micros() as u64
        );
        for event in page {
            if self.selects(&event) {
                match self.publish(&event).await {
                    Ok(confirm) => self.ahead.sent.push_back(InFlight { event_id: event.event_id, confirm }),
                    // Left for its batch, which handles the failure.
                    Err(_) => return,
                }
            }
            self.ahead.after = Some(event.checkpoint());
        }
    }
}
