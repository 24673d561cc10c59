//! B2's breakdown: where each event's time went, from its command's acknowledgment to the
//! subscriber's receipt, from the stage stamps (`stages.rs`).
//!
//! For each measured event: the read that returned it (the projection actor's, or the
//! publisher's read ahead while it waited for confirms), and
//! - **wait**: acknowledged → that read began (the wake-up or poll, the sink busy with
//!   the previous batch, and reads that began after the acknowledgment but did not see
//!   the event yet: it sat behind the gap-safe horizon);
//! - **read**: that read's query;
//! - **send**: the read's end → the message sent (selection, the batch before it);
//! - **route**: sent → received by the subscriber (broker and consumer);
//! - **confirm**: sent → confirmed (not on the path to the subscriber; it holds back the
//!   checkpoint, and without publishing ahead, the next batch).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::stages::{Stage, Stamp};

/// One measured event: its command's acknowledgment, its position, its receipt.
pub(crate) struct Measured {
    pub(crate) ack: Instant,
    pub(crate) position: u64,
    pub(crate) receipt: Instant,
}

#[derive(Clone, Copy, Default)]
struct Row {
    total: f64,
    wait: f64,
    read: f64,
    send: f64,
    route: f64,
    confirm: f64,
    hidden: f64,
    missed: f64,
    ahead: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn since(later: Instant, earlier: Instant) -> f64 {
    ms(later.saturating_duration_since(earlier))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn mean(rows: &[Row], f: impl Fn(&Row) -> f64) -> f64 {
    rows.iter().map(f).sum::<f64>() / rows.len().max(1) as f64
}

/// Prints the breakdown: each stage's percentiles over all measured events, then the
/// mean of each stage over the slowest 1%.
pub(crate) fn report(events: &[Measured], stamps: &[Stamp], secs: f64) {
    let first = |stage: Stage| {
        let mut m: HashMap<u64, Instant> = HashMap::new();
        for s in stamps.iter().filter(|s| s.stage == stage) {
            m.entry(s.position).or_insert(s.at);
        }
        m
    };
    let (published, confirmed, batched) =
        (first(Stage::Published), first(Stage::Confirmed), first(Stage::Batch));
    // Reads that returned something, and all reads, each as (start, end, kind).
    let mut reads: Vec<(Instant, Instant, Stage, u64)> = stamps
        .iter()
        .filter(|s| matches!(s.stage, Stage::Read | Stage::ReadAhead))
        .map(|s| (s.started(), s.at, s.stage, s.count))
        .collect();
    reads.sort_by_key(|r| r.1);
    let count = |stage: Stage| stamps.iter().filter(|s| s.stage == stage).count() as f64 / secs;
    let read_ms: Vec<f64> = reads.iter().map(|r| since(r.1, r.0)).collect();
    println!(
        "  stages: {:.0} batch/s, {:.0} published/s, {:.0} confirmed/s, {:.0} wake-ups/s ({:.0} signalled), {:.0} actor reads/s, {:.0} reads ahead/s, read query mean {:.2} ms",
        count(Stage::Batch),
        count(Stage::Published),
        count(Stage::Confirmed),
        count(Stage::Wake),
        stamps.iter().filter(|s| s.stage == Stage::Wake && s.signal).count() as f64 / secs,
        count(Stage::Read),
        count(Stage::ReadAhead),
        read_ms.iter().sum::<f64>() / read_ms.len().max(1) as f64,
    );
    let mut rows = Vec::with_capacity(events.len());
    let mut unstamped = 0;
    for e in events {
        let Some(&sent) = published.get(&e.position) else {
            unstamped += 1;
            continue;
        };
        let batch = batched.get(&e.position).copied();
        let ahead = batch.is_none_or(|b| b > sent);
        // The read that returned it: the last one of its kind that ended before it was
        // handed over (to the batch, or published ahead).
        let (kind, before) =
            if ahead { (Stage::ReadAhead, sent) } else { (Stage::Read, batch.unwrap_or(sent)) };
        let upto = reads.partition_point(|r| r.1 <= before);
        let Some(got) = reads[..upto].iter().rev().find(|r| r.2 == kind && r.3 > 0) else {
            unstamped += 1;
            continue;
        };
        // Reads that began after the acknowledgment and ended before that read began:
        // the event was committed but not yet below the gap-safe horizon.
        let before_got = reads.partition_point(|r| r.1 <= got.0);
        let missed: Vec<_> =
            reads[..before_got].iter().rev().take_while(|r| r.1 >= e.ack).filter(|r| r.0 >= e.ack).collect();
        rows.push(Row {
            total: since(e.receipt, e.ack),
            wait: since(got.0, e.ack),
            read: since(got.1, got.0),
            send: since(sent, got.1),
            route: since(e.receipt, sent),
            confirm: confirmed.get(&e.position).map_or(f64::NAN, |c| since(*c, sent)),
            hidden: missed.first().map_or(0.0, |r| since(r.0, e.ack)),
            missed: missed.len() as f64,
            ahead: if ahead { 1.0 } else { 0.0 },
        });
    }
    if rows.is_empty() {
        println!("  stages: nothing stamped ({unstamped} events)");
        return;
    }
    let stage = |name: &str, f: &dyn Fn(&Row) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).filter(|x| !x.is_nan()).collect();
        println!(
            "  {name:<8} p50 {:>7.2}  p90 {:>7.2}  p99 {:>7.2}  max {:>7.2} ms",
            pct(&mut v, 0.5),
            pct(&mut v, 0.9),
            pct(&mut v, 0.99),
            pct(&mut v, 1.0)
        );
    };
    stage("total", &|r| r.total);
    stage("wait", &|r| r.wait);
    stage("hidden", &|r| r.hidden);
    stage("read", &|r| r.read);
    stage("send", &|r| r.send);
    stage("route", &|r| r.route);
    stage("confirm", &|r| r.confirm);
    rows.sort_by(|a, b| b.total.total_cmp(&a.total));
    let tail = &rows[..rows.len().div_ceil(100)];
    println!(
        "  slowest 1% ({} events), mean ms: total {:.2} = wait {:.2} (of which behind the horizon >= {:.2}, {:.1} reads missed it) + read {:.2} + send {:.2} + route {:.2}; confirm {:.2}; {:.0}% published ahead",
        tail.len(),
        mean(tail, |r| r.total),
        mean(tail, |r| r.wait),
        mean(tail, |r| r.hidden),
        mean(tail, |r| r.missed),
        mean(tail, |r| r.read),
        mean(tail, |r| r.send),
        mean(tail, |r| r.route),
        mean(tail, |r| r.confirm),
        100.0 * mean(tail, |r| r.ahead),
    );
    println!(
        "  all events: {:.0}% published ahead, {:.2} reads missed each on average{}",
        100.0 * mean(&rows, |r| r.ahead),
        mean(&rows, |r| r.missed),
        if unstamped > 0 { format!(", {unstamped} not stamped") } else { String::new() }
    );
}
