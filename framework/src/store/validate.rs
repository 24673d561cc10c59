//! Input checks shared by every backend, so that both refuse the same input the same way.

use std::collections::HashSet;

use serde_json::Value;

use super::error::InvalidInput;
use super::metadata::Metadata;
use super::NewEvent;

/// The longest name (aggregate type, aggregate id, event type, topic, consumer name), in
/// characters — the schema's `VARCHAR(255)`.
pub const MAX_NAME_LEN: usize = 255;

/// Limits a store enforces on what it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest payload, and the largest metadata object, as serialized JSON bytes.
    /// Default 1 MiB.
    pub max_payload_bytes: usize,
    /// The most events in one append. Default 10,000.
    pub max_batch_len: usize,
    /// The largest `limit` a query may ask for. Default 10,000.
    pub max_query_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_payload_bytes: 1024 * 1024, max_batch_len: 10_000, max_query_limit: 10_000 }
    }
}

impl Limits {
    /// Sets the largest payload in bytes.
    #[must_use]
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }
}

/// Checks a name: non-empty, at most [`MAX_NAME_LEN`] characters, no control characters.
pub(crate) fn name(field: &'static str, value: &str) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(InvalidInput::Empty { field });
    }
    let len = value.chars().count();
    if len > MAX_NAME_LEN {
        return Err(InvalidInput::TooLong { field, len, max: MAX_NAME_LEN });
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput::ControlCharacter { field });
    }
    Ok(())
}

fn topic_word(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a topic: dot-separated words of ASCII letters, digits, `_` and `-`.
pub(crate) fn topic(topic: &str) -> Result<(), InvalidInput> {
    let bad = |reason| InvalidInput::InvalidTopic { topic: topic.to_owned(), reason };
    if topic.is_empty() {
        return Err(bad("empty"));
    }
    if topic.len() > MAX_NAME_LEN {
        return Err(bad("longer than 255 characters"));
    }
    if !topic.split('.').all(topic_word) {
        return Err(bad("words must be non-empty ASCII letters, digits, '_' or '-', separated by '.'"));
    }
    Ok(())
}

/// Checks that no string inside a JSON value holds a NUL (JSONB refuses `\u0000`).
fn json_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// Checks a JSON document's size and content.
pub(crate) fn json(field: &'static str, value: &Value, max: usize) -> Result<(), InvalidInput> {
    if json_has_nul(value) {
        return Err(InvalidInput::ControlCharacter { field });
    }
    let size = serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > max {
        return Err(InvalidInput::TooLarge { field, size, max });
    }
    Ok(())
}

/// Checks a document given as JSON text (valid JSON already): its size, and no NUL
/// character, which can only appear in it escaped as `\u0000`.
pub(crate) fn json_text(field: &'static str, text: &str, max: usize) -> Result<(), InvalidInput> {
    if text.len() > max {
        return Err(InvalidInput::TooLarge { field, size: text.len(), max });
    }
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
        } else if b.get(i + 1..i + 6) == Some(&b"u0000"[..]) {
            return Err(InvalidInput::ControlCharacter { field });
        } else {
            // Skip the escaped character, so that `\\u0000` (a backslash, then text) passes.
            i += 2;
        }
    }
    Ok(())
}

fn metadata(meta: &Metadata, limits: &Limits) -> Result<(), InvalidInput> {
    for key in meta.custom.keys() {
        if key.is_empty() || Metadata::RESERVED_KEYS.contains(&key.as_str()) {
            return Err(InvalidInput::InvalidMetadataKey { key: key.clone() });
        }
    }
    if let Some(user) = &meta.user_id {
        name("metadata.user_id", user)?;
    }
    if let Some(tenant) = &meta.tenant_id {
        name("metadata.tenant_id", tenant)?;
    }
    json("metadata", &meta.to_json(), limits.max_payload_bytes)
}

/// Checks one event.
pub(crate) fn event(event: &NewEvent, limits: &Limits) -> Result<(), InvalidInput> {
    name("event_type", &event.event_type)?;
    if event.schema_version == 0 || event.schema_version > i32::MAX as u32 {
        return Err(InvalidInput::OutOfRange {
            field: "schema_version",
            reason: "must be between 1 and 2^31 - 1",
        });
    }
    if let Some(t) = &event.topic {
        topic(t)?;
    }
    match event.payload_text() {
        Some(text) => json_text("payload", text.get(), limits.max_payload_bytes)?,
        None => json("payload", &event.payload, limits.max_payload_bytes)?,
    }
    metadata(&event.metadata, limits)
}

/// Checks a batch to append: non-empty, within the batch limit, distinct ids, each
/// event valid.
///
/// Every append is checked with it before it reaches a backend (see
/// [`backend`](super::backend)), so every backend refuses the same input with the same
/// error.
pub fn batch(events: &[NewEvent], limits: &Limits) -> Result<(), InvalidInput> {
    if events.is_empty() {
        return Err(InvalidInput::EmptyBatch);
    }
    if events.len() > limits.max_batch_len {
        return Err(InvalidInput::BatchTooLarge { len: events.len(), max: limits.max_batch_len });
    }
    let mut seen = HashSet::with_capacity(events.len());
    for e in events {
        if !seen.insert(e.event_id) {
            return Err(InvalidInput::DuplicateIdInBatch(e.event_id));
        }
        event(e, limits)?;
    }
    Ok(())
}

