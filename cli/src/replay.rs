//! `factum replay --dry-run`: what a replay with a filter would feed, per event type.

use factum::prelude::*;
use std::collections::BTreeMap;
use std::io::IsTerminal;

use clap::Args;
use futures_util::StreamExt;
use serde_json::json;

use crate::connect::Database;
use crate::error::CliError;
use crate::events::FilterArgs;
use crate::output::{self, Table};

#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Only tally (required: a replay runs your handlers, which live in your service;
    /// start it there, with Supervisor::replay).
    #[arg(long)]
    dry_run: bool,
}

pub(crate) async fn run(db: &Database, args: ReplayArgs, json: bool) -> Result<(), CliError> {
    if !args.dry_run {
        return Err(CliError::Usage(
            "the command line cannot run your handlers: replay from the service (Supervisor::replay), \
             or pass --dry-run for a tally of what it would feed"
                .into(),
        ));
    }
    let filter = args.filter.filter()?;
    filter.validate(&factum::store::Limits::default())?;
    let store = db.store().await?;
    let total = store.count(&filter).await?;
    let bar = indicatif::ProgressBar::new(total).with_message("reading the log");
    let terminal = std::io::stderr().is_terminal();
    let mut tally: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen = 0u64;
    // The replay's own order: by position, every match.
    let mut events = store.stream(filter.order_by(factum::store::OrderBy::GlobalPosition, true));
    while let Some(event) = events.next().await {
        let event = event?;
        *tally.entry(event.event_type).or_default() += 1;
        seen += 1;
        bar.set_position(seen);
        if !terminal && seen.is_multiple_of(100_000) {
            eprintln!("read {seen} of {total} events");
        }
    }
    bar.finish_and_clear();
    if json {
        return output::json_line(&json!({ "events": seen, "by_type": tally }));
    }
    let mut table = Table::new(&["EVENT TYPE", "EVENTS"]);
    for (t, n) in &tally {
        table.row(vec![t.clone(), n.to_string()]);
    }
    let mut text = table.render();
    text.push_str(&format!("a replay with this filter would feed {seen} event(s)\n"));
    output::print(&text)
}
