//! Operators' requests to the projections of running services, as the `factum` command
//! line and the browser console make them: one definition, so both do the same thing.
//!
//! A request is written to the store beside the projection's checkpoint (see
//! [`ConsumerStore::request`](super::ConsumerStore::request)); the instance of the service that runs the projection
//! carries it out within about a second, whichever instance that is. Requests, failures
//! and stops are kept under the consumer names of the projection's live build: one per
//! slice for a projection in slices, and each request goes to every slice.
//!
//! ```
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use factum::store::operator::{self, OperatorError};
//! use factum::InMemoryStore;
//!
//! let store = InMemoryStore::new();
//! // No projection has ever run in this store: nothing to rebuild.
//! let refused = operator::rebuild(&store, "order_summary").await;
//! assert!(matches!(refused, Err(OperatorError::NotFound(_))));
//! # Ok(()) }
//! ```

use uuid::Uuid;

use super::{
    BuildId, BuildState, Checkpoint, ConsumerRequest, EventStore, GlobalPosition, InvalidInput,
    PendingRequest, ProjectionBuild, ProjectionFailure, Retired, StoreError,
};

/// Why an operator's request was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// No such projection, build, event or failure in this store.
    #[error("{0}")]
    NotFound(String),
    /// The request means nothing in the projection's present state (a rebuild in place
    /// of a projection in slices, a retire of the live build, ...).
    #[error("{0}")]
    Refused(String),
    /// A name or value the store's validation refused.
    #[error("{0}")]
    Invalid(#[from] InvalidInput),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A request written for one consumer (a projection, or one slice of it).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Requested {
    /// The consumer it was written for.
    pub consumer: String,
    /// The request as stored.
    pub pending: PendingRequest,
}

/// The consumer names of `projection`'s live build: one per slice for a projection in
/// slices; the projection's own name when it has no builds (a store from before builds,
/// a consumer that is not a projection, or a slice's own consumer name).
pub async fn live_consumers(
    store: &(impl EventStore + ?Sized),
    projection: &str,
) -> Result<Vec<String>, OperatorError> {
    super::validate::consumer_name(projection)?;
    let builds = store.builds(projection).await?;
    Ok(builds
        .iter()
        .find(|b| b.state == BuildState::Live)
        .map_or_else(|| vec![projection.to_owned()], |b| b.consumers()))
}

/// Refuses a consumer that has no checkpoint in this store (a typo would otherwise wait
/// for a projection that never comes).
async fn known(store: &(impl EventStore + ?Sized), consumer: &str) -> Result<(), OperatorError> {
    super::validate::consumer_name(consumer)?;
    if store.load_checkpoint(consumer).await?.is_none() {
        return Err(OperatorError::NotFound(format!(
            "no projection named {consumer:?} has a checkpoint in this store"
        )));
    }
    Ok(())
}

async fn request_all(
    store: &(impl EventStore + ?Sized),
    consumers: Vec<String>,
    request: ConsumerRequest,
) -> Result<Vec<Requested>, OperatorError> {
    let mut made = Vec::with_capacity(consumers.len());
    for consumer in &consumers {
        known(store, consumer).await?;
    }
    for consumer in consumers {
        let pending = store.request(&consumer, request).await?;
        made.push(Requested { consumer, pending });
    }
    Ok(made)
}

/// Rebuilds `projection` from the start: into a fresh copy while the live one serves when
/// its builds are kept apart (readers switch once it has caught up), otherwise with its
/// read model cleared first. Refused for a projection in slices, which is rebuilt by
/// declaring a new version of it.
pub async fn rebuild(
    store: &(impl EventStore + ?Sized),
    projection: &str,
) -> Result<Vec<Requested>, OperatorError> {
    let consumers = live_consumers(store, projection).await?;
    if consumers.len() > 1 {
        return Err(OperatorError::Refused(format!(
            "{projection} runs in {} slices: it is not rebuilt in place; declare a new version of it to rebuild it",
            consumers.len()
        )));
    }
    request_all(store, consumers, ConsumerRequest::Reset { to: Checkpoint::START, clear: true }).await
}

/// Moves `projection`'s checkpoint to just after the event at `position` (0: the start)
/// without clearing its read model; it goes on from there.
pub async fn reset_to(
    store: &(impl EventStore + ?Sized),
    projection: &str,
    position: u64,
) -> Result<Vec<Requested>, OperatorError> {
    let to = match position {
        0 => Checkpoint::START,
        p => store
            .checkpoint_of(GlobalPosition(p))
            .await?
            .ok_or_else(|| OperatorError::NotFound(format!("no event at position {p}")))?,
    };
    let consumers = live_consumers(store, projection).await?;
    request_all(store, consumers, ConsumerRequest::Reset { to, clear: false }).await
}

