//! The stream browser: the store's own filters (aggregate type and id, event type, topic
//! pattern, correlation id, time range), paged, newest first; and one event in full.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::{DateTime, NaiveDateTime, Utc};
use factum::store::EventLog;
use factum::store::{LogBackend, OrderBy};
use factum::{EventFilter, RecordedEvent};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::Principal;
use crate::page::{self, number};
use crate::Shared;

/// Events per page.
const PAGE: usize = 50;
/// The deepest page offered (the store pages by offset).
const MAX_PAGE: usize = 200;

/// The filters, as the form sends them: every field may be empty.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    pub(crate) aggregate_type: String,
    #[serde(default)]
    pub(crate) aggregate_id: String,
    #[serde(default)]
    pub(crate) event_type: String,
    #[serde(default)]
    pub(crate) topic: String,
    #[serde(default)]
    correlation_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    page: usize,
}

/// A point in time from the form: RFC 3339, or a `datetime-local` value read as UTC.
fn point(value: &str, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| format!("{field}: {value:?} is not a time (2026-12-08T10:00, or RFC 3339)"))
}

impl Filters {
    /// The store's filter, refused with a reason the page shows.
    pub(crate) fn filter(&self) -> Result<EventFilter, String> {
        let mut f = EventFilter::new()
            .occurred_between(point(&self.from, "from")?, point(&self.to, "to")?)
            .limit(PAGE)
            .offset(self.page.min(MAX_PAGE) * PAGE)
            .order_by(OrderBy::GlobalPosition, false);
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        if let Some(t) = some(&self.aggregate_type) {
            f = f.aggregate_type(t);
        }
        if let Some(id) = some(&self.aggregate_id) {
            f = f.aggregate_id(id);
        }
        if let Some(t) = some(&self.event_type) {
            f = f.event_types([t]);
        }
        if let Some(t) = some(&self.topic) {
            f = f.topics([t]);
        }
        if let Some(c) = some(&self.correlation_id) {
            let id: Uuid = c.parse().map_err(|_| format!("correlation id: {c:?} is not a UUID"))?;
            f = f.metadata(json!({ "correlation_id": id }));
        }
        Ok(f)
    }

    fn query(&self, page: usize) -> String {
        let pairs = [
            ("aggregate_type", &self.aggregate_type),
            ("aggregate_id", &self.aggregate_id),
            ("event_type", &self.event_type),
            ("topic", &self.topic),
            ("correlation_id", &self.correlation_id),
            ("from", &self.from),
            ("to", &self.to),
        ];
        let mut q: String =
            pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}&", encode(v))).collect();
        q.push_str(&format!("page={page}"));
        q
    }
}

/// Percent-encodes a query value.
pub(crate) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The filter form, shared with the live tail (which leaves out what it cannot follow).
pub(crate) fn filter_form(action: &str, f: &Filters, full: bool) -> Markup {
    html! {
        form #filters method="get" action=(action) {
            label { "Aggregate type " input name="aggregate_type" value=(f.aggregate_type) placeholder="Order"; }
            label { "Aggregate id " input name="aggregate_id" value=(f.aggregate_id); }
            label { "Event type " input name="event_type" value=(f.event_type); }
            label { "Topic pattern " input name="topic" value=(f.topic) placeholder="order.#"; }
            @if full {
                label { "Correlation id " input name="correlation_id" value=(f.correlation_id); }
                label { "From (UTC) " input type="datetime-local" name="from" value=(f.from); }
                label { "To (UTC) " input type="datetime-local" name="to" value=(f.to); }
                input type="hidden" name="page" value="0";
            }
            button type="submit" { "Find" }
        }
    }
}

pub(crate) async fn browse(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    Query(filters): Query<Filters>,
) -> Response {
    let base = &shared.config.path;
    let found = match filters.filter() {
        Ok(f) => match f.validate(shared.store.limits()) {
            Ok(_) => shared.store.query(&f).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e),
    };
    let status = if found.is_err() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page_no = filters.page.min(MAX_PAGE);
    let body = html! {
        main #streams {
            h1 { "Streams" }
            (filter_form(&format!("{base}/streams"), &filters, true))
            @match &found {
                Err(e) => p.error { (e) },
                Ok(events) => {
                    (events_table(base, events))
                    nav.pages {
                        @if page_no > 0 { a rel="prev" href={ (base) "/streams?" (filters.query(page_no - 1)) } { "← Newer" } }
                        " page " (page_no + 1) " "
                        @if events.len() == PAGE && page_no < MAX_PAGE { a rel="next" href={ (base) "/streams?" (filters.query(page_no + 1)) } { "Older →" } }
                    }
                }
            }
        }
    };
    (status, page::layout(&shared, Some(&principal), "Streams", body)).into_response()
}

