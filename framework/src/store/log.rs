//! The log's store trait: what callers use to append to the log and read it.

use async_trait::async_trait;

use super::backend::LogBackend;
use super::op::{
    Append, AppendMany, CheckpointOf, Count, CountStreams, Durable, Execute, LatestPosition, Query, ReadAll,
    ReadCategory, ReadLog, ReadStream, StreamEvents, StreamVersion, Unread,
};
use super::{
    AppendResult, Checkpoint, EventFilter, EventStream, ExpectedVersion, GlobalPosition, LogPage,
    LogSelector, NewEvent, RecordedEvent, StoreError, StreamAppend, StreamId, Version, VersionRange,
};

/// The log: appends, reads of a stream, of the global log and of a category, and queries.
/// Its limits, its streams of an aggregate's events and its wake-up signals come from
/// [`LogBackend`].
///
/// Implemented for every backend that executes the log's [operations](super::op); each
/// method checks its input as it builds the operation, so that only valid input reaches
/// the backend.
///
/// # Ordering and gap safety
///
/// Within a stream, events are ordered by [`Version`], gapless from 1. The global log
/// ([`read_all`](Self::read_all)) and a category ([`read_category`](Self::read_category))
/// are read *after* a [`Checkpoint`], and only as far as no transaction still in flight
/// could land before what is returned: a reader that resumes after the last event it saw
/// never skips an event that committed late.
#[async_trait]
pub trait EventLog:
    LogBackend
    + Execute<Append>
    + Execute<AppendMany>
    + Execute<StreamVersion>
    + Execute<ReadStream>
    + Execute<ReadAll>
    + Execute<ReadCategory>
    + Execute<ReadLog>
    + Execute<LatestPosition>
    + Execute<Query>
    + Execute<Count>
    + Execute<CountStreams>
    + Execute<Unread>
    + Execute<CheckpointOf>
    + Execute<Durable>
{
    /// Appends `events` to `stream` atomically, if the stream's version satisfies
    /// `expected`; the store assigns consecutive versions and global positions.
    ///
    /// Errors: [`StoreError::InvalidInput`] for a bad batch, [`StoreError::Conflict`] when
    /// the stream is not at the expected version, [`StoreError::DuplicateEvent`] when an
    /// event id is already stored by a different append. Re-appending exactly the batch
    /// an earlier append stored (same ids, same stream, same content) is answered with
    /// that append's result and `deduplicated: true`, whatever the expected version, so
    /// a writer may retry an append whose acknowledgment was lost.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.execute(Append::new(stream.clone(), expected, events, self.limits())?).await
    }

    /// Appends to several streams atomically: every [`StreamAppend`] is stored, each with
    /// its own expected version, or none is. The results come in the order of `appends`.
    ///
    /// Errors as [`append`](Self::append), and nothing is stored: a conflict names the
    /// stream that was not at its expected version. Each stream may appear once, and the
    /// event ids must be distinct across all the appends; at most
    /// [`Limits::max_batch_len`](super::Limits::max_batch_len) events in all. Re-sending
    /// exactly a multi-stream append that was stored is answered with its results,
    /// `deduplicated: true`.
    ///
    /// For sagas and transfers between accounts. A store that cannot append atomically
    /// across streams answers [`StoreError::Unsupported`].
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        self.execute(AppendMany::new(appends, self.limits())?).await
    }

    /// The stream's current version ([`Version::INITIAL`] for a stream with no events),
    /// without reading its events.
    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.execute(StreamVersion::new(stream.clone())).await
    }

    /// Reads the stream's events within `range`, in version order.
    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.execute(ReadStream::new(stream.clone(), range)).await
    }

    /// Reads up to `limit` events of the global log after `after`, gap-safe.
    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.execute(ReadAll::new(after, limit, self.limits())?).await
    }

    /// Reads up to `limit` events of one category (aggregate type) after `after`, gap-safe.
    async fn read_category(
        &self,
        category: &str,
        after: Checkpoint,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.execute(ReadCategory::new(category.to_owned(), after, limit, self.limits())?).await
    }

    /// Reads the next page of the log after `after` as a reader following `selector` sees
    /// it: at most `limit` events of the log (of the selector's one category, if it has
    /// one), gap-safe as [`read_all`](Self::read_all), of which only those the selector
    /// matches come back, with the checkpoint of the last one read. `None` when nothing is
    /// readable after `after` yet. Subscriptions, projections, rebuilds and the bus's
    /// publisher all read the log through it.
    async fn read_log(
        &self,
        after: Checkpoint,
        selector: &LogSelector,
        limit: usize,
    ) -> Result<Option<LogPage>, StoreError> {
        self.execute(ReadLog::new(after, selector.clone(), limit, self.limits())?).await
    }

    /// The highest global position assigned to a stored event, if any. Not a safe
    /// checkpoint under concurrent writers: use it for monitoring and lag.
    async fn latest_position(&self) -> Result<Option<GlobalPosition>, StoreError> {
        self.execute(LatestPosition).await
    }

    /// The events matching `filter`, ordered and paginated as it says.
    async fn query(&self, filter: &EventFilter) -> Result<Vec<RecordedEvent>, StoreError> {
        self.execute(Query::new(filter.clone(), self.limits())?).await
    }

    /// How many events match `filter` (limit and offset ignored).
    async fn count(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        self.execute(Count::new(filter.clone(), self.limits())?).await
    }

    /// How many streams hold at least one stored event: in one category (aggregate type),
    /// or in all when `category` is `None`.
    async fn count_streams(&self, category: Option<&str>) -> Result<u64, StoreError> {
        self.execute(CountStreams::new(category.map(str::to_owned))?).await
    }

    /// Whether a committed event (of `category`, or of any when `None`) lies after `after`
    /// in log order, at or below position `up_to`: whether a reader standing at `after`,
    /// reading that category (or the whole log), has yet to read an event up to `up_to`.
    /// Also `true` while the log has not reached `up_to` (no event at or past it is
    /// stored). What read-your-writes waits on: a reader's checkpoint moves over every
    /// event it reads, but not over events outside what it reads.
    async fn unread(
        &self,
        after: Checkpoint,
        up_to: GlobalPosition,
        category: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.execute(Unread::new(after, up_to, category.map(str::to_owned))?).await
    }

    /// The checkpoint of the event stored at `position`: where it lies in log order.
    /// `None` when no event is stored there (never assigned, rolled back, deleted, or not
    /// committed yet).
    async fn checkpoint_of(&self, position: GlobalPosition) -> Result<Option<Checkpoint>, StoreError> {
        self.execute(CheckpointOf::new(position)?).await
    }

    /// Returns once the events a reader read (by id) are durable: on a replicated
    /// database with synchronous standbys, once they are on the standbys the primary
    /// waits for, so that a failover cannot take them back; on one server, or a store in
    /// memory, at once. A reader that hands events to something outside the store (a
    /// message broker, another service) calls it after reading and before handing them
    /// on; the framework's [`AtLeastOnce`](crate::projection::AtLeastOnce) sinks do.
    ///
    /// Fails with [`StoreError::Unavailable`] when one of them is not in the log any
    /// more, as after a failover that lost it (the page was read from the old primary):
    /// read again, and hand on nothing of what was read.
    async fn durable(&self, event_ids: &[uuid::Uuid]) -> Result<(), StoreError> {
        self.execute(Durable::new(event_ids.to_vec())).await
    }

    /// The events matching `filter`, yielded through a bounded buffer: the store reads
    /// ahead only as far as the consumer keeps up. Without a limit, every match.
    fn stream(&self, filter: EventFilter) -> EventStream {
        match StreamEvents::new(filter, self.limits()) {
            Ok(checked) => self.stream_events(checked),
            Err(e) => Box::pin(futures_util::stream::iter([Err(e.into())])),
        }
    }
}

impl<T> EventLog for T where
    T: LogBackend
        + Execute<Append>
        + Execute<AppendMany>
        + Execute<StreamVersion>
        + Execute<ReadStream>
        + Execute<ReadAll>
        + Execute<ReadCategory>
        + Execute<ReadLog>
        + Execute<LatestPosition>
        + Execute<Query>
        + Execute<Count>
        + Execute<CountStreams>
        + Execute<Unread>
        + Execute<CheckpointOf>
        + Execute<Durable>
{
}
