//! What a process reacts to: an event from the log, a refusal of a command it sent, or
//! one of its timers coming due.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{DomainEvent, EventCodecError};
use crate::store::{Checkpoint, GlobalPosition, Metadata, RecordedEvent, StreamId, Version};

/// One thing a process instance reacts to: [`Process::handle`](super::Process::handle)
/// decides on it, and [`Process::apply`](super::Process::apply) folds it into the state once
/// the decision is recorded.
#[derive(Clone, Debug, PartialEq)]
pub enum Input<E> {
    /// An event from the log, of the kinds the process listens to.
    Event(Received<E>),
    /// A command the process sent was refused by its aggregate (a domain error), or could
    /// not be run there (an invalid aggregate id): the process may compensate.
    Refused(Refusal),
    /// A timer the process set came due.
    Timer(Fired),
}

impl<E> Input<E> {
    /// An event of `stream` as if just recorded, with fresh ids: for tests of a
    /// process's decisions ([`ProcessTest`](crate::testing::ProcessTest)).
    pub fn event(stream: StreamId, event: E) -> Self {
        Input::Event(Received::new(stream, event))
    }

    /// When the input happened: the event's recording, the refusal, the timer's deadline.
    /// A timer set "after" a duration counts from here, so a decision stays pure.
    pub fn time(&self) -> DateTime<Utc> {
        match self {
            Input::Event(e) => e.recorded_at,
            Input::Refused(r) => r.at,
            Input::Timer(t) => t.deadline,
        }
    }

    /// The event, if the input is one.
    pub fn as_event(&self) -> Option<&E> {
        match self {
            Input::Event(e) => Some(&e.event),
            _ => None,
        }
    }
}

/// An event from the log, decoded as the process's event type, with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Received<E> {
    /// The event.
    pub event: E,
    /// Its id.
    pub event_id: Uuid,
    /// The stream it was recorded in (its aggregate's type and id).
    pub stream: StreamId,
    /// Its version in that stream.
    pub version: Version,
    /// Its position in the log.
    pub position: GlobalPosition,
    /// Its transaction's order in the log (with `position`, its [`Checkpoint`]).
    pub transaction: u64,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Its metadata (correlation, causation, user, tenant, custom keys).
    pub metadata: Metadata,
}

impl<E> Received<E> {
    /// Where the event stands in the log, in the order its readers get it.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { transaction: self.transaction, position: self.position }
    }
}

impl<E> Received<E> {
    /// An event as if just recorded, with fresh ids: for tests of a process's decisions.
    pub fn new(stream: StreamId, event: E) -> Self {
        Received {
            event,
            event_id: Uuid::now_v7(),
            stream,
            version: Version(1),
            position: GlobalPosition(0),
            transaction: 0,
            recorded_at: Utc::now(),
            metadata: Metadata::default(),
        }
    }
}

impl<E: DomainEvent> Received<E> {
    /// Decodes a stored event as `E`, upcasting older schema versions.
    pub fn decode(event: &RecordedEvent) -> Result<Self, EventCodecError> {
        Ok(Received {
            event: E::from_stored(&event.event_type, event.schema_version, event.payload.clone())?,
            event_id: event.event_id,
            stream: event.stream.clone(),
            version: event.version,
            position: event.position,
            transaction: event.transaction,
            recorded_at: event.recorded_at,
            metadata: event.metadata.clone(),
        })
    }
}

/// A command the process sent, and why its aggregate refused it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// The command's id (the causation id its events would have had).
    pub command_id: Uuid,
    /// The aggregate type it was sent to.
    pub aggregate_type: String,
    /// The aggregate it was sent to.
    pub aggregate_id: String,
    /// The command, as recorded.
    pub command: Value,
    /// The aggregate's domain error, as text.
    pub reason: String,
    /// When it was refused.
    pub at: DateTime<Utc>,
}

/// A timer that came due.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fired {
    /// The name it was set under.
    pub name: String,
    /// The id it was set with.
    pub timer_id: Uuid,
    /// When it was due (it fires at or after this, once).
    pub deadline: DateTime<Utc>,
}

/// An input as a process stream records it: an event is kept with its type, schema
/// version and payload, and decoded again (upcast) when the stream is read.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum StoredInput {
    Event {
        event_type: String,
        schema_version: u32,
        payload: Value,
        event_id: Uuid,
        aggregate_type: String,
        aggregate_id: String,
        version: u64,
        position: u64,
        #[serde(default)]
        transaction: u64,
        recorded_at: DateTime<Utc>,
        #[serde(default)]
        metadata: Value,
    },
    Refused(Refusal),
    Timer(Fired),
}

impl StoredInput {
    pub(crate) fn of<E: DomainEvent>(input: &Input<E>) -> Result<Self, EventCodecError> {
        Ok(match input {
            Input::Event(r) => StoredInput::Event {
                event_type: r.event.event_type().to_owned(),
                schema_version: r.event.schema_version(),
                payload: r.event.to_payload()?,
                event_id: r.event_id,
                aggregate_type: r.stream.aggregate_type().to_owned(),
                aggregate_id: r.stream.aggregate_id().to_owned(),
                version: r.version.0,
                position: r.position.0,
                transaction: r.transaction,
                recorded_at: r.recorded_at,
                metadata: r.metadata.to_json(),
            },
            Input::Refused(r) => StoredInput::Refused(r.clone()),
            Input::Timer(t) => StoredInput::Timer(t.clone()),
        })
    }

    pub(crate) fn decode<E: DomainEvent>(self, step_type: &str) -> Result<Input<E>, EventCodecError> {
        Ok(match self {
            StoredInput::Event {
                event_type,
                schema_version,
                payload,
                event_id,
                aggregate_type,
                aggregate_id,
                version,
                position,
                transaction,
                recorded_at,
                metadata,
            } => Input::Event(Received {
                event: E::from_stored(&event_type, schema_version, payload)?,
                event_id,
                stream: StreamId::new(aggregate_type, aggregate_id).map_err(|e| {
                    EventCodecError::Malformed { event_type: step_type.to_owned(), reason: e.to_string() }
                })?,
                version: Version(version),
                position: GlobalPosition(position),
                transaction,
                recorded_at,
                metadata: Metadata::from_json(metadata),
            }),
            StoredInput::Refused(r) => Input::Refused(r),
            StoredInput::Timer(t) => Input::Timer(t),
        })
    }
}
