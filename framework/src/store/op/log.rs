//! The log's operations: see [`EventLog`](crate::store::EventLog) for each one's contract.

use crate::store::error::InvalidInput;
use crate::store::{
    validate, AppendResult, Checkpoint, ExpectedVersion, GlobalPosition, Limits, LogPage, LogSelector,
    NewEvent, RecordedEvent, StreamAppend, StreamId, Version, VersionRange,
};

use uuid::Uuid;

use super::Operation;

/// [`EventLog::append`](crate::store::EventLog::append): a valid batch for one stream.
#[derive(Debug)]
pub struct Append {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
}

impl Append {
    /// Checks the batch against `limits`: not empty, distinct ids, valid events. Events
    /// with no trace context get the current span's (see [`crate::trace`]).
    pub fn new(
        stream: StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
        limits: &Limits,
    ) -> Result<Self, InvalidInput> {
        crate::trace::stamp_events(events.iter_mut());
        validate::batch(&events, limits)?;
        Ok(Append { stream, expected, events })
    }

    /// The stream appended to.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The version the stream must be at.
    pub fn expected(&self) -> ExpectedVersion {
        self.expected
    }

    /// The events, in order.
    pub fn events(&self) -> &[NewEvent] {
        &self.events
    }

    /// The stream, the expected version and the events.
    pub fn into_parts(self) -> (StreamId, ExpectedVersion, Vec<NewEvent>) {
        (self.stream, self.expected, self.events)
    }
}

impl Operation for Append {
    const NAME: &'static str = "append";
    const APPENDS: bool = true;
    type Output = AppendResult;

    fn appended(output: &AppendResult) -> &[AppendResult] {
        std::slice::from_ref(output)
    }

    fn span(&self) -> tracing::Span {
        let meta = self.events.first().map(|e| &e.metadata);
        let span = tracing::debug_span!(
            "factum.append",
            stream = %self.stream,
            expected = %self.expected,
            events = self.events.len(),
            correlation_id = tracing::field::Empty,
            causation_id = tracing::field::Empty,
        );
        if let Some(c) = meta.and_then(|m| m.correlation_id) {
            span.record("correlation_id", tracing::field::display(c));
        }
        if let Some(c) = meta.and_then(|m| m.causation_id) {
            span.record("causation_id", tracing::field::display(c));
        }
        span
    }
}

/// [`EventLog::append_many`](crate::store::EventLog::append_many): valid appends to
/// distinct streams, with distinct event ids across all.
#[derive(Debug)]
pub struct AppendMany {
    appends: Vec<StreamAppend>,
}

impl AppendMany {
    /// Checks the appends against `limits`. Events with no trace context get the current
    /// span's (see [`crate::trace`]).
    pub fn new(mut appends: Vec<StreamAppend>, limits: &Limits) -> Result<Self, InvalidInput> {
        crate::trace::stamp_events(appends.iter_mut().flat_map(|a| a.events.iter_mut()));
        validate::appends(&appends, limits)?;
        Ok(AppendMany { appends })
    }

    /// The appends, in the order their results come back.
    pub fn appends(&self) -> &[StreamAppend] {
        &self.appends
    }

    /// The appends.
    pub fn into_appends(self) -> Vec<StreamAppend> {
        self.appends
    }
}

impl Operation for AppendMany {
    const NAME: &'static str = "append_many";
    const APPENDS: bool = true;
    type Output = Vec<AppendResult>;

    fn appended(output: &Vec<AppendResult>) -> &[AppendResult] {
        output
    }

    fn span(&self) -> tracing::Span {
        tracing::debug_span!("factum.append_many", streams = self.appends.len())
    }
}

/// [`EventLog::stream_version`](crate::store::EventLog::stream_version).
#[derive(Debug)]
pub struct StreamVersion {
    stream: StreamId,
}

impl StreamVersion {
    /// The version of `stream` (a stream id is valid when made).
    pub fn new(stream: StreamId) -> Self {
        StreamVersion { stream }
    }

    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }
}

impl Operation for StreamVersion {
    const NAME: &'static str = "stream_version";
    type Output = Version;
}

/// [`EventLog::read_stream`](crate::store::EventLog::read_stream).
#[derive(Debug)]
pub struct ReadStream {
    stream: StreamId,
    range: VersionRange,
}

impl ReadStream {
    /// The events of `stream` within `range`.
    pub fn new(stream: StreamId, range: VersionRange) -> Self {
        ReadStream { stream, range }
    }

    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The versions read.
    pub fn range(&self) -> VersionRange {
        self.range
    }
}

impl Operation for ReadStream {
    const NAME: &'static str = "read_stream";
    type Output = Vec<RecordedEvent>;
}

