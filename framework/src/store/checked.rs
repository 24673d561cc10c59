//! The store traits for every backend: each call's input is checked here, once for all
//! backends, and only valid input reaches the backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::backend::{ConsumerBackend, LogBackend, RetentionBackend, SnapshotBackend};
use super::{
    validate, AppendResult, Checkpoint, ConsumerRequest, ConsumerStore, EventFilter, EventLog, EventStream,
    ExpectedVersion, GlobalPosition, Lease, Limits, LogPage, LogSelector, NewEvent, PayloadStream,
    PendingRequest, ProjectionFailure, RecordedEvent, RetentionGuard, RetentionStore, Snapshot,
    SnapshotStore, StoreError, StreamAppend, StreamId, Version, VersionRange, WakeSignal,
};

/// Checks a page read of the log: its size and where it starts.
fn page(after: Checkpoint, limit: usize, limits: &Limits) -> Result<(), StoreError> {
    validate::page_limit(limit, limits)?;
    validate::checkpoint(after)?;
    Ok(())
}

#[async_trait]
impl<B: LogBackend> EventLog for B {
    fn limits(&self) -> &Limits {
        LogBackend::limits(self)
    }

    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        validate::batch(&events, LogBackend::limits(self))?;
        LogBackend::append(self, stream, expected, events).await
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        validate::appends(&appends, LogBackend::limits(self))?;
        LogBackend::append_many(self, appends).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        LogBackend::stream_version(self, stream).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        LogBackend::read_stream(self, stream, range).await
    }

    fn read_payloads<'a>(&'a self, stream: &'a StreamId, after: Version) -> PayloadStream<'a> {
        LogBackend::read_payloads(self, stream, after)
    }

    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        page(after, limit, LogBackend::limits(self))?;
        LogBackend::read_all(self, after, limit).await
    }

    async fn read_category(
        &self,
        category: &str,
        after: Checkpoint,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        validate::category(category)?;
        page(after, limit, LogBackend::limits(self))?;
        LogBackend::read_category(self, category, after, limit).await
    }

    async fn read_log(
        &self,
        after: Checkpoint,
        selector: &LogSelector,
        limit: usize,
    ) -> Result<Option<LogPage>, StoreError> {
        page(after, limit, LogBackend::limits(self))?;
        // A selector is checked when made, but its fields are public.
        selector.aggregate_types.iter().try_for_each(|t| validate::category(t))?;
        selector.event_types.iter().try_for_each(|t| validate::name("event_type", t))?;
        LogBackend::read_log(self, after, selector, limit).await
    }

    async fn latest_position(&self) -> Result<Option<GlobalPosition>, StoreError> {
        LogBackend::latest_position(self).await
    }

    async fn query(&self, filter: &EventFilter) -> Result<Vec<RecordedEvent>, StoreError> {
        let valid = filter.validate(LogBackend::limits(self))?;
        LogBackend::query(self, &valid).await
    }

    async fn count(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let valid = filter.validate(LogBackend::limits(self))?;
        LogBackend::count(self, &valid).await
    }

    fn stream(&self, filter: EventFilter) -> EventStream {
        if let Err(e) = filter.validate(LogBackend::limits(self)) {
            return Box::pin(futures_util::stream::iter([Err(e.into())]));
        }
        LogBackend::stream(self, filter)
    }

    fn wake_signal(&self) -> WakeSignal {
        LogBackend::wake_signal(self)
    }

    fn category_wake_signal(&self, category: &str) -> WakeSignal {
        LogBackend::category_wake_signal(self, category)
    }
}

#[async_trait]
impl<B: SnapshotBackend> SnapshotStore for B {
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        validate::snapshot(snapshot)?;
        SnapshotBackend::save_snapshot(self, snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        SnapshotBackend::load_snapshot(self, stream).await
    }

    async fn delete_snapshot(&self, stream: &StreamId) -> Result<bool, StoreError> {
        SnapshotBackend::delete_snapshot(self, stream).await
    }
}

