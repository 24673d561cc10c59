//! The log cursor: the one way the framework follows the global log. A reader (a
//! subscription, a projection, a rebuild) reads [`LogPage`]s after its [`Checkpoint`],
//! gap-safe, with its [`LogSelector`] applied by the store (in SQL, on PostgreSQL); when
//! a page comes back empty after a wake-up, it chases the horizon with [`Chase`].

use std::time::Duration;

use tokio::time::Instant;

use super::error::{InvalidInput, StoreError};
use super::filter::TopicPattern;
use super::op::{Execute, ReadAll, ReadCategory, ReadLog};
use super::slice::Slice;
use super::types::{Checkpoint, RecordedEvent};
use super::{validate, LogBackend, WakeSignal};

/// What part of the log a reader follows: some categories (aggregate types) or all, and
/// among their events some types and topics. Each list empty means any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogSelector {
    /// Only these aggregate types.
    pub aggregate_types: Vec<String>,
    /// Only these event types.
    pub event_types: Vec<String>,
    /// Only events whose topic matches one of these patterns (events without a topic
    /// never match a non-empty list).
    pub topics: Vec<TopicPattern>,
    /// Only the events of the streams of this slice ([`Slice`]); all when `None`.
    pub slice: Option<Slice>,
}

impl LogSelector {
    /// Every event of the log.
    pub fn all() -> Self {
        LogSelector::default()
    }

    /// Every event of one category, checked as a name.
    pub fn category(aggregate_type: impl Into<String>) -> Result<Self, InvalidInput> {
        let t = aggregate_type.into();
        validate::category(&t)?;
        Ok(LogSelector { aggregate_types: vec![t], ..Self::default() })
    }

    /// A selector of these aggregate types, event types and topic patterns, each checked.
    pub fn new(
        aggregate_types: Vec<String>,
        event_types: Vec<String>,
        topics: &[String],
    ) -> Result<Self, InvalidInput> {
        for t in &aggregate_types {
            validate::category(t)?;
        }
        for t in &event_types {
            validate::name("event_type", t)?;
        }
        let topics = topics.iter().map(|t| TopicPattern::parse(t)).collect::<Result<Vec<_>, _>>()?;
        Ok(LogSelector { aggregate_types, event_types, topics, slice: None })
    }

    /// The same selector, narrowed to the streams of `slice`.
    #[must_use]
    pub fn in_slice(mut self, slice: Slice) -> Self {
        self.slice = (slice.count() > 1).then_some(slice);
        self
    }

    /// Whether the reader takes `event`.
    pub fn matches(&self, e: &RecordedEvent) -> bool {
        (self.aggregate_types.is_empty()
            || self.aggregate_types.iter().any(|t| t == e.stream.aggregate_type()))
            && (self.event_types.is_empty() || self.event_types.contains(&e.event_type))
            && (self.topics.is_empty()
                || e.topic.as_deref().is_some_and(|t| self.topics.iter().any(|p| p.matches(t))))
            && self.slice.is_none_or(|s| s.contains(&e.stream))
    }

    /// The one category the reader follows, if it follows exactly one: its reads then go
    /// through the category's index.
    pub fn single_category(&self) -> Option<&str> {
        match self.aggregate_types.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The wake-up signals that say the followed part of the log may have grown.
    pub fn wake_signals(&self, store: &(impl LogBackend + ?Sized)) -> Vec<WakeSignal> {
        if self.aggregate_types.is_empty() {
            vec![store.wake_signal()]
        } else {
            self.aggregate_types.iter().map(|t| store.category_wake_signal(t)).collect()
        }
    }
}

/// A page of the log as a reader sees it: the selected events among those read, in log
/// order, and the checkpoint of the last event read, selected or not (where the reader
/// goes on from).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LogPage {
    /// The selected events.
    pub events: Vec<RecordedEvent>,
    /// The checkpoint of the last event read.
    pub to: Checkpoint,
    /// Whether the page was full (more may be readable at once).
    pub full: bool,
    /// How many events were read (selected or not).
    pub read: usize,
}

impl LogPage {
    /// A page of `read` events read, of which `events` were selected, read up to `to`, out
    /// of at most `limit`. For backends.
    pub fn new(events: Vec<RecordedEvent>, to: Checkpoint, read: usize, limit: usize) -> Self {
        LogPage { events, to, full: read >= limit, read }
    }

