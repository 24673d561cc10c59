//! An event store in memory, for unit tests and for application teams' aggregate tests.
//! Same semantics as the PostgreSQL store, checked by the same conformance suite. The state
//! is here; the log's operations are in `log`, snapshots, consumers and retention in
//! `roles`, and the projection builds' registry in `builds`.

mod builds;
mod log;
mod members;
mod roles;
mod timers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::consumer::{PendingRequest, ProjectionFailure};
use super::filter::{OrderBy, ValidFilter};
use super::new_event::NewEvent;
use super::types::{AppendResult, Checkpoint, GlobalPosition, RecordedEvent, Snapshot, StreamId, Version};
use super::validate::Limits;

/// An event store held in memory. Cloning it gives another handle to the same store.
///
/// ```
/// # use factum::prelude::*;
/// # use factum::{ExpectedVersion, InMemoryStore, NewEvent, StreamId};
/// # use factum::store::VersionRange;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = InMemoryStore::new();
/// let order = StreamId::new("Order", "o-1")?;
/// let placed = NewEvent::new("Placed", serde_json::json!({"customer": "c-1"}));
/// let result = store.append(&order, ExpectedVersion::NoStream, vec![placed]).await?;
/// assert_eq!(result.to_version.0, 1);
/// let err = store
///     .append(&order, ExpectedVersion::NoStream, vec![NewEvent::new("Placed", serde_json::json!({}))])
///     .await
///     .unwrap_err();
/// assert!(err.is_conflict());
/// assert_eq!(store.read_stream(&order, VersionRange::ALL).await?.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct InMemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: watch::Sender<u64>,
    /// Wake-ups per category, created when someone asks for one.
    category_wakes: Mutex<HashMap<String, watch::Sender<u64>>>,
    leases: Mutex<HashSet<String>>,
    limits: Limits,
}

#[derive(Default)]
struct State {
    log: BTreeMap<u64, Arc<RecordedEvent>>,
    streams: HashMap<StreamId, StreamState>,
    ids: HashMap<Uuid, (StreamId, Version)>,
    last_position: u64,
    last_transaction: u64,
    snapshots: HashMap<StreamId, Snapshot>,
    checkpoints: HashMap<String, Checkpoint>,
    failures: HashMap<(String, Uuid), ProjectionFailure>,
    /// Projections stopped by their failure policy, until their checkpoint next moves.
    stops: HashMap<String, ProjectionFailure>,
    requests: HashMap<String, PendingRequest>,
    /// The projection builds, by projection, oldest first.
    builds: HashMap<String, Vec<super::builds::ProjectionBuild>>,
    /// The instances running each build's slices, by build consumer name.
    members: HashMap<String, HashMap<Uuid, (super::Member, std::time::Instant)>>,
    /// Durable timers, by stream and name.
    timers: BTreeMap<(StreamId, String), super::Timer>,
}

#[derive(Default)]
struct StreamState {
    version: Version,
    events: BTreeMap<u64, Arc<RecordedEvent>>,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore").field("events", &self.lock().log.len()).finish()
    }
}

impl InMemoryStore {
    /// An empty store with default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// An empty store with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        InMemoryStore {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: watch::channel(0).0,
                category_wakes: Mutex::new(HashMap::new()),
                leases: Mutex::new(HashSet::new()),
                limits,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written: every
        // mutation checks first and writes after, so a poisoned lock is still consistent.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn collect<'a>(events: impl Iterator<Item = &'a Arc<RecordedEvent>>) -> Vec<RecordedEvent> {
    events.map(|e| RecordedEvent::clone(e)).collect()
}

impl State {
    /// Whether `e` is its stream's newest event, which retention keeps.
    fn is_newest(&self, e: &RecordedEvent) -> bool {
        self.streams.get(&e.stream).is_some_and(|s| s.version == e.version)
    }

    fn remove(&mut self, doomed: &[Arc<RecordedEvent>]) {
        for e in doomed {
            self.log.remove(&e.position.0);
            self.ids.remove(&e.event_id);
            if let Some(s) = self.streams.get_mut(&e.stream) {
                s.events.remove(&e.version.0);
            }
        }
    }

    /// The events stored under the batch's ids, plus every other event of `stream` that
    /// the same appends wrote, so that a retry of part of a batch is not taken for the whole.
    fn stored_batch(&self, stream: &StreamId, batch: &[NewEvent]) -> Vec<RecordedEvent> {
        let found: Vec<&Arc<RecordedEvent>> = batch
            .iter()
            .filter_map(|e| self.ids.get(&e.event_id))
            .filter_map(|(s, v)| self.streams.get(s)?.events.get(&v.0))
            .collect();
        let transactions: HashSet<u64> = found.iter().map(|e| e.transaction).collect();
        let mut stored: BTreeMap<u64, RecordedEvent> =
            found.into_iter().map(|e| (e.position.0, RecordedEvent::clone(e))).collect();
        if let Some(s) = self.streams.get(stream) {
            for e in s.events.values().filter(|e| transactions.contains(&e.transaction)) {
                stored.entry(e.position.0).or_insert_with(|| RecordedEvent::clone(e));
            }
        }
        stored.into_values().collect()
    }

    /// Stores a checked batch after the stream's version `actual`, in `transaction`.
    fn store(
        &mut self,
        stream: StreamId,
        actual: Version,
        events: Vec<NewEvent>,
        transaction: u64,
        recorded_at: DateTime<Utc>,
    ) -> AppendResult {
        let mut positions = Vec::with_capacity(events.len());
        let mut version = actual;
        for mut e in events {
            self.last_position += 1;
            version = version.next();
            let position = GlobalPosition(self.last_position);
            positions.push(position);
            let recorded = Arc::new(RecordedEvent {
                event_id: e.event_id,
                stream: stream.clone(),
                version,
                position,
                transaction,
                payload: e.take_payload(),
                event_type: e.event_type,
                schema_version: e.schema_version,
                topic: e.topic,
                metadata: e.metadata,
                occurred_at: e.occurred_at.trunc_subsecs(6),
                recorded_at,
            });
            self.ids.insert(e.event_id, (stream.clone(), version));
            self.log.insert(position.0, recorded.clone());
            let s = self.streams.entry(stream.clone()).or_default();
            s.events.insert(version.0, recorded);
            s.version = version;
        }
        AppendResult {
            stream,
            from_version: actual.next(),
            to_version: version,
            positions,
            transaction,
            deduplicated: false,
        }
    }

    fn sorted_matches(&self, valid: &ValidFilter<'_>) -> Vec<&Arc<RecordedEvent>> {
        let filter = valid.filter;
        let mut matches: Vec<&Arc<RecordedEvent>> = self.log.values().filter(|e| valid.matches(e)).collect();
        match filter.order_by {
            OrderBy::GlobalPosition => {}
            OrderBy::OccurredAt => matches.sort_by_key(|e| (e.occurred_at, e.position)),
        }
        if !filter.ascending {
            matches.reverse();
        }
        matches
    }
}
