//! Loading an aggregate: its latest snapshot if it still decodes, then the events after
//! it, folded as they arrive; and catching a live actor's state up with its stream.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use futures_util::TryStreamExt;

use super::{Aggregate, CommandError, DomainEvent, Shared};
use crate::store::{PayloadStream, StreamId, Version};

pub(crate) fn panic_message(panic: Box<dyn Any + Send>) -> String {
    crate::task::panic_message(panic.as_ref())
}

/// Folds stored events after `version` into `state`.
pub(crate) async fn catch_up<A: Aggregate>(
    shared: &Shared,
    stream: &StreamId,
    state: &mut A,
    version: &mut Version,
) -> Result<(), CommandError<A::Error>> {
    fold(shared.store.read_payloads(stream, *version), state, version).await
}

/// Folds `events` into `state`: each event is decoded and folded as it arrives, while
/// the rest are still read.
async fn fold<A: Aggregate>(
    mut events: PayloadStream<'_>,
    state: &mut A,
    version: &mut Version,
) -> Result<(), CommandError<A::Error>> {
    while let Some(stored) = events.try_next().await? {
        let event = A::Event::from_json(&stored.event_type, stored.schema_version, &stored.payload)?;
        catch_unwind(AssertUnwindSafe(|| state.apply(&event)))
            .map_err(|p| CommandError::Panicked { committed: true, message: panic_message(p) })?;
        *version = stored.version;
    }
    Ok(())
}

/// An aggregate as loaded: its state and version, and the version of the snapshot it was
/// loaded from (0: none).
pub(crate) struct Restored<A> {
    pub(crate) state: A,
    pub(crate) version: Version,
    pub(crate) snapshot_version: Version,
}

/// Loads an aggregate: its latest snapshot if it still decodes, then the events after it;
/// in one read where the store can (a snapshot and the first events after it in one
/// round trip), else the snapshot first.
pub(crate) async fn load<A: Aggregate>(
    shared: &Shared,
    stream: &StreamId,
) -> Result<Restored<A>, CommandError<A::Error>> {
    let started = Instant::now();
    let (snapshot, mut events) = match shared.store.load_aggregate(stream, A::SNAPSHOT_VERSION) {
        Some(load) => {
            let loaded = load.await?;
            (loaded.snapshot, Some(loaded.events))
        }
        None => (shared.store.load_snapshot(stream).await?, None),
    };
    let mut state = A::default();
    let mut version = Version::INITIAL;
    let mut snapshot_version = Version::INITIAL;
    match snapshot {
        Some(snapshot) if snapshot.schema_version == A::SNAPSHOT_VERSION => {
            match serde_json::from_value::<A>(snapshot.state) {
                Ok(s) => {
                    state = s;
                    version = snapshot.version;
                    snapshot_version = snapshot.version;
                    shared.metrics.snapshot_load(A::TYPE, "hit");
                }
                Err(e) => {
                    tracing::warn!(aggregate_type = A::TYPE, aggregate_id = stream.aggregate_id(), error = %e,
                        "snapshot no longer decodes; replaying the full stream");
                    shared.metrics.snapshot_load(A::TYPE, "fallback");
                    // What was read came after the snapshot: read from the start.
                    events = None;
                }
            }
        }
        Some(snapshot) => {
            tracing::warn!(
                aggregate_type = A::TYPE,
                aggregate_id = stream.aggregate_id(),
                stored = snapshot.schema_version,
                current = A::SNAPSHOT_VERSION,
                "snapshot has another schema version; replaying the full stream"
            );
            shared.metrics.snapshot_load(A::TYPE, "fallback");
        }
        None => shared.metrics.snapshot_load(A::TYPE, "miss"),
    }
    match events {
        Some(events) => fold(events, &mut state, &mut version).await?,
        None => catch_up::<A>(shared, stream, &mut state, &mut version).await?,
    }
    shared.metrics.load_time(A::TYPE, started.elapsed());
    Ok(Restored { state, version, snapshot_version })
}
