//! Aggregates, their commands and events, and the actors that run them.

pub(crate) mod actor;
mod error;
pub(crate) mod registry;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::store::{NewEvent, Version};

pub use error::{CommandError, EventCodecError};

/// The default snapshot interval, from seed 001's 50–100 range.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 100;

/// A domain event type: usually an enum with `#[derive(DomainEvent)]`.
///
/// Each variant has a stable event-type name, a schema version and optionally a topic.
/// Payloads are stored as the variant's fields; an older stored schema version is upcast
/// to the current shape when loaded, and stored events are never rewritten.
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// The stable name stored in `event_type`.
    fn event_type(&self) -> &'static str;

    /// The current schema version of this event's payload.
    fn schema_version(&self) -> u32;

    /// The dot-separated topic, if the event has one.
    fn topic(&self) -> Option<&'static str> {
        None
    }

    /// The payload to store.
    fn to_payload(&self) -> Result<Value, EventCodecError>;

    /// Rebuilds an event from what was stored, upcasting older schema versions.
    fn from_stored(event_type: &str, schema_version: u32, payload: Value) -> Result<Self, EventCodecError>;
}

/// A command: usually an enum with `#[derive(Command)]`, which routes each command to the
/// aggregate it names.
pub trait Command: Send + Sync + 'static {
    /// The id of the aggregate this command is for.
    fn aggregate_id(&self) -> &str;
}

/// An aggregate: the state of one consistency boundary, usually declared with
/// `#[derive(Aggregate)]`.
///
/// The decision is pure: [`handle`](Self::handle) looks at the state and a command and
/// returns the events to record, or a domain error. [`apply`](Self::apply) folds an event
/// into the state; the framework calls it only after the events are committed.
pub trait Aggregate: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate type's name, which is also its category in the store.
    const TYPE: &'static str;
    /// Snapshot every this many events (0: never).
    const SNAPSHOT_EVERY: u64 = DEFAULT_SNAPSHOT_EVERY;
    /// The schema version of the serialized state: bump it when the state's shape
    /// changes, and stored snapshots of another version are ignored (full replay).
    const SNAPSHOT_VERSION: u32 = 1;

    /// The commands it handles.
    type Command: Command;
    /// The events it records.
    type Event: DomainEvent;
    /// Its domain errors.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides what happens: events to record, or a domain error. Must not change state.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one committed event into the state.
    fn apply(&mut self, event: &Self::Event);
}

/// Links a command type to the aggregate that handles it, so that
/// [`Factum::execute`](crate::Factum::execute) needs no type annotation.
/// `#[derive(Aggregate)]` implements it for the aggregate's command type.
pub trait AggregateCommand: Command {
    /// The aggregate that handles this command.
    type Aggregate: Aggregate<Command = Self>;
}

/// What a successful command did.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The aggregate's version after the command.
    pub version: Version,
    /// The events recorded (none if the command decided nothing needed to change).
    pub events: Vec<A::Event>,
}

/// Encodes a domain event as an event to append.
pub(crate) fn encode<E: DomainEvent>(
    event: &E,
    metadata: &crate::store::Metadata,
) -> Result<NewEvent, EventCodecError> {
    let mut new = NewEvent::new(event.event_type(), event.to_payload()?)
        .with_schema_version(event.schema_version())
        .with_metadata(metadata.clone());
    new.topic = event.topic().map(str::to_owned);
    Ok(new)
}

/// Helpers for the derive macros' generated code. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    use super::EventCodecError;
    use serde_json::Value;

    /// Splits serde's externally tagged form of an enum variant into its payload.
    pub fn variant_payload(value: Value) -> Value {
        match value {
            Value::Object(mut map) if map.len() == 1 => {
                let key = map.keys().next().cloned().unwrap_or_default();
                map.remove(&key).unwrap_or(Value::Null)
            }
            _ => Value::Null,
        }
    }

    /// Rebuilds serde's externally tagged form of a variant from its payload.
    pub fn tagged(variant: &'static str, payload: Value) -> Value {
        if payload.is_null() {
            Value::String(variant.to_owned())
        } else {
            let mut map = serde_json::Map::new();
            map.insert(variant.to_owned(), payload);
            Value::Object(map)
        }
    }

    /// Maps a serde error to a codec error.
    pub fn malformed(event_type: &str, error: serde_json::Error) -> EventCodecError {
        EventCodecError::Malformed { event_type: event_type.to_owned(), reason: error.to_string() }
    }
}