/// Checks an atomic append to several streams: at least one, each stream once, each
/// batch valid, event ids distinct across all, and at most the batch limit in all.
pub fn appends(appends: &[super::StreamAppend], limits: &Limits) -> Result<(), InvalidInput> {
    if appends.is_empty() {
        return Err(InvalidInput::EmptyBatch);
    }
    let total: usize = appends.iter().map(|a| a.events.len()).sum();
    if total > limits.max_batch_len {
        return Err(InvalidInput::BatchTooLarge { len: total, max: limits.max_batch_len });
    }
    let mut streams = HashSet::with_capacity(appends.len());
    let mut ids = HashSet::with_capacity(total);
    for a in appends {
        if !streams.insert(&a.stream) {
            return Err(InvalidInput::OutOfRange {
                field: "appends",
                reason: "each stream may appear once in an append to several streams",
            });
        }
        batch(&a.events, limits)?;
        if let Some(e) = a.events.iter().find(|e| !ids.insert(e.event_id)) {
            return Err(InvalidInput::DuplicateIdInBatch(e.event_id));
        }
    }
    Ok(())
}

/// Checks a retention guard: each projection it names is a valid consumer name.
pub fn retention_guard(guard: &super::RetentionGuard) -> Result<(), InvalidInput> {
    guard.unprocessed_by.iter().try_for_each(|name| consumer_name(name))
}

/// Checks a consumer (projection) name for checkpoints.
pub fn consumer_name(value: &str) -> Result<(), InvalidInput> {
    name("consumer name", value)
}

pub use super::slice::slice_count;

/// Checks an aggregate type used as a category.
pub fn category(value: &str) -> Result<(), InvalidInput> {
    name("aggregate_type", value)
}

/// Checks a page size for reads of the log.
pub fn page_limit(limit: usize, limits: &Limits) -> Result<(), InvalidInput> {
    if limit == 0 || limit > limits.max_query_limit {
        return Err(InvalidInput::OutOfRange {
            field: "limit",
            reason: "must be between 1 and the store's max_query_limit",
        });
    }
    Ok(())
}

/// Checks a snapshot: a version of at least 1 and a state without NUL characters.
pub fn snapshot(snapshot: &super::types::Snapshot) -> Result<(), InvalidInput> {
    if snapshot.version.0 == 0 || snapshot.version.0 > i64::MAX as u64 {
        return Err(InvalidInput::OutOfRange {
            field: "snapshot version",
            reason: "must be between 1 and 2^63 - 1",
        });
    }
    if snapshot.schema_version == 0 || snapshot.schema_version > i32::MAX as u32 {
        return Err(InvalidInput::OutOfRange {
            field: "snapshot schema_version",
            reason: "must be between 1 and 2^31 - 1",
        });
    }
    if json_has_nul(&snapshot.state) {
        return Err(InvalidInput::ControlCharacter { field: "snapshot state" });
    }
    Ok(())
}

/// Checks a checkpoint fits the database's signed 64-bit columns.
pub fn checkpoint(checkpoint: super::types::Checkpoint) -> Result<(), InvalidInput> {
    if checkpoint.transaction > i64::MAX as u64 || checkpoint.position.0 > i64::MAX as u64 {
        return Err(InvalidInput::OutOfRange {
            field: "checkpoint",
            reason: "must fit in a signed 64-bit integer",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(name("f", "ok").is_ok());
        assert_eq!(name("f", ""), Err(InvalidInput::Empty { field: "f" }));
        assert!(matches!(name("f", &"x".repeat(256)), Err(InvalidInput::TooLong { len: 256, .. })));
        assert!(name("f", &"é".repeat(255)).is_ok());
        assert_eq!(name("f", "a\0b"), Err(InvalidInput::ControlCharacter { field: "f" }));
        assert!(name("f", "'; DROP TABLE events; --").is_ok(), "quotes are data, not SQL");
    }

    #[test]
    fn topics() {
        assert!(topic("order.lifecycle.placed").is_ok());
        assert!(topic("a").is_ok());
        for bad in ["", ".a", "a.", "a..b", "a.*", "a.#", "a b", "a.é"] {
            assert!(topic(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn json_nul_and_size() {
        assert!(json("p", &json!({"a": "b"}), 100).is_ok());
        assert!(json("p", &json!({"a": ["x\u{0}"]}), 100).is_err());
        assert!(json("p", &json!({"a\u{0}": 1}), 100).is_err());
        assert!(matches!(json("p", &json!("x".repeat(200)), 100), Err(InvalidInput::TooLarge { .. })));
        assert!(json_text("p", r#"{"a":"b"}"#, 100).is_ok());
        assert!(json_text("p", r#"{"a":"x\u0000"}"#, 100).is_err());
        assert!(json_text("p", r#"{"a\u0000":1}"#, 100).is_err());
        assert!(json_text("p", r#"{"a":"\\u0000"}"#, 100).is_ok(), "an escaped backslash, then text");
        assert!(json_text("p", r#"{"a":"\u00001"}"#, 100).is_err());
        assert!(matches!(json_text("p", &"1".repeat(101), 100), Err(InvalidInput::TooLarge { .. })));
    }

    #[test]
    fn batches() {
        let limits = Limits::default();
        assert_eq!(batch(&[], &limits), Err(InvalidInput::EmptyBatch));
        let e = NewEvent::new("E", json!({}));
        assert_eq!(
            batch(&[e.clone(), e.clone()], &limits),
            Err(InvalidInput::DuplicateIdInBatch(e.event_id))
        );
        let mut reserved = NewEvent::new("E", json!({}));
        reserved.metadata.custom.insert("user_id".into(), json!(1));
        assert!(matches!(batch(&[reserved], &limits), Err(InvalidInput::InvalidMetadataKey { .. })));
        assert!(batch(&[NewEvent::new("E", json!({})).with_schema_version(0)], &limits).is_err());
    }
}
