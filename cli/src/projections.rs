//! `factum projections`: reset and resume (the running service carries them out), and
//! the recorded failures: list, retry, resolve.

use std::time::{Duration, Instant};

use clap::Subcommand;
use factum::store::operator::{self, Requested};
use factum::store::ConsumerStore;
use factum_postgres::PostgresStore;
use serde_json::json;
use uuid::Uuid;

use crate::connect::Database;
use crate::error::CliError;
use crate::output::{self, Table};

#[derive(Subcommand, Debug)]
pub(crate) enum ProjectionsCommand {
    /// Rebuild a projection from the start, or with --to move its checkpoint to just
    /// after the event at POSITION and go on from there. A projection whose builds are
    /// kept apart is rebuilt into a fresh copy while the live one serves, and readers
    /// switch when it has caught up; any other has its read model cleared first. The
    /// instance of the service that runs the projection carries it out (within about a
    /// second); with none running, the first one to start does.
    Reset {
        /// The projection.
        name: String,
        /// Go on after the event at this global position, without clearing the read
        /// model (0: from the start).
        #[arg(long, value_name = "POSITION")]
        to: Option<u64>,
        /// Wait until the running service has carried the reset out (at most SECONDS).
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "30")]
        wait: Option<u64>,
    },
    /// Let a projection its failure policy stopped try the event it stopped at again (once
    /// the cause is fixed): a reset to its own checkpoint, carried out as `reset` is.
    Resume {
        /// The projection.
        name: String,
        /// Wait until the running service has carried it out (at most SECONDS).
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "30")]
        wait: Option<u64>,
    },
    /// The events a projection gave up on, in log order.
    Failures {
        /// The projection.
        name: String,
    },
    /// Ask the service running the projection to feed its recorded failures again.
    Retry {
        /// The projection.
        name: String,
        /// Wait until it has (at most SECONDS).
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "30")]
        wait: Option<u64>,
    },
    /// A projection's builds: its versions and the copies rebuilds made, with their state
    /// (building, live, replaced, retired) and how far behind the log each one is.
    Builds {
        /// The projection.
        name: String,
    },
    /// Make another build live: readers switch to it in one step once it has caught up.
    /// The instance running the projection carries it out, bringing a build of its own
    /// version up to date first (switching back to the build a rebuild replaced).
    Switch {
        /// The projection.
        name: String,
        /// The build: VERSION (its first build) or VERSION.BUILD, as `builds` lists them.
        build: String,
        /// Wait until the build is live (at most SECONDS).
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
        wait: Option<u64>,
    },
    /// Retire a build that is not live and no instance follows: its read model is dropped.
    Retire {
        /// The projection.
        name: String,
        /// The build: VERSION or VERSION.BUILD.
        build: String,
    },
    /// Forget a recorded failure (the event stays skipped).
    Resolve {
        /// The projection.
        name: String,
        /// The failed event's id.
        event_id: Uuid,
    },
}

pub(crate) async fn run(db: &Database, command: ProjectionsCommand, json: bool) -> Result<(), CliError> {
    let store = db.store().await?;
    // The requests are the console's too: `factum::store::operator` makes them.
    match command {
        ProjectionsCommand::Reset { name, to, wait } => {
            let (made, what) = match to {
                None => (operator::rebuild(&store, &name).await?, "rebuild from the start".to_owned()),
                Some(p) => {
                    (operator::reset_to(&store, &name, p).await?, format!("reset to after position {p}"))
                }
            };
            report(&store, &made, &what, wait, json).await
        }
        ProjectionsCommand::Resume { name, wait } => {
            let mut stops = Vec::new();
            for consumer in operator::live_consumers(&store, &name).await? {
                stops.extend(store.stopped(&consumer).await?);
            }
            let made = operator::resume(&store, &name).await?;
            let what = match stops.first() {
                Some(stop) => format!("resume at event {} (position {})", stop.event_id, stop.position),
                None => "resume".to_owned(),
            };
            report(&store, &made, &what, wait, json).await
        }
        ProjectionsCommand::Retry { name, wait } => {
            let n = operator::failures(&store, &name).await?.len();
            let made = operator::retry(&store, &name).await?;
            report(&store, &made, &format!("retry of {n} recorded failure(s)"), wait, json).await
        }
        ProjectionsCommand::Failures { name } => {
            print_failures(&name, &operator::failures(&store, &name).await?, json)
        }
        ProjectionsCommand::Resolve { name, event_id } => {
            operator::skip(&store, &name, event_id).await?;
            if json {
                output::json_line(&json!({ "resolved": event_id, "projection": name }))
            } else {
                output::print(&format!("{name}: failure of {event_id} resolved\n"))
            }
        }
        ProjectionsCommand::Builds { name } => crate::builds::list(&store, &name, json).await,
        ProjectionsCommand::Switch { name, build, wait } => {
            crate::builds::switch(&store, &name, &build, wait, json).await
        }
        ProjectionsCommand::Retire { name, build } => {
            crate::builds::retire(&store, &name, &build, json).await
        }
    }
}

/// Prints a projection's recorded failures.
fn print_failures(
    name: &str,
    failures: &[factum::store::ProjectionFailure],
    json: bool,
) -> Result<(), CliError> {
    if json {
        for f in failures {
            output::json_line(&json!({
                "projection": f.projection,
                "event_id": f.event_id,
                "aggregate_type": f.stream.aggregate_type(),
                "aggregate_id": f.stream.aggregate_id(),
                "version": f.version.0,
                "position": f.position.0,
                "event_type": f.event_type,
                "error": f.error,
                "attempts": f.attempts,
                "failed_at": f.failed_at,
            }))?;
        }
        return Ok(());
    }
    if failures.is_empty() {
        return output::print(&format!("{name}: no recorded failures\n"));
    }
    let mut table =
        Table::new(&["POSITION", "EVENT ID", "STREAM", "VERSION", "TYPE", "ATTEMPTS", "FAILED AT", "ERROR"]);
    for f in failures {
        table.row(vec![
            f.position.0.to_string(),
            f.event_id.to_string(),
            format!("{}/{}", f.stream.aggregate_type(), f.stream.aggregate_id()),
            f.version.0.to_string(),
            f.event_type.clone(),
            f.attempts.to_string(),
            f.failed_at.to_rfc3339(),
            f.error.replace('\n', " "),
        ]);
    }
    table.print()
}

/// Says what was requested, and with `wait`, waits until every request was carried out.
async fn report(
    store: &PostgresStore,
    made: &[Requested],
    what: &str,
    wait: Option<u64>,
    json: bool,
) -> Result<(), CliError> {
    for requested in made {
        let name = &requested.consumer;
        let mut done = false;
        if let Some(seconds) = wait {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            while Instant::now() < deadline {
                if operator::carried_out(store, requested).await? {
                    done = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if !done {
                return Err(CliError::Sql(format!(
                    "{name}: the {what} was requested but not carried out within {seconds} s: is an instance of the service running it? (see `factum status`)"
                )));
            }
        }
        if json {
            output::json_line(&json!({
                "projection": name,
                "requested_at": requested.pending.requested_at,
                "done": done,
            }))?;
            continue;
        }
        output::print(&if done {
            format!("{name}: {what} carried out by the running service\n")
        } else {
            format!("{name}: {what} requested; the instance running it carries it out within about a second (--wait to wait for it)\n")
        })?;
    }
    Ok(())
}
