//! CPU per process during a phase, from `/proc` (Linux; elsewhere nothing is printed):
//! this benchmark's own process (the load generator, the service, the publisher and
//! the subscriber share it), PostgreSQL's processes, RabbitMQ's, and the rest.

use std::collections::HashMap;
use std::time::Instant;

/// Clock ticks per second of `/proc`'s CPU times (`getconf CLK_TCK`, 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU times at one instant.
pub(crate) struct Sample {
    at: Instant,
    /// Busy and total ticks of the whole machine.
    busy: u64,
    total: u64,
    /// Ticks per group of processes (exited processes drop out; the phases are short).
    by_group: HashMap<u32, (&'static str, u64)>,
    cores: usize,
}

fn group(pid: u32, comm: &str) -> &'static str {
    if pid == std::process::id() {
        "bench (generator, service, publisher, subscriber)"
    } else if comm.starts_with("postgres") {
        "PostgreSQL"
    } else if comm.starts_with("beam")
        || comm == "erl_child_setup"
        || comm == "epmd"
        || comm == "inet_gethost"
    {
        "RabbitMQ"
    } else {
        "other"
    }
}

/// Reads the machine's and every process's CPU times.
pub(crate) fn sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    let cores = stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count();
    let mut by_group = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else { continue };
        let comm = &text[open + 1..close];
        // After the command: state, ppid, ..., utime (the 12th), stime (the 13th).
        let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
        let ticks = rest.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + rest.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        by_group.insert(pid, (group(pid, comm), ticks));
    }
    Some(Sample { at: Instant::now(), busy: total - idle, total, by_group, cores: cores.max(1) })
}

/// Prints what each group used between two samples, in percent of one core.
pub(crate) fn report(before: &Option<Sample>, after: &Option<Sample>) {
    let (Some(a), Some(b)) = (before, after) else { return };
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let mut groups: HashMap<&'static str, f64> = HashMap::new();
    for (pid, (name, ticks)) in &b.by_group {
        let start = a.by_group.get(pid).map_or(0, |(_, t)| *t);
        *groups.entry(name).or_default() += ticks.saturating_sub(start) as f64 / TICKS / secs * 100.0;
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|x, y| y.1.total_cmp(&x.1));
    let busy = (b.busy - a.busy) as f64 / (b.total - a.total).max(1) as f64 * 100.0;
    let list: Vec<String> = groups.iter().map(|(n, p)| format!("{n} {p:.0}%")).collect();
    println!(
        "  CPU over {secs:.1} s, % of one core ({} cores, machine {busy:.0}% busy): {}",
        a.cores,
        list.join(", ")
    );
}
