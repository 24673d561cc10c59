//! Query filters: event types, topic patterns, aggregate, time range, metadata.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::error::InvalidInput;
use super::types::RecordedEvent;
use super::validate::{self, Limits};

/// The default number of events a query returns.
pub const DEFAULT_QUERY_LIMIT: usize = 100;

/// A topic pattern with RabbitMQ wildcards: words separated by `.`, where `*` matches
/// exactly one word and `#` matches zero or more words.
///
/// ```
/// # use factum::store::TopicPattern;
/// let p = TopicPattern::parse("app.lifecycle.#")?;
/// assert!(p.matches("app.lifecycle"));
/// assert!(p.matches("app.lifecycle.installed"));
/// assert!(!p.matches("app.settings.updated"));
/// assert!(TopicPattern::parse("hook.triggered.*")?.matches("hook.triggered.order_created"));
/// assert!(TopicPattern::parse("app..x").is_err());
/// # Ok::<(), factum::store::InvalidInput>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPattern {
    source: String,
    words: Vec<Word>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Word {
    Literal(String),
    One,
    Many,
}

impl TopicPattern {
    /// Parses a pattern, refusing anything that is not dot-separated words (ASCII letters,
    /// digits, `_`, `-`), `*` or `#`.
    pub fn parse(pattern: &str) -> Result<Self, InvalidInput> {
        let bad = |reason| InvalidInput::InvalidTopicPattern { pattern: pattern.to_owned(), reason };
        if pattern.is_empty() {
            return Err(bad("empty"));
        }
        if pattern.len() > validate::MAX_NAME_LEN {
            return Err(bad("longer than 255 characters"));
        }
        let words = pattern
            .split('.')
            .map(|w| match w {
                "*" => Ok(Word::One),
                "#" => Ok(Word::Many),
                "" => Err(bad("empty word between dots")),
                w if w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') => {
                    Ok(Word::Literal(w.to_owned()))
                }
                _ => Err(bad("words are ASCII letters, digits, '_', '-', or a whole '*' or '#'")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TopicPattern { source: pattern.to_owned(), words })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern has no wildcard, so it matches one topic exactly.
    pub fn is_exact(&self) -> bool {
        self.words.iter().all(|w| matches!(w, Word::Literal(_)))
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        let words: Vec<&str> = topic.split('.').collect();
        // dp[j]: the first i pattern words can match the first j topic words.
        let mut dp = vec![false; words.len() + 1];
        dp[0] = true;
        for w in &self.words {
            let mut next = vec![false; words.len() + 1];
            for j in 0..=words.len() {
                next[j] = match w {
                    Word::Many => dp[j] || (j > 0 && next[j - 1]),
                    Word::One => j > 0 && dp[j - 1],
                    Word::Literal(l) => j > 0 && dp[j - 1] && words[j - 1] == l,
                };
            }
            dp = next;
        }
        dp[words.len()]
    }

    /// A POSIX regular expression (PostgreSQL's `~`) that matches `'.' || topic` exactly
    /// when [`matches`](Self::matches) matches `topic`. Literal words contain no regex
    /// metacharacters, which [`parse`](Self::parse) guarantees.
    pub fn to_postgres_regex(&self) -> String {
        let mut re = String::from("^");
        for w in &self.words {
            match w {
                Word::Literal(l) => {
                    re.push_str("\\.");
                    re.push_str(l);
                }
                Word::One => re.push_str("\\.[^.]+"),
                Word::Many => re.push_str("(\\.[^.]+)*"),
            }
        }
        re.push('$');
        re
    }
}

/// The order of query results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrderBy {
    /// By the time events occurred, then by global position (the default).
    #[default]
    OccurredAt,
    /// By global position.
    GlobalPosition,
}

/// Which events a [`query`](crate::store::EventLog::query), [`count`](crate::store::EventLog::count)
/// or [`stream`](crate::store::EventLog::stream) selects. Every set criterion must hold; within
/// `event_types` and `topics`, any one entry matching is enough.
///
/// ```
/// # use factum::EventFilter;
/// # use factum::store::OrderBy;
/// let filter = EventFilter::new()
///     .event_types(["app.registered", "app.installed"])
///     .topics(["app.lifecycle.#"])
///     .aggregate_type("app")
///     .metadata(serde_json::json!({"user_id": "u-1"}))
///     .order_by(OrderBy::GlobalPosition, true)
///     .limit(50);
/// assert_eq!(filter.limit, Some(50));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct EventFilter {
    /// Event type names; empty means any.
    pub event_types: Vec<String>,
    /// Topic patterns with RabbitMQ wildcards; empty means any. Events without a topic
    /// never match a non-empty list.
    pub topics: Vec<String>,
    /// Only this aggregate id.
    pub aggregate_id: Option<String>,
    /// Only this aggregate type.
    pub aggregate_type: Option<String>,
    /// Occurred at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Occurred strictly before this time.
    pub to: Option<DateTime<Utc>>,
    /// The metadata must contain this JSON object (PostgreSQL's `@>`).
    pub metadata: Option<Value>,
    /// The most events to return; `None` means [`DEFAULT_QUERY_LIMIT`] for queries and
    /// no limit for streams.
    pub limit: Option<usize>,
    /// How many matching events to skip.
    pub offset: usize,
    /// The sort key.
    pub order_by: OrderBy,
    /// Ascending rather than descending (the default is descending).
    pub ascending: bool,
}

