//! `factum`: the operator's command line for a factum event store on PostgreSQL.
//!
//! It works against any factum database, with nothing but the database: it migrates the
//! schema (or writes the migrations out as plain SQL), shows the projections' state and
//! what holds the log's readers back, queries and follows the log, asks running
//! projections to rebuild, resume or retry their failures, and runs retention. See `docs/cli.md`,
//! or `factum --help` and `factum COMMAND --help`.
//!
//! The crate is the binary's library: [`main`] is the whole program.
//!
//! ## Feature flags
//!
//! `factum-cli` has no Cargo features.

mod builds;
mod connect;
mod error;
mod events;
mod migrate;
mod output;
mod projections;
mod replay;
mod retention;
mod status;
mod time;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::connect::Database;
use crate::error::CliError;

/// The operator's command line for a factum event store on PostgreSQL.
///
/// The database comes from --database-url or DATABASE_URL (else DATABASE_HOST,
/// DATABASE_NAME, DATABASE_USER, DATABASE_PASSWORD, DATABASE_PORT); the schema and table
/// names from the flags below or their FACTUM_* variables.
#[derive(Parser, Debug)]
#[command(name = "factum", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    db: Database,
    /// Print JSON (one object per line) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply the embedded migrations, show their status, or write them out as SQL.
    Migrate(migrate::MigrateArgs),
    /// The projections (checkpoint, lag, lease, failures, stops), what holds readers back,
    /// and the store's size.
    Status(status::StatusArgs),
    /// Query, count, follow or read the log.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Reset or resume a projection, or see, retry and resolve its recorded failures.
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
    /// Delete (or count) the events retention would remove.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// Tally what a replay with a filter would feed, per event type.
    Replay(replay::ReplayArgs),
}

/// Parses the command line, runs the command, prints any error as one line (`error: …`)
/// on standard error, and returns the exit code: 0, 1 (failed), 2 (usage), 3 (not found).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let Cli { db, json, command } = cli;
    match command {
        Command::Migrate(args) => migrate::run(&db, args, json).await,
        Command::Status(args) => status::run(&db, args, json).await,
        Command::Events(command) => events::run(&db, command, json).await,
        Command::Projections(command) => projections::run(&db, command, json).await,
        Command::Retention(command) => retention::run(&db, command, json).await,
        Command::Replay(args) => replay::run(&db, args, json).await,
    }
}
