//! The publisher: a projection that sends every stored event to a topic exchange, with
//! publisher confirms, and moves its checkpoint only over what the broker confirmed.
//! (Connections and confirms: `delivery`; publishing ahead: `ahead`.)

use std::sync::Arc;

use async_trait::async_trait;
use factum::backoff::Backoff;
use factum::projection::{Batch, ProjectionSink, SinkError};
use factum::store::{Checkpoint, LogPage, LogSelector, ProjectionFailure, TopicPattern};
use factum::task::AbortOnDrop;
use factum::{EventStore, HandlerError, Projection, RecordedEvent};
use lapin::types::ShortString;
use tracing::Instrument;

use crate::ahead::Ahead;
use crate::config::PublisherConfig;
use crate::delivery::{Link, Outcome, STAGES};
use crate::error::BusError;
use crate::lag::spawn_lag;

/// The bus's publisher: a [`ProjectionSink`] that publishes each event to a durable topic
/// exchange as a persistent message, with publisher confirms, and moves the checkpoint
/// over a batch only once the broker confirmed all of it (every message of a batch is in
/// flight at once; with [`max_in_flight`](PublisherConfig::max_in_flight), messages
/// after it too).
///
/// Run it under the [`Supervisor`](factum::Supervisor) like any projection:
/// [`into_projection`](Self::into_projection) gives it its name, filters, batch size and
/// failure policy. The supervisor's lease keeps it active in one instance at a time.
///
/// ```no_run
/// use std::sync::Arc;
/// use factum::{EventStore, InMemoryStore, Supervisor, SupervisorConfig};
/// use factum_rabbitmq::{Publisher, PublisherConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
/// let config = PublisherConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f").topics(["order.#"]);
/// let publisher = Publisher::connect(store.clone(), config).await?; // typed error if misconfigured
/// let supervisor =
///     Supervisor::start(store, SupervisorConfig::default().projection(publisher.into_projection())).await?;
/// # supervisor.shutdown().await?; Ok(()) }
/// ```
pub struct Publisher {
    pub(crate) config: PublisherConfig,
    pub(crate) exchange: ShortString,
    /// What the projection follows, as the store selects it.
    pub(crate) selector: LogSelector,
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) link: Option<Link>,
    pub(crate) backoff: Backoff,
    /// What was published ahead of the batch being confirmed.
    pub(crate) ahead: Ahead,
    _lag: AbortOnDrop<()>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Publisher {
    /// Checks the configuration, connects, declares the exchange and turns confirms on:
    /// a bad URL, refused credentials or an exchange of another type is an error here,
    /// before anything runs. Later outages are waited out.
    pub async fn connect(store: Arc<dyn EventStore>, config: PublisherConfig) -> Result<Self, BusError> {
        for t in &config.topics {
            TopicPattern::parse(t)
                .map_err(|e| BusError::InvalidConfig { field: "topics", reason: e.to_string() })?;
        }
        let selector =
            LogSelector::new(config.aggregate_types.clone(), config.event_types.clone(), &config.topics)
                .map_err(|e| BusError::InvalidConfig { field: "selector", reason: e.to_string() })?;
        factum::store::validate::consumer_name(&config.name)
            .map_err(|e| BusError::InvalidConfig { field: "name", reason: e.to_string() })?;
        let exchange = ShortString::try_new(config.exchange.as_str())
            .map_err(|e| BusError::InvalidConfig { field: "exchange", reason: e.to_string() })?;
        let link = Link::open(&config, &exchange).await?;
        let signal = match config.aggregate_types.as_slice() {
            [one] => store.category_wake_signal(one),
            _ => store.wake_signal(),
        };
        let lag = spawn_lag(
            store.clone(),
            config.name.clone(),
            config.aggregate_types.clone(),
            config.metrics.clone(),
            config.lag_interval,
        );
        Ok(Publisher {
            backoff: Backoff::new(config.reconnect_initial, config.reconnect_max),
            exchange,
            selector,
            store,
            link: Some(link),
            ahead: Ahead::new(signal),
            config,
            _lag: lag,
        })
    }

    /// The projection that runs this publisher, for
    /// [`SupervisorConfig::projection`](factum::SupervisorConfig::projection).
    pub fn into_projection(self) -> Projection {
        let c = &self.config;
        let (name, types, events, topics, batch, failure) = (
            c.name.clone(),
            c.aggregate_types.clone(),
            c.event_types.clone(),
            c.topics.clone(),
            c.batch_size,
            c.failure,
        );
        Projection::new(name, self)
            .aggregate_types(types)
            .event_types(events)
            .topics(topics)
            .batch_size(batch)
            .on_failure(failure)
    }

    async fn advance(&self, projection: &str, from: Checkpoint, to: Checkpoint) -> Result<(), SinkError> {
        if from == to || self.store.advance_checkpoint(projection, from, to).await? {
            Ok(())
        } else {
            Err(SinkError::Fenced)
        }
    }
}

#[async_trait]
impl ProjectionSink for Publisher {
    async fn apply(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        let span = tracing::info_span!(
            "factum.rabbitmq.publish",
            publisher = %self.config.name,
            exchange = %self.config.exchange,
            events = batch.events.len(),
            from = %batch.from,
            to = %batch.to,
        );
        factum::trace::link_all(&span, batch.events.iter().map(|e| &e.metadata));
        if tracing::enabled!(target: STAGES, tracing::Level::TRACE) {
            for e in batch.events {
                tracing::trace!(target: STAGES, stage = "batch", position = e.position.0);
            }
        }
        async move {
            // Only what a failover cannot take back leaves the database (those published
            // ahead were waited for when they were read).
            let ahead = self.ahead.leading(batch.events);
            let ids: Vec<_> = batch.events[ahead..].iter().map(|e| e.event_id).collect();
            if !ids.is_empty() {
                self.store.durable(&ids).await?;
            }
            match self.deliver(batch.events, batch.to, true).await {
                Outcome::Confirmed => self.advance(batch.projection, batch.from, batch.to).await,
                Outcome::Refused(index, reason) => {
                    let prefix_committed = index > 0;
                    if prefix_committed {
                        let prefix_to = batch.events[index - 1].checkpoint();
                        self.advance(batch.projection, batch.from, prefix_to).await?;
                    }
                    Err(SinkError::Handler { index, error: HandlerError::msg(reason), prefix_committed })
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn skip(&mut self, failure: &ProjectionFailure, from: Checkpoint) -> Result<(), SinkError> {
        self.ahead.discard(None);
        self.store.record_failure(failure).await?;
        self.advance(&failure.projection, from, failure.checkpoint()).await
    }

    async fn retry_failed(&mut self, projection: &str, event: &RecordedEvent) -> Result<(), SinkError> {
        self.store.durable(&[event.event_id]).await?;
        if let Outcome::Refused(_, reason) =
            self.deliver(std::slice::from_ref(event), event.checkpoint(), false).await
        {
            return Err(SinkError::Handler {
                index: 0,
                error: HandlerError::msg(reason),
                prefix_committed: false,
            });
        }
        self.store.resolve_failure(projection, event.event_id).await?;
        Ok(())
    }

    fn read_ahead(&mut self, after: Checkpoint, limit: usize) -> Option<LogPage> {
        self.ahead.page(after, limit)
    }

    async fn reset(&mut self, projection: &str, to: Checkpoint, _clear: bool) -> Result<(), SinkError> {
        // What was published cannot be taken back: a rebuild publishes everything again.
        self.ahead.discard(None);
        self.store.save_checkpoint(projection, to).await?;
        Ok(())
    }
}
