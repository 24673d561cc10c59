//! `factum projections builds | switch | retire`: a projection's builds (its versions and
//! the copies rebuilds made), switching readers between them, and retiring one.

use std::time::{Duration, Instant};

use factum::prelude::*;
use factum::store::operator;
use factum::store::BuildState;
use factum_postgres::PostgresStore;
use serde_json::json;

use crate::error::CliError;
use crate::output::{self, Table};

/// Lists a projection's builds: state, checkpoint and what is left to build.
pub(crate) async fn list(store: &PostgresStore, name: &str, json: bool) -> Result<(), CliError> {
    let builds = operator::builds(store, name).await?;
    let end = store.latest_position().await?.map_or(0, |p| p.0);
    let mut table =
        Table::new(&["BUILD", "CONSUMER", "STATE", "CHECKPOINT", "BEHIND", "CREATED", "LIVE SINCE"]);
    for b in &builds {
        // A build in slices is as far as its slowest slice.
        let mut checkpoint = u64::MAX;
        for consumer in b.consumers() {
            checkpoint =
                checkpoint.min(store.load_checkpoint(&consumer).await?.unwrap_or_default().position.0);
        }
        let behind = end.saturating_sub(checkpoint);
        if json {
            output::json_line(&json!({
                "projection": name,
                "version": b.id.version,
                "build": b.id.build,
                "consumer": b.id.consumer(),
                "state": b.state.as_str(),
                "checkpoint": checkpoint,
                "behind": behind,
                "location": b.location,
                "created_at": b.created_at,
                "live_at": b.live_at,
                "retired_at": b.retired_at,
            }))?;
            continue;
        }
        table.row(vec![
            format!("{}.{}", b.id.version, b.id.build),
            b.id.consumer(),
            b.state.to_string(),
            checkpoint.to_string(),
            if b.state == BuildState::Retired { "-".into() } else { behind.to_string() },
            b.created_at.to_rfc3339(),
            b.live_at.map_or_else(|| "-".into(), |t| t.to_rfc3339()),
        ]);
    }
    if json {
        return Ok(());
    }
    table.print()
}

/// Asks the instance running the live build to make `build` live (bringing it up to date
/// first where it runs that version), and with `wait`, waits until it is.
pub(crate) async fn switch(
    store: &PostgresStore,
    name: &str,
    spec: &str,
    wait: Option<u64>,
    json: bool,
) -> Result<(), CliError> {
    let target = operator::parse_build(name, spec)?;
    let mut done = operator::switch(store, &target).await?;
    if let (false, Some(seconds)) = (done, wait) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while !done && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            done = store.builds(name).await?.iter().any(|b| b.id == target && b.state == BuildState::Live);
        }
        if !done {
            return Err(CliError::Sql(format!(
                "{name}: the switch to build {spec} was requested but not carried out within {seconds} s: \
                 is an instance of the service running the projection? (see `factum status`)"
            )));
        }
    }
    if json {
        return output::json_line(&json!({ "projection": name, "build": spec, "live": done }));
    }
    output::print(&if done {
        format!("{name}: build {spec} is live\n")
    } else {
        format!("{name}: switch to build {spec} requested; the instance running the projection brings it up to date and switches (--wait to wait for it)\n")
    })
}

/// Retires a build that is not live and that no instance follows: its read model is
/// dropped.
pub(crate) async fn retire(
    store: &PostgresStore,
    name: &str,
    spec: &str,
    json: bool,
) -> Result<(), CliError> {
    operator::retire(store, &operator::parse_build(name, spec)?).await?;
    if json {
        output::json_line(&json!({ "projection": name, "build": spec, "retired": true }))
    } else {
        output::print(&format!("{name}: build {spec} retired, its read model dropped\n"))
    }
}
