//! Figures: each repetition's result, the medians and percentiles over repetitions, the goals, and the table.

use super::*;

/// One repetition's result: a throughput (or a time, for W3) and the latencies of its
/// operations.
#[derive(Clone, Debug)]
pub(super) struct Rep {
    pub(super) value: f64,
    pub(super) latencies: Vec<Duration>,
    /// CPU per operation in µs, (this process, the PostgreSQL server), where measured.
    pub(super) cpu: Option<(f64, f64)>,
}

/// CPU time used so far by this process and by the PostgreSQL server processes (every
/// process named `postgres`, children reaped by the postmaster included), in clock ticks,
/// from `/proc`; `None` where there is no `/proc`.
pub(super) fn cpu_ticks() -> Option<(u64, u64)> {
    fn ticks(stat: &str, children: bool) -> Option<u64> {
        // The fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        // utime, stime, cutime, cstime are fields 14–17 of stat, 12–15 after the name.
        let own = n(11)? + n(12)?;
        Some(if children { own + n(13)? + n(14)? } else { own })
    }
    let me = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?, false)?;
    let mut server = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if stat.contains("(postgres)") {
            server += ticks(&stat, true).unwrap_or(0);
        }
    }
    Some((me, server))
}

/// CPU per operation in µs between two `cpu_ticks` readings (100 ticks per second).
pub(super) fn cpu_per_op(before: Option<(u64, u64)>, ops: usize) -> Option<(f64, f64)> {
    let (b, after) = (before?, cpu_ticks()?);
    let us = |t: u64| t as f64 * 10_000.0 / ops as f64;
    Some((us(after.0.saturating_sub(b.0)), us(after.1.saturating_sub(b.1))))
}

#[derive(Clone, Debug)]
pub(super) struct Figure {
    pub(super) median: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    /// Median CPU per operation in µs: (this process, the server).
    pub(super) cpu: Option<(f64, f64)>,
}

pub(super) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

pub(super) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The median of the repetitions' values with their spread; the latency percentiles are
/// medians of each repetition's percentiles.
pub(super) fn figure(reps: &[Rep]) -> Figure {
    let mut values: Vec<f64> = reps.iter().map(|r| r.value).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for r in reps {
        let mut l = r.latencies.clone();
        l.sort_unstable();
        p50s.push(percentile(&l, 0.50));
        p99s.push(percentile(&l, 0.99));
    }
    let cpu = reps.iter().map(|r| r.cpu).collect::<Option<Vec<_>>>().filter(|c| !c.is_empty()).map(|c| {
        let (mut client, mut server): (Vec<f64>, Vec<f64>) = c.into_iter().unzip();
        (median(&mut client), median(&mut server))
    });
    Figure {
        median: median(&mut values),
        min,
        max,
        p50_ms: median(&mut p50s),
        p99_ms: median(&mut p99s),
        cpu,
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Goal {
    /// framework / raw at least this (throughputs).
    RatioAtLeast(f64),
    /// framework / raw at most this (times).
    RatioAtMost(f64),
    /// The framework's p99 in ms at most this.
    P99AtMost(f64),
    /// The framework's value at most this.
    ValueAtMost(f64),
    /// None: the figure is the yardstick of others.
    Yardstick,
}

pub(super) struct Outcome {
    pub(super) id: &'static str,
    pub(super) name: &'static str,
    pub(super) unit: &'static str,
    pub(super) framework: Figure,
    pub(super) raw: Option<Figure>,
    pub(super) goal: Goal,
    pub(super) note: String,
}

impl Outcome {
    pub(super) fn ratio(&self) -> Option<f64> {
        self.raw.as_ref().map(|r| self.framework.median / r.median)
    }

    pub(super) fn met(&self) -> bool {
        match self.goal {
            Goal::RatioAtLeast(g) => self.ratio().is_some_and(|r| r >= g),
            Goal::RatioAtMost(g) => self.ratio().is_some_and(|r| r <= g),
            Goal::P99AtMost(g) => self.framework.p99_ms <= g,
            Goal::ValueAtMost(g) => self.framework.median <= g,
            Goal::Yardstick => true,
        }
    }

    pub(super) fn goal_text(&self) -> String {
        match self.goal {
            Goal::RatioAtLeast(g) => format!(">= {g:.2}x"),
            Goal::RatioAtMost(g) => format!("<= {g:.2}x"),
            Goal::P99AtMost(g) => format!("p99 <= {g:.2} ms"),
            Goal::ValueAtMost(g) => format!("<= {g} {}", self.unit),
            Goal::Yardstick => "(yardstick)".to_owned(),
        }
    }

    pub(super) fn json(&self) -> Value {
        let fig = figure_json;
        json!({
            "workload": self.id,
            "name": self.name,
            "unit": self.unit,
            "framework": fig(&self.framework),
            "raw": self.raw.as_ref().map(fig),
            "ratio": self.ratio().map(round),
            "goal": self.goal_text(),
            "met": self.met(),
            "note": self.note,
        })
    }
}

/// A figure as the JSON lines give it.
pub(super) fn figure_json(f: &Figure) -> Value {
    let cpu = f.cpu.map(|(client, server)| json!({ "client": round(client), "server": round(server) }));
    json!({ "median": round(f.median), "min": round(f.min), "max": round(f.max),
            "p50_ms": round(f.p50_ms), "p99_ms": round(f.p99_ms), "cpu_us_per_op": cpu })
}

pub(super) fn round(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1000.0).round() / 1000.0
    } else {
        v
    }
}

pub(super) fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(super) fn fmt_figure(f: &Figure) -> String {
    format!("{} ({}–{})", fmt_value(f.median), fmt_value(f.min), fmt_value(f.max))
}

pub(super) fn fmt_lat(f: &Figure) -> String {
    if f.p50_ms.is_nan() {
        "—".into()
    } else {
        format!("{:.2} / {:.2}", f.p50_ms, f.p99_ms)
    }
}

pub(super) fn print_table(outcomes: &[Outcome]) {
    println!();
    println!("| workload | unit | framework median (min–max) | fw p50 / p99 ms | raw median (min–max) | raw p50 / p99 ms | ratio | goal | met |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for o in outcomes {
        let (raw, raw_lat) = match &o.raw {
            Some(r) => (fmt_figure(r), fmt_lat(r)),
            None => ("—".into(), "—".into()),
        };
        let ratio = o.ratio().map_or("—".into(), |r| format!("{r:.2}x"));
        println!(
            "| {} {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.id,
            o.name,
            o.unit,
            fmt_figure(&o.framework),
            fmt_lat(&o.framework),
            raw,
            raw_lat,
            ratio,
            o.goal_text(),
            if o.met() { "yes" } else { "**no**" }
        );
    }
    let with_cpu: Vec<&Outcome> = outcomes.iter().filter(|o| o.framework.cpu.is_some()).collect();
    if !with_cpu.is_empty() {
        println!();
        println!("CPU per operation, µs (medians; this process / the PostgreSQL server):");
        println!();
        println!("| workload | framework: client / server | raw: client / server |");
        println!("| --- | --- | --- |");
        let cpu = |f: Option<&Figure>| match f.and_then(|f| f.cpu) {
            Some((c, s)) => format!("{c:.0} / {s:.0}"),
            None => "—".into(),
        };
        for o in with_cpu {
            println!("| {} {} | {} | {} |", o.id, o.name, cpu(Some(&o.framework)), cpu(o.raw.as_ref()));
        }
    }
}
