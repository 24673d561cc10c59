//! The subscriber's configuration.

use std::time::Duration;

use crate::config::DEFAULT_EXCHANGE;
use crate::metrics::BusMetrics;

/// Where a [`Subscriber`](crate::Subscriber) consumes from and how it handles failures.
///
/// ```
/// use factum_rabbitmq::SubscriberConfig;
///
/// let config = SubscriberConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f", "billing")
///     .bind(["order.lifecycle.*", "customer.#"])
///     .quorum(true)
///     .prefetch(64)
///     .max_attempts(3);
/// assert_eq!(config.dead_letter_queue_name(), "billing.dead-letter");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SubscriberConfig {
    pub(crate) url: String,
    pub(crate) exchange: String,
    pub(crate) queue: String,
    pub(crate) bindings: Vec<String>,
    pub(crate) quorum: bool,
    pub(crate) prefetch: u16,
    pub(crate) max_attempts: u32,
    pub(crate) retry_initial: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) dead_letter_exchange: String,
    pub(crate) dead_letter_queue: String,
    pub(crate) reconnect_initial: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) metrics: BusMetrics,
}

impl SubscriberConfig {
    /// Consumes the durable queue `queue` on the broker at `url`, bound to
    /// [`DEFAULT_EXCHANGE`]; its dead letters go to the exchange and queue
    /// `<queue>.dead-letter`.
    pub fn new(url: impl Into<String>, queue: impl Into<String>) -> Self {
        let queue = queue.into();
        SubscriberConfig {
            url: url.into(),
            exchange: DEFAULT_EXCHANGE.to_owned(),
            dead_letter_exchange: format!("{queue}.dead-letter"),
            dead_letter_queue: format!("{queue}.dead-letter"),
            queue,
            bindings: Vec::new(),
            quorum: false,
            prefetch: 64,
            max_attempts: 5,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            connect_timeout: crate::config::DEFAULT_CONNECT_TIMEOUT,
            metrics: BusMetrics::unregistered(),
        }
    }

    /// The topic exchange the queue is bound to (declared durable if absent).
    #[must_use]
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// Binds the queue with these topic patterns (`*` one word, `#` zero or more).
    #[must_use]
    pub fn bind<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.bindings.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Declares the queue (and its dead-letter queue) as a quorum queue: replicated,
    /// and it survives a broker node's loss. Default: a classic durable queue.
    #[must_use]
    pub fn quorum(mut self, quorum: bool) -> Self {
        self.quorum = quorum;
        self
    }

    /// Messages the broker sends ahead of the acks (default 64, at least 1).
    #[must_use]
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// Attempts per message, the first included, before it is dead-lettered (default 5).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The delay between attempts: `initial`, doubling to `max` (default 100 ms to 5 s).
    #[must_use]
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_initial = initial;
        self.retry_max = max.max(initial);
        self
    }

    /// The dead-letter exchange (a durable fanout) and the durable queue bound to it.
    #[must_use]
    pub fn dead_letter(mut self, exchange: impl Into<String>, queue: impl Into<String>) -> Self {
        self.dead_letter_exchange = exchange.into();
        self.dead_letter_queue = queue.into();
        self
    }

    /// The dead-letter queue's name.
    pub fn dead_letter_queue_name(&self) -> &str {
        &self.dead_letter_queue
    }

    /// The reconnect backoff while the broker is unreachable.
    #[must_use]
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_initial = initial;
        self.reconnect_max = max.max(initial);
        self
    }

    /// How long one attempt to connect and declare the queue may take before it is
    /// given up and tried again after the backoff (default
    /// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT)).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Where the metrics go (see [`BusMetrics::of`]).
    #[must_use]
    pub fn metrics(mut self, metrics: BusMetrics) -> Self {
        self.metrics = metrics;
        self
    }
}
