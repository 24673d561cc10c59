//! An event to append, with its payload as a JSON value or as JSON text already
//! serialized.

use std::borrow::Cow;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::metadata::Metadata;
use super::types::{ExpectedVersion, StreamId};

/// An event to append: everything but what the store assigns (version, position,
/// recorded-at).
///
/// The payload is a JSON [`Value`] ([`NewEvent::new`]) or JSON text serialized already
/// ([`NewEvent::from_json_text`]). Aggregates append the second kind: a typed event goes
/// once to JSON text and from there to the database, with no `Value` tree in between.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// The event's id; re-appending an id already stored is detected (see
    /// [`EventStore::append`](crate::store::EventLog::append)). UUID v7 by default.
    pub event_id: Uuid,
    /// The stable name of the event's type, such as `"OrderPlaced"`.
    pub event_type: String,
    /// The schema version of the payload's shape, from 1.
    pub schema_version: u32,
    /// A dot-separated topic such as `"order.lifecycle.placed"`, for topic queries.
    pub topic: Option<String>,
    /// The payload. `Null` for an event made from JSON text, whose payload is that text
    /// as long as this stays `Null` (setting it replaces the text); read the payload of
    /// any event through [`payload_json`](Self::payload_json) or
    /// [`into_payload`](Self::into_payload).
    pub payload: Value,
    /// Tracing ids and other metadata.
    pub metadata: Metadata,
    /// When the event happened, in the domain's clock. Stored with microsecond precision.
    pub occurred_at: DateTime<Utc>,
    /// The payload's JSON text, for an event made from text.
    text: Option<PayloadText>,
}

/// JSON text, compared as text.
#[derive(Clone, Debug)]
struct PayloadText(Box<RawValue>);

impl PartialEq for PayloadText {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl NewEvent {
    /// A new event of `event_type` with `payload`: a fresh UUID v7 id, schema version 1,
    /// no topic, empty metadata, occurred now.
    ///
    /// ```
    /// # use factum::NewEvent;
    /// let event = NewEvent::new("OrderPlaced", serde_json::json!({"customer": "c-1"}))
    ///     .with_topic("order.lifecycle.placed");
    /// assert_eq!(event.schema_version, 1);
    /// ```
    pub fn new(event_type: impl Into<String>, payload: Value) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            topic: None,
            payload,
            metadata: Metadata::default(),
            occurred_at: Utc::now().trunc_subsecs(6),
            text: None,
        }
    }

    /// A new event whose payload is `json`, JSON text serialized already (by
    /// [`serde_json::value::to_raw_value`], say): stored as it is, without being parsed
    /// into a [`Value`] first. Otherwise as [`new`](Self::new).
    ///
    /// ```
    /// # use factum::NewEvent;
    /// # use serde_json::json;
    /// let text = serde_json::value::to_raw_value(&json!({"customer": "c-1"}))?;
    /// let event = NewEvent::from_json_text("OrderPlaced", text);
    /// assert_eq!(event.payload_json().get(), r#"{"customer":"c-1"}"#);
    /// assert_eq!(event.into_payload(), json!({"customer": "c-1"}));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn from_json_text(event_type: impl Into<String>, json: Box<RawValue>) -> Self {
        NewEvent { text: Some(PayloadText(json)), ..NewEvent::new(event_type, Value::Null) }
    }

    /// The payload's JSON text when the event was made from text (and its payload not
    /// set since).
    pub fn payload_text(&self) -> Option<&RawValue> {
        match (&self.text, &self.payload) {
            (Some(text), Value::Null) => Some(&text.0),
            _ => None,
        }
    }

    /// The payload as JSON text: borrowed for an event made from text, serialized once
    /// otherwise. Backends store this.
    pub fn payload_json(&self) -> Cow<'_, RawValue> {
        match self.payload_text() {
            Some(text) => Cow::Borrowed(text),
            // A Value always serializes.
            None => Cow::Owned(serde_json::value::to_raw_value(&self.payload).unwrap_or_else(|_| null())),
        }
    }

    /// The payload as a [`Value`], parsing the text of an event made from text.
    pub fn into_payload(mut self) -> Value {
        self.take_payload()
    }

    /// Takes the payload out as a [`Value`], parsing the text of an event made from text.
    pub(crate) fn take_payload(&mut self) -> Value {
        let value = match self.payload_text() {
            // RawValue holds valid JSON.
            Some(text) => serde_json::from_str(text.get()).unwrap_or(Value::Null),
            None => std::mem::take(&mut self.payload),
        };
        self.text = None;
        value
    }

    /// Whether the payload equals `value`, parsing the text of an event made from text.
    pub(crate) fn payload_equals(&self, value: &Value) -> bool {
        match self.payload_text() {
            Some(text) => serde_json::from_str::<Value>(text.get()).is_ok_and(|v| v == *value),
            None => self.payload == *value,
        }
    }

    /// Sets the topic.
    #[must_use]
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the event id.
    #[must_use]
    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }

    /// Sets the schema version.
    #[must_use]
    pub fn with_schema_version(mut self, schema_version: u32) -> Self {
        self.schema_version = schema_version;
        self
    }
}

/// One stream's part of an atomic append to several streams
/// ([`EventLog::append_many`](crate::store::EventLog::append_many)): the events to append
/// to `stream` if it is at `expected`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StreamAppend {
    /// The stream.
    pub stream: StreamId,
    /// The version the stream must be at.
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// Appends `events` to `stream` if it is at `expected`.
    pub fn new(stream: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        StreamAppend { stream, expected, events }
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is JSON")
}