impl EventFilter {
    /// A filter that matches every event, newest first, 100 at a time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these event types.
    #[must_use]
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Only topics matching one of these patterns.
    #[must_use]
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.topics.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Only this aggregate id.
    #[must_use]
    pub fn aggregate_id(mut self, id: impl Into<String>) -> Self {
        self.aggregate_id = Some(id.into());
        self
    }

    /// Only this aggregate type.
    #[must_use]
    pub fn aggregate_type(mut self, aggregate_type: impl Into<String>) -> Self {
        self.aggregate_type = Some(aggregate_type.into());
        self
    }

    /// Only events that occurred in `[from, to)`.
    #[must_use]
    pub fn occurred_between(mut self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Self {
        self.from = from;
        self.to = to;
        self
    }

    /// Only events whose metadata contains this object.
    #[must_use]
    pub fn metadata(mut self, contains: Value) -> Self {
        self.metadata = Some(contains);
        self
    }

    /// At most this many events.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Skip this many events.
    #[must_use]
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Sort by `order_by`, ascending or not.
    #[must_use]
    pub fn order_by(mut self, order_by: OrderBy, ascending: bool) -> Self {
        self.order_by = order_by;
        self.ascending = ascending;
        self
    }

    /// Checks the filter and parses its topic patterns. Every query is checked with it
    /// before it reaches a backend.
    pub fn validate(&self, limits: &Limits) -> Result<ValidFilter<'_>, InvalidInput> {
        for t in &self.event_types {
            validate::name("event_types", t)?;
        }
        let topics = self.topics.iter().map(|t| TopicPattern::parse(t)).collect::<Result<Vec<_>, _>>()?;
        if let Some(id) = &self.aggregate_id {
            validate::name("aggregate_id", id)?;
        }
        if let Some(t) = &self.aggregate_type {
            validate::name("aggregate_type", t)?;
        }
        let metadata = match &self.metadata {
            None => None,
            Some(Value::Object(map)) => {
                validate::json(
                    "metadata filter",
                    &self.metadata.clone().unwrap_or_default(),
                    limits.max_payload_bytes,
                )?;
                Some(map)
            }
            Some(_) => return Err(InvalidInput::MetadataFilterNotObject),
        };
        if let Some(limit) = self.limit {
            validate::page_limit(limit, limits)?;
        }
        if self.offset > i64::MAX as usize {
            return Err(InvalidInput::OutOfRange { field: "offset", reason: "too large" });
        }
        Ok(ValidFilter { filter: self, topics, metadata })
    }
}

