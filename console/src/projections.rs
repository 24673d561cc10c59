//! The projections: a list, and one projection with its slices, builds, recorded
//! failures and the actions an operator may take on it.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use factum::projection::ProjectionState;
use factum::store::{operator, BuildState, BuildStore, ConsumerStore};
use maud::{html, Markup};
use serde::Deserialize;

use crate::auth::Principal;
use crate::page::{self, csrf_field, number, seconds, state_badge};
use crate::sampler::read;
use crate::streams::encode;
use crate::Shared;

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let base = &shared.config.path;
    let reports = read(&shared.samples.reports);
    let body = html! {
        main #projections-page {
            h1 { "Projections" }
            table #projections {
                thead { tr { th { "Projection" } th { "State" } th { "Version" } th { "Checkpoint" } th { "Handled" } th { "Skipped" } th { "Slices" } th { "Last error" } } }
                tbody {
                    @for s in shared.supervisor.statuses() {
                        tr data-projection=(s.name) {
                            td { a href={ (base) "/projections/" (encode(&s.name)) } { (s.name) } }
                            td.state { (state_badge(s.state.as_str())) }
                            td.num { (s.version) }
                            td.num { (number(s.checkpoint.position.0)) }
                            td.num { (number(s.handled)) }
                            td.num { (number(s.skipped)) }
                            td.num { @if s.slices.is_empty() { "-" } @else { (s.slices.len()) } }
                            td { (s.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @if let Some(r) = reports {
                h2 { "Checkpoints in the store" }
                p.note { "Every consumer with a checkpoint, running here or not." }
                table #checkpoints {
                    thead { tr { th { "Consumer" } th { "Build" } th { "Checkpoint" } th { "Behind" } th { "Behind for" } th { "Lease" } th { "Failures" } } }
                    tbody {
                        @for p in &r.value {
                            tr {
                                td { (p.name) }
                                td { (p.build.map_or("-", |b| b.as_str())) }
                                td.num { (number(p.checkpoint.position.0)) }
                                td.num { (number(p.behind_events)) }
                                td.num { (p.behind_seconds.map_or_else(|| "-".to_owned(), seconds)) }
                                td { @match &p.lease { Some(l) => { "pid " (l.pid) " " (l.application_name.as_deref().unwrap_or("")) }, None => "none" } }
                                td.num { (p.failures) }
                            }
                        }
                    }
                }
            }
        }
    };
    page::layout(&shared, Some(&principal), "Projections", body).into_response()
}

#[derive(Deserialize)]
pub(crate) struct Flash {
    done: Option<String>,
}

/// What a finished action says, by its name (never text from the query string).
fn flash_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "rebuild" => {
            "Rebuild requested: the instance running the projection starts it within about a second."
        }
        "reset" => {
            "Reset requested: the instance running the projection carries it out within about a second."
        }
        "resume" => "Resume requested: the projection tries the event it stopped at again.",
        "retry" => "Retry requested: the recorded failures are fed to the projection again.",
        "switch" => "Switch requested: readers move to the build once it has caught up.",
        "switched" => "That build is live already.",
        "retire" => "Build retired: its read model is dropped.",
        "skip" => "Failure forgotten: the event stays skipped.",
        _ => return None,
    })
}