#[async_trait]
impl<B: ConsumerBackend> ConsumerStore for B {
    async fn load_checkpoint(&self, consumer: &str) -> Result<Option<Checkpoint>, StoreError> {
        validate::consumer_name(consumer)?;
        ConsumerBackend::load_checkpoint(self, consumer).await
    }

    async fn save_checkpoint(&self, consumer: &str, checkpoint: Checkpoint) -> Result<(), StoreError> {
        validate::consumer_name(consumer)?;
        validate::checkpoint(checkpoint)?;
        ConsumerBackend::save_checkpoint(self, consumer, checkpoint).await
    }

    async fn advance_checkpoint(
        &self,
        consumer: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        validate::consumer_name(consumer)?;
        validate::checkpoint(from)?;
        validate::checkpoint(to)?;
        ConsumerBackend::advance_checkpoint(self, consumer, from, to).await
    }

    async fn count_after(&self, after: Checkpoint, aggregate_types: &[String]) -> Result<u64, StoreError> {
        validate::checkpoint(after)?;
        aggregate_types.iter().try_for_each(|t| validate::category(t))?;
        ConsumerBackend::count_after(self, after, aggregate_types).await
    }

    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        validate::consumer_name(name)?;
        ConsumerBackend::try_lease(self, name).await
    }

    async fn record_failure(&self, failure: &ProjectionFailure) -> Result<(), StoreError> {
        validate::consumer_name(&failure.projection)?;
        ConsumerBackend::record_failure(self, failure).await
    }

    async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, StoreError> {
        validate::consumer_name(projection)?;
        ConsumerBackend::failures(self, projection).await
    }

    async fn resolve_failure(&self, projection: &str, event_id: Uuid) -> Result<bool, StoreError> {
        validate::consumer_name(projection)?;
        ConsumerBackend::resolve_failure(self, projection, event_id).await
    }

    async fn record_stop(&self, failure: &ProjectionFailure) -> Result<(), StoreError> {
        validate::consumer_name(&failure.projection)?;
        ConsumerBackend::record_stop(self, failure).await
    }

    async fn stopped(&self, projection: &str) -> Result<Option<ProjectionFailure>, StoreError> {
        validate::consumer_name(projection)?;
        ConsumerBackend::stopped(self, projection).await
    }

    async fn request(&self, consumer: &str, request: ConsumerRequest) -> Result<PendingRequest, StoreError> {
        validate::consumer_name(consumer)?;
        if let ConsumerRequest::Reset { to, .. } = &request {
            validate::checkpoint(*to)?;
        }
        ConsumerBackend::request(self, consumer, request).await
    }

    async fn pending_request(&self, consumer: &str) -> Result<Option<PendingRequest>, StoreError> {
        validate::consumer_name(consumer)?;
        ConsumerBackend::pending_request(self, consumer).await
    }

    async fn complete_request(
        &self,
        consumer: &str,
        requested_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        validate::consumer_name(consumer)?;
        ConsumerBackend::complete_request(self, consumer, requested_at).await
    }
}

