//! The wire format: how a stored event becomes an AMQP message, and back.
//!
//! | AMQP | from the event |
//! | --- | --- |
//! | exchange | the publisher's topic exchange |
//! | routing key | the topic, or the event type when the event has no topic |
//! | `message_id` | the event id |
//! | `type` | the event type |
//! | `timestamp` | when the event occurred (seconds since the epoch) |
//! | `correlation_id` | the correlation id, if any |
//! | `content_type` | `application/json` |
//! | `delivery_mode` | 2 (persistent) |
//! | `app_id` | `factum` |
//! | headers | see [`headers`]; `traceparent` and `tracestate` carry the W3C trace context |
//! | body | the payload as JSON; the metadata is in the `metadata` header, not in the body |

use chrono::{DateTime, TimeZone, Utc};
use factum::aggregate::EventCodecError;
use factum::store::GlobalPosition;
use factum::trace::{TraceParent, TraceState};
use factum::{DomainEvent, Metadata, RecordedEvent, StreamId, Version};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use serde_json::Value;
use uuid::Uuid;

/// The names of the headers the publisher sets on each message.
pub mod headers {
    /// The stream, as `Type-id` (text).
    pub const STREAM: &str = "stream";
    /// The aggregate type, the stream's category (text).
    pub const AGGREGATE_TYPE: &str = "aggregate_type";
    /// The aggregate id (text).
    pub const AGGREGATE_ID: &str = "aggregate_id";
    /// The event's version in its stream (64-bit integer).
    pub const VERSION: &str = "version";
    /// The event's global position (64-bit integer).
    pub const POSITION: &str = "position";
    /// The id of the transaction that wrote it (64-bit integer).
    pub const TRANSACTION: &str = "transaction";
    /// The payload's schema version (64-bit integer).
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// The topic, when the event has one (text).
    pub const TOPIC: &str = "topic";
    /// The correlation id, when set (text, a UUID).
    pub const CORRELATION_ID: &str = "correlation_id";
    /// The causation id, when set (text, a UUID).
    pub const CAUSATION_ID: &str = "causation_id";
    /// When it occurred, RFC 3339 with microseconds (text).
    pub const OCCURRED_AT: &str = "occurred_at";
    /// When the store recorded it, RFC 3339 with microseconds (text).
    pub const RECORDED_AT: &str = "recorded_at";
    /// The whole metadata object as JSON text (correlation, causation, user, tenant,
    /// custom keys).
    pub const METADATA: &str = "metadata";
    /// The W3C trace context the message continues (text): the publisher's span for this
    /// message, a child of the context the event was stored with, or that stored context
    /// itself when the publisher records no spans. Absent when the event has none.
    pub const TRACEPARENT: &str = "traceparent";
    /// The vendors' part of that trace context (text), when there is one.
    pub const TRACESTATE: &str = "tracestate";
    /// On a dead-lettered message: why the subscriber gave up on it (text).
    pub const DEAD_LETTER_REASON: &str = "x-factum-error";
    /// On a dead-lettered message: how many times the handler was tried (integer).
    pub const DEAD_LETTER_ATTEMPTS: &str = "x-factum-attempts";
    /// On a dead-lettered message: the queue it came from (text).
    pub const DEAD_LETTER_QUEUE: &str = "x-factum-queue";
}

/// A W3C trace context: `traceparent`, and `tracestate` when there is one.
pub(crate) type TraceContext = (TraceParent, Option<TraceState>);

/// A message ready to publish.
pub(crate) struct Outgoing {
    pub(crate) routing_key: ShortString,
    pub(crate) properties: BasicProperties,
    pub(crate) body: Vec<u8>,
}

fn text(value: impl Into<Vec<u8>>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn int(value: u64) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(value).unwrap_or(i64::MAX))
}

fn short(field: &str, value: &str) -> Result<ShortString, String> {
    ShortString::try_new(value).map_err(|e| format!("{field} too long for AMQP: {e}"))
}

