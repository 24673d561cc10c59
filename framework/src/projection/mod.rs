//! Projections: named consumers of the log that keep read models current.
//!
//! A [`Projection`] is a name, a sink that applies events and records the checkpoint,
//! an optional narrowing of what it receives, a batch size and a [`FailurePolicy`]. The
//! [`Supervisor`](crate::Supervisor) runs each one in an actor of its own: it catches up
//! from its checkpoint in batches, then follows the log live on wake-ups, with polling as
//! the fallback.
//!
//! Two kinds of sink:
//!
//! - **Exactly once**, into a transactional read model: the sink applies a batch and
//!   moves the checkpoint in one transaction (`factum_postgres::ExactlyOnce` for
//!   PostgreSQL). After a crash at any point, each event has been applied exactly once.
//! - **At least once**, for anything else: an [`EventHandler`] gets each event, and the
//!   checkpoint moves only after it returned `Ok`. After a crash, the events after the
//!   checkpoint come again; use [`RecordedEvent::event_id`] as the idempotency key.

pub(crate) mod actor;
mod sink;

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;

use crate::store::{
    Checkpoint, EventStore, InvalidInput, LogSelector, ProjectionFailure, RecordedEvent, StoreError,
};

pub use sink::AtLeastOnce;

/// What went wrong in a handler: any error, kept as its message and source.
///
/// Any `std::error::Error + Send + Sync` converts into it with `?`, and so do `String`
/// and `&str`. Like `anyhow::Error`, it does not implement `std::error::Error` itself
/// (that would conflict with the conversion from every error); [`as_error`](Self::as_error)
/// and [`into_error`](Self::into_error) give the error it holds, and the errors that carry
/// a `HandlerError` ([`SinkError`]) report it as their `source()`.
pub struct HandlerError(Box<dyn std::error::Error + Send + Sync>);

impl HandlerError {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        HandlerError(message.to_string().into())
    }

    /// The underlying error.
    pub fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The underlying error, owned.
    pub fn into_error(self) -> Box<dyn std::error::Error + Send + Sync> {
        self.0
    }
}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError(e.into())
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Runs a handler's future, turning a panic into a [`HandlerError`]. Sinks run user code
/// through it, so that a panicking handler is a failure like any other.
pub async fn catch_panic<F>(f: F) -> Result<(), HandlerError>
where
    F: Future<Output = Result<(), HandlerError>>,
{
    AssertUnwindSafe(f).catch_unwind().await.unwrap_or_else(|panic| Err(panic_error(panic.as_ref())))
}

/// A panic's payload as a handler error.
pub(crate) fn panic_error(panic: &(dyn std::any::Any + Send)) -> HandlerError {
    HandlerError::msg(format_args!("handler panicked: {}", crate::backoff::panic_message(panic)))
}

/// Handles events one at a time: an at-least-once projection's handler, or a replay's.
///
/// ```
/// use factum::{EventHandler, HandlerError, RecordedEvent};
///
/// struct Mailer;
///
/// #[async_trait::async_trait]
/// impl EventHandler for Mailer {
///     async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
///         if event.event_type == "CustomerRegistered" {
///             // send_welcome(event.event_id, &event.payload).await?; // event id = idempotency key
///         }
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait EventHandler: Send + 'static {
    /// Handles one event. An error (or a panic) is a failure, handled by the policy.
    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError>;

    /// Clears what the handler built, before a rebuild replays the log into it. By
    /// default there is nothing to clear.
    async fn clear(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// One batch for a [`ProjectionSink`]: the events the projection selected among those
/// read after `from`, and the checkpoint `to` of the last event read (selected or not).
#[derive(Debug)]
#[non_exhaustive]
pub struct Batch<'a> {
    /// The projection's name (its checkpoint's name).
    pub projection: &'a str,
    /// The selected events, in log order; possibly none.
    pub events: &'a [RecordedEvent],
    /// Where the projection stands: the checkpoint to move from.
    pub from: Checkpoint,
    /// The checkpoint to move to.
    pub to: Checkpoint,
}

/// Why a sink did not apply a batch.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkError {
    /// The handler failed on `events[index]`. If `prefix_committed`, the events before it
    /// were applied and the checkpoint moved to the last of them; otherwise nothing of
    /// the batch was kept.
    Handler {
        /// The failed event's index in the batch's events.
        index: usize,
        /// The handler's error (also this error's `source()`).
        error: HandlerError,
        /// Whether the events before `index` were kept.
        prefix_committed: bool,
    },
    /// The checkpoint was not at `from`: another instance moved it. Nothing was kept.
    Fenced,
    /// The store failed. Nothing was kept, or the batch was kept entirely.
    Store(StoreError),
}

impl From<StoreError> for SinkError {
    fn from(e: StoreError) -> Self {
        SinkError::Store(e)
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Handler { index, error, .. } => write!(f, "handler failed on event {index}: {error}"),
            SinkError::Fenced => f.write_str("the checkpoint moved under this projection"),
            SinkError::Store(e) => write!(f, "store error: {e}"),
        }
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SinkError::Handler { error, .. } => Some(error.as_error()),
            SinkError::Fenced => None,
            SinkError::Store(e) => Some(e),
        }
    }
}

