//! `factum retention run`: delete, or with --dry-run count, what retention would remove.

use chrono::Utc;
use clap::Subcommand;
use factum::prelude::*;
use factum::store::RetentionGuard;
use serde_json::json;

use crate::connect::Database;
use crate::error::CliError;
use crate::output;
use crate::time::parse_point;

#[derive(Subcommand, Debug)]
pub(crate) enum RetentionCommand {
    /// Delete the events recorded before a cutoff, except each stream's newest, by the
    /// same rules and guard as the retention actor.
    Run {
        /// The cutoff: a duration ago (90d), a date or a timestamp.
        #[arg(long, value_name = "DURATION|TIMESTAMP")]
        before: String,
        /// Safe mode: keep what any projection has not processed yet, and what no
        /// snapshot covers.
        #[arg(long)]
        safe: bool,
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(crate) async fn run(db: &Database, command: RetentionCommand, json: bool) -> Result<(), CliError> {
    let RetentionCommand::Run { before, safe, dry_run } = command;
    let cutoff = parse_point(&before, Utc::now())?;
    let store = db.store().await?;
    let guard = if safe {
        // Every projection that has a checkpoint in this store.
        Some(RetentionGuard::safe(store.consumer_names().await?))
    } else {
        None
    };
    let n = if dry_run {
        store.count_retainable(cutoff, guard.as_ref()).await?
    } else {
        let spinner = indicatif::ProgressBar::new_spinner()
            .with_message(format!("deleting events recorded before {cutoff}"));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        let deleted = match &guard {
            Some(guard) => store.delete_before_guarded(cutoff, guard).await,
            None => store.delete_before(cutoff).await,
        };
        spinner.finish_and_clear();
        deleted?
    };
    if json {
        return output::json_line(&json!({
            "cutoff": cutoff,
            "safe": safe,
            "dry_run": dry_run,
            if dry_run { "would_delete" } else { "deleted" }: n,
        }));
    }
    let mode = if safe { " (safe mode)" } else { "" };
    let text = if dry_run {
        format!("would delete {n} event(s) recorded before {}{mode}\n", cutoff.to_rfc3339())
    } else {
        format!("deleted {n} event(s) recorded before {}{mode}\n", cutoff.to_rfc3339())
    };
    output::print(&text)
}
