//! The process managers the application named ([`ConsoleConfig::processes`]): each one's
//! projection state and its pending timers.
//!
//! [`ConsoleConfig::processes`]: crate::ConsoleConfig::processes

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use factum::store::TimerStore;
use maud::html;

use crate::auth::Principal;
use crate::page::{self, number, state_badge};
use crate::streams::encode;
use crate::Shared;

/// The most timers listed per process (the earliest).
const TIMERS_LISTED: usize = 20;

pub(crate) async fn page(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let base = &shared.config.path;
    let mut sections = Vec::new();
    for name in &shared.config.processes {
        let status = shared.supervisor.status(name).ok();
        let timers = shared.store.timers(name, None, TIMERS_LISTED).await;
        sections.push((name, status, timers));
    }
    let body = html! {
        main #processes {
            h1 { "Processes and timers" }
            @if sections.is_empty() {
                p.note { "The application named no process manager to the console." }
            }
            @for (name, status, timers) in &sections {
                section.process data-process=(name) {
                    h2 { a href={ (base) "/projections/" (encode(name)) } { (name) } }
                    @match status {
                        Some(s) => p {
                            (state_badge(s.state.as_str())) " checkpoint " (number(s.checkpoint.position.0))
                            @if let Some(e) = &s.last_error { " · " span.error-text { (e) } }
                        },
                        None => p.note { "Not running in this instance." },
                    }
                    @match timers {
                        Err(e) => p.error { (e) },
                        Ok(timers) if timers.is_empty() => p.note { "No pending timer." },
                        Ok(timers) => table.timers {
                            caption { "The " (timers.len()) " earliest pending timers" @if timers.len() == TIMERS_LISTED { " (more are pending)" } }
                            thead { tr { th { "Instance" } th { "Timer" } th { "Fires at (UTC)" } } }
                            tbody { @for t in timers {
                                tr {
                                    td { a href={ (base) "/streams?aggregate_type=" (encode(t.stream.aggregate_type())) "&aggregate_id=" (encode(t.stream.aggregate_id())) } { (t.stream.aggregate_id()) } }
                                    td { (t.name) }
                                    td { (t.deadline.format("%Y-%m-%d %H:%M:%S")) }
                                }
                            } }
                        },
                    }
                }
            }
        }
    };
    page::layout(&shared, Some(&principal), "Processes", body).into_response()
}