/// Where a projection's events go, and how its checkpoint moves with them.
///
/// The framework implements it for [`EventHandler`]s ([`AtLeastOnce`]); a backend
/// implements it for transactional read models (`factum_postgres::ExactlyOnce`), where
/// one transaction holds a batch's writes and the checkpoint. Implementations move the
/// checkpoint only from where the batch says it is
/// ([`EventStore::advance_checkpoint`](crate::store::ConsumerStore::advance_checkpoint) or its transactional twin), and run user code
/// through [`catch_panic`].
#[async_trait]
pub trait ProjectionSink: Send + 'static {
    /// Applies the batch's events in order and moves the checkpoint from `from` to `to`.
    async fn apply(&mut self, batch: Batch<'_>) -> Result<(), SinkError>;

    /// Records `failure` and moves the checkpoint from `from` past the failed event.
    async fn skip(&mut self, failure: &ProjectionFailure, from: Checkpoint) -> Result<(), SinkError>;

    /// Applies an event whose failure was recorded, and removes the record; the
    /// checkpoint stays where it is.
    async fn retry_failed(&mut self, projection: &str, event: &RecordedEvent) -> Result<(), SinkError>;

    /// Sets the checkpoint to `to`, after clearing the read model if `clear`, together
    /// where the sink can.
    async fn reset(&mut self, projection: &str, to: Checkpoint, clear: bool) -> Result<(), SinkError>;
}

/// What a projection does once an event has failed `max_attempts` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExhausted {
    /// Stop the projection and report the error in its status; `resume` tries again.
    Stop,
    /// Record the event as failed (see [`EventStore::failures`](crate::store::ConsumerStore::failures)), move past it, go on.
    SkipAndRecord,
}

/// How a projection handles a failing event: retry with exponential backoff, then stop
/// or skip it. The default: 5 attempts, 100 ms doubling to 30 s, then stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailurePolicy {
    /// Attempts per event, the first included (at least 1).
    pub max_attempts: u32,
    /// The delay before the second attempt; it doubles per attempt.
    pub initial_backoff: Duration,
    /// The longest delay.
    pub max_backoff: Duration,
    /// What to do after the last attempt.
    pub on_exhausted: OnExhausted,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            on_exhausted: OnExhausted::Stop,
        }
    }
}

impl FailurePolicy {
    /// Try each event `attempts` times, then stop the projection.
    pub fn retry_then_stop(attempts: u32) -> Self {
        FailurePolicy { max_attempts: attempts.max(1), ..Self::default() }
    }

    /// Try each event `attempts` times, then record it as failed and go on.
    pub fn retry_then_skip(attempts: u32) -> Self {
        FailurePolicy {
            max_attempts: attempts.max(1),
            on_exhausted: OnExhausted::SkipAndRecord,
            ..Self::default()
        }
    }

    /// Sets the backoff between attempts.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The delay after the `attempt`-th failed attempt (1-based).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        crate::backoff::Backoff::after_failures(self.initial_backoff, self.max_backoff, attempt)
    }
}

pub(crate) enum SinkSpec {
    Sink(Box<dyn ProjectionSink>),
    Handler(Box<dyn EventHandler>),
}

/// A projection's definition, for [`SupervisorConfig::projection`](crate::SupervisorConfig::projection).
///
/// ```
/// use factum::{EventHandler, HandlerError, Projection, RecordedEvent};
/// use factum::projection::FailurePolicy;
///
/// struct Counter(u64);
///
/// #[async_trait::async_trait]
/// impl EventHandler for Counter {
///     async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), HandlerError> {
///         self.0 += 1;
///         Ok(())
///     }
/// }
///
/// let projection = Projection::with_handler("order_counter", Counter(0))
///     .aggregate_types(["Order"])
///     .topics(["order.lifecycle.#"])
///     .batch_size(500)
///     .on_failure(FailurePolicy::retry_then_skip(3));
/// assert_eq!(projection.name(), "order_counter");
/// ```
pub struct Projection {
    pub(crate) name: String,
    pub(crate) sink: SinkSpec,
    pub(crate) aggregate_types: Vec<String>,
    pub(crate) event_types: Vec<String>,
    pub(crate) topics: Vec<String>,
    pub(crate) batch_size: usize,
    pub(crate) failure: FailurePolicy,
    pub(crate) poll_interval: Duration,
}

impl fmt::Debug for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Projection")
            .field("name", &self.name)
            .field("aggregate_types", &self.aggregate_types)
            .field("event_types", &self.event_types)
            .field("topics", &self.topics)
            .field("batch_size", &self.batch_size)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

/// The default number of events a projection reads and applies per batch.
pub const DEFAULT_BATCH_SIZE: usize = 100;

impl Projection {
    /// A projection into `sink` (exactly once where the sink is transactional).
    pub fn new(name: impl Into<String>, sink: impl ProjectionSink) -> Self {
        Self::from_spec(name.into(), SinkSpec::Sink(Box::new(sink)))
    }

