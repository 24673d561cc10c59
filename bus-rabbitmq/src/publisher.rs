//! The publisher: a projection that sends every stored event to a topic exchange, with
//! publisher confirms, and moves its checkpoint only over what the broker confirmed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use factum::{
    Batch, Checkpoint, EventStore, FailurePolicy, HandlerError, Projection, ProjectionFailure,
    ProjectionSink, RecordedEvent, SinkError, TopicPattern,
};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Confirmation, Connection, ExchangeKind, PublisherConfirm};
use tracing::Instrument;

use crate::connect::{connect, is_transient, Backoff};
use crate::error::{is_precondition_failed, BusError};
use crate::lag::{spawn_lag, AbortOnDrop};
use crate::message::{encode, Outgoing};
use crate::metrics::BusMetrics;

/// The exchange the publisher sends to unless told otherwise.
pub const DEFAULT_EXCHANGE: &str = "factum.events";
/// The publisher's projection (and checkpoint) name unless told otherwise.
pub const DEFAULT_PUBLISHER_NAME: &str = "rabbitmq_publisher";

/// How a [`Publisher`] connects, where it sends, and how it waits.
///
/// ```
/// use std::time::Duration;
/// use factum_rabbitmq::PublisherConfig;
///
/// let config = PublisherConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .exchange("shop.events")
///     .name("shop_bus")
///     .aggregate_types(["Order"])
///     .topics(["order.#"])
///     .batch_size(500)
///     .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(5));
/// assert_eq!(config.exchange_name(), "shop.events");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PublisherConfig {
    url: String,
    exchange: String,
    name: String,
    mandatory: bool,
    aggregate_types: Vec<String>,
    topics: Vec<String>,
    batch_size: usize,
    confirm_timeout: Duration,
    reconnect_initial: Duration,
    reconnect_max: Duration,
    failure: FailurePolicy,
    lag_interval: Duration,
    metrics: BusMetrics,
}

impl PublisherConfig {
    /// Publishes to the broker at `url` (`amqp://user:password@host:port/vhost`), to
    /// [`DEFAULT_EXCHANGE`], as the projection [`DEFAULT_PUBLISHER_NAME`].
    pub fn new(url: impl Into<String>) -> Self {
        PublisherConfig {
            url: url.into(),
            exchange: DEFAULT_EXCHANGE.to_owned(),
            name: DEFAULT_PUBLISHER_NAME.to_owned(),
            mandatory: true,
            aggregate_types: Vec::new(),
            topics: Vec::new(),
            batch_size: 1000,
            confirm_timeout: Duration::from_secs(30),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            failure: FailurePolicy::default(),
            lag_interval: Duration::from_secs(1),
            metrics: BusMetrics::unregistered(),
        }
    }

    /// The topic exchange to publish to (declared durable if absent).
    #[must_use]
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// The exchange this configuration publishes to.
    pub fn exchange_name(&self) -> &str {
        &self.exchange
    }

    /// The projection's name, which is also its checkpoint's and its lease's.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Whether messages are published `mandatory` (default `true`): a message that no
    /// queue is bound for comes back, and the failure policy handles it. With `false`
    /// the broker drops unroutable messages silently.
    #[must_use]
    pub fn mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }

    /// Publish only events of these aggregate types (categories).
    #[must_use]
    pub fn aggregate_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.aggregate_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Publish only events whose topic matches one of these patterns (`*` one word,
    /// `#` zero or more).
    #[must_use]
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.topics = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Events read, published and confirmed per batch (default 1000); every message of
    /// a batch is in flight at once.
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// How long to wait for a confirm before giving the connection up and publishing
    /// the unconfirmed messages again on a new one (default 30 s). While the broker
    /// has blocked the connection (`connection.blocked`), the wait has no limit.
    #[must_use]
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// The reconnect backoff while the broker is unreachable (default 100 ms doubling
    /// to 5 s, starting over after each successful connection).
    #[must_use]
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_initial = initial;
        self.reconnect_max = max.max(initial);
        self
    }

    /// What happens to an event the broker nacks or returns as unroutable (default:
    /// 5 attempts, then the projection stops).
    #[must_use]
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// Where the metrics go (see [`BusMetrics::register`]).
    #[must_use]
    pub fn metrics(mut self, metrics: BusMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// How often the lag gauges are measured (default 1 s).
    #[must_use]
    pub fn lag_interval(mut self, every: Duration) -> Self {
        self.lag_interval = every;
        self
    }
}

