//! The overview: throughput, the store, the gap-safe horizon, instances and their leases,
//! projections with their lag, and what failed. Read from the sampler's memory only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use maud::{html, Markup};

use crate::auth::Principal;
use crate::page::{self, bytes, number, seconds, sparkline, state_badge};
use crate::sampler::{checkpoint_of, read, reports_of, Sample};
use crate::streams::encode;
use crate::Shared;

/// How old a figure is, in words.
fn age(at: Instant) -> String {
    format!("{} ago", seconds(at.elapsed().as_secs_f64()))
}

/// Events per second between consecutive samples, oldest first.
fn rates(ring: &[Sample]) -> Vec<f64> {
    ring.windows(2).map(|w| w[1].rate(&w[0])).collect()
}

/// A rate over the last `span` samples' intervals.
fn recent_rate(ring: &[Sample], span: usize) -> Option<f64> {
    let last = ring.last()?;
    let first = &ring[ring.len().saturating_sub(span + 1)];
    let secs = last.taken.duration_since(first.taken).as_secs_f64();
    (secs > 0.0).then(|| last.latest.saturating_sub(first.latest) as f64 / secs)
}

/// The time the last `span` samples' intervals cover, in seconds.
fn span(ring: &[Sample], span: usize) -> f64 {
    match (ring.last(), ring.get(ring.len().saturating_sub(span + 1))) {
        (Some(last), Some(first)) => last.taken.duration_since(first.taken).as_secs_f64(),
        _ => 0.0,
    }
}

/// Events by aggregate type over the ring (the samples that counted them), per second.
fn rates_by_type(ring: &[Sample]) -> Vec<(String, f64)> {
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut secs = 0.0;
    for s in ring.iter().skip(1) {
        if let Some(by_type) = &s.by_type {
            secs += s.interval;
            for (t, n) in by_type {
                *totals.entry(t.clone()).or_default() += n;
            }
        }
    }
    let mut out: Vec<(String, f64)> =
        totals.into_iter().map(|(t, n)| (t, if secs > 0.0 { n as f64 / secs } else { 0.0 })).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// One projection's series from the ring: (lag, events handled per second).
fn projection_series(ring: &[Sample], name: &str) -> (Vec<f64>, Vec<f64>) {
    let find = |s: &Sample| s.projections.iter().find(|p| p.0 == name).map(|p| (p.1, p.2));
    let lag = ring.iter().filter_map(|s| find(s).map(|p| p.1 as f64)).collect();
    let rate = ring
        .windows(2)
        .filter_map(|w| match (find(&w[0]), find(&w[1])) {
            (Some(a), Some(b)) if w[1].interval > 0.0 => Some(b.0.saturating_sub(a.0) as f64 / w[1].interval),
            _ => None,
        })
        .collect();
    (lag, rate)
}

pub(crate) async fn page(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
) -> Html<String> {
    let samples = &shared.samples;
    let ring = samples.ring();
    let reports = read(&samples.reports);
    let body = html! {
        main #overview {
            h1 { "Overview" }
            @if let Some(e) = samples.error.lock().ok().and_then(|e| e.clone()) {
                p.error { "The last sample failed: " (e) }
            }
            section.cards {
                (throughput(&ring))
                (store(&shared))
                (horizon(&shared, principal.may_act()))
            }
            h2 { "Projections" }
            (projections(&shared, &ring, reports.as_ref().map(|r| &r.value[..])))
            (failing(reports.as_ref().map(|r| &r.value[..])))
            h2 { "Instances and their leases" }
            (instances(reports.as_ref().map(|r| (&r.value[..], r.at))))
        }
    };
    page::layout(&shared, Some(&principal), "Overview", body)
}

fn throughput(ring: &[Sample]) -> Markup {
    let by_type = rates_by_type(ring);
    html! {
        div.card #throughput {
            h2 { "Throughput" }
            @match (recent_rate(ring, 5), ring.last()) {
                (Some(rate), Some(last)) => {
                    p.figure { (format!("{rate:.1}")) " events/s" }
                    p.note { "over the last " (seconds(span(ring, 5))) "; head of the log at position " (number(last.latest)) ", " (age(last.taken)) }
                }
                _ => { p.note { "Measuring: the first figures come within a few seconds." } }
            }
            (sparkline(&rates(ring), "events per second, last five minutes"))
            @if !by_type.is_empty() {
                table.by-type {
                    thead { tr { th { "Aggregate type" } th { "events/s" } } }
                    tbody { @for (t, r) in &by_type { tr { td { (t) } td.num { (format!("{r:.2}")) } } } }
                }
            }
        }
    }
}