#[async_trait]
impl<B: RetentionBackend> RetentionStore for B {
    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        RetentionBackend::delete_before(self, cutoff).await
    }

    async fn delete_before_guarded(
        &self,
        cutoff: DateTime<Utc>,
        guard: &RetentionGuard,
    ) -> Result<u64, StoreError> {
        validate::retention_guard(guard)?;
        RetentionBackend::delete_before_guarded(self, cutoff, guard).await
    }

    async fn storage_bytes(&self) -> Result<Option<u64>, StoreError> {
        RetentionBackend::storage_bytes(self).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use serde_json::json;

    use crate::prelude::*;
    use crate::store::{
        AppendResult, Checkpoint, EventFilter, ExpectedVersion, NewEvent, StoreError, StreamId,
    };
    use counting::Counting;

    mod counting {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use super::super::*;
        use crate::store::InMemoryStore;

        /// A third-party backend of the log that stores nothing itself and counts the calls
        /// that reach it.
        #[derive(Default)]
        pub(super) struct Counting {
            inner: InMemoryStore,
            pub(super) calls: AtomicUsize,
        }

        impl Counting {
            fn call(&self) -> &InMemoryStore {
                self.calls.fetch_add(1, Ordering::SeqCst);
                &self.inner
            }
        }

        #[async_trait]
        impl LogBackend for Counting {
            fn limits(&self) -> &Limits {
                LogBackend::limits(&self.inner)
            }
            async fn append(
                &self,
                stream: &StreamId,
                expected: ExpectedVersion,
                events: Vec<NewEvent>,
            ) -> Result<AppendResult, StoreError> {
                LogBackend::append(self.call(), stream, expected, events).await
            }
            async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
                LogBackend::stream_version(self.call(), stream).await
            }
            async fn read_stream(
                &self,
                s: &StreamId,
                r: VersionRange,
            ) -> Result<Vec<RecordedEvent>, StoreError> {
                LogBackend::read_stream(self.call(), s, r).await
            }
            async fn read_all(
                &self,
                after: Checkpoint,
                limit: usize,
            ) -> Result<Vec<RecordedEvent>, StoreError> {
                LogBackend::read_all(self.call(), after, limit).await
            }
            async fn read_category(
                &self,
                category: &str,
                after: Checkpoint,
                limit: usize,
            ) -> Result<Vec<RecordedEvent>, StoreError> {
                LogBackend::read_category(self.call(), category, after, limit).await
            }
            async fn latest_position(&self) -> Result<Option<GlobalPosition>, StoreError> {
                LogBackend::latest_position(self.call()).await
            }
            async fn query(
                &self,
                f: &crate::store::ValidFilter<'_>,
            ) -> Result<Vec<RecordedEvent>, StoreError> {
                LogBackend::query(self.call(), f).await
            }
            async fn count(&self, f: &crate::store::ValidFilter<'_>) -> Result<u64, StoreError> {
                LogBackend::count(self.call(), f).await
            }
            fn stream(&self, filter: EventFilter) -> EventStream {
                LogBackend::stream(self.call(), filter)
            }
            fn wake_signal(&self) -> WakeSignal {
                LogBackend::wake_signal(&self.inner)
            }
        }
    }

    #[tokio::test]
    async fn a_backend_gets_only_valid_input() {
        let store = Counting::default();
        let s = StreamId::new("Order", "o-1").unwrap();
        let too_big = "x".repeat(store.limits().max_payload_bytes);
        let bad: [Result<AppendResult, StoreError>; 3] = [
            store.append(&s, ExpectedVersion::Any, vec![]).await,
            store.append(&s, ExpectedVersion::Any, vec![NewEvent::new("", json!({}))]).await,
            store.append(&s, ExpectedVersion::Any, vec![NewEvent::new("E", json!({ "b": too_big }))]).await,
        ];
        assert!(bad.iter().all(|r| matches!(r, Err(StoreError::InvalidInput(_)))), "{bad:?}");
        assert!(matches!(store.read_all(Checkpoint::START, 0).await, Err(StoreError::InvalidInput(_))));
        assert!(matches!(
            store.read_category("", Checkpoint::START, 1).await,
            Err(StoreError::InvalidInput(_))
        ));
        let bad_filter = EventFilter::new().topics(["a..b"]);
        assert!(matches!(store.query(&bad_filter).await, Err(StoreError::InvalidInput(_))));
        assert_eq!(store.calls.load(Ordering::SeqCst), 0, "no invalid call reached the backend");

        store.append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("E", json!({}))]).await.unwrap();
        assert_eq!(store.query(&EventFilter::new()).await.unwrap().len(), 1);
        assert_eq!(store.calls.load(Ordering::SeqCst), 2, "valid calls reach it");
    }
}
