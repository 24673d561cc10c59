//! The store's errors.

use std::error::Error as StdError;

use uuid::Uuid;

use super::types::{ExpectedVersion, StreamId, Version};

/// Why an input to the store was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A required string was empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The offending field.
        field: &'static str,
    },
    /// A string was longer than allowed.
    #[error("{field} is {len} characters long, more than the {max} allowed")]
    TooLong {
        /// The offending field.
        field: &'static str,
        /// Its length in characters.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A string held a NUL or another control character, which PostgreSQL text and
    /// JSONB cannot store faithfully.
    #[error("{field} contains a NUL or control character")]
    ControlCharacter {
        /// The offending field.
        field: &'static str,
    },
    /// A topic was not dot-separated words of ASCII letters, digits, `_` and `-`.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The topic as given.
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A topic pattern was not dot-separated words, `*` or `#`.
    #[error("invalid topic pattern {pattern:?}: {reason}")]
    InvalidTopicPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A payload or metadata object was larger than the store's maximum.
    #[error("{field} is {size} bytes of JSON, more than the {max} allowed")]
    TooLarge {
        /// The offending field.
        field: &'static str,
        /// Its size as serialized JSON.
        size: usize,
        /// The most allowed.
        max: usize,
    },
    /// An append had no events.
    #[error("an append needs at least one event")]
    EmptyBatch,
    /// An append had more events than allowed in one batch.
    #[error("an append of {len} events is more than the {max} allowed in one batch")]
    BatchTooLarge {
        /// The number of events.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The same event id appeared twice in one batch.
    #[error("event id {0} appears twice in one batch")]
    DuplicateIdInBatch(Uuid),
    /// A custom metadata key reused a reserved name or was empty.
    #[error("metadata key {key:?} is reserved or invalid")]
    InvalidMetadataKey {
        /// The key.
        key: String,
    },
    /// A number was out of its allowed range.
    #[error("{field} is out of range: {reason}")]
    OutOfRange {
        /// The offending field.
        field: &'static str,
        /// The allowed range.
        reason: &'static str,
    },
    /// A metadata filter was not a JSON object.
    #[error("metadata filter must be a JSON object")]
    MetadataFilterNotObject,
}

/// An error from an event store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The input was refused before anything was written.
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InvalidInput),
    /// The stream was not at the expected version; nothing was written.
    #[error("concurrency conflict on {stream}: expected {expected}, stream is at version {actual}")]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The stream's actual version when the append was refused.
        actual: Version,
    },
    /// An event with this id is already stored, and the batch is not an exact retry of
    /// the append that stored it; nothing was written.
    #[error("event {event_id} is already stored")]
    DuplicateEvent {
        /// The id already stored.
        event_id: Uuid,
    },
    /// The append raced a newer transaction writing to the same stream, and committing it
    /// would put this stream's events out of version order in the global log; nothing
    /// was written. Retry in a new transaction: [`EventStore::append`](crate::store::EventLog::append)
    /// does so itself; only appends inside a caller's own transaction see this error.
    #[error("append to {stream} raced a newer transaction; retry in a new transaction")]
    RetryTransaction {
        /// The stream.
        stream: StreamId,
    },
    /// The store does not offer this operation (a backend without atomic multi-stream
    /// appends, say); nothing was done.
    #[error("the store does not support {operation}")]
    Unsupported {
        /// The operation.
        operation: &'static str,
    },
    /// The store cannot be reached now: the connection was refused, the server is
    /// restarting, or no connection came within the timeout. The operation was not sent,
    /// so nothing was written; retry later. A backend that knows it is down answers this
    /// at once, without waiting for a connection, until a probe finds it back.
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// What made the store unreachable.
        reason: String,
    },
    /// The store did not answer within the operation timeout: the server may be stalled,
    /// or a lock held elsewhere may block the operation. An append that fails this way may
    /// or may not have committed; read the stream to find out.
    #[error("the store did not answer {operation} within {} ms", after.as_millis())]
    Timeout {
        /// The operation that timed out.
        operation: &'static str,
        /// The timeout.
        after: std::time::Duration,
    },
    /// An append was sent, the connection was lost before its answer came, and the store
    /// could not find out in time whether it committed (no server accepted writes within
    /// the backend's resolution window, during a failover say). It may have committed or
    /// not. Sending the same append again (the same event ids) is safe: it is stored once,
    /// and a retry of a stored append returns the original result. A command run with
    /// [`execute_once`](crate::Factum::execute_once) may be sent again under the same id.
    #[error("the outcome of the append to {stream} is unknown: {reason}")]
    OutcomeUnknown {
        /// The stream appended to.
        stream: StreamId,
        /// Why it could not be found out.
        reason: String,
    },
    /// A stored row could not be read back (for instance a column outside its range).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The backend failed: connection lost, timeout, database error. An append that
    /// fails this way may or may not have committed; read the stream to find out.
    #[error("backend error: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(error: impl StdError + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(error))
    }

    /// Whether the store was unreachable and the operation was not attempted
    /// ([`StoreError::Unavailable`]): retrying later is safe.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// Whether the store did not answer in time ([`StoreError::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        matches!(self, StoreError::Timeout { .. })
    }

    /// Whether an append's outcome is unknown ([`StoreError::OutcomeUnknown`]).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, StoreError::OutcomeUnknown { .. })
    }

    /// Whether this is an optimistic concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}