    /// The page a reader following `selector` sees of `read`, a page of at most `limit`
    /// events read in log order: `None` when nothing was read. For backends that select
    /// in memory.
    pub fn select(read: Vec<RecordedEvent>, selector: &LogSelector, limit: usize) -> Option<Self> {
        let last = read.last()?;
        let (to, n) = (last.checkpoint(), read.len());
        let events = read.into_iter().filter(|e| selector.matches(e)).collect();
        Some(LogPage::new(events, to, n, limit))
    }
}

/// [`EventLog::read_log`](super::EventLog::read_log) for a backend that selects in memory: reads a page of the
/// category (one) or the log, then keeps what the selector matches.
pub async fn read_log_in_memory<B>(backend: &B, op: ReadLog) -> Result<Option<LogPage>, StoreError>
where
    B: Execute<ReadAll> + Execute<ReadCategory> + ?Sized,
{
    let (after, limit) = (op.after(), op.limit());
    let read = match op.selector().single_category() {
        Some(category) => backend.execute(ReadCategory::checked(category.to_owned(), after, limit)).await?,
        None => backend.execute(ReadAll::checked(after, limit)).await?,
    };
    Ok(LogPage::select(read, op.selector(), limit))
}

/// The first re-read delay after a wake-up found nothing new: an event that just
/// committed can sit behind the gap-safe horizon for a moment while an older
/// transaction elsewhere finishes, and no second wake-up will come for it.
pub(crate) const CHASE_START: Duration = Duration::from_millis(5);
/// The longest delay between re-reads while chasing the horizon.
pub(crate) const CHASE_MAX: Duration = Duration::from_millis(250);
/// How long to keep chasing after the last wake-up before relying on the poll interval.
pub(crate) const CHASE_BUDGET: Duration = Duration::from_secs(10);

/// Chasing the horizon after a wake-up: re-read after 5 ms, doubling to 250 ms, for up
/// to 10 s after the last wake-up; then the reader's poll interval takes over.
///
/// Every reader of the log chases this way: subscriptions, projections, rebuilds, and the
/// RabbitMQ publisher's reads ahead.
///
/// ```
/// use std::time::Duration;
/// use factum::store::Chase;
/// use tokio::time::Instant;
///
/// let (mut chase, now) = (Chase::default(), Instant::now());
/// assert_eq!(chase.after_empty(now), None, "no wake-up, no chase");
/// chase.woken(now);
/// assert_eq!(chase.after_empty(now), Some(Duration::from_millis(5)));
/// assert_eq!(chase.after_empty(now), Some(Duration::from_millis(10)));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Chase {
    /// The next re-read's delay and the last wake-up.
    state: Option<(Duration, Instant)>,
}

impl Chase {
    /// The log grew (a wake-up): chase from the shortest delay.
    pub fn woken(&mut self, now: Instant) {
        self.state = Some((CHASE_START, now));
    }

    /// A read found events: the next empty read starts again from the shortest delay.
    pub fn progressed(&mut self) {
        if let Some((delay, _)) = &mut self.state {
            *delay = CHASE_START;
        }
    }

    /// A read came back empty: the delay before reading again, or `None` when not
    /// chasing (wait for a wake-up or the poll).
    pub fn after_empty(&mut self, now: Instant) -> Option<Duration> {
        let (delay, since) = self.state?;
        if now.duration_since(since) >= CHASE_BUDGET {
            self.state = None;
            return None;
        }
        self.state = Some(((delay * 2).min(CHASE_MAX), since));
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chase_doubles_to_its_cap_then_ends_with_its_budget() {
        let t0 = Instant::now();
        let mut chase = Chase::default();
        assert_eq!(chase.after_empty(t0), None, "no wake-up, no chase");
        chase.woken(t0);
        let delays: Vec<u128> = (0..8).map(|_| chase.after_empty(t0).unwrap().as_millis()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 250, 250]);
        chase.progressed();
        assert_eq!(chase.after_empty(t0), Some(CHASE_START));
        assert_eq!(chase.after_empty(t0 + CHASE_BUDGET), None, "budget spent");
        assert_eq!(chase.after_empty(t0), None, "and stays ended until the next wake-up");
        chase.woken(t0 + CHASE_BUDGET);
        assert_eq!(chase.after_empty(t0 + CHASE_BUDGET), Some(CHASE_START));
    }

    #[test]
    fn selectors_check_their_names_and_match() {
        assert!(LogSelector::category("").is_err());
        assert!(LogSelector::new(vec![], vec![], &["a..b".into()]).is_err());
        let s = LogSelector::new(vec!["Order".into()], vec!["Placed".into()], &["order.#".into()]).unwrap();
        assert_eq!(s.single_category(), Some("Order"));
        assert_eq!(LogSelector::all().single_category(), None);
    }
}
