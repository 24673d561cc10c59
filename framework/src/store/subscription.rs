//! Catch-up-then-live subscriptions, built on any store's reads and wake-up signal.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::error::StoreError;
use super::types::{Checkpoint, RecordedEvent, StreamId, Version, VersionRange};
use super::{validate, EventStore, EventStream, WakeSignal};

/// How a subscription reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionOptions {
    /// Events read per round trip. Default 500.
    pub batch_size: usize,
    /// How long to wait for a wake-up before reading again anyway. Default 1 s.
    pub poll_interval: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        SubscriptionOptions { batch_size: 500, poll_interval: Duration::from_secs(1) }
    }
}

impl SubscriptionOptions {
    /// Sets the batch size.
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Sets the poll interval.
    #[must_use]
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }
}

enum Cursor {
    All(Checkpoint),
    Category(String, Checkpoint),
    Stream(StreamId, Version),
}

struct State {
    store: Arc<dyn EventStore>,
    cursor: Cursor,
    buffer: VecDeque<RecordedEvent>,
    wake: WakeSignal,
    options: SubscriptionOptions,
    backoff: bool,
    /// After a wake-up that found nothing new, how long to wait before reading again: an
    /// event that just committed can sit behind the gap-safe horizon for a moment while
    /// an older transaction elsewhere finishes, and no second wake-up will come for it.
    chase: Option<(Duration, tokio::time::Instant)>,
    /// Whether the last wait ended with a wake-up (rather than a timeout).
    woken: bool,
}

/// The first re-read delay after an empty wake-up; it doubles up to [`CHASE_MAX`].
const CHASE_START: Duration = Duration::from_millis(5);
/// The longest delay between re-reads while chasing the horizon.
const CHASE_MAX: Duration = Duration::from_millis(250);
/// How long to keep chasing after a wake-up before falling back to the poll interval.
const CHASE_BUDGET: Duration = Duration::from_secs(60);

impl State {
    async fn fetch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = self.options.batch_size;
        match &self.cursor {
            Cursor::All(after) => self.store.read_all(*after, limit).await,
            Cursor::Category(c, after) => self.store.read_category(c, *after, limit).await,
            Cursor::Stream(s, after) => {
                let to = Version(after.0.saturating_add(limit as u64));
                self.store.read_stream(s, VersionRange::between(after.next(), to)).await
            }
        }
    }

    fn advance(&mut self, event: &RecordedEvent) {
        match &mut self.cursor {
            Cursor::All(c) | Cursor::Category(_, c) => *c = event.checkpoint(),
            Cursor::Stream(_, v) => *v = event.version,
        }
    }

    /// Waits for a wake-up or the current delay; true when woken by the signal.
    async fn wait(&mut self) -> bool {
        let delay = self.chase.map_or(self.options.poll_interval, |(d, _)| d.min(self.options.poll_interval));
        tokio::select! {
            changed = self.wake.changed() => {
                if changed.is_err() {
                    // The store's notifier is gone: fall back to polling alone.
                    tokio::time::sleep(delay.max(Duration::from_millis(10))).await;
                    return false;
                }
                true
            }
            () = tokio::time::sleep(delay) => false,
        }
    }

    fn after_empty_read(&mut self) {
        let woken = self.woken;
        let now = tokio::time::Instant::now();
        self.chase = match self.chase {
            Some((delay, since)) if now.duration_since(since) < CHASE_BUDGET => {
                Some(((delay * 2).min(CHASE_MAX), if woken { now } else { since }))
            }
            _ if woken => Some((CHASE_START, now)),
            _ => None,
        };
    }

    async fn next(mut self) -> Option<(Result<RecordedEvent, StoreError>, State)> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.advance(&event);
                return Some((Ok(event), self));
            }
            if self.backoff {
                tokio::time::sleep(self.options.poll_interval).await;
                self.backoff = false;
            }
            // Mark the current signal as seen *before* reading, so an append that commits
            // after the read wakes the wait below.
            // A wake-up consumed here counts like one that ended a wait.
            if self.wake.borrow_and_update().has_changed() {
                self.woken = true;
            }
            match self.fetch().await {
                Ok(page) if page.is_empty() => {
                    self.after_empty_read();
                    self.woken = self.wait().await;
                }
                Ok(page) => {
                    self.chase = None;
                    self.woken = false;
                    self.buffer.extend(page);
                }
                Err(e) => {
                    self.backoff = true;
                    return Some((Err(e), self));
                }
            }
        }
    }
}

fn start(
    store: Arc<dyn EventStore>,
    cursor: Cursor,
    options: SubscriptionOptions,
) -> Result<EventStream, StoreError> {
    validate::page_limit(options.batch_size, store.limits())?;
    let wake = store.wake_signal();
    let state = State {
        store,
        cursor,
        buffer: VecDeque::new(),
        wake,
        options,
        backoff: false,
        chase: None,
        woken: false,
    };
    Ok(Box::pin(futures_util::stream::unfold(state, State::next)))
}

/// Subscribes to the global log after `after`: yields every stored event after it, then
/// every new one as it commits, gap-safe, forever. An error is yielded as an item; the
/// subscription goes on after a pause if it is polled again.
///
/// ```
/// # use std::sync::Arc;
/// # use factum::prelude::*;
/// # use factum::{subscribe_all, Checkpoint, ExpectedVersion, InMemoryStore, NewEvent, StreamId, SubscriptionOptions};
/// # use futures_util::StreamExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Arc::new(InMemoryStore::new());
/// let mut events = subscribe_all(store.clone(), Checkpoint::START, SubscriptionOptions::default())?;
/// let stream = StreamId::new("Order", "o-1")?;
/// store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new("Placed", serde_json::json!({}))]).await?;
/// let first = events.next().await.unwrap()?;
/// assert_eq!(first.event_type, "Placed");
/// # Ok(()) }
/// ```
pub fn subscribe_all(
    store: Arc<dyn EventStore>,
    after: Checkpoint,
    options: SubscriptionOptions,
) -> Result<EventStream, StoreError> {
    start(store, Cursor::All(after), options)
}

/// Subscribes to one category (aggregate type) after `after`; see [`subscribe_all`].
pub fn subscribe_category(
    store: Arc<dyn EventStore>,
    category: &str,
    after: Checkpoint,
    options: SubscriptionOptions,
) -> Result<EventStream, StoreError> {
    validate::category(category)?;
    start(store, Cursor::Category(category.to_owned(), after), options)
}

/// Subscribes to one stream after version `after`; see [`subscribe_all`].
pub fn subscribe_stream(
    store: Arc<dyn EventStore>,
    stream: StreamId,
    after: Version,
    options: SubscriptionOptions,
) -> Result<EventStream, StoreError> {
    start(store, Cursor::Stream(stream, after), options)
}
