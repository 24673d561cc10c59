//! An event store in memory, for unit tests and for application teams' aggregate tests.
//! Same semantics as the PostgreSQL store, checked by the same conformance suite. The log
//! is here; snapshots, consumers and retention are in `roles`.

mod roles;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::backend::deduplicated_result;
use super::backend::LogBackend;
use super::consumer::{PendingRequest, ProjectionFailure};
use super::error::StoreError;
use super::filter::ValidFilter;
use super::filter::{EventFilter, OrderBy, DEFAULT_QUERY_LIMIT};
use super::new_event::{NewEvent, StreamAppend};
use super::types::{
    AppendResult, Checkpoint, ExpectedVersion, GlobalPosition, RecordedEvent, Snapshot, StreamId, Version,
    VersionRange,
};
use super::validate::Limits;
use super::{EventStream, WakeSignal};

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

#[async_trait]
impl LogBackend for InMemoryStore {
    fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.append_many(vec![StreamAppend::new(stream.clone(), expected, events)])
            .await
            .map(|mut r| r.remove(0))
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let mut state = self.lock();
        // An exact retry of the whole is answered with its results; any other stored id
        // is a duplicate.
        if appends.iter().flat_map(|a| &a.events).any(|e| state.ids.contains_key(&e.event_id)) {
            return appends
                .iter()
                .map(|a| {
                    let stored = state.stored_batch(&a.stream, &a.events);
                    deduplicated_result(&a.stream, &a.events, &stored).ok_or_else(|| {
                        let dup = a.events.iter().find(|e| state.ids.contains_key(&e.event_id));
                        StoreError::DuplicateEvent { event_id: dup.unwrap_or(&a.events[0]).event_id }
                    })
                })
                .collect();
        }
        let mut actuals = Vec::with_capacity(appends.len());
        for a in &appends {
            let actual = state.streams.get(&a.stream).map_or(Version::INITIAL, |s| s.version);
            if !a.expected.is_satisfied_by(actual) {
                return Err(StoreError::Conflict { stream: a.stream.clone(), expected: a.expected, actual });
            }
            actuals.push(actual);
        }
        state.last_transaction += 1;
        let transaction = state.last_transaction;
        let recorded_at = Utc::now().trunc_subsecs(6);
        let results: Vec<AppendResult> = appends
            .into_iter()
            .zip(actuals)
            .map(|(a, actual)| state.store(a.stream, actual, a.events, transaction, recorded_at))
            .collect();
        drop(state);
        self.shared.wake.send_modify(|n| *n = n.wrapping_add(1));
        let wakes = relock(&self.shared.category_wakes);
        for r in &results {
            if let Some(wake) = wakes.get(r.stream.aggregate_type()) {
                wake.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        Ok(results)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        Ok(self.lock().streams.get(stream).map_or(Version::INITIAL, |s| s.version))
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.lock();
        let Some(s) = state.streams.get(stream) else { return Ok(Vec::new()) };
        let to = range.to.map_or(u64::MAX, |v| v.0);
        if range.from.0 > to {
            return Ok(Vec::new());
        }
        Ok(collect(s.events.range(range.from.0..=to).map(|(_, e)| e)))
    }

    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.lock();
        // Transactions and positions grow together here, so log order is position order.
        let from = after.position.0.saturating_add(1);
        Ok(collect(state.log.range(from..).map(|(_, e)| e).filter(|e| e.checkpoint() > after).take(limit)))
    }

    async fn read_category(
        &self,
        category: &str,
        after: Checkpoint,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.lock();
        Ok(collect(
            state
                .log
                .values()
                .filter(|e| e.stream.aggregate_type() == category && e.checkpoint() > after)
                .take(limit),
        ))
    }

    async fn latest_position(&self) -> Result<Option<GlobalPosition>, StoreError> {
        Ok(self.lock().log.keys().next_back().map(|p| GlobalPosition(*p)))
    }

    async fn query(&self, valid: &ValidFilter<'_>) -> Result<Vec<RecordedEvent>, StoreError> {
        let filter = valid.filter;
        let state = self.lock();
        let matches = state.sorted_matches(valid);
        let limit = filter.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
        Ok(collect(matches.into_iter().skip(filter.offset).take(limit)))
    }

    async fn count(&self, valid: &ValidFilter<'_>) -> Result<u64, StoreError> {
        Ok(self.lock().sorted_matches(valid).len() as u64)
    }

    fn stream(&self, filter: EventFilter) -> EventStream {
        let result = {
            let state = self.lock();
            filter.validate(&self.shared.limits).map(|valid| {
                let m = state.sorted_matches(&valid);
                collect(m.into_iter().skip(filter.offset).take(filter.limit.unwrap_or(usize::MAX)))
            })
        };
        match result {
            Ok(events) => Box::pin(futures_util::stream::iter(events.into_iter().map(Ok))),
            Err(e) => Box::pin(futures_util::stream::iter([Err(e.into())])),
        }
    }

    fn wake_signal(&self) -> WakeSignal {
        self.shared.wake.subscribe()
    }

    fn category_wake_signal(&self, category: &str) -> WakeSignal {
        relock(&self.shared.category_wakes)
            .entry(category.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}
