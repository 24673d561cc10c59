//! The values that flow in and out of an event store.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::error::InvalidInput;
use super::metadata::Metadata;
use super::validate;

/// The version of one aggregate's stream: the number of events ever appended to it.
///
/// Versions are assigned by the store, gapless from 1; a stream with no events is at
/// [`Version::INITIAL`] (0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version of a stream that has no events yet.
    pub const INITIAL: Version = Version(0);

    /// The next version after this one.
    #[must_use]
    pub const fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event's position in the global log: unique and increasing in the order positions
/// were *assigned*, which is not always the order in which they became visible.
///
/// Do not checkpoint a reader on a position alone; use [`Checkpoint`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GlobalPosition(pub u64);

impl fmt::Display for GlobalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a reader of the global log (or of a category) stands: the last event it has
/// processed, as the pair (transaction id, global position).
///
/// The global log is read in `(transaction, position)` order and only up to the oldest
/// transaction that might still commit, so a reader that resumes *after* a checkpoint
/// never skips an event that committed late. Checkpoints order lexicographically.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The id of the transaction that wrote the event (PostgreSQL's `xid8`; for the
    /// in-memory store, a counter of appends).
    pub transaction: u64,
    /// The event's global position.
    pub position: GlobalPosition,
}

impl Checkpoint {
    /// Before the first event: reading after it starts at the beginning of the log.
    pub const START: Checkpoint = Checkpoint { transaction: 0, position: GlobalPosition(0) };
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.position, self.transaction)
    }
}

/// Identifies one aggregate's stream: its aggregate type (the category) and its id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId {
    aggregate_type: String,
    aggregate_id: String,
}

impl StreamId {
    /// Creates a stream id, checking both parts (non-empty, at most 255 characters, no
    /// NUL or control characters).
    ///
    /// ```
    /// # use factum::StreamId;
    /// let stream = StreamId::new("Order", "ord-123")?;
    /// assert_eq!(stream.to_string(), "Order-ord-123");
    /// assert!(StreamId::new("", "x").is_err());
    /// # Ok::<(), factum::store::InvalidInput>(())
    /// ```
    pub fn new(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
    ) -> Result<Self, InvalidInput> {
        let aggregate_type = aggregate_type.into();
        let aggregate_id = aggregate_id.into();
        validate::name("aggregate_type", &aggregate_type)?;
        validate::name("aggregate_id", &aggregate_id)?;
        Ok(StreamId { aggregate_type, aggregate_id })
    }

    /// The aggregate type, which is also the stream's category.
    pub fn aggregate_type(&self) -> &str {
        &self.aggregate_type
    }

    /// The aggregate id, unique within its type.
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.aggregate_type, self.aggregate_id)
    }
}

/// What the writer expects of a stream's version before its append: the optimistic
/// concurrency check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check: append at whatever version the stream is.
    Any,
    /// The stream must not exist yet (have no events).
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream must be at exactly this version. `Exact(Version::INITIAL)` is `NoStream`.
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` satisfies this expectation.
    pub fn is_satisfied_by(self, actual: Version) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == Version::INITIAL,
            ExpectedVersion::StreamExists => actual > Version::INITIAL,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(v) => write!(f, "exactly {v}"),
        }
    }
}

/// What folding a stored event into an aggregate needs of it (see
/// [`LogBackend::read_payloads`](crate::store::LogBackend::read_payloads)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EventPayload {
    /// The event's version in its stream.
    pub version: Version,
    /// The stable name of the event's type.
    pub event_type: String,
    /// The schema version of the payload's shape.
    pub schema_version: u32,
    /// The payload's JSON text, as stored: aggregates decode it with
    /// [`DomainEvent::from_json`](crate::DomainEvent::from_json), which refuses text
    /// that is not JSON.
    pub payload: String,
}

impl EventPayload {
    /// An event's version, type, schema version and payload text, as a backend read them.
    pub fn new(version: Version, event_type: String, schema_version: u32, payload: String) -> Self {
        EventPayload { version, event_type, schema_version, payload }
    }
}

impl From<RecordedEvent> for EventPayload {
    /// Keeps what an aggregate needs of a recorded event, its payload as JSON text.
    fn from(e: RecordedEvent) -> Self {
        EventPayload {
            version: e.version,
            event_type: e.event_type,
            schema_version: e.schema_version,
            payload: e.payload.to_string(),
        }
    }
}

/// An event as stored: the appended event plus what the store assigned.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    /// The event's id.
    pub event_id: Uuid,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version within the stream.
    pub version: Version,
    /// Its position in the global log.
    pub position: GlobalPosition,
    /// The id of the transaction that wrote it (see [`Checkpoint`]).
    pub transaction: u64,
    /// The event's type name.
    pub event_type: String,
    /// The schema version of its payload.
    pub schema_version: u32,
    /// Its topic, if it has one.
    pub topic: Option<String>,
    /// The payload.
    pub payload: Value,
    /// Its metadata.
    pub metadata: Metadata,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The checkpoint that stands just at this event: resuming after it reads the next.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { transaction: self.transaction, position: self.position }
    }
}

/// What an append wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream appended to.
    pub stream: StreamId,
    /// The version of the first event written.
    pub from_version: Version,
    /// The version of the last event written: the stream's version after the append.
    pub to_version: Version,
    /// The global positions of the events written, in order.
    pub positions: Vec<GlobalPosition>,
    /// The id of the transaction that wrote them (see [`Checkpoint`]).
    pub transaction: u64,
    /// `true` when the batch had already been stored (same ids, same stream, same
    /// events) and this is the original append's result, returned again.
    pub deduplicated: bool,
}

impl AppendResult {
    /// Where the append's last event landed in the log: its checkpoint. A reader past it
    /// (in log order) has read every event of the append. `None` only for a result
    /// without positions, which no store returns.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let position = *self.positions.last()?;
        Some(Checkpoint { transaction: self.transaction, position })
    }
}

/// Which versions of a stream to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionRange {
    /// The first version to read (inclusive).
    pub from: Version,
    /// The last version to read (inclusive); `None` reads to the end.
    pub to: Option<Version>,
}

impl VersionRange {
    /// Every event of the stream.
    pub const ALL: VersionRange = VersionRange { from: Version(1), to: None };

    /// The events from `from` (inclusive) to the end.
    pub fn from(from: Version) -> Self {
        VersionRange { from, to: None }
    }

    /// The events after `version`: what a holder of state at `version` still needs.
    pub fn after(version: Version) -> Self {
        VersionRange { from: version.next(), to: None }
    }

    /// The events from `from` to `to`, both inclusive.
    pub fn between(from: Version, to: Version) -> Self {
        VersionRange { from, to: Some(to) }
    }

    /// Whether `version` is within the range.
    pub fn contains(&self, version: Version) -> bool {
        version >= self.from && self.to.is_none_or(|to| version <= to)
    }
}

/// An aggregate's state saved at a version, so that loading it reads only the tail.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The version the state was folded up to.
    pub version: Version,
    /// The schema version of the state's shape, so a changed shape can be recognised.
    pub schema_version: u32,
    /// The state.
    pub state: Value,
    /// When the snapshot was written.
    pub created_at: DateTime<Utc>,
}

impl From<u64> for Version {
    fn from(v: u64) -> Self {
        Version(v)
    }
}
