//! The publisher's configuration.

use std::time::Duration;

use factum::projection::FailurePolicy;

use crate::metrics::BusMetrics;

/// The exchange the publisher sends to unless told otherwise.
pub const DEFAULT_EXCHANGE: &str = "factum.events";
/// The publisher's projection (and checkpoint) name unless told otherwise.
pub const DEFAULT_PUBLISHER_NAME: &str = "rabbitmq_publisher";

/// Messages published ahead of the batch being confirmed unless told otherwise
/// ([`PublisherConfig::max_in_flight`]).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

/// How long one attempt to connect may take unless told otherwise
/// ([`PublisherConfig::connect_timeout`], [`SubscriberConfig::connect_timeout`](crate::SubscriberConfig::connect_timeout)).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`Publisher`](crate::Publisher) connects, where it sends, and how it waits.
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
    pub(crate) url: String,
    pub(crate) exchange: String,
    pub(crate) name: String,
    pub(crate) mandatory: bool,
    pub(crate) aggregate_types: Vec<String>,
    pub(crate) event_types: Vec<String>,
    pub(crate) topics: Vec<String>,
    pub(crate) batch_size: usize,
    pub(crate) confirm_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_initial: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) failure: FailurePolicy,
    pub(crate) max_in_flight: usize,
    pub(crate) lag_interval: Duration,
    pub(crate) metrics: BusMetrics,
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
            event_types: Vec::new(),
            topics: Vec::new(),
            batch_size: 1000,
            confirm_timeout: Duration::from_secs(30),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            failure: FailurePolicy::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
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

    /// Publish only events of these types.
    #[must_use]
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Publish only events whose topic matches one of these patterns (`*` one word,
    /// `#` zero or more).
    #[must_use]
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.topics = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Events per batch (default 1000): the checkpoint moves once per batch, when all of
    /// it is confirmed. Messages are in flight across batches (see
    /// [`max_in_flight`](Self::max_in_flight)).
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

    /// How long connecting, declaring the exchange and turning confirms on may take
    /// before the attempt is given up and tried again after the backoff (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]). A broker that is shutting down can accept a
    /// connection and never answer it; this bounds how long that holds publishing up.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
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

    /// Where the metrics go (see [`BusMetrics::of`]).
    #[must_use]
    pub fn metrics(mut self, metrics: BusMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// At most this many messages published ahead of the batch being confirmed
    /// (default [`DEFAULT_MAX_IN_FLIGHT`]; 0 turns publishing ahead off). While a
    /// batch's confirms are awaited, the publisher follows the log itself (woken by the
    /// store's append signal) and publishes what comes next, so that the broker's
    /// confirm latency holds back the checkpoint rather than new events. The checkpoint
    /// still moves only over batches the broker confirmed whole.
    #[must_use]
    pub fn max_in_flight(mut self, messages: usize) -> Self {
        self.max_in_flight = messages;
        self
    }

    /// How often the lag gauges are measured (default 1 s).
    #[must_use]
    pub fn lag_interval(mut self, every: Duration) -> Self {
        self.lag_interval = every;
        self
    }
}
