//! The process's projection sink: a batch's events are grouped by the instance they
//! belong to; instances step concurrently (up to the manager's concurrency), each one's
//! events in log order. The checkpoint moves over the batch once every step is done, or
//! up to the first event whose step failed: a step done after it is found done when the
//! batch comes again.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};

use super::input::{Input, Received};
use super::manager::Core;
use super::Process;
use crate::aggregate::EventCodecError;
use crate::projection::{advance, catch_panic, Batch, HandlerError, ProjectionSink, SinkError};
use crate::store::{Checkpoint, ProjectionFailure, RecordedEvent};
use crate::task::AbortOnDrop;

/// Steps the instances a batch's events belong to.
pub(crate) struct ProcessSink<P: Process> {
    pub(crate) core: Arc<Core<P>>,
    /// Instances stepped at once.
    pub(crate) concurrency: usize,
    /// The timer service, stopped with the sink.
    pub(crate) _timers: AbortOnDrop<()>,
}

/// An instance's events of a batch: its correlation, and each event's index and decoding.
type Group<E> = (String, Vec<(usize, Received<E>)>);

/// An event for an instance: its correlation, and the event decoded.
type Routed<E> = (String, Received<E>);

/// The instance an event is for, with the event decoded; `None` when it is passed over
/// (not one the process knows, or of no instance).
fn route<P: Process>(event: &RecordedEvent) -> Result<Option<Routed<P::Event>>, HandlerError> {
    let received = match Received::<P::Event>::decode(event) {
        Ok(received) => received,
        Err(EventCodecError::UnknownEventType { .. }) => return Ok(None),
        Err(e) => {
            return Err(HandlerError::msg(format!("{} cannot decode {}: {e}", P::NAME, event.event_type)))
        }
    };
    match P::correlate(&received) {
        Ok(Some(correlation)) => Ok(Some((correlation, received))),
        Ok(None) => Ok(None),
        Err(reason) => Err(HandlerError::msg(format!(
            "{} cannot take a correlation from {} {}: {reason}",
            P::NAME,
            event.event_type,
            event.event_id
        ))),
    }
}

impl<P: Process> ProcessSink<P> {
    /// Steps one event's instance, panics caught.
    async fn one(core: &Core<P>, event: &RecordedEvent) -> Result<(), HandlerError> {
        catch_panic(async {
            match route::<P>(event)? {
                None => Ok(()),
                Some((correlation, received)) => {
                    core.step(correlation, Input::Event(received), event.event_id, 0, None).await
                }
            }
        })
        .await
    }

    /// Steps the events, instances concurrently; the first failure in log order.
    async fn run(&self, events: &[RecordedEvent]) -> Option<(usize, HandlerError)> {
        // Route first: an event that cannot be routed stops the batch there.
        let mut groups: Vec<Group<P::Event>> = Vec::new();
        let mut at = std::collections::HashMap::new();
        let mut stop = None;
        for (index, event) in events.iter().enumerate() {
            match catch_panic_sync(|| route::<P>(event)) {
                Ok(None) => {}
                Ok(Some((correlation, received))) => {
                    let slot = *at.entry(correlation.clone()).or_insert_with(|| {
                        groups.push((correlation, Vec::new()));
                        groups.len() - 1
                    });
                    groups[slot].1.push((index, received));
                }
                Err(e) => {
                    stop = Some((index, e));
                    break;
                }
            }
        }
        let core = &self.core;
        let failures: Vec<(usize, HandlerError)> = stream::iter(groups)
            .map(|(correlation, received)| async move {
                for (index, received) in received {
                    let trigger = events[index].event_id;
                    let step = core.step(correlation.clone(), Input::Event(received), trigger, 0, None);
                    if let Err(e) = catch_panic(step).await {
                        return Some((index, e));
                    }
                }
                None
            })
            .buffer_unordered(self.concurrency.max(1))
            .filter_map(|failed| async move { failed })
            .collect()
            .await;
        failures.into_iter().chain(stop).min_by_key(|(index, _)| *index)
    }
}

fn catch_panic_sync<T>(f: impl FnOnce() -> Result<T, HandlerError>) -> Result<T, HandlerError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(HandlerError::msg(format!("panicked: {}", crate::task::panic_message(p.as_ref()))))
    })
}

#[async_trait]
impl<P: Process> ProjectionSink for ProcessSink<P> {
    async fn apply(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        let store = self.core.store().clone();
        if let Some((index, error)) = self.run(batch.events).await {
            let prefix_committed = index > 0;
            if prefix_committed {
                let to = batch.events[index - 1].checkpoint();
                advance(store.as_ref(), batch.projection, batch.from, to).await?;
            }
            return Err(SinkError::Handler { index, error, prefix_committed });
        }
        advance(store.as_ref(), batch.projection, batch.from, batch.to).await
    }

    async fn skip(&mut self, failure: &ProjectionFailure, from: Checkpoint) -> Result<(), SinkError> {
        let store = self.core.store().clone();
        store.record_failure(failure).await?;
        advance(store.as_ref(), &failure.projection, from, failure.checkpoint()).await
    }

    async fn retry_failed(&mut self, projection: &str, event: &RecordedEvent) -> Result<(), SinkError> {
        Self::one(&self.core, event).await.map_err(|error| SinkError::Handler {
            index: 0,
            error,
            prefix_committed: false,
        })?;
        self.core.store().resolve_failure(projection, event.event_id).await?;
        Ok(())
    }

    async fn reset(&mut self, projection: &str, to: Checkpoint, _clear: bool) -> Result<(), SinkError> {
        // Nothing to clear: a step done before is found done.
        self.core.store().save_checkpoint(projection, to).await?;
        Ok(())
    }
}