/// Lets a projection its failure policy stopped try the event it stopped at again: a
/// reset to its own checkpoint, for each stopped slice.
pub async fn resume(
    store: &(impl EventStore + ?Sized),
    projection: &str,
) -> Result<Vec<Requested>, OperatorError> {
    let mut made = Vec::new();
    for consumer in live_consumers(store, projection).await? {
        known(store, &consumer).await?;
        if store.stopped(&consumer).await?.is_none() {
            continue;
        }
        // A stopped projection does not move: its checkpoint is where it stopped.
        let at = store.load_checkpoint(&consumer).await?.unwrap_or(Checkpoint::START);
        let pending = store.request(&consumer, ConsumerRequest::Reset { to: at, clear: false }).await?;
        made.push(Requested { consumer, pending });
    }
    if made.is_empty() {
        return Err(OperatorError::NotFound(format!(
            "{projection} is not stopped by its failure policy: nothing to resume"
        )));
    }
    Ok(made)
}

/// Asks the instance running `projection` to feed its recorded failures again.
pub async fn retry(
    store: &(impl EventStore + ?Sized),
    projection: &str,
) -> Result<Vec<Requested>, OperatorError> {
    let consumers = live_consumers(store, projection).await?;
    request_all(store, consumers, ConsumerRequest::RetryFailures).await
}

/// The events `projection` gave up on, in log order, over all its slices.
pub async fn failures(
    store: &(impl EventStore + ?Sized),
    projection: &str,
) -> Result<Vec<ProjectionFailure>, OperatorError> {
    let mut all = Vec::new();
    for consumer in live_consumers(store, projection).await? {
        all.extend(store.failures(&consumer).await?);
    }
    all.sort_by_key(|f| f.checkpoint());
    Ok(all)
}

/// Forgets a recorded failure: the event stays skipped.
pub async fn skip(
    store: &(impl EventStore + ?Sized),
    projection: &str,
    event_id: Uuid,
) -> Result<(), OperatorError> {
    let mut resolved = false;
    for consumer in live_consumers(store, projection).await? {
        resolved |= store.resolve_failure(&consumer, event_id).await?;
    }
    match resolved {
        true => Ok(()),
        false => {
            Err(OperatorError::NotFound(format!("{projection} has no recorded failure of event {event_id}")))
        }
    }
}

/// A build as operators name it: `VERSION` (its first build) or `VERSION.BUILD`.
pub fn parse_build(projection: &str, spec: &str) -> Result<BuildId, OperatorError> {
    let bad = || {
        OperatorError::Refused(format!(
            "{spec:?} is not a build: give VERSION or VERSION.BUILD, such as 2 or 1.3"
        ))
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

/// `projection`'s builds, or [`OperatorError::NotFound`] when it has none.
pub async fn builds(
    store: &(impl EventStore + ?Sized),
    projection: &str,
) -> Result<Vec<ProjectionBuild>, OperatorError> {
    super::validate::consumer_name(projection)?;
    let builds = store.builds(projection).await?;
    if builds.is_empty() {
        return Err(OperatorError::NotFound(format!(
            "projection {projection:?} has no builds in this store"
        )));
    }
    Ok(builds)
}

/// Asks the instance running the live build to make `target` live, bringing it up to
/// date first. `Ok(true)`: it is live already and nothing was requested.
pub async fn switch(store: &(impl EventStore + ?Sized), target: &BuildId) -> Result<bool, OperatorError> {
    let name = &target.projection;
    let builds = builds(store, name).await?;
    let Some(found) = builds.iter().find(|b| b.id == *target && b.state != BuildState::Retired) else {
        return Err(OperatorError::NotFound(format!(
            "{name} has no build {}.{} to switch to",
            target.version, target.build
        )));
    };
    if found.state == BuildState::Live {
        return Ok(true);
    }
    let Some(live) = builds.iter().find(|b| b.state == BuildState::Live) else {
        return Err(OperatorError::NotFound(format!("{name} has no live build to ask")));
    };
    // To the live build's holder: each of its slices' holders for a build in slices.
    let request = ConsumerRequest::Switch { version: target.version, build: target.build };
    for consumer in live.consumers() {
        store.request(&consumer, request).await?;
    }
    Ok(false)
}

/// Retires a build that is not live and that no instance follows: its read model is
/// dropped.
pub async fn retire(store: &(impl EventStore + ?Sized), target: &BuildId) -> Result<(), OperatorError> {
    let name = &target.projection;
    let spec = format!("{}.{}", target.version, target.build);
    let Some(build) = store.builds(name).await?.into_iter().find(|b| b.id == *target) else {
        return Err(OperatorError::NotFound(format!("{name} has no build {spec}")));
    };
    // Holding its leases (each slice's): no instance follows it while it goes.
    let Some(_leases) = super::lease_build(store, &build).await? else {
        return Err(OperatorError::Refused(format!(
            "{name}: build {spec} is followed by a running instance; stop it, or switch away first"
        )));
    };
    match store.retire_build(target).await? {
        Retired::Retired => Ok(()),
        Retired::Live => Err(OperatorError::Refused(format!(
            "{name}: build {spec} is live; switch to another build first"
        ))),
        _ => Err(OperatorError::NotFound(format!("{name} has no build {spec}"))),
    }
}

/// Whether the request was carried out (or replaced by a newer one).
pub async fn carried_out(
    store: &(impl EventStore + ?Sized),
    requested: &Requested,
) -> Result<bool, StoreError> {
    Ok(store
        .pending_request(&requested.consumer)
        .await?
        .is_none_or(|p| p.requested_at != requested.pending.requested_at))
}