    /// An at-least-once projection: `handler` gets each event, the checkpoint moves after.
    pub fn with_handler(name: impl Into<String>, handler: impl EventHandler) -> Self {
        Self::from_spec(name.into(), SinkSpec::Handler(Box::new(handler)))
    }

    fn from_spec(name: String, sink: SinkSpec) -> Self {
        Projection {
            name,
            sink,
            aggregate_types: Vec::new(),
            event_types: Vec::new(),
            topics: Vec::new(),
            batch_size: DEFAULT_BATCH_SIZE,
            failure: FailurePolicy::default(),
            poll_interval: Duration::from_secs(5),
        }
    }

    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Receive only events of these aggregate types (a scoped consumer).
    #[must_use]
    pub fn aggregate_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.aggregate_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Receive only events of these event types.
    #[must_use]
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Receive only events whose topic matches one of these patterns (`*` one word,
    /// `#` zero or more). Checked when the supervisor starts.
    #[must_use]
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.topics = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Events per batch (default 100).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The failure policy.
    #[must_use]
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// How long to wait for a wake-up before reading anyway (default 5 s).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    pub(crate) fn selector(&self, store: &dyn EventStore) -> Result<LogSelector, InvalidInput> {
        crate::store::validate::consumer_name(&self.name)?;
        if self.batch_size == 0 || self.batch_size > store.limits().max_query_limit {
            return Err(InvalidInput::OutOfRange {
                field: "batch_size",
                reason: "must be between 1 and the store's max_query_limit",
            });
        }
        LogSelector::new(self.aggregate_types.clone(), self.event_types.clone(), &self.topics)
    }
}

/// Where a projection is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectionState {
    /// Starting up.
    Starting,
    /// Another instance holds the projection's lease; this one waits to take over.
    Standby,
    /// Reading the log behind the live end.
    CatchingUp,
    /// Caught up, following the log live.
    Live,
    /// Paused by an operator.
    Paused,
    /// Being rebuilt by a replay.
    Rebuilding,
    /// Waiting to retry a failed event.
    Retrying {
        /// Failed attempts so far.
        attempts: u32,
    },
    /// Stopped by the failure policy; `resume` tries again.
    Failed,
    /// The store did not answer; the projection tries again in place (at most a second
    /// apart) and goes on as soon as it answers.
    WaitingForStore,
    /// Shut down.
    Stopped,
}

/// A projection's status, as [`Supervisor::status`](crate::Supervisor::status) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: String,
    /// Its state.
    pub state: ProjectionState,
    /// The last event it processed.
    pub checkpoint: Checkpoint,
    /// Events of the log after its checkpoint, when last measured.
    pub lag: Option<u64>,
    /// Events it applied since this process started.
    pub handled: u64,
    /// Events it skipped and recorded since this process started.
    pub skipped: u64,
    /// The last handler or store error.
    pub last_error: Option<String>,
    /// When the status last changed.
    pub updated_at: DateTime<Utc>,
}

impl ProjectionStatus {
    pub(crate) fn new(name: &str) -> Self {
        ProjectionStatus {
            name: name.to_owned(),
            state: ProjectionState::Starting,
            checkpoint: Checkpoint::START,
            lag: None,
            handled: 0,
            skipped: 0,
            last_error: None,
            updated_at: Utc::now(),
        }
    }
}

/// What [`Supervisor::retry_failures`](crate::Supervisor::retry_failures) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryReport {
    /// Recorded failures that now succeeded (their records are gone).
    pub resolved: u64,
    /// Recorded failures that failed again (their records stay).
    pub still_failing: u64,
    /// Recorded failures whose event no longer exists (deleted by retention).
    pub missing: u64,
}

pub(crate) fn handler_sink(store: Arc<dyn EventStore>, spec: SinkSpec) -> Box<dyn ProjectionSink> {
    match spec {
        SinkSpec::Sink(s) => s,
        SinkSpec::Handler(h) => Box::new(AtLeastOnce::new(store, h)),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the mail server said no")]
    struct MailRefused;

    #[test]
    fn a_sink_error_keeps_the_handlers_error_as_its_source() {
        let e =
            SinkError::Handler { index: 2, error: HandlerError::from(MailRefused), prefix_committed: true };
        assert_eq!(e.to_string(), "handler failed on event 2: the mail server said no");
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), "the mail server said no");
        assert!(source.downcast_ref::<MailRefused>().is_some(), "the handler's own error type");
        let store = SinkError::from(StoreError::Corrupt("bad row".into()));
        assert!(store.source().is_some_and(|s| s.downcast_ref::<StoreError>().is_some()));
        assert!(SinkError::Fenced.source().is_none());
    }

    #[test]
    fn a_panic_is_a_handler_error_with_its_message() {
        let boxed: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_error(boxed.as_ref()).to_string(), "handler panicked: boom");
        let boxed: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_error(boxed.as_ref()).into_error().to_string(), "handler panicked: bang");
    }
}