/// A table of events, newest first.
pub(crate) fn events_table(base: &str, events: &[RecordedEvent]) -> Markup {
    html! {
        table #events {
            thead { tr { th { "Position" } th { "Occurred (UTC)" } th { "Stream" } th { "Version" } th { "Type" } th { "Topic" } } }
            tbody {
                @for e in events {
                    tr.event data-event-id=(e.event_id) {
                        td.position { a.event-link href={ (base) "/events/" (e.event_id) } { (e.position.0) } }
                        td { (e.occurred_at.format("%Y-%m-%d %H:%M:%S%.3f")) }
                        td.stream {
                            a href={ (base) "/streams?aggregate_type=" (encode(e.stream.aggregate_type())) "&aggregate_id=" (encode(e.stream.aggregate_id())) } {
                                (e.stream.aggregate_type()) "/" (e.stream.aggregate_id())
                            }
                        }
                        td.num { (e.version.0) }
                        td.type { (e.event_type) }
                        td { (e.topic.as_deref().unwrap_or("")) }
                    }
                }
                @if events.is_empty() { tr { td colspan="6" { "No event matches." } } }
            }
        }
    }
}

pub(crate) async fn event(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return page::refusal(&shared, StatusCode::BAD_REQUEST, "That is not an event id (a UUID).");
    };
    let event = match shared.store.event(id).await {
        Ok(Some(e)) => e,
        Ok(None) => return page::refusal(&shared, StatusCode::NOT_FOUND, "No event with that id is stored."),
        Err(e) => return page::refusal(&shared, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let base = &shared.config.path;
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let metadata = serde_json::to_value(&event.metadata).unwrap_or_default();
    let body = html! {
        main #event {
            h1 { (event.event_type) }
            dl.facts {
                dt { "Event id" } dd { (event.event_id) }
                dt { "Stream" } dd { a href={ (base) "/streams?aggregate_type=" (encode(event.stream.aggregate_type())) "&aggregate_id=" (encode(event.stream.aggregate_id())) } { (event.stream.aggregate_type()) "/" (event.stream.aggregate_id()) } " version " (event.version.0) }
                dt { "Position" } dd { (number(event.position.0)) " (transaction " (event.transaction) ")" }
                dt { "Type" } dd.event-type { (event.event_type) " (schema version " (event.schema_version) ")" }
                dt { "Topic" } dd { (event.topic.as_deref().unwrap_or("-")) }
                dt { "Occurred" } dd { (event.occurred_at.to_rfc3339()) }
                dt { "Recorded" } dd { (event.recorded_at.to_rfc3339()) }
                @if let Some(c) = event.metadata.correlation_id {
                    dt { "Correlation" } dd { a #correlation href={ (base) "/streams?correlation_id=" (c) } { (c) } " (every event of it)" }
                }
                @if let Some(c) = event.metadata.causation_id {
                    dt { "Causation" } dd { a #causation href={ (base) "/events/" (c) } { (c) } " (the event that caused it)" }
                }
            }
            h2 { "Payload" }
            pre #payload { (pretty(&event.payload)) }
            h2 { "Metadata" }
            pre #metadata { (pretty(&metadata)) }
        }
    };
    page::layout(&shared, Some(&principal), &event.event_type, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_stores_filter_and_refuses_nonsense() {
        let f = Filters {
            aggregate_type: "Order".into(),
            correlation_id: " ".into(),
            page: 2,
            ..Filters::default()
        };
        let filter = f.filter().unwrap();
        assert_eq!(filter.aggregate_type.as_deref(), Some("Order"));
        assert_eq!((filter.limit, filter.offset), (Some(PAGE), 2 * PAGE));
        assert!(filter.metadata.is_none(), "a blank field filters nothing");
        let bad = Filters { correlation_id: "<script>".into(), ..Filters::default() };
        assert!(bad.filter().unwrap_err().contains("not a UUID"));
        let bad = Filters { from: "yesterday".into(), ..Filters::default() };
        assert!(bad.filter().is_err());
        let at = Filters { from: "2026-12-08T10:00".into(), ..Filters::default() };
        assert!(at.filter().unwrap().from.is_some());
    }

    #[test]
    fn keeps_the_filters_across_pages_encoded() {
        let f = Filters { topic: "order.#".into(), aggregate_id: "a&b=c".into(), ..Filters::default() };
        assert_eq!(f.query(1), "aggregate_id=a%26b%3Dc&topic=order.%23&page=1");
    }
}
