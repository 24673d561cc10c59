//! A store wrapper that measures every operation (latency by operation, appends and
//! their latency, events appended) and runs each in its `tracing` span (an append's
//! carries the correlation and causation ids).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::store::backend::LogBackend;
use crate::store::op::{self, Execute, Observer, Operation};
use crate::store::{
    AggregateLoad, AggregateLoadFuture, AppendResult, EventStore, EventStream, Limits, PayloadStream,
    StoreError, StreamId, Version, WakeSignal,
};

pub(crate) struct Instrumented {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) metrics: Arc<Metrics>,
}

#[async_trait]
impl<Op: Operation> Execute<Op> for Instrumented
where
    dyn EventStore: Execute<Op>,
{
    async fn execute(&self, op: Op) -> Result<Op::Output, StoreError> {
        let span = op.span();
        let started = Instant::now();
        let outcome = self.store.execute(op).instrument(span).await;
        op::observe::<Op>(&*self.metrics, &outcome, started.elapsed());
        outcome
    }
}

impl LogBackend for Instrumented {
    fn limits(&self) -> &Limits {
        self.store.limits()
    }

    fn read_payloads<'a>(&'a self, stream: &'a StreamId, after: Version) -> PayloadStream<'a> {
        // Timed from the call to the stream's end, like a read_stream.
        let started = Instant::now();
        let done = futures_util::stream::once(async move {
            self.metrics.executed("read_stream", started.elapsed());
            None
        });
        Box::pin(self.store.read_payloads(stream, after).map(Some).chain(done).filter_map(std::future::ready))
    }

    fn load_aggregate<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot_schema: u32,
    ) -> Option<AggregateLoadFuture<'a>> {
        // Timed from the call to the end of its events, like a read_payloads.
        let load = self.store.load_aggregate(stream, snapshot_schema)?;
        let started = Instant::now();
        Some(Box::pin(async move {
            let loaded = load.await;
            let loaded = match loaded {
                Ok(loaded) => loaded,
                Err(e) => {
                    self.metrics.executed("load_aggregate", started.elapsed());
                    return Err(e);
                }
            };
            let done = futures_util::stream::once(async move {
                self.metrics.executed("load_aggregate", started.elapsed());
                None
            });
            let events = loaded.events.map(Some).chain(done).filter_map(std::future::ready);
            Ok(AggregateLoad::new(loaded.snapshot, Box::pin(events)))
        }))
    }

    fn stream_events(&self, filter: op::StreamEvents) -> EventStream {
        self.store.stream_events(filter)
    }

    fn wake_signal(&self) -> WakeSignal {
        self.store.wake_signal()
    }

    fn category_wake_signal(&self, category: &str) -> WakeSignal {
        self.store.category_wake_signal(category)
    }

    fn instrumented(&self, registry: &mut Registry, observer: Arc<dyn Observer>) {
        self.store.instrumented(registry, observer)
    }
}

impl Observer for Metrics {
    fn executed(&self, operation: &'static str, took: Duration) {
        self.query(operation, took);
    }

    fn appended(&self, results: &[AppendResult], took: Duration) {
        for r in results.iter().filter(|r| !r.deduplicated) {
            let events = (r.to_version.0 + 1).saturating_sub(r.from_version.0);
            self.appended(r.stream.aggregate_type(), events as usize, took);
        }
    }
}
