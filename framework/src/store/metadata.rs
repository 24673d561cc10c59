//! What travels with an event besides its payload: tracing ids, the W3C trace context,
//! who, for which tenant, and custom keys.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::trace::{TraceParent, TraceState};

/// Metadata that travels with an event: tracing ids, who did it, for which tenant, and
/// free custom keys. Stored as one JSON object; custom keys sit beside the named ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Groups every event caused, directly or not, by one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the message (command or event) that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The user on whose behalf the event was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The tenant the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The W3C trace context of the span that recorded the event, which projections and
    /// bus subscribers continue (see [`crate::trace`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<TraceParent>,
    /// The vendors' part of that trace context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<TraceState>,
    /// Any other keys. They must not reuse the names above.
    #[serde(flatten)]
    pub custom: Map<String, Value>,
}

impl Metadata {
    /// The names of the keys that have fields of their own.
    pub const RESERVED_KEYS: [&'static str; 6] =
        ["correlation_id", "causation_id", "user_id", "tenant_id", "traceparent", "tracestate"];

    /// Whether no field and no custom key is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.user_id.is_none()
            && self.tenant_id.is_none()
            && self.traceparent.is_none()
            && self.tracestate.is_none()
            && self.custom.is_empty()
    }

    /// The metadata as a JSON object.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Map::new()))
    }

    /// Reads metadata back from its JSON object; anything that is not an object is empty
    /// metadata, and named keys of the wrong type stay as custom keys.
    pub fn from_json(value: Value) -> Metadata {
        match value {
            Value::Object(map) => {
                let mut meta = Metadata::default();
                for (k, v) in map {
                    match (k.as_str(), &v) {
                        ("correlation_id", Value::String(s)) if s.parse::<Uuid>().is_ok() => {
                            meta.correlation_id = s.parse().ok();
                        }
                        ("causation_id", Value::String(s)) if s.parse::<Uuid>().is_ok() => {
                            meta.causation_id = s.parse().ok();
                        }
                        ("user_id", Value::String(s)) => meta.user_id = Some(s.clone()),
                        ("tenant_id", Value::String(s)) => meta.tenant_id = Some(s.clone()),
                        ("traceparent", Value::String(s)) if s.parse::<TraceParent>().is_ok() => {
                            meta.traceparent = s.parse().ok();
                        }
                        ("tracestate", Value::String(s)) if s.parse::<TraceState>().is_ok() => {
                            meta.tracestate = s.parse().ok();
                        }
                        _ => {
                            meta.custom.insert(k, v);
                        }
                    }
                }
                meta
            }
            _ => Metadata::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_round_trips_through_json() {
        let meta = Metadata {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().ok(),
            tracestate: "rojo=00f067aa0ba902b7".parse().ok(),
            ..Metadata::default()
        };
        assert!(!meta.is_empty());
        let json = meta.to_json();
        assert_eq!(json["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(Metadata::from_json(json.clone()), meta);
        assert_eq!(serde_json::from_value::<Metadata>(json).unwrap(), meta);
    }

    #[test]
    fn an_invalid_trace_context_stays_a_custom_key() {
        let meta =
            Metadata::from_json(serde_json::json!({"traceparent": "00-not-a-context", "tracestate": 7}));
        assert_eq!(meta.traceparent, None);
        assert_eq!(meta.custom["traceparent"], "00-not-a-context");
        assert_eq!(meta.custom["tracestate"], 7);
    }
}