fn store(shared: &Shared) -> Markup {
    let estimate = read(&shared.samples.estimate);
    let report = read(&shared.samples.store);
    html! {
        div.card #store {
            h2 { "Store" }
            @if let Some(e) = &estimate {
                @match e.value.events {
                    Some(n) => p.figure { "≈ " (number(n)) " events" },
                    None => p.figure { (report.as_ref().map_or_else(|| "?".to_owned(), |r| number(r.value.events))) " events" },
                }
                p.note { (bytes(e.value.bytes)) " with indexes (from the statistics, " (age(e.at)) ")" }
            }
            @if let Some(r) = &report {
                p { (number(r.value.events)) " events in " (number(r.value.streams)) " streams; "
                    (number(r.value.snapshotted_streams)) " with a snapshot" }
                p.note { "Counted " (age(r.at)) " (recounted every five minutes)." }
                table.by-type {
                    thead { tr { th { "Aggregate type" } th { "events" } } }
                    tbody { @for (t, n) in &r.value.by_aggregate_type { tr { td { (t) } td.num { (number(*n)) } } } }
                }
            } @else {
                p.note { "Counting the store in the background…" }
            }
        }
    }
}

fn horizon(shared: &Shared, operator: bool) -> Markup {
    let horizon = read(&shared.samples.horizon);
    html! {
        div.card #horizon {
            h2 { "Gap-safe horizon" }
            @if let Some(h) = horizon {
                p.figure { "transaction " (h.value.transaction) }
                p.note { (number(h.value.waiting_events)) " committed event(s) wait behind it (" (age(h.at)) ")" }
                @if let Some(t) = h.value.oldest.as_ref().filter(|t| t.open_for_seconds.unwrap_or(0.0) >= 1.0) {
                    p.warning {
                        "Held back by pid " (t.session.pid) " ("
                        (t.database.as_deref().unwrap_or("?")) ", " (t.user.as_deref().unwrap_or("?")) ", "
                        (t.session.application_name.as_deref().unwrap_or("")) "), open for "
                        (seconds(t.open_for_seconds.unwrap_or(0.0)))
                        // Its statement may hold other sessions' literals: operators only.
                        @if operator { ": " code { (t.query.as_deref().unwrap_or("")) } }
                    }
                }
            } @else {
                p.note { "Measuring…" }
            }
        }
    }
}

fn projections(
    shared: &Shared,
    ring: &[Sample],
    reports: Option<&[factum_postgres::ProjectionReport]>,
) -> Markup {
    let base = &shared.config.path;
    let statuses = shared.supervisor.statuses();
    html! {
        table #projections {
            thead { tr {
                th { "Projection" } th { "State" } th { "Checkpoint" } th { "Behind (events)" }
                th { "Behind (time)" } th { "Lag" } th { "Handled/s" } th { "Failures" }
            } }
            tbody {
                @for s in &statuses {
                    @let (lag, rate) = projection_series(ring, &s.name);
                    @let mine = reports_of(s, reports.unwrap_or_default());
                    @let checkpoint = checkpoint_of(s, &mine);
                    @let behind = ring.last().map(|l| l.latest.saturating_sub(checkpoint));
                    @let behind_for = mine.iter().filter_map(|r| r.behind_seconds).reduce(f64::max);
                    tr data-projection=(s.name) {
                        td { a href={ (base) "/projections/" (encode(&s.name)) } { (s.name) } }
                        td.state { (state_badge(s.state.as_str())) }
                        td.num { (number(checkpoint)) }
                        td.num { (behind.map_or_else(|| "-".to_owned(), number)) }
                        td.num { (behind_for.map_or_else(|| "-".to_owned(), seconds)) }
                        td { (sparkline(&lag, "events behind, last five minutes")) }
                        td { (sparkline(&rate, "events handled per second, last five minutes")) }
                        td.num { (mine.iter().map(|r| r.failures).sum::<u64>()) }
                    }
                }
            }
        }
    }
}

fn failing(reports: Option<&[factum_postgres::ProjectionReport]>) -> Markup {
    let troubled: Vec<_> =
        reports.into_iter().flatten().filter(|r| r.failures > 0 || r.stopped.is_some()).collect();
    html! {
        @if !troubled.is_empty() {
            h2 { "Failures and stops" }
            ul #troubles {
                @for r in troubled {
                    li {
                        strong { (r.name) } ": "
                        @if r.failures > 0 { (r.failures) " recorded failure(s). " }
                        @if let Some(stop) = &r.stopped {
                            "Stopped by its failure policy: " (stop.get("error").and_then(|e| e.as_str()).unwrap_or("?"))
                        }
                    }
                }
            }
        }
    }
}

fn instances(reports: Option<(&[factum_postgres::ProjectionReport], Instant)>) -> Markup {
    let Some((reports, at)) = reports else { return html! { p.note { "Measuring…" } } };
    let mut holders: BTreeMap<(String, String, i32), Vec<&str>> = BTreeMap::new();
    for r in reports {
        if let Some(l) = &r.lease {
            let key = (
                l.application_name.clone().unwrap_or_default(),
                l.client_addr.clone().unwrap_or_else(|| "local".into()),
                l.pid,
            );
            holders.entry(key).or_default().push(&r.name);
        }
    }
    html! {
        table #instances {
            thead { tr { th { "Instance (application)" } th { "Address" } th { "Session pid" } th { "Holds" } } }
            tbody {
                @for ((app, addr, pid), held) in &holders {
                    tr { td { (app) } td { (addr) } td.num { (pid) } td { (held.join(", ")) } }
                }
                @if holders.is_empty() { tr { td colspan="4" { "No lease is held: no projection runs." } } }
            }
        }
        p.note { "Leases as of " (age(at)) "." }
    }
}
