//! The framework's Prometheus metrics, on `prometheus-client`.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AggregateLabels {
    aggregate_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    aggregate_type: String,
    outcome: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

/// The framework's metrics, registered in one `prometheus-client` registry.
///
/// ```
/// let metrics = factum::Metrics::new();
/// let text = metrics.encode();
/// assert!(text.contains("factum_commands"));
/// ```
pub struct Metrics {
    registry: Mutex<Registry>,
    commands: Family<OutcomeLabels, Counter>,
    command_duration: Family<AggregateLabels, Histogram, fn() -> Histogram>,
    load_duration: Family<AggregateLabels, Histogram, fn() -> Histogram>,
    snapshot_loads: Family<OutcomeLabels, Counter>,
    snapshot_writes: Family<OutcomeLabels, Counter>,
    conflicts: Family<AggregateLabels, Counter>,
    retries: Family<AggregateLabels, Counter>,
    live_actors: Family<AggregateLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics in a registry of their own.
    pub fn new() -> Self {
        Self::with_registry(Registry::default())
    }

    /// Metrics registered (under the prefix `factum`) in the application's registry,
    /// which this takes and keeps; [`encode`](Self::encode) writes all of it.
    pub fn with_registry(mut registry: Registry) -> Self {
        let commands = Family::<OutcomeLabels, Counter>::default();
        let command_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let load_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let snapshot_loads = Family::<OutcomeLabels, Counter>::default();
        let snapshot_writes = Family::<OutcomeLabels, Counter>::default();
        let conflicts = Family::<AggregateLabels, Counter>::default();
        let retries = Family::<AggregateLabels, Counter>::default();
        let live_actors = Family::<AggregateLabels, Gauge>::default();
        {
            let r = registry.sub_registry_with_prefix("factum");
            r.register("commands", "Commands handled, by aggregate type and outcome", commands.clone());
            r.register(
                "command_duration_seconds",
                "Command latency in the aggregate actor",
                command_duration.clone(),
            );
            r.register(
                "aggregate_load_duration_seconds",
                "Time to load an aggregate (snapshot and tail)",
                load_duration.clone(),
            );
            r.register(
                "snapshot_loads",
                "Aggregate loads by snapshot result: hit, miss, fallback",
                snapshot_loads.clone(),
            );
            r.register("snapshot_writes", "Snapshot writes by result: ok, failed", snapshot_writes.clone());
            r.register(
                "concurrency_conflicts",
                "Appends refused by a concurrency conflict",
                conflicts.clone(),
            );
            r.register("command_retries", "Commands re-run after a conflict", retries.clone());
            r.register("live_actors", "Live aggregate actors", live_actors.clone());
        }
        Metrics {
            registry: Mutex::new(registry),
            commands,
            command_duration,
            load_duration,
            snapshot_loads,
            snapshot_writes,
            conflicts,
            retries,
            live_actors,
        }
    }

    /// The whole registry in the Prometheus text format, for a `/metrics` endpoint.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// Runs `f` on the registry, to register more metrics in it.
    pub fn with_registry_mut<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut registry)
    }

    fn agg(aggregate_type: &str) -> AggregateLabels {
        AggregateLabels { aggregate_type: aggregate_type.to_owned() }
    }

    fn out(aggregate_type: &str, outcome: &str) -> OutcomeLabels {
        OutcomeLabels { aggregate_type: aggregate_type.to_owned(), outcome: outcome.to_owned() }
    }

    pub(crate) fn command(&self, aggregate_type: &str, outcome: &str, took: Duration) {
        self.commands.get_or_create(&Self::out(aggregate_type, outcome)).inc();
        self.command_duration.get_or_create(&Self::agg(aggregate_type)).observe(took.as_secs_f64());
    }

    pub(crate) fn load_time(&self, aggregate_type: &str, took: Duration) {
        self.load_duration.get_or_create(&Self::agg(aggregate_type)).observe(took.as_secs_f64());
    }

    pub(crate) fn snapshot_load(&self, aggregate_type: &str, result: &str) {
        self.snapshot_loads.get_or_create(&Self::out(aggregate_type, result)).inc();
    }

    pub(crate) fn snapshot_write(&self, aggregate_type: &str, ok: bool) {
        self.snapshot_writes
            .get_or_create(&Self::out(aggregate_type, if ok { "ok" } else { "failed" }))
            .inc();
    }

    pub(crate) fn conflict(&self, aggregate_type: &str) {
        self.conflicts.get_or_create(&Self::agg(aggregate_type)).inc();
    }

    pub(crate) fn retry(&self, aggregate_type: &str) {
        self.retries.get_or_create(&Self::agg(aggregate_type)).inc();
    }

    pub(crate) fn actor_started(&self, aggregate_type: &str) {
        self.live_actors.get_or_create(&Self::agg(aggregate_type)).inc();
    }

    pub(crate) fn actor_stopped(&self, aggregate_type: &str) {
        self.live_actors.get_or_create(&Self::agg(aggregate_type)).dec();
    }

    /// Live actors of an aggregate type, as the gauge counts them.
    pub fn live_actors(&self, aggregate_type: &str) -> i64 {
        self.live_actors.get_or_create(&Self::agg(aggregate_type)).get()
    }

    /// Snapshot loads of an aggregate type with a result (`hit`, `miss`, `fallback`).
    pub fn snapshot_loads(&self, aggregate_type: &str, result: &str) -> u64 {
        self.snapshot_loads.get_or_create(&Self::out(aggregate_type, result)).get()
    }
}
