//! The bus's Prometheus metrics, registered in the application's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PublisherLabels {
    pub(crate) publisher: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FailureLabels {
    pub(crate) publisher: String,
    /// `nacked` or `returned`.
    pub(crate) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RoleLabels {
    /// `publisher` or `subscriber`.
    pub(crate) role: String,
    /// The publisher's or subscriber queue's name.
    pub(crate) name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueueLabels {
    pub(crate) queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HandledLabels {
    pub(crate) queue: String,
    /// `ok`, `failed`, `dead_lettered` or `duplicate`.
    pub(crate) outcome: String,
}

/// The bus's metrics, kept in the framework's registry: take them from the application's
/// [`factum::Metrics`] with [`BusMetrics::of`], and give a clone to each publisher and
/// subscriber.
///
/// | name | type | labels | what |
/// | --- | --- | --- | --- |
/// | `factum_bus_published_total` | counter | `publisher` | messages sent to the broker (republished ones included) |
/// | `factum_bus_confirmed_total` | counter | `publisher` | messages the broker confirmed (acked and routed) |
/// | `factum_bus_failed_total` | counter | `publisher`, `reason` (`nacked`, `returned`) | messages the broker refused or could not route |
/// | `factum_bus_reconnects_total` | counter | `role`, `name` | connections re-established after a loss |
/// | `factum_bus_publisher_lag_events` | gauge | `publisher` | events stored after the publisher's checkpoint (not yet confirmed) |
/// | `factum_bus_publisher_lag_seconds` | gauge | `publisher` | age of the oldest event not yet confirmed; 0 when caught up |
/// | `factum_bus_received_total` | counter | `queue` | messages a subscriber received |
/// | `factum_bus_handled_total` | counter | `queue`, `outcome` (`ok`, `failed`, `dead_lettered`, `duplicate`) | handler outcomes |
///
/// ```
/// let metrics = factum::Metrics::new();
/// let bus = factum_rabbitmq::BusMetrics::of(&metrics);
/// // Asked for again, the same counters: registered once.
/// let again = factum_rabbitmq::BusMetrics::of(&metrics);
/// # let _ = (bus, again);
/// // One registry, one encoding: the bus's families appear in it beside the framework's
/// // once they have a sample.
/// assert!(metrics.encode().contains("# TYPE factum_append_duration_seconds histogram"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct BusMetrics {
    pub(crate) published: Family<PublisherLabels, Counter>,
    pub(crate) confirmed: Family<PublisherLabels, Counter>,
    pub(crate) failed: Family<FailureLabels, Counter>,
    pub(crate) reconnects: Family<RoleLabels, Counter>,
    pub(crate) lag_events: Family<PublisherLabels, Gauge>,
    pub(crate) lag_seconds: Family<PublisherLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub(crate) received: Family<QueueLabels, Counter>,
    pub(crate) handled: Family<HandledLabels, Counter>,
}

impl BusMetrics {
    /// Metrics in no registry (counted, never exported): the default of a publisher or
    /// subscriber that was given none.
    pub fn unregistered() -> Self {
        Self::default()
    }

    /// The bus's metrics in the application's framework metrics: registered there the
    /// first time, the same ones every later time.
    pub fn of(metrics: &factum::Metrics) -> Self {
        metrics.extension()
    }

    pub(crate) fn publisher(&self, name: &str) -> PublisherLabels {
        PublisherLabels { publisher: name.to_owned() }
    }

    pub(crate) fn failed(&self, name: &str, reason: &str) {
        self.failed
            .get_or_create(&FailureLabels { publisher: name.to_owned(), reason: reason.to_owned() })
            .inc();
    }

    pub(crate) fn reconnected(&self, role: &str, name: &str) {
        self.reconnects.get_or_create(&RoleLabels { role: role.to_owned(), name: name.to_owned() }).inc();
    }

    pub(crate) fn handled(&self, queue: &str, outcome: &str) {
        self.handled
            .get_or_create(&HandledLabels { queue: queue.to_owned(), outcome: outcome.to_owned() })
            .inc();
    }

    pub(crate) fn received(&self, queue: &str) {
        self.received.get_or_create(&QueueLabels { queue: queue.to_owned() }).inc();
    }

    /// Messages published by `publisher` (for tests and benchmarks).
    pub fn published_count(&self, publisher: &str) -> u64 {
        self.published.get_or_create(&self.publisher(publisher)).get()
    }

    /// Messages confirmed for `publisher`.
    pub fn confirmed_count(&self, publisher: &str) -> u64 {
        self.confirmed.get_or_create(&self.publisher(publisher)).get()
    }

    /// The publisher's lag as last measured: events not yet confirmed, and the age in
    /// seconds of the oldest of them.
    pub fn publisher_lag(&self, publisher: &str) -> (i64, f64) {
        let labels = self.publisher(publisher);
        (self.lag_events.get_or_create(&labels).get(), self.lag_seconds.get_or_create(&labels).get())
    }

    /// Reconnections of `role` (`publisher` or `subscriber`) named `name`.
    pub fn reconnect_count(&self, role: &str, name: &str) -> u64 {
        self.reconnects.get_or_create(&RoleLabels { role: role.to_owned(), name: name.to_owned() }).get()
    }

    /// Handler outcomes of `outcome` on `queue`.
    pub fn handled_count(&self, queue: &str, outcome: &str) -> u64 {
        self.handled
            .get_or_create(&HandledLabels { queue: queue.to_owned(), outcome: outcome.to_owned() })
            .get()
    }
}

impl factum::metrics::MetricsExtension for BusMetrics {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("factum_bus");
        r.register(
            "published",
            "Messages sent to the broker, republished ones included",
            self.published.clone(),
        );
        r.register("confirmed", "Messages the broker confirmed", self.confirmed.clone());
        r.register("failed", "Messages the broker nacked or returned as unroutable", self.failed.clone());
        r.register("reconnects", "Connections re-established after a loss", self.reconnects.clone());
        r.register(
            "publisher_lag_events",
            "Events stored after the publisher's checkpoint",
            self.lag_events.clone(),
        );
        r.register(
            "publisher_lag_seconds",
            "Age of the oldest event the publisher has not had confirmed",
            self.lag_seconds.clone(),
        );
        r.register("received", "Messages received by a subscriber", self.received.clone());
        r.register("handled", "Subscriber handler outcomes", self.handled.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bus_metrics_join_the_framework_registry_once() {
        let metrics = factum::Metrics::new();
        let first = BusMetrics::of(&metrics);
        first.published.get_or_create(&first.publisher("p")).inc();
        let second = BusMetrics::of(&metrics);
        second.published.get_or_create(&second.publisher("p")).inc();
        let text = metrics.encode();
        assert_eq!(text.matches("# TYPE factum_bus_published counter").count(), 1, "{text}");
        assert!(text.contains("factum_bus_published_total{publisher=\"p\"} 2"), "{text}");
    }
}
