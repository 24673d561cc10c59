//! The `coalesce` workload's report: each case's goals, its JSON line, and the tables.

use super::*;

pub(super) fn goals(c: &Case, m: &Measured) -> Goals {
    let (on, off, raw) = (m.figure(On).expect("on runs"), m.figure(Off), m.figure(Raw));
    let at_least = |g: f64| {
        let r = raw.as_ref().map_or(f64::NAN, |raw| on.median / raw.median);
        (format!("on ÷ raw >= {g:.2}x"), r >= g)
    };
    let within = |p: &str, on: f64, off: f64| (format!("on {p} <= 1.05 × off"), on <= 1.05 * off);
    match c.id {
        "C1a" => vec![at_least(2.5), ("on p99 <= 10 ms".into(), on.p99_ms <= 10.0)],
        "C1b" | "C2" => vec![at_least(1.2)],
        "C4" | "C1d" => vec![],
        "C1c" => {
            let off = off.expect("C1c runs off");
            vec![within("p50", on.p50_ms, off.p50_ms), within("p99", on.p99_ms, off.p99_ms)]
        }
        _ => vec![("p99 <= 20 ms".into(), on.p99_ms <= 20.0)],
    }
}

pub(super) fn row_json(c: &Case, m: &Measured, goals: &[(String, bool)]) -> Value {
    let fig = |v: Variant| m.figure(v).as_ref().map(figure_json);
    let ratio2 = |a: Variant, b: Variant| Some(round(m.figure(a)?.median / m.figure(b)?.median));
    let ratio = |v: Variant| ratio2(On, v);
    let seq = |v: Variant| median_of(&m.seq_rows[v as usize]).map(round);
    json!({
        "workload": "coalesce", "case": c.id, "name": c.name,
        "unit": c.unit(),
        "on": fig(On), "off": fig(Off), "raw": fig(Raw), "on_to_raw": ratio(Raw), "on_to_off": ratio(Off),
        "flush": m.flushes[On as usize].json(), "seq_rows_per_event": { "on": seq(On), "off": seq(Off) },
        "achieved_rate": median_of(&m.achieved[On as usize]).map(round),
        "diagnostics": DIAGNOSTICS.iter().filter_map(|&(v, what)| m.figure(v).map(|f| json!({
            "variant": what, "figure": figure_json(&f), "flush": m.flushes[v as usize].json(),
            "seq_rows_per_event": seq(v), "on_to_raw": ratio2(v, Raw),
            "achieved_rate": median_of(&m.achieved[v as usize]).map(round) }))).collect::<Vec<_>>(),
        "goals": goals.iter().map(|(g, met)| json!({ "goal": g, "met": met })).collect::<Vec<_>>(),
        "note": match c.path {
            Path::Live(rate) => format!("W6: command ack to projection commit, {rate} commands/s for \
                                         {W6_SECONDS} s over {STREAMS} aggregates"),
            _ => format!("{} ops of 1 event, {} callers over {} streams; the store's pool: {POOL} \
                          connections; raw: minimal table, a connection per caller", c.ops, c.callers, c.streams),
        },
    })
}

/// Prints a table row of `cells`.
pub(super) fn line(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}

