//! Errors of the command path.

use crate::store::{InvalidInput, StoreError, StreamId};

/// Why a stored event could not become a domain event, or a domain event a stored one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventCodecError {
    /// The stored event type is not one of the enum's.
    #[error("unknown event type {event_type:?}")]
    UnknownEventType {
        /// The stored type.
        event_type: String,
    },
    /// The payload did not match the event's shape.
    #[error("malformed {event_type} payload: {reason}")]
    Malformed {
        /// The event type.
        event_type: String,
        /// What serde said.
        reason: String,
    },
    /// The stored schema version is newer than this code knows.
    #[error("{event_type} schema version {stored} is newer than the supported {supported}")]
    NewerSchema {
        /// The event type.
        event_type: String,
        /// The stored version.
        stored: u32,
        /// The newest version this code knows.
        supported: u32,
    },
    /// The upcaster refused the stored payload.
    #[error("cannot upcast {event_type} from schema version {from}: {reason}")]
    Upcast {
        /// The event type.
        event_type: String,
        /// The stored version.
        from: u32,
        /// What the upcaster said.
        reason: String,
    },
}

/// Why a command failed. Domain errors are kept apart from everything else.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused the command; nothing was written.
    #[error("{0}")]
    Domain(#[source] E),
    /// Other writers kept changing the aggregate; the command was retried `attempts`
    /// times on fresh state and nothing was written.
    #[error("concurrency conflict on {stream} after {attempts} attempts")]
    Conflict {
        /// The aggregate's stream.
        stream: StreamId,
        /// How many times the command ran.
        attempts: u32,
    },
    /// The command named an invalid aggregate id.
    #[error("invalid command: {0}")]
    InvalidCommand(#[source] InvalidInput),
    /// The store failed. If it failed during the append, the events may or may not have
    /// been committed: the aggregate reloads before its next command.
    #[error("store error: {0}")]
    Store(#[source] StoreError),
    /// An event could not be encoded, or a stored one decoded.
    #[error("event codec error: {0}")]
    Codec(#[source] EventCodecError),
    /// User code panicked. The aggregate's actor was stopped; the next command starts a
    /// fresh one from the store. `committed` tells whether the events had already been
    /// committed (a panic in `apply`) or nothing was written (a panic in `handle`).
    #[error("aggregate panicked ({}): {message}", if *committed { "after commit" } else { "nothing written" })]
    Panicked {
        /// Whether the events were committed before the panic.
        committed: bool,
        /// The panic message.
        message: String,
    },
    /// The aggregate's actor could not be reached in time; the command may or may not
    /// have run.
    #[error("aggregate unavailable: {0}")]
    Unavailable(String),
}

impl<E: std::error::Error + 'static> CommandError<E> {
    /// The domain error, if that is what this is.
    pub fn domain(&self) -> Option<&E> {
        match self {
            CommandError::Domain(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: std::error::Error + 'static> From<StoreError> for CommandError<E> {
    fn from(e: StoreError) -> Self {
        CommandError::Store(e)
    }
}

impl<E: std::error::Error + 'static> From<EventCodecError> for CommandError<E> {
    fn from(e: EventCodecError) -> Self {
        CommandError::Codec(e)
    }
}
