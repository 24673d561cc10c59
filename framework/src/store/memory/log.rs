//! The in-memory store's log: its operations and its streams and wake-ups.

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use tokio::sync::watch;

use super::{collect, relock, InMemoryStore};
use crate::store::backend::{
    deduplicated_result, load_in_two_reads, payloads_from_read_stream, read_log_in_memory, LogBackend,
};
use crate::store::op::{
    Append, AppendMany, CheckpointOf, Count, CountStreams, Durable, Execute, LatestPosition, Query, ReadAll,
    ReadCategory, ReadLog, ReadStream, StreamEvents, StreamVersion, Unread,
};
use crate::store::{
    AggregateLoadFuture, AppendResult, Checkpoint, EventStream, GlobalPosition, Limits, LogPage,
    PayloadStream, RecordedEvent, StoreError, StreamAppend, StreamId, Version, WakeSignal,
    DEFAULT_QUERY_LIMIT,
};

impl InMemoryStore {
    /// Stores valid appends to distinct streams atomically.
    fn store_appends(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
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
}

#[async_trait]
impl Execute<Append> for InMemoryStore {
    async fn execute(&self, op: Append) -> Result<AppendResult, StoreError> {
        let (stream, expected, events) = op.into_parts();
        self.store_appends(vec![StreamAppend::new(stream, expected, events)]).map(|mut r| r.remove(0))
    }
}

#[async_trait]
impl Execute<AppendMany> for InMemoryStore {
    async fn execute(&self, op: AppendMany) -> Result<Vec<AppendResult>, StoreError> {
        self.store_appends(op.into_appends())
    }
}

#[async_trait]
impl Execute<StreamVersion> for InMemoryStore {
    async fn execute(&self, op: StreamVersion) -> Result<Version, StoreError> {
        Ok(self.lock().streams.get(op.stream()).map_or(Version::INITIAL, |s| s.version))
    }
}

#[async_trait]
impl Execute<ReadStream> for InMemoryStore {
    async fn execute(&self, op: ReadStream) -> Result<Vec<RecordedEvent>, StoreError> {
        let (stream, range) = (op.stream(), op.range());
        let state = self.lock();
        let Some(s) = state.streams.get(stream) else { return Ok(Vec::new()) };
        let to = range.to.map_or(u64::MAX, |v| v.0);
        if range.from.0 > to {
            return Ok(Vec::new());
        }
        Ok(collect(s.events.range(range.from.0..=to).map(|(_, e)| e)))
    }
}

#[async_trait]
impl Execute<ReadAll> for InMemoryStore {
    async fn execute(&self, op: ReadAll) -> Result<Vec<RecordedEvent>, StoreError> {
        let (after, limit) = (op.after(), op.limit());
        let state = self.lock();
        // Transactions and positions grow together here, so log order is position order.
        let from = after.position.0.saturating_add(1);
        Ok(collect(state.log.range(from..).map(|(_, e)| e).filter(|e| e.checkpoint() > after).take(limit)))
    }
}

#[async_trait]
impl Execute<ReadCategory> for InMemoryStore {
    async fn execute(&self, op: ReadCategory) -> Result<Vec<RecordedEvent>, StoreError> {
        let (category, after, limit) = (op.category(), op.after(), op.limit());
        let state = self.lock();
        Ok(collect(
            state
                .log
                .values()
                .filter(|e| e.stream.aggregate_type() == category && e.checkpoint() > after)
                .take(limit),
        ))
    }
}

#[async_trait]
impl Execute<ReadLog> for InMemoryStore {
    async fn execute(&self, op: ReadLog) -> Result<Option<LogPage>, StoreError> {
        read_log_in_memory(self, op).await
    }
}

#[async_trait]
impl Execute<Durable> for InMemoryStore {
    /// Every stored event is as durable as the store: at once, if they are stored.
    async fn execute(&self, op: Durable) -> Result<(), StoreError> {
        let state = self.lock();
        match op.event_ids().iter().find(|id| !state.ids.contains_key(id)) {
            None => Ok(()),
            Some(id) => {
                Err(StoreError::Unavailable { reason: format!("event {id} is not in the log any more") })
            }
        }
    }
}

#[async_trait]
impl Execute<LatestPosition> for InMemoryStore {
    async fn execute(&self, _: LatestPosition) -> Result<Option<GlobalPosition>, StoreError> {
        Ok(self.lock().log.keys().next_back().map(|p| GlobalPosition(*p)))
    }
}

#[async_trait]
impl Execute<Query> for InMemoryStore {
    async fn execute(&self, op: Query) -> Result<Vec<RecordedEvent>, StoreError> {
        let valid = op.filter();
        let valid = &valid;
        let filter = valid.filter;
        let state = self.lock();
        let matches = state.sorted_matches(valid);
        let limit = filter.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
        Ok(collect(matches.into_iter().skip(filter.offset).take(limit)))
    }
}

#[async_trait]
impl Execute<Count> for InMemoryStore {
    async fn execute(&self, op: Count) -> Result<u64, StoreError> {
        let valid = op.filter();
        let valid = &valid;
        Ok(self.lock().sorted_matches(valid).len() as u64)
    }
}

#[async_trait]
impl Execute<CountStreams> for InMemoryStore {
    async fn execute(&self, op: CountStreams) -> Result<u64, StoreError> {
        let state = self.lock();
        let streams = state.streams.keys().filter(|s| op.category().is_none_or(|c| c == s.aggregate_type()));
        Ok(streams.count() as u64)
    }
}

#[async_trait]
impl Execute<Unread> for InMemoryStore {
    async fn execute(&self, op: Unread) -> Result<bool, StoreError> {
        let state = self.lock();
        let reached = state.log.range(op.up_to().0..).next().is_some();
        let mut events = state.log.range(..=op.up_to().0).map(|(_, e)| e);
        Ok(!reached
            || events.any(|e| {
                e.checkpoint() > op.after() && op.category().is_none_or(|c| c == e.stream.aggregate_type())
            }))
    }
}

#[async_trait]
impl Execute<CheckpointOf> for InMemoryStore {
    async fn execute(&self, op: CheckpointOf) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.lock().log.get(&op.position().0).map(|e| e.checkpoint()))
    }
}

impl LogBackend for InMemoryStore {
    fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    fn read_payloads<'a>(&'a self, stream: &'a StreamId, after: Version) -> PayloadStream<'a> {
        payloads_from_read_stream(self, stream, after)
    }

    fn load_aggregate<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot_schema: u32,
    ) -> Option<AggregateLoadFuture<'a>> {
        Some(load_in_two_reads(self, stream, snapshot_schema))
    }

    fn stream_events(&self, filter: StreamEvents) -> EventStream {
        let events = {
            let valid = filter.filter();
            let f = valid.filter;
            let state = self.lock();
            let m = state.sorted_matches(&valid);
            collect(m.into_iter().skip(f.offset).take(f.limit.unwrap_or(usize::MAX)))
        };
        Box::pin(futures_util::stream::iter(events.into_iter().map(Ok)))
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