/// The message for `event`, continuing the trace context `trace`. Fails only if a field
/// does not fit AMQP's 255-byte short strings (a topic or event type that long).
pub(crate) fn encode(event: &RecordedEvent, trace: Option<&TraceContext>) -> Result<Outgoing, String> {
    let routing_key = short("routing key", event.topic.as_deref().unwrap_or(&event.event_type))?;
    let body = serde_json::to_vec(&event.payload).map_err(|e| format!("payload: {e}"))?;
    let mut h = FieldTable::default();
    h.insert(headers::STREAM.into(), text(event.stream.to_string()));
    h.insert(headers::AGGREGATE_TYPE.into(), text(event.stream.aggregate_type()));
    h.insert(headers::AGGREGATE_ID.into(), text(event.stream.aggregate_id()));
    h.insert(headers::VERSION.into(), int(event.version.0));
    h.insert(headers::POSITION.into(), int(event.position.0));
    h.insert(headers::TRANSACTION.into(), int(event.transaction));
    h.insert(headers::SCHEMA_VERSION.into(), int(u64::from(event.schema_version)));
    if let Some(topic) = &event.topic {
        h.insert(headers::TOPIC.into(), text(topic.as_str()));
    }
    if let Some(c) = event.metadata.correlation_id {
        h.insert(headers::CORRELATION_ID.into(), text(c.to_string()));
    }
    if let Some(c) = event.metadata.causation_id {
        h.insert(headers::CAUSATION_ID.into(), text(c.to_string()));
    }
    let micros = chrono::SecondsFormat::Micros;
    h.insert(headers::OCCURRED_AT.into(), text(event.occurred_at.to_rfc3339_opts(micros, true)));
    h.insert(headers::RECORDED_AT.into(), text(event.recorded_at.to_rfc3339_opts(micros, true)));
    if !event.metadata.is_empty() {
        h.insert(headers::METADATA.into(), text(event.metadata.to_json().to_string()));
    }
    if let Some((parent, state)) = trace {
        h.insert(headers::TRACEPARENT.into(), text(parent.to_string()));
        if let Some(state) = state {
            h.insert(headers::TRACESTATE.into(), text(state.as_str()));
        }
    }
    let mut properties = BasicProperties::default()
        .with_message_id(event.event_id.to_string().into())
        .with_type(short("event type", &event.event_type)?)
        .with_timestamp(u64::try_from(event.occurred_at.timestamp()).unwrap_or(0))
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_app_id("factum".into())
        .with_headers(h);
    if let Some(c) = event.metadata.correlation_id {
        properties = properties.with_correlation_id(c.to_string().into());
    }
    Ok(Outgoing { routing_key, properties, body })
}

/// Why a received message is not a factum event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A property or header the publisher always sets is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A property or header has a value of the wrong shape.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The property or header.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// An event as a subscriber receives it: what the publisher sent, decoded.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BusEvent {
    /// The event's id (the message id): the key for deduplication.
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version in the stream.
    pub version: Version,
    /// Its global position.
    pub position: GlobalPosition,
    /// Its payload's schema version.
    pub schema_version: u32,
    /// The routing key it came with (its topic, or its type).
    pub routing_key: String,
    /// The payload.
    pub payload: Value,
    /// Its metadata.
    pub metadata: Metadata,
    /// When it occurred.
    pub occurred_at: DateTime<Utc>,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Whether the broker delivered it before (to this queue) without an ack.
    pub redelivered: bool,
    /// The trace context the message came with (its `traceparent` header), which the
    /// subscriber's `factum.rabbitmq.receive` span continues. `None` when the header is
    /// absent or not valid W3C trace context.
    pub traceparent: Option<TraceParent>,
    /// The `tracestate` header, when valid.
    pub tracestate: Option<TraceState>,
}

impl BusEvent {
    /// The payload as the application's event type, upcast from older schema versions
    /// the way aggregates load it.
    ///
    /// ```
    /// # use factum::DomainEvent;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
    /// enum CounterEvent {
    ///     #[event(topic = "counter.value.added")]
    ///     Added { by: i64 },
    /// }
    /// # fn show(event: &factum_rabbitmq::BusEvent) -> Result<(), factum::aggregate::EventCodecError> {
    /// let CounterEvent::Added { by } = event.decode::<CounterEvent>()?;
    /// # let _ = by; Ok(()) }
    /// ```
    pub fn decode<E: DomainEvent>(&self) -> Result<E, EventCodecError> {
        E::from_stored(&self.event_type, self.schema_version, self.payload.clone())
    }