/// A filter that passed [`EventFilter::validate`], with its patterns parsed.
#[derive(Debug)]
pub struct ValidFilter<'a> {
    /// The filter.
    pub filter: &'a EventFilter,
    /// Its topic patterns, parsed.
    pub topics: Vec<TopicPattern>,
    /// Its metadata containment object.
    pub metadata: Option<&'a Map<String, Value>>,
}

impl<'a> ValidFilter<'a> {
    /// A filter already checked, with its topic patterns parsed.
    pub(crate) fn from_parts(filter: &'a EventFilter, topics: Vec<TopicPattern>) -> Self {
        ValidFilter { filter, topics, metadata: filter.metadata.as_ref().and_then(Value::as_object) }
    }

    /// Whether `event` matches every criterion (ignoring limit, offset and order).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        let f = self.filter;
        (f.event_types.is_empty() || f.event_types.contains(&event.event_type))
            && (self.topics.is_empty()
                || event.topic.as_deref().is_some_and(|t| self.topics.iter().any(|p| p.matches(t))))
            && f.aggregate_id.as_deref().is_none_or(|id| id == event.stream.aggregate_id())
            && f.aggregate_type.as_deref().is_none_or(|t| t == event.stream.aggregate_type())
            && f.from.is_none_or(|from| event.occurred_at >= from)
            && f.to.is_none_or(|to| event.occurred_at < to)
            && self
                .metadata
                .is_none_or(|m| json_contains(&event.metadata.to_json(), &Value::Object(m.clone())))
    }
}

/// PostgreSQL's JSONB containment (`container @> contained`) for the cases a metadata
/// filter uses: objects contain objects key by key, arrays contain each element
/// somewhere, scalars are equal.
pub fn json_contains(container: &Value, contained: &Value) -> bool {
    match (container, contained) {
        (Value::Object(a), Value::Object(b)) => {
            b.iter().all(|(k, bv)| a.get(k).is_some_and(|av| json_contains(av, bv)))
        }
        (Value::Array(a), Value::Array(b)) => b.iter().all(|bv| a.iter().any(|av| json_contains(av, bv))),
        (Value::Array(a), b) if !b.is_object() && !b.is_array() => a.iter().any(|av| av == b),
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(p: &str, t: &str) -> bool {
        TopicPattern::parse(p).unwrap().matches(t)
    }

    #[test]
    fn rabbitmq_semantics() {
        assert!(m("a.b.c", "a.b.c"));
        assert!(!m("a.b.c", "a.b"));
        assert!(m("a.*.c", "a.x.c"));
        assert!(!m("a.*.c", "a.c"));
        assert!(!m("a.*", "a.b.c"));
        assert!(m("a.#", "a"));
        assert!(m("a.#", "a.b.c"));
        assert!(m("#", "a.b"));
        assert!(m("#.c", "c"));
        assert!(m("#.c", "a.b.c"));
        assert!(m("a.#.c", "a.c"));
        assert!(m("a.#.c", "a.x.y.c"));
        assert!(!m("a.#.c", "a.x.y"));
        assert!(m("*.#", "a"));
        assert!(!m("*.*", "a"));
        assert!(m("#.#", "a.b"));
    }

    #[test]
    fn bad_patterns() {
        for p in ["", "a..b", ".a", "a.", "a*", "a.b#", "a b", "a.(b)", "a.b|c", "ä"] {
            assert!(TopicPattern::parse(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn regex_shape() {
        assert_eq!(TopicPattern::parse("a.*.#").unwrap().to_postgres_regex(), "^\\.a\\.[^.]+(\\.[^.]+)*$");
    }

    #[test]
    fn containment() {
        let doc = json!({"user_id": "u", "tags": ["a", "b"], "n": {"x": 1, "y": 2}});
        assert!(json_contains(&doc, &json!({"user_id": "u"})));
        assert!(json_contains(&doc, &json!({"tags": ["b"]})));
        assert!(json_contains(&doc, &json!({"n": {"x": 1}})));
        assert!(!json_contains(&doc, &json!({"n": {"x": 2}})));
        assert!(!json_contains(&doc, &json!({"missing": null})));
    }
}