pub(super) fn print_tables(rows: &[Row<'_>], reps: usize, load: (String, String)) {
    let fig = |f: &Option<Figure>| f.as_ref().map_or("—".into(), fmt_figure);
    let lat = |f: &Option<Figure>| f.as_ref().map_or("—".into(), fmt_lat);
    let x = |a: &Option<Figure>, b: &Option<Figure>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a.median / b.median),
        _ => "—".into(),
    };
    // W6's rows say the rate they achieved.
    let name = |c: &Case, m: &Measured, v: Variant| match median_of(&m.achieved[v as usize]) {
        Some(r) => format!("{} {} (achieved {r:.0}/s)", c.id, c.name),
        None => format!("{} {}", c.id, c.name),
    };
    let cpu = |m: &Measured, vs: &[Variant], pick: fn((f64, f64)) -> f64| {
        let one = |v: &Variant| {
            m.figure(*v).and_then(|f| f.cpu).map_or("—".into(), |c| format!("{:.0}", pick(c)))
        };
        vs.iter().map(one).collect::<Vec<String>>().join(" / ")
    };
    let seq = |m: &Measured, v: Variant| {
        median_of(&m.seq_rows[v as usize]).map_or("—".into(), |s| format!("{s:.0}"))
    };
    let flushes = |f: &Flushes| {
        let w = f.mean_wait_us();
        format!("{:.1} ({}) | {} | {} | {w:.0}", f.mean(), f.largest, f.flushes, f.retried_alone)
    };
    println!();
    println!("Coalesced appends: the store with its coalescing writer on (the default) and off, beside the minimal raw table with one autocommit INSERT per event on dedicated connections; medians (min–max) over {reps} repetitions. Load average before / after: {} / {}.", load.0, load.1);
    println!();
    println!("| case | unit | on median (min–max) | on p50 / p99 ms | off median (min–max) | off p50 / p99 ms | raw median (min–max) | raw p50 / p99 ms | on ÷ raw | on ÷ off | goal | met |");
    println!("{}|", "| --- ".repeat(12));
    for (c, m, goals) in rows {
        let goal: Vec<&str> = goals.iter().map(|(g, _)| g.as_str()).collect();
        let met: Vec<&str> = goals.iter().map(|(_, m)| if *m { "yes" } else { "**no**" }).collect();
        let (on, off, raw) = (m.figure(On), m.figure(Off), m.figure(Raw));
        line(&[
            name(c, m, On),
            c.unit().into(),
            fig(&on),
            lat(&on),
            fig(&off),
            lat(&off),
            fig(&raw),
            lat(&raw),
            x(&on, &raw),
            x(&on, &off),
            goal.join("; "),
            met.join("; "),
        ]);
    }
    println!();
    println!("CPU per event, µs (medians; server = every `postgres` process, client = this process); the coalescing writer's flushes with it on (over all repetitions); rows read by sequential scans of the events table per event (medians):");
    println!();
    println!("| case | server: on / off / raw | client: on / off / raw | appends per flush: mean (largest) | flushes | retried alone | mean wait before flush µs | seq-scanned rows per event: on / off |");
    println!("{}|", "| --- ".repeat(8));
    for (c, m, _) in rows {
        let all = [On, Off, Raw];
        let seqs = format!("{} / {}", seq(m, On), seq(m, Off));
        let fl = flushes(&m.flushes[On as usize]);
        line(&[name(c, m, On), cpu(m, &all, |c| c.1), cpu(m, &all, |c| c.0), fl, seqs]);
    }
    print_cost(rows);
    println!();
    println!("Diagnostics, coalescing on, in the same run: lean schema = `SchemaNames::query_indexes(false)`, the log's own indexes only; filled = the table holds {FILL} events on other streams and was analyzed before the phase:");
    println!();
    println!("| case | variant | median (min–max) | p50 / p99 ms | ÷ raw | ÷ on | CPU server / client µs per event | appends per flush: mean (largest) | flushes | retried alone | mean wait µs | seq-scanned rows per event |");
    println!("{}|", "| --- ".repeat(12));
    for (c, m, _) in rows {
        for (v, what) in DIAGNOSTICS.into_iter().filter(|(v, _)| m.figure(*v).is_some()) {
            let cpu = format!("{} / {}", cpu(m, &[v], |c| c.1), cpu(m, &[v], |c| c.0));
            let (f, on, raw) = (m.figure(v), m.figure(On), m.figure(Raw));
            let fl = flushes(&m.flushes[v as usize]);
            let cells = [fig(&f), lat(&f), x(&f, &raw), x(&f, &on), cpu, fl, seq(m, v)];
            line(&[&[name(c, m, v), what.into()][..], &cells[..]].concat());
        }
    }
}

/// The cost of an event against its yardsticks, in the same run: the server CPU per
/// coalesced append against the server CPU per row of the bulk append (C4), and the
/// whole command path's CPU (client and server) against raw's per single-row INSERT.
fn print_cost(rows: &[Row<'_>]) {
    let server = |m: &Measured, v: Variant| m.figure(v).and_then(|f| f.cpu).map(|c| c.1);
    let both = |m: &Measured, v: Variant| m.figure(v).and_then(|f| f.cpu).map(|c| c.0 + c.1);
    let Some(bulk) = rows.iter().find(|(c, _, _)| c.id == "C4").and_then(|(_, m, _)| server(m, On)) else {
        return;
    };
    println!();
    println!("The cost of an event, in this run: server CPU per coalesced append ÷ server CPU per row of the bulk append (C4: {bulk:.0} µs), and the command path's client + server CPU ÷ raw's per single-row INSERT:");
    println!();
    println!("| case | server µs per event | ÷ bulk row | goal | client + server µs | raw client + server µs | ÷ raw | goal |");
    println!("{}|", "| --- ".repeat(8));
    let goals =
        [("C1a", Some(1.5), Some(0.5)), ("C1b", Some(2.5), None), ("C1d", None, None), ("C2", None, None)];
    for (id, bulk_goal, raw_goal) in goals {
        let Some((c, m, _)) = rows.iter().find(|(c, _, _)| c.id == id) else { continue };
        let (Some(on), Some(on_both)) = (server(m, On), both(m, On)) else { continue };
        let raw_both = both(m, Raw);
        let to_bulk = on / bulk;
        let to_raw = raw_both.map(|r| on_both / r);
        let goal = |g: Option<f64>, r: Option<f64>| match (g, r) {
            (Some(g), Some(r)) => format!("<= {g:.2}x: {}", if r <= g { "yes" } else { "**no**" }),
            _ => "—".into(),
        };
        line(&[
            format!("{} {}", c.id, c.name),
            format!("{on:.0}"),
            format!("{to_bulk:.2}x"),
            goal(bulk_goal, Some(to_bulk)),
            format!("{on_both:.0}"),
            raw_both.map_or("—".into(), |r| format!("{r:.0}")),
            to_raw.map_or("—".into(), |r| format!("{r:.2}x")),
            goal(raw_goal, to_raw),
        ]);
    }
}