    /// Decodes a delivery's routing key, properties and body.
    pub(crate) fn from_parts(
        routing_key: &str,
        properties: &BasicProperties,
        body: &[u8],
        redelivered: bool,
    ) -> Result<Self, DecodeError> {
        let table = properties.headers().as_ref().ok_or(DecodeError::Missing("headers"))?;
        let h = table.inner();
        let get_text = |field: &'static str| -> Result<String, DecodeError> {
            match h.get(field) {
                Some(AMQPValue::LongString(s)) => String::from_utf8(s.as_bytes().to_vec())
                    .map_err(|e| DecodeError::Invalid { field, reason: e.to_string() }),
                Some(AMQPValue::ShortString(s)) => Ok(s.as_str().to_owned()),
                Some(other) => Err(DecodeError::Invalid { field, reason: format!("not text: {other:?}") }),
                None => Err(DecodeError::Missing(field)),
            }
        };
        let get_int = |field: &'static str| -> Result<u64, DecodeError> {
            let n = match h.get(field) {
                Some(AMQPValue::LongLongInt(n)) => *n,
                Some(AMQPValue::LongInt(n)) => i64::from(*n),
                Some(AMQPValue::LongUInt(n)) => i64::from(*n),
                Some(other) => {
                    return Err(DecodeError::Invalid { field, reason: format!("not an integer: {other:?}") })
                }
                None => return Err(DecodeError::Missing(field)),
            };
            u64::try_from(n).map_err(|_| DecodeError::Invalid { field, reason: "negative".into() })
        };
        let get_time = |field: &'static str| -> Result<DateTime<Utc>, DecodeError> {
            let t = get_text(field)?;
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| DecodeError::Invalid { field, reason: e.to_string() })
        };
        let id = properties.message_id().as_ref().ok_or(DecodeError::Missing("message_id"))?;
        let event_id = Uuid::parse_str(id.as_str())
            .map_err(|e| DecodeError::Invalid { field: "message_id", reason: e.to_string() })?;
        let event_type = properties.kind().as_ref().ok_or(DecodeError::Missing("type"))?.as_str().to_owned();
        let stream = StreamId::new(get_text(headers::AGGREGATE_TYPE)?, get_text(headers::AGGREGATE_ID)?)
            .map_err(|e| DecodeError::Invalid { field: "stream", reason: e.to_string() })?;
        let schema_version = u32::try_from(get_int(headers::SCHEMA_VERSION)?).map_err(|_| {
            DecodeError::Invalid { field: headers::SCHEMA_VERSION, reason: "out of range".into() }
        })?;
        let payload = serde_json::from_slice(body)
            .map_err(|e| DecodeError::Invalid { field: "body", reason: e.to_string() })?;
        let metadata = match get_text(headers::METADATA) {
            Ok(json) => {
                let value: Value = serde_json::from_str(&json)
                    .map_err(|e| DecodeError::Invalid { field: headers::METADATA, reason: e.to_string() })?;
                Metadata::from_json(value)
            }
            Err(DecodeError::Missing(_)) => Metadata::default(),
            Err(e) => return Err(e),
        };
        let occurred_at = get_time(headers::OCCURRED_AT).or_else(|_| {
            let secs = properties.timestamp().ok_or(DecodeError::Missing("timestamp"))?;
            Utc.timestamp_opt(i64::try_from(secs).unwrap_or(0), 0)
                .single()
                .ok_or(DecodeError::Invalid { field: "timestamp", reason: "out of range".into() })
        })?;
        Ok(BusEvent {
            event_id,
            event_type,
            stream,
            version: Version(get_int(headers::VERSION)?),
            position: GlobalPosition(get_int(headers::POSITION)?),
            schema_version,
            routing_key: routing_key.to_owned(),
            payload,
            metadata,
            occurred_at,
            recorded_at: get_time(headers::RECORDED_AT).unwrap_or(occurred_at),
            redelivered,
            traceparent: get_text(headers::TRACEPARENT).ok().and_then(|t| t.parse().ok()),
            tracestate: get_text(headers::TRACESTATE).ok().and_then(|t| t.parse().ok()),
        })
    }
}
