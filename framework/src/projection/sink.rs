//! [`AtLeastOnce`]: an [`EventHandler`] as a projection sink, on any store.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::Instrument;

use super::{catch_panic, Batch, EventHandler, ProjectionSink, SinkError};
use crate::store::{Checkpoint, EventStore, ProjectionFailure, RecordedEvent};

/// An at-least-once sink: the handler gets each event, then the checkpoint moves in the
/// store. An event handled just before a crash comes again after it.
///
/// The handler writes outside the store, where a failover of the database cannot take
/// it back: it gets a batch only once the batch is [durable](crate::store::EventLog::durable).
pub struct AtLeastOnce {
    store: Arc<dyn EventStore>,
    handler: Box<dyn EventHandler>,
}

impl std::fmt::Debug for AtLeastOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtLeastOnce").finish_non_exhaustive()
    }
}

impl AtLeastOnce {
    /// A sink that feeds `handler` and keeps the checkpoint in `store`.
    pub fn new(store: Arc<dyn EventStore>, handler: Box<dyn EventHandler>) -> Self {
        AtLeastOnce { store, handler }
    }
}

/// Moves a consumer's checkpoint from `from` to `to` (nothing to do when they are equal);
/// [`SinkError::Fenced`] if it was not at `from`.
pub(crate) async fn advance(
    store: &dyn EventStore,
    projection: &str,
    from: Checkpoint,
    to: Checkpoint,
) -> Result<(), SinkError> {
    if from == to || store.advance_checkpoint(projection, from, to).await? {
        Ok(())
    } else {
        Err(SinkError::Fenced)
    }
}

#[async_trait]
impl ProjectionSink for AtLeastOnce {
    async fn apply(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        let ids: Vec<_> = batch.events.iter().map(|e| e.event_id).collect();
        self.store.durable(&ids).await?;
        for (index, event) in batch.events.iter().enumerate() {
            let span = crate::trace::handling_span(event);
            if let Err(error) = catch_panic(self.handler.handle(event)).instrument(span).await {
                // Keep what was handled, so that it is not handled again on retry.
                let prefix_committed = index > 0;
                if prefix_committed {
                    advance(
                        self.store.as_ref(),
                        batch.projection,
                        batch.from,
                        batch.events[index - 1].checkpoint(),
                    )
                    .await?;
                }
                return Err(SinkError::Handler { index, error, prefix_committed });
            }
        }
        advance(self.store.as_ref(), batch.projection, batch.from, batch.to).await
    }

    async fn skip(&mut self, failure: &ProjectionFailure, from: Checkpoint) -> Result<(), SinkError> {
        self.store.record_failure(failure).await?;
        advance(self.store.as_ref(), &failure.projection, from, failure.checkpoint()).await
    }

    async fn retry_failed(&mut self, projection: &str, event: &RecordedEvent) -> Result<(), SinkError> {
        self.store.durable(&[event.event_id]).await?;
        catch_panic(self.handler.handle(event)).await.map_err(|error| SinkError::Handler {
            index: 0,
            error,
            prefix_committed: false,
        })?;
        self.store.resolve_failure(projection, event.event_id).await?;
        Ok(())
    }

    async fn reset(&mut self, projection: &str, to: Checkpoint, clear: bool) -> Result<(), SinkError> {
        if clear {
            catch_panic(self.handler.clear()).await.map_err(|error| SinkError::Handler {
                index: 0,
                error,
                prefix_committed: false,
            })?;
        }
        self.store.save_checkpoint(projection, to).await?;
        Ok(())
    }
}