pub(crate) async fn detail(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Query(flash): Query<Flash>,
) -> Response {
    let store = &shared.store;
    let status = shared.supervisor.status(&name).ok();
    let consumers = match operator::live_consumers(store, &name).await {
        Ok(c) => c,
        Err(e) => return page::refusal(&shared, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let builds = store.builds(&name).await.unwrap_or_default();
    if status.is_none() && builds.is_empty() {
        return page::refusal(
            &shared,
            StatusCode::NOT_FOUND,
            "No projection of that name runs here or has builds in this store.",
        );
    }
    let failures = operator::failures(store, &name).await.unwrap_or_default();
    let mut stops = Vec::new();
    for consumer in &consumers {
        if let Ok(Some(stop)) = store.stopped(consumer).await {
            stops.push(stop);
        }
    }
    let latest = shared.samples.latest().map(|s| s.latest);
    // Another instance's slices: their checkpoints and holders as the store last said.
    let reports = read(&shared.samples.reports).map(|r| r.value).unwrap_or_default();
    let stored = |consumer: Option<&String>| consumer.and_then(|c| reports.iter().find(|r| &r.name == c));
    let base = &shared.config.path;
    let segment = encode(&name);
    let action = |what: &str| format!("{base}/projections/{segment}/{what}");
    let body = html! {
        main #projection data-name=(name) {
            h1 { "Projection " (name) }
            @if let Some(text) = flash.done.as_deref().and_then(flash_text) { p.flash { (text) } }
            dl.facts {
                dt { "State" } dd { span #state { @match &status { Some(s) => (s.state.as_str()), None => "not running here" } } }
                dt { "Checkpoint" } dd { span #checkpoint { (status.as_ref().map_or(0, |s| s.checkpoint.position.0)) } }
                @if let (Some(s), Some(latest)) = (&status, latest) {
                    dt { "Behind" } dd { (number(latest.saturating_sub(s.checkpoint.position.0))) " events" }
                }
                @if let Some(s) = &status {
                    dt { "Version" } dd { (s.version) }
                    dt { "Handled / skipped" } dd { (number(s.handled)) " / " (number(s.skipped)) }
                    @if let Some(e) = &s.last_error { dt { "Last error" } dd.error-text { (e) } }
                }
                dt { "Consumers" } dd { (consumers.join(", ")) }
            }
            @if let Some(s) = status.as_ref().filter(|s| !s.slices.is_empty()) {
                h2 { "Slices" }
                table #slices {
                    thead { tr { th { "Slice" } th { "State" } th { "Checkpoint" } th { "Lag" } th { "Holder" } } }
                    tbody { @for (i, sl) in s.slices.iter().enumerate() {
                        // A slice another instance holds: as the store last reported it.
                        @let report = stored(consumers.get(i)).filter(|_| sl.state == ProjectionState::Standby);
                        @let checkpoint = report.map_or(sl.checkpoint.position.0, |r| r.checkpoint.position.0);
                        tr {
                            td { (sl.slice.map_or_else(|| "-".to_owned(), |x| format!("{} of {}", x.index(), x.count()))) }
                            td { (state_badge(sl.state.as_str())) }
                            td.num { (number(checkpoint)) }
                            td.num { (latest.map(|l| l.saturating_sub(checkpoint)).or(sl.lag).map_or_else(|| "-".to_owned(), number)) }
                            td { (sl.holder.as_deref().unwrap_or("-")) }
                        }
                    } }
                }
            }
            @for stop in &stops {
                p.warning { "Stopped by its failure policy at event "
                    a href={ (base) "/events/" (stop.event_id) } { (stop.event_id) }
                    " (position " (stop.position.0) ") after " (stop.attempts) " attempt(s): " (stop.error) }
            }
            h2 { "Actions" }
            div.actions {
                @if consumers.len() == 1 { (form(&principal, &action("rebuild"), "rebuild", "Rebuild", html! {},
                    "From the start: into a fresh build beside the live one where builds are kept apart (readers switch once it has caught up), otherwise in place.")) }
                (form(&principal, &action("reset"), "reset", "Reset to position", html! { input type="number" name="to" min="0" required placeholder="position"; },
                    "Go on after the event at this position, without clearing the read model."))
                @if !stops.is_empty() {
                    (form(&principal, &action("resume"), "resume", "Resume", html! {}, "Try the event it stopped at again."))
                }
                @if !failures.is_empty() {
                    (form(&principal, &action("retry"), "retry", "Retry failures", html! {}, "Feed the recorded failures to the projection again."))
                }
            }
            h2 { "Builds" }
            @if builds.is_empty() {
                p.note { "This projection keeps no builds apart." }
            } @else {
                table #builds {
                    thead { tr { th { "Build" } th { "State" } th { "Created" } th { "Live since" } th { "" } } }
                    tbody { @for b in &builds {
                        @let spec = format!("{}.{}", b.id.version, b.id.build);
                        tr.build data-build=(spec) data-state=(b.state.as_str()) {
                            td { (spec) }
                            td { (b.state.as_str()) }
                            td { (b.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                            td { (b.live_at.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())) }
                            td {
                                @if b.state != BuildState::Live && b.state != BuildState::Retired {
                                    (form(&principal, &action("switch"), "switch", "Make live", html! { input type="hidden" name="build" value=(spec); }, ""))
                                    (form(&principal, &action("retire"), "retire", "Retire", html! { input type="hidden" name="build" value=(spec); }, ""))
                                }
                            }
                        }
                    } }
                }
            }
            h2 { "Recorded failures" }
            @if failures.is_empty() {
                p.note { "None." }
            } @else {
                table #failures {
                    thead { tr { th { "Position" } th { "Event" } th { "Stream" } th { "Type" } th { "Attempts" } th { "Failed at" } th { "Error" } th { "" } } }
                    tbody { @for f in &failures {
                        tr.failure data-event-id=(f.event_id) {
                            td.num { (f.position.0) }
                            td { a href={ (base) "/events/" (f.event_id) } { (f.event_id) } }
                            td { (f.stream.aggregate_type()) "/" (f.stream.aggregate_id()) }
                            td { (f.event_type) }
                            td.attempts { (f.attempts) }
                            td.failed-at { (f.failed_at.to_rfc3339()) }
                            td.error-text { (f.error) }
                            td { (form(&principal, &format!("{base}/projections/{segment}/failures/{}/skip", f.event_id), "skip", "Forget", html! {}, "")) }
                        }
                    } }
                }
            }
        }
    };
    page::layout(&shared, Some(&principal), &format!("Projection {name}"), body).into_response()
}

/// An action's form: a POST with the session's CSRF token.
fn form(principal: &Principal, action: &str, kind: &str, label: &str, fields: Markup, help: &str) -> Markup {
    html! {
        form.action data-action=(kind) method="post" action=(action) {
            (csrf_field(principal))
            (fields)
            button type="submit" { (label) }
            @if !help.is_empty() { span.help { (help) } }
        }
    }
}
