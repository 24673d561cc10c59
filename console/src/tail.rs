//! The live tail: the log as it grows, in log order and gap-safe, filtered, sent to the
//! browser as server-sent events; the page's script adds each as a row (as text).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use factum::store::{
    subscribe_all, subscribe_category, Checkpoint, GlobalPosition, SubscriptionOptions, TopicPattern,
};
use factum::{EventStore, RecordedEvent};
use futures_util::StreamExt;
use maud::html;
use serde_json::json;

use crate::auth::Principal;
use crate::page;
use crate::streams::{filter_form, Filters};
use crate::Shared;

/// The longest a live tail lasts before the browser reconnects.
const MAX_TAIL: Duration = Duration::from_secs(3600);

pub(crate) async fn page(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    Query(filters): Query<Filters>,
) -> Response {
    let base = &shared.config.path;
    let body = html! {
        main #tail data-events={ (base) "/tail/events" } {
            h1 { "Live tail" }
            (filter_form(&format!("{base}/tail"), &filters, false))
            p { "Status: " span #tail-status { "connecting" } }
            p.note { "New events appear at the top, in log order, once every transaction before them has committed (at most 500 are kept)." }
            table #events {
                thead { tr { th { "Position" } th { "Recorded (UTC)" } th { "Stream" } th { "Version" } th { "Type" } th { "Topic" } } }
                tbody #tail-rows {}
            }
        }
        script src={ (base) "/assets/console.js" } {}
    };
    page::layout(&shared, Some(&principal), "Live tail", body).into_response()
}

/// What the tail follows: each field empty or one value.
struct Follow {
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    event_type: Option<String>,
    topic: Option<TopicPattern>,
}

impl Follow {
    fn new(f: &Filters) -> Result<Self, String> {
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(Follow {
            aggregate_type: some(&f.aggregate_type),
            aggregate_id: some(&f.aggregate_id),
            event_type: some(&f.event_type),
            topic: some(&f.topic).map(|t| TopicPattern::parse(&t)).transpose().map_err(|e| e.to_string())?,
        })
    }

    fn matches(&self, e: &RecordedEvent) -> bool {
        self.aggregate_type.as_deref().is_none_or(|t| t == e.stream.aggregate_type())
            && self.aggregate_id.as_deref().is_none_or(|id| id == e.stream.aggregate_id())
            && self.event_type.as_deref().is_none_or(|t| t == e.event_type)
            && self.topic.as_ref().is_none_or(|p| e.topic.as_deref().is_some_and(|t| p.matches(t)))
    }
}

/// One caller's share of the live tails: released when its stream ends.
struct Share {
    shared: Arc<Shared>,
    who: String,
}

impl Share {
    /// A share for `who`, unless it holds a quarter of the tails already.
    fn take(shared: &Arc<Shared>, who: &str) -> Option<Share> {
        let most = (shared.config.max_tails / 4).max(1);
        let mut held = shared.tail_holders.entry(who.to_owned()).or_insert(0);
        if *held >= most {
            return None;
        }
        *held += 1;
        Some(Share { shared: Arc::clone(shared), who: who.to_owned() })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.shared.tail_holders.remove_if_mut(&self.who, |_, held| {
            *held -= 1;
            *held == 0
        });
    }
}

/// `GET {path}/tail/events`: the stream of server-sent events, from now on.
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    Query(filters): Query<Filters>,
) -> Response {
    let follow = match Follow::new(&filters) {
        Ok(f) => f,
        Err(e) => return page::refusal(&shared, StatusCode::BAD_REQUEST, &e),
    };
    // No one caller (a read-only session, say) takes every tail.
    let Some(share) = Share::take(&shared, &principal.who) else {
        return page::refusal(
            &shared,
            StatusCode::TOO_MANY_REQUESTS,
            "You have a quarter of the live tails open already: close one.",
        );
    };
    let Ok(permit) = shared.tails.clone().try_acquire_owned() else {
        return page::refusal(
            &shared,
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many live tails are open: close one.",
        );
    };
    // Now: everything older than the oldest running transaction is visible already.
    let after = match shared.store.horizon().await {
        Ok(h) => Checkpoint {
            transaction: h.transaction.saturating_sub(1),
            position: GlobalPosition(i64::MAX as u64),
        },
        Err(e) => return page::refusal(&shared, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let store: Arc<dyn EventStore> = Arc::new(shared.store.clone());
    let options = SubscriptionOptions::default().poll_interval(Duration::from_millis(500));
    // One aggregate type: its category's part of the log only.
    let log = match &follow.aggregate_type {
        Some(category) => subscribe_category(store, category, after, options),
        None => subscribe_all(store, after, options),
    };
    let log = match log {
        Ok(log) => log,
        Err(e @ factum::StoreError::InvalidInput(_)) => {
            return page::refusal(&shared, StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e) => return page::refusal(&shared, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    // A tail ends when the console closes (the service shuts down) or after an hour (the
    // browser then reconnects, and its credentials are checked again).
    let mut closed = shared.closed.subscribe();
    let end = async move {
        let closing = closed.wait_for(|closed| *closed);
        let _ = tokio::time::timeout(MAX_TAIL, closing).await;
    };
    let stream = log
        .filter_map(move |next| {
            let _held = (&permit, &share); // one live tail less once the browser goes
            let sent = match next {
                Ok(e) if follow.matches(&e) => {
                    Some(Event::default().event("event").data(row(&e).to_string()))
                }
                Ok(_) => None,
                Err(e) => Some(Event::default().event("failure").data(e.to_string())),
            };
            std::future::ready(sent.map(Ok::<_, Infallible>))
        })
        .take_until(Box::pin(end));
    let mut response =
        Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response();
    // A proxy must pass each event on as it comes.
    response.headers_mut().insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    response
}

fn row(e: &RecordedEvent) -> serde_json::Value {
    json!({
        "id": e.event_id,
        "position": e.position.0,
        "recorded_at": e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        "aggregate_type": e.stream.aggregate_type(),
        "aggregate_id": e.stream.aggregate_id(),
        "version": e.version.0,
        "event_type": e.event_type,
        "topic": e.topic,
    })
}
