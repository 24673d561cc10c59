//! `factum projections builds | switch | retire`: a projection's builds (its versions and
//! the copies rebuilds made), switching readers between them, and retiring one.

use std::time::{Duration, Instant};

use factum::prelude::*;
use factum::store::{BuildId, BuildState, ConsumerRequest, ProjectionBuild, Retired};
use factum_postgres::PostgresStore;
use serde_json::json;

use crate::error::CliError;
use crate::output::{self, Table};

/// A build as the command line names it: `VERSION` (its first build) or `VERSION.BUILD`.
pub(crate) fn parse_build(projection: &str, spec: &str) -> Result<BuildId, CliError> {
    let bad = || {
        CliError::Usage(format!("{spec:?} is not a build: give VERSION or VERSION.BUILD, such as 2 or 1.3"))
    };
    let (version, build) = match spec.split_once('.') {
        Some((v, b)) => (v.parse::<u32>().map_err(|_| bad())?, b.parse::<u32>().map_err(|_| bad())?),
        None => (spec.parse::<u32>().map_err(|_| bad())?, 1),
    };
    if version == 0 || build == 0 {
        return Err(bad());
    }
    Ok(BuildId::new(projection, version, build))
}

async fn builds_of(store: &PostgresStore, name: &str) -> Result<Vec<ProjectionBuild>, CliError> {
    let builds = store.builds(name).await?;
    if builds.is_empty() {
        return Err(CliError::NotFound(format!(
            "projection {name:?} has no builds in this store (see `factum status`)"
        )));
    }
    Ok(builds)
}

/// Lists a projection's builds: state, checkpoint and what is left to build.
pub(crate) async fn list(store: &PostgresStore, name: &str, json: bool) -> Result<(), CliError> {
    let builds = builds_of(store, name).await?;
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
    let target = parse_build(name, spec)?;
    let builds = builds_of(store, name).await?;
    let Some(found) = builds.iter().find(|b| b.id == target && b.state != BuildState::Retired) else {
        return Err(CliError::NotFound(format!(
            "{name} has no build {spec} to switch to (see `factum projections builds {name}`)"
        )));
    };
    let live = builds.iter().find(|b| b.state == BuildState::Live);
    let mut done = found.state == BuildState::Live;
    if !done {
        let Some(live) = live else {
            return Err(CliError::NotFound(format!("{name} has no live build to ask")));
        };
        // To the live build's holder: each of its slices' holders for a build in slices.
        let request = ConsumerRequest::Switch { version: target.version, build: target.build };
        for consumer in live.consumers() {
            store.request(&consumer, request).await?;
        }
    }
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
    let target = parse_build(name, spec)?;
    let Some(build) = store.builds(name).await?.into_iter().find(|b| b.id == target) else {
        return Err(CliError::NotFound(format!("{name} has no build {spec}")));
    };
    // Holding its leases (each slice's): no instance follows it while it goes.
    let Some(_leases) = factum::store::lease_build(store, &build).await? else {
        return Err(CliError::Usage(format!(
            "{name}: build {spec} is followed by a running instance; stop it, or switch away first"
        )));
    };
    match store.retire_build(&target).await? {
        Retired::Retired => {}
        Retired::Live => {
            return Err(CliError::Usage(format!(
                "{name}: build {spec} is live; switch to another build first"
            )));
        }
        _ => return Err(CliError::NotFound(format!("{name} has no build {spec}"))),
    }
    if json {
        output::json_line(&json!({ "projection": name, "build": spec, "retired": true }))
    } else {
        output::print(&format!("{name}: build {spec} retired, its read model dropped\n"))
    }
}

/// The consumer names of `projection`'s live build, which operators' requests, failures
/// and stops are kept under: one per slice for a projection in slices; the projection's
/// own name when it has no builds (a store from before builds, a consumer that is not a
/// projection, or a slice's own consumer name).
pub(crate) async fn live_consumers(store: &PostgresStore, projection: &str) -> Result<Vec<String>, CliError> {
    factum::store::validate::consumer_name(projection)?;
    let builds = store.builds(projection).await?;
    Ok(builds
        .iter()
        .find(|b| b.state == BuildState::Live)
        .map_or_else(|| vec![projection.to_owned()], |b| b.consumers()))
}