/// Checks a page read of the log: its size and where it starts.
fn page(after: Checkpoint, limit: usize, limits: &Limits) -> Result<(), InvalidInput> {
    validate::page_limit(limit, limits)?;
    validate::checkpoint(after)
}

/// [`EventLog::read_all`](crate::store::EventLog::read_all).
#[derive(Debug)]
pub struct ReadAll {
    after: Checkpoint,
    limit: usize,
}

impl ReadAll {
    /// Checks the checkpoint and the page size against `limits`.
    pub fn new(after: Checkpoint, limit: usize, limits: &Limits) -> Result<Self, InvalidInput> {
        page(after, limit, limits)?;
        Ok(ReadAll { after, limit })
    }

    /// A page whose checkpoint and size already passed their checks.
    pub(crate) fn checked(after: Checkpoint, limit: usize) -> Self {
        ReadAll { after, limit }
    }

    /// Where the read starts (exclusive).
    pub fn after(&self) -> Checkpoint {
        self.after
    }

    /// The most events read, within [`Limits::max_query_limit`].
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Operation for ReadAll {
    const NAME: &'static str = "read_all";
    type Output = Vec<RecordedEvent>;
}

/// [`EventLog::read_category`](crate::store::EventLog::read_category).
#[derive(Debug)]
pub struct ReadCategory {
    category: String,
    after: Checkpoint,
    limit: usize,
}

impl ReadCategory {
    /// Checks the category's name, the checkpoint and the page size.
    pub fn new(
        category: String,
        after: Checkpoint,
        limit: usize,
        limits: &Limits,
    ) -> Result<Self, InvalidInput> {
        validate::category(&category)?;
        page(after, limit, limits)?;
        Ok(ReadCategory { category, after, limit })
    }

    /// A read whose category, checkpoint and size already passed their checks.
    pub(crate) fn checked(category: String, after: Checkpoint, limit: usize) -> Self {
        ReadCategory { category, after, limit }
    }

    /// The aggregate type read.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// Where the read starts (exclusive).
    pub fn after(&self) -> Checkpoint {
        self.after
    }

    /// The most events read.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Operation for ReadCategory {
    const NAME: &'static str = "read_category";
    type Output = Vec<RecordedEvent>;
}

/// [`EventLog::read_log`](crate::store::EventLog::read_log).
#[derive(Debug)]
pub struct ReadLog {
    after: Checkpoint,
    selector: LogSelector,
    limit: usize,
}

impl ReadLog {
    /// Checks the checkpoint, the page size and the selector's names (a selector is
    /// checked when made, but its fields are public).
    pub fn new(
        after: Checkpoint,
        selector: LogSelector,
        limit: usize,
        limits: &Limits,
    ) -> Result<Self, InvalidInput> {
        page(after, limit, limits)?;
        selector.aggregate_types.iter().try_for_each(|t| validate::category(t))?;
        selector.event_types.iter().try_for_each(|t| validate::name("event_type", t))?;
        Ok(ReadLog { after, selector, limit })
    }

    /// Where the read starts (exclusive).
    pub fn after(&self) -> Checkpoint {
        self.after
    }

    /// What the reader follows.
    pub fn selector(&self) -> &LogSelector {
        &self.selector
    }

    /// The most events of the log read (not only selected ones).
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Operation for ReadLog {
    const NAME: &'static str = "read_log";
    type Output = Option<LogPage>;
}

/// [`EventLog::count_streams`](crate::store::EventLog::count_streams).
#[derive(Debug)]
pub struct CountStreams {
    category: Option<String>,
}

impl CountStreams {
    /// Checks the category's name, if there is one.
    pub fn new(category: Option<String>) -> Result<Self, InvalidInput> {
        category.iter().try_for_each(|c| validate::category(c))?;
        Ok(CountStreams { category })
    }

    /// The aggregate type counted; all when `None`.
    pub fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }
}

impl Operation for CountStreams {
    const NAME: &'static str = "count_streams";
    type Output = u64;
}

/// [`EventLog::durable`](crate::store::EventLog::durable).
#[derive(Debug, Default)]
pub struct Durable {
    event_ids: Vec<Uuid>,
}

impl Durable {
    /// Waits for the durability of the events with these ids, which a reader read.
    pub fn new(event_ids: Vec<Uuid>) -> Self {
        Durable { event_ids }
    }

    /// The ids of the events read.
    pub fn event_ids(&self) -> &[Uuid] {
        &self.event_ids
    }
}

impl Operation for Durable {
    const NAME: &'static str = "durable";
    type Output = ();
}

/// [`EventLog::latest_position`](crate::store::EventLog::latest_position).
#[derive(Debug, Default)]
pub struct LatestPosition;

impl Operation for LatestPosition {
    const NAME: &'static str = "latest_position";
    type Output = Option<GlobalPosition>;
}
