//! A projection's definition: its name, its sink, what it selects and how it batches.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{AtLeastOnce, EventHandler, FailurePolicy, ProjectionSink};
use crate::store::{EventStore, InvalidInput, LogSelector};

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
    pub(crate) version: u32,
    pub(crate) switch_automatically: bool,
    pub(crate) retire_after: Option<Duration>,
}

impl fmt::Debug for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Projection")
            .field("name", &self.name)
            .field("version", &self.version)
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
            version: 1,
            switch_automatically: true,
            retire_after: None,
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

    /// The projection's version (default 1). Raise it when the read model changes shape
    /// or meaning: the new version is built from the start of the log beside the live
    /// one (its own checkpoint, lease and fence, and, where the sink keeps builds apart,
    /// its own tables), while the live one keeps serving; readers switch to it in one
    /// step once it has caught up. See [`BuildId`](crate::store::BuildId).
    #[must_use]
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Leaves the cut-over to an operator ([`Supervisor::switch`](crate::Supervisor::switch)):
    /// by default a new build becomes live on its own as soon as it has caught up with
    /// the live one.
    #[must_use]
    pub fn switch_manually(mut self) -> Self {
        self.switch_automatically = false;
        self
    }

    /// Retires a build replaced by a newer one once `grace` has passed since the newer
    /// one went live: its read model is dropped and switching back to it is no longer
    /// possible. By default replaced builds stay until an operator retires them
    /// ([`Supervisor::retire`](crate::Supervisor::retire)). A build another instance
    /// still follows (an older version during a rolling deployment) is left alone.
    #[must_use]
    pub fn retire_replaced_after(mut self, grace: Duration) -> Self {
        self.retire_after = Some(grace);
        self
    }

    pub(crate) fn selector(&self, store: &dyn EventStore) -> Result<LogSelector, InvalidInput> {
        crate::store::op::RegisterBuild::new(self.name.clone(), self.version, false)?;
        if self.batch_size == 0 || self.batch_size > store.limits().max_query_limit {
            return Err(InvalidInput::OutOfRange {
                field: "batch_size",
                reason: "must be between 1 and the store's max_query_limit",
            });
        }
        LogSelector::new(self.aggregate_types.clone(), self.event_types.clone(), &self.topics)
    }
}

pub(crate) fn handler_sink(store: Arc<dyn EventStore>, spec: SinkSpec) -> Box<dyn ProjectionSink> {
    match spec {
        SinkSpec::Sink(s) => s,
        SinkSpec::Handler(h) => Box::new(AtLeastOnce::new(store, h)),
    }
}
