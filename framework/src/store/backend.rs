//! What a storage backend implements: an [`Execute`] impl per
//! [operation](super::op), and [`LogBackend`], the part of the log that is not a request
//! and its response (its limits, an aggregate's events as a stream, a stream of query
//! results, the wake-up signals).
//!
//! A type that does both is an [`EventStore`](super::EventStore): the store traits
//! ([`EventLog`](super::EventLog), [`SnapshotStore`](super::SnapshotStore),
//! [`ConsumerStore`](super::ConsumerStore), [`RetentionStore`](super::RetentionStore))
//! are implemented for it, each method checking its input as it builds the operation. The
//! conformance suite in `factum-tests` runs the same cases against every backend.
//!
//! Helpers for backends live here too: [`deduplicated_result`] tells a retry of a stored
//! append from a duplicate, [`read_log_in_memory`] selects a page of the log by reading
//! it all, [`payloads_from_read_stream`] streams an aggregate's events from one read, and
//! [`json_contains`] is PostgreSQL's `@>` for a backend that filters metadata itself.

use std::sync::Arc;

use futures_util::TryStreamExt;
use prometheus_client::registry::Registry;

pub use super::cursor::read_log_in_memory;
pub use super::filter::json_contains;
use super::op::{Execute, LoadSnapshot, Observer, ReadStream, StreamEvents};
use super::{
    AggregateLoad, AggregateLoadFuture, AppendResult, EventPayload, EventStream, Limits, NewEvent,
    PayloadStream, RecordedEvent, StreamId, Version, VersionRange, WakeSignal,
};

/// The part of an event log that is not an [operation](super::op): its limits, the
/// streams it yields and its wake-up signals.
pub trait LogBackend: Send + Sync + 'static {
    /// The limits input is checked against before it reaches this backend.
    fn limits(&self) -> &Limits;

    /// Streams the stream's events after version `after`, in version order, with only
    /// what folding them into an aggregate needs: the aggregate actors load through it,
    /// decoding and folding each event as it arrives. An error ends the stream.
    ///
    /// A backend may read less at a time and yield events while it still reads the rest;
    /// [`payloads_from_read_stream`] reads them all at once.
    fn read_payloads<'a>(&'a self, stream: &'a StreamId, after: Version) -> PayloadStream<'a>;

    /// An aggregate's cold load in one read, for a backend that can do it: the stream's
    /// snapshot (of any schema version), and its events after the snapshot's version if
    /// the snapshot's schema version is `snapshot_schema`, else from the stream's start,
    /// as [`read_payloads`](Self::read_payloads) yields them.
    ///
    /// `None` (the default) when the backend has no such read: the aggregate actors then
    /// load the snapshot ([`SnapshotStore::load_snapshot`](super::SnapshotStore::load_snapshot))
    /// and read the events after it, two reads. [`load_in_two_reads`] answers it for a
    /// backend that wants a wrapper to forward it.
    fn load_aggregate<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot_schema: u32,
    ) -> Option<AggregateLoadFuture<'a>> {
        let _ = (stream, snapshot_schema);
        None
    }

    /// The events matching a checked filter, yielded through a bounded buffer:
    /// [`EventLog::stream`](super::EventLog::stream).
    fn stream_events(&self, filter: StreamEvents) -> EventStream;

    /// A wake-up signal that changes after appends commit.
    fn wake_signal(&self) -> WakeSignal;

    /// A wake-up signal that changes after appends to `category` commit; it may also
    /// change for other appends (by default it is [`wake_signal`](Self::wake_signal)).
    fn category_wake_signal(&self, category: &str) -> WakeSignal {
        let _ = category;
        self.wake_signal()
    }

    /// Called once when the store is instrumented
    /// ([`Metrics::instrument`](crate::Metrics::instrument)): the backend registers the
    /// metrics of its own in `registry` (already under the framework's prefix), and keeps
    /// `observer` to report the operations it runs outside the store traits. Nothing by
    /// default.
    fn instrumented(&self, registry: &mut Registry, observer: Arc<dyn Observer>) {
        let _ = (registry, observer);
    }
}

/// [`LogBackend::read_payloads`] from one [`ReadStream`]: for a backend that reads a
/// stream's events all at once.
pub fn payloads_from_read_stream<'a, B>(
    backend: &'a B,
    stream: &'a StreamId,
    after: Version,
) -> PayloadStream<'a>
where
    B: Execute<ReadStream> + ?Sized,
{
    let read = backend.execute(ReadStream::new(stream.clone(), VersionRange::after(after)));
    Box::pin(
        futures_util::stream::once(read)
            .map_ok(|events| {
                futures_util::stream::iter(events.into_iter().map(|e| Ok(EventPayload::from(e))))
            })
            .try_flatten(),
    )
}

/// [`LogBackend::load_aggregate`] in two reads: the snapshot, then the events after it.
pub fn load_in_two_reads<'a, B>(
    backend: &'a B,
    stream: &'a StreamId,
    snapshot_schema: u32,
) -> AggregateLoadFuture<'a>
where
    B: LogBackend + Execute<LoadSnapshot>,
{
    Box::pin(async move {
        let snapshot = backend.execute(LoadSnapshot::new(stream.clone())).await?;
        let after = snapshot
            .as_ref()
            .filter(|s| s.schema_version == snapshot_schema)
            .map_or(Version::INITIAL, |s| s.version);
        Ok(AggregateLoad::new(snapshot, backend.read_payloads(stream, after)))
    })
}

/// If `stored` (the events already stored under the batch's ids, in version order) is
/// exactly `batch` appended to `stream`, the original append's result.
///
/// Backends call this when an append hits an event id that is already stored, to tell a
/// retry of the same append (answered with its result) from a real duplicate (an error).
pub fn deduplicated_result(
    stream: &StreamId,
    batch: &[NewEvent],
    stored: &[RecordedEvent],
) -> Option<AppendResult> {
    if stored.len() != batch.len() || stored.is_empty() {
        return None;
    }
    let first = stored[0].version;
    let same = stored.iter().zip(batch).enumerate().all(|(i, (s, b))| {
        s.event_id == b.event_id
            && s.stream == *stream
            && s.version.0 == first.0 + i as u64
            && s.event_type == b.event_type
            && s.schema_version == b.schema_version
            && s.topic == b.topic
            && b.payload_equals(&s.payload)
            && s.metadata == b.metadata
    });
    same.then(|| AppendResult {
        stream: stream.clone(),
        from_version: first,
        to_version: stored[stored.len() - 1].version,
        positions: stored.iter().map(|e| e.position).collect(),
        transaction: stored[stored.len() - 1].transaction,
        deduplicated: true,
    })
}
