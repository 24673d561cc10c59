//! A projection's definition: its name, its sink, what it selects and how it batches.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{AtLeastOnce, EventHandler, FailurePolicy, ProjectionSink};
use crate::store::{EventStore, InvalidInput, LogSelector, Slice};

type MakeSink = Box<dyn Fn(Slice) -> Box<dyn ProjectionSink> + Send + Sync>;
type MakeHandler = Box<dyn Fn(Slice) -> Box<dyn EventHandler> + Send + Sync>;

pub(crate) enum SinkSpec {
    Sink(Box<dyn ProjectionSink>),
    Handler(Box<dyn EventHandler>),
    /// One sink per slice.
    Sliced(MakeSink),
    SlicedHandler(MakeHandler),
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
    pub(crate) slices: u16,
    pub(crate) slice_concurrency: Option<usize>,
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
            .field("slices", &self.slices)
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

    /// A projection in `slices` slices, each with a sink of its own made by `make`: each
    /// stream belongs to one slice ([`Slice`] says which), and each slice has its own
    /// checkpoint, lease and fence, so that the slices run concurrently in one instance
    /// and spread over the instances that run the projection. Within a slice, events are
    /// applied in log order (so each stream's in version order); across slices there is no
    /// order. The count is checked when the supervisor starts (from 1 to
    /// [`MAX_SLICES`](crate::store::MAX_SLICES)); to change it, declare a new
    /// [`version`](Self::version).
    ///
    /// ```
    /// use factum::{EventHandler, HandlerError, Projection, RecordedEvent};
    ///
    /// struct Mailer;
    ///
    /// #[async_trait::async_trait]
    /// impl EventHandler for Mailer {
    ///     async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), HandlerError> {
    ///         Ok(()) // a slow call to a mail server, say
    ///     }
    /// }
    ///
    /// let projection = Projection::sliced_handler("mailer", 12, |_slice| Mailer).slice_concurrency(4);
    /// assert_eq!(projection.name(), "mailer");
    /// ```
    pub fn sliced<S, F>(name: impl Into<String>, slices: u16, make: F) -> Self
    where
        S: ProjectionSink,
        F: Fn(Slice) -> S + Send + Sync + 'static,
    {
        let mut p = Self::from_spec(name.into(), SinkSpec::Sliced(Box::new(move |s| Box::new(make(s)))));
        p.slices = slices;
        p
    }

    /// An at-least-once projection in `slices` slices, each with a handler of its own
    /// made by `make` (see [`sliced`](Self::sliced)).
    pub fn sliced_handler<H, F>(name: impl Into<String>, slices: u16, make: F) -> Self
    where
        H: EventHandler,
        F: Fn(Slice) -> H + Send + Sync + 'static,
    {
        let mut p =
            Self::from_spec(name.into(), SinkSpec::SlicedHandler(Box::new(move |s| Box::new(make(s)))));
        p.slices = slices;
        p
    }

    /// How many slices of a projection in slices apply a batch at once in one instance
    /// (default: all of them).
    #[must_use]
    pub fn slice_concurrency(mut self, concurrency: usize) -> Self {
        self.slice_concurrency = Some(concurrency.max(1));
        self
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
            slices: 1,
            slice_concurrency: None,
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
        crate::store::op::RegisterBuild::new(self.name.clone(), self.version, false)?.slices(self.slices)?;
        if self.batch_size == 0 || self.batch_size > store.limits().max_query_limit {
            return Err(InvalidInput::OutOfRange {
                field: "batch_size",
                reason: "must be between 1 and the store's max_query_limit",
            });
        }
        LogSelector::new(self.aggregate_types.clone(), self.event_types.clone(), &self.topics)
    }
}

/// A slice and its sink.
pub(crate) type SliceSink = (Slice, Box<dyn ProjectionSink>);

/// The sinks of a projection's slices, one per slice (one for a projection not in slices).
pub(crate) fn slice_sinks(
    store: &Arc<dyn EventStore>,
    spec: SinkSpec,
    slices: u16,
) -> Result<Vec<SliceSink>, InvalidInput> {
    let all: Vec<Slice> = Slice::all(slices)?.collect();
    Ok(match spec {
        SinkSpec::Sink(s) => vec![(all[0], s)],
        SinkSpec::Handler(h) => vec![(all[0], Box::new(AtLeastOnce::new(store.clone(), h)))],
        SinkSpec::Sliced(make) => all.into_iter().map(|s| (s, make(s))).collect(),
        SinkSpec::SlicedHandler(make) => all
            .into_iter()
            .map(|s| (s, Box::new(AtLeastOnce::new(store.clone(), make(s))) as Box<dyn ProjectionSink>))
            .collect(),
    })
}