/// A connection and its confirm-mode channel.
struct Link {
    connection: Connection,
    channel: Channel,
}

impl Link {
    /// Connects, declares the exchange and turns confirms on.
    async fn open(config: &PublisherConfig, exchange: &ShortString) -> Result<Link, BusError> {
        let connection = connect(&config.url, &format!("factum publisher {}", config.name)).await?;
        let channel = connection.create_channel().await.map_err(BusError::Amqp)?;
        let options = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        channel
            .exchange_declare(exchange.clone(), ExchangeKind::Topic, options, FieldTable::default())
            .await
            .map_err(|e| {
                if is_precondition_failed(&e) {
                    BusError::ExchangeMismatch { exchange: exchange.to_string(), reason: e.to_string() }
                } else {
                    BusError::Amqp(e)
                }
            })?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(BusError::Amqp)?;
        Ok(Link { connection, channel })
    }
}

/// What became of a run of messages.
enum Sent {
    /// All confirmed.
    Confirmed,
    /// The broker refused the message at this offset (nack, or returned unroutable);
    /// all before it were confirmed.
    Refused { offset: usize, reason: String },
    /// The connection failed; the first `confirmed` messages were confirmed.
    Broken { confirmed: usize, reason: String },
}

/// The bus's publisher: a [`ProjectionSink`] that publishes each event to a durable topic
/// exchange as a persistent message, with publisher confirms, and moves the checkpoint
/// over a batch only once the broker confirmed all of it.
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
    config: PublisherConfig,
    exchange: ShortString,
    store: Arc<dyn EventStore>,
    link: Option<Link>,
    backoff: Backoff,
    _lag: AbortOnDrop,
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
        factum::validate::consumer_name(&config.name)
            .map_err(|e| BusError::InvalidConfig { field: "name", reason: e.to_string() })?;
        let exchange = ShortString::try_new(config.exchange.as_str())
            .map_err(|e| BusError::InvalidConfig { field: "exchange", reason: e.to_string() })?;
        let link = Link::open(&config, &exchange).await?;
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
            store,
            link: Some(link),
            config,
            _lag: lag,
        })
    }

    /// The projection that runs this publisher, for
    /// [`SupervisorConfig::projection`](factum::SupervisorConfig::projection).
    pub fn into_projection(self) -> Projection {
        let c = &self.config;
        let (name, types, topics, batch, failure) =
            (c.name.clone(), c.aggregate_types.clone(), c.topics.clone(), c.batch_size, c.failure);
        Projection::new(name, self)
            .aggregate_types(types)
            .topics(topics)
            .batch_size(batch)
            .on_failure(failure)
    }

    /// The connection, opened again (with backoff) if it was lost. Waits as long as the
    /// broker is away.
    async fn ensure_link(&mut self) {
        if self.link.as_ref().is_some_and(|l| l.connection.status().connected()) {
            return;
        }
        self.link = None;
        loop {
            match Link::open(&self.config, &self.exchange).await {
                Ok(link) => {
                    tracing::info!(publisher = %self.config.name, "connected to the broker again");
                    self.config.metrics.reconnected("publisher", &self.config.name);
                    self.backoff.reset();
                    self.link = Some(link);
                    return;
                }
                Err(e) => {
                    let delay = self.backoff.delay();
                    if is_transient(&e) {
                        tracing::warn!(publisher = %self.config.name, error = %e, ?delay, "broker unavailable; retrying");
                    } else {
                        tracing::error!(publisher = %self.config.name, error = %e, ?delay, "broker refuses the publisher; retrying");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Gives the connection up (after a failure or a confirm timeout).
    async fn drop_link(&mut self) {
        if let Some(link) = self.link.take() {
            let close = link.connection.close(320, "factum publisher reconnecting".into());
            let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
        }
    }

    /// Waits for one confirm; no limit while the connection is blocked.
    async fn confirm(&self, link: &Link, mut confirm: PublisherConfirm) -> Result<Confirmation, String> {
        loop {
            match tokio::time::timeout(self.config.confirm_timeout, &mut confirm).await {
                Ok(result) => return result.map_err(|e| e.to_string()),
                Err(_) if link.connection.status().blocked() => {
                    tracing::warn!(publisher = %self.config.name, "connection blocked by the broker; waiting");
                }
                Err(_) => return Err(format!("no confirm within {:?}", self.config.confirm_timeout)),
            }
        }
    }

    /// Publishes `messages` on the current connection, all in flight, and waits for
    /// their confirms in order.
    async fn send(&mut self, messages: &[Outgoing]) -> Sent {
        let name = self.config.name.clone();
        let published =
            self.config.metrics.published.get_or_create(&self.config.metrics.publisher(&name)).clone();
        let confirmed =
            self.config.metrics.confirmed.get_or_create(&self.config.metrics.publisher(&name)).clone();
        let options =
            BasicPublishOptions { mandatory: self.config.mandatory, ..BasicPublishOptions::default() };
        let exchange = self.exchange.clone();
        self.ensure_link().await;
        let Some(link) = self.link.as_ref() else {
            return Sent::Broken { confirmed: 0, reason: "no connection".into() };
        };
        let mut pending = Vec::with_capacity(messages.len());
        let mut broken = None;
        for m in messages {
            match link
                .channel
                .basic_publish(
                    exchange.clone(),
                    m.routing_key.clone(),
                    options,
                    &m.body,
                    m.properties.clone(),
                )
                .await
            {
                Ok(confirm) => {
                    published.inc();
                    pending.push(confirm);
                }
                Err(e) => {
                    broken = Some(e.to_string());
                    break;
                }
            }
        }
        let mut outcome = None;
        let mut count = 0;
        for confirm in pending {
            let result = self.confirm(link, confirm).await;
            if outcome.is_some() {
                continue; // drain the rest: their confirms are owed to the channel
            }
            match result {
                Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {
                    confirmed.inc();
                    count += 1;
                }
                Ok(Confirmation::Ack(Some(returned))) => {
                    self.config.metrics.failed(&name, "returned");
                    let reason = format!(
                        "unroutable: no queue bound for routing key {:?} ({} {})",
                        returned.delivery.routing_key.as_str(),
                        returned.reply_code,
                        returned.reply_text.as_str()
                    );
                    outcome = Some(Sent::Refused { offset: count, reason });
                }
                Ok(Confirmation::Nack(_)) => {
                    self.config.metrics.failed(&name, "nacked");
                    outcome = Some(Sent::Refused { offset: count, reason: "nacked by the broker".into() });
                }
                Err(reason) => {
                    // The connection is gone: the remaining confirms will not come.
                    outcome = Some(Sent::Broken { confirmed: count, reason });
                    break;
                }
            }
        }
        match (outcome, broken) {
            (Some(o), _) => o,
            (None, Some(reason)) => Sent::Broken { confirmed: count, reason },
            (None, None) => Sent::Confirmed,
        }
    }

    /// Publishes `events` until each is confirmed, reconnecting as often as needed.
    /// Returns the index and reason of the first event the broker refused (or that
    /// cannot be encoded); all before it are confirmed.
    async fn publish_all(&mut self, events: &[RecordedEvent]) -> Option<(usize, String)> {
        let mut messages = Vec::with_capacity(events.len());
        let mut unencodable = None;
        for (index, event) in events.iter().enumerate() {
            match encode(event) {
                Ok(m) => messages.push(m),
                Err(reason) => {
                    unencodable = Some((index, reason));
                    break;
                }
            }
        }
        let mut start = 0;
        while start < messages.len() {
            match self.send(&messages[start..]).await {
                Sent::Confirmed => break,
                Sent::Refused { offset, reason } => return Some((start + offset, reason)),
                Sent::Broken { confirmed, reason } => {
                    start += confirmed;
                    tracing::warn!(
                        publisher = %self.config.name,
                        error = %reason,
                        unconfirmed = messages.len() - start,
                        "connection lost; publishing the unconfirmed messages again"
                    );
                    self.drop_link().await;
                }
            }
        }
        unencodable
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
        async move {
            match self.publish_all(batch.events).await {
                None => self.advance(batch.projection, batch.from, batch.to).await,
                Some((index, reason)) => {
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
        self.store.record_failure(failure).await?;
        self.advance(&failure.projection, from, failure.checkpoint()).await
    }

    async fn retry_failed(&mut self, projection: &str, event: &RecordedEvent) -> Result<(), SinkError> {
        if let Some((_, reason)) = self.publish_all(std::slice::from_ref(event)).await {
            return Err(SinkError::Handler {
                index: 0,
                error: HandlerError::msg(reason),
                prefix_committed: false,
            });
        }
        self.store.resolve_failure(projection, event.event_id).await?;
        Ok(())
    }

    async fn reset(&mut self, projection: &str, to: Checkpoint, _clear: bool) -> Result<(), SinkError> {
        // What was published cannot be taken back: a rebuild publishes everything again.
        self.store.save_checkpoint(projection, to).await?;
        Ok(())
    }
}
