//! Catch-up-then-live subscriptions, built on any store's reads and wake-up signal.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::cursor::{Chase, LogSelector};
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
    /// The log, or a category of it, through the log cursor.
    Log(LogSelector, Checkpoint),
    Stream(StreamId, Version),
}

/// What a read found.
enum Fetched {
    /// A page (possibly with no selected event, if the selector skipped them all).
    Page(Vec<RecordedEvent>),
    /// Nothing readable yet.
    Nothing,
}

struct State {
    store: Arc<dyn EventStore>,
    cursor: Cursor,
    buffer: VecDeque<RecordedEvent>,
    wake: WakeSignal,
    options: SubscriptionOptions,
    backoff: bool,
    chase: Chase,
}

impl State {
    async fn fetch(&mut self) -> Result<Fetched, StoreError> {
        let limit = self.options.batch_size;
        match &mut self.cursor {
            Cursor::Log(selector, after) => match self.store.read_log(*after, selector, limit).await? {
                Some(page) => {
                    *after = page.to;
                    Ok(Fetched::Page(page.events))
                }
                None => Ok(Fetched::Nothing),
            },
            Cursor::Stream(s, after) => {
                let to = Version(after.0.saturating_add(limit as u64));
                let events = self.store.read_stream(s, VersionRange::between(after.next(), to)).await?;
                match events.last() {
                    Some(last) => {
                        *after = last.version;
                        Ok(Fetched::Page(events))
                    }
                    None => Ok(Fetched::Nothing),
                }
            }
        }
    }

    /// Waits for a wake-up or `delay`; true when woken by the signal.
    async fn wait(&mut self, delay: Duration) -> bool {
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

    async fn next(mut self) -> Option<(Result<RecordedEvent, StoreError>, State)> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some((Ok(event), self));
            }
            if self.backoff {
                tokio::time::sleep(self.options.poll_interval).await;
                self.backoff = false;
            }
            // Mark the current signal as seen *before* reading, so an append that commits
            // after the read wakes the wait below. A wake-up consumed here counts like one
            // that ended a wait.
            if self.wake.borrow_and_update().has_changed() {
                self.chase.woken(Instant::now());
            }
            match self.fetch().await {
                Ok(Fetched::Page(events)) => {
                    self.chase.progressed();
                    self.buffer.extend(events);
                }
                Ok(Fetched::Nothing) => {
                    let poll = self.options.poll_interval;
                    let delay = self.chase.after_empty(Instant::now()).map_or(poll, |d| d.min(poll));
                    if self.wait(delay).await {
                        self.chase.woken(Instant::now());
                    }
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
    let wake = match &cursor {
        Cursor::Log(selector, _) => selector.wake_signals(store.as_ref()).swap_remove(0),
        Cursor::Stream(..) => store.wake_signal(),
    };
    let state = State {
        store,
        cursor,
        buffer: VecDeque::new(),
        wake,
        options,
        backoff: false,
        chase: Chase::default(),
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
/// # use factum::{ExpectedVersion, InMemoryStore, NewEvent, StreamId};
/// # use factum::store::{subscribe_all, Checkpoint, SubscriptionOptions};
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
    start(store, Cursor::Log(LogSelector::all(), after), options)
}

/// Subscribes to one category (aggregate type) after `after`; see [`subscribe_all`].
pub fn subscribe_category(
    store: Arc<dyn EventStore>,
    category: &str,
    after: Checkpoint,
    options: SubscriptionOptions,
) -> Result<EventStream, StoreError> {
    start(store, Cursor::Log(LogSelector::category(category)?, after), options)
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
