//! The framework's Prometheus metrics, on `prometheus-client`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::EventStore;

mod builds;
mod extension;
mod instrumented;
mod labels;
mod seed;

pub use extension::MetricsExtension;

use extension::Extensions;
use labels::{
    AggregateLabels, ChildLabels, OperationLabels, OutcomeLabels, ProjectionLabels, ProjectionOutcomeLabels,
};
use seed::SeedMetrics;

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
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
/// // A labelled family appears once it has a sample; the append latency has none.
/// assert!(text.contains("# TYPE factum_append_duration_seconds histogram"));
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
    events_appended: Family<AggregateLabels, Counter>,
    append_duration: Histogram,
    query_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    store_bytes: Gauge,
    projection_position: Family<ProjectionLabels, Gauge>,
    projection_lag: Family<ProjectionLabels, Gauge>,
    projection_events: Family<ProjectionOutcomeLabels, Counter>,
    projection_batch_duration: Family<ProjectionLabels, Histogram, fn() -> Histogram>,
    restarts: Family<ChildLabels, Counter>,
    seed: SeedMetrics,
    extensions: Extensions,
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
        let events_appended = Family::<AggregateLabels, Counter>::default();
        let append_duration = latency_histogram();
        let query_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let store_bytes = Gauge::default();
        let projection_position = Family::<ProjectionLabels, Gauge>::default();
        let projection_lag = Family::<ProjectionLabels, Gauge>::default();
        let projection_events = Family::<ProjectionOutcomeLabels, Counter>::default();
        let projection_batch_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let restarts = Family::<ChildLabels, Counter>::default();
        let seed = SeedMetrics::default();
        seed.register(&mut registry);
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
            r.register("events_appended", "Events appended, by aggregate type", events_appended.clone());
            r.register(
                "append_duration_seconds",
                "Latency of one append (one batch)",
                append_duration.clone(),
            );
            r.register(
                "query_duration_seconds",
                "Latency of reads and queries of the store, by operation",
                query_duration.clone(),
            );
            r.register(
                "event_store_bytes",
                "Size of the events table with its indexes, when last measured",
                store_bytes.clone(),
            );
            r.register(
                "projection_position",
                "Global position of the last event a projection processed",
                projection_position.clone(),
            );
            r.register(
                "projection_lag_events",
                "Events of the log after a projection's checkpoint",
                projection_lag.clone(),
            );
            r.register(
                "projection_events",
                "Events by projection and outcome: handled, failed (an attempt), skipped",
                projection_events.clone(),
            );
            r.register(
                "projection_batch_duration_seconds",
                "Time to apply one batch and move the checkpoint",
                projection_batch_duration.clone(),
            );
            r.register(
                "supervisor_restarts",
                "Children the supervisor restarted after a failure",
                restarts.clone(),
            );
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
            events_appended,
            append_duration,
            query_duration,
            store_bytes,
            projection_position,
            projection_lag,
            projection_events,
            projection_batch_duration,
            restarts,
            seed,
            extensions: Extensions::default(),
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

    /// `store`, wrapped so that its operations are measured into these metrics (append
    /// latency and events appended; every other operation's latency, by operation) and
    /// each append gets a `tracing` span with the correlation and causation ids.
    /// [`Factum`](crate::Factum) and the [`Supervisor`](crate::Supervisor) wrap their
    /// store this way themselves.
    ///
    /// This is also where a backend's own metrics join the registry (the PostgreSQL
    /// store's coalescing figures): it is handed the registry
    /// ([`LogBackend::instrumented`](crate::store::LogBackend::instrumented)), so they
    /// cannot go missing.
    pub fn instrument(self: &Arc<Self>, store: Arc<dyn EventStore>) -> Arc<dyn EventStore> {
        self.with_registry_mut(|r| store.instrumented(r.sub_registry_with_prefix("factum"), self.clone()));
        Arc::new(instrumented::Instrumented { store, metrics: self.clone() })
    }

    /// The metrics of a crate built on factum (the RabbitMQ bus's, say), registered in
    /// this registry the first time they are asked for; every later call returns the
    /// same ones. So everything the framework and its crates measure lands in the one
    /// registry these metrics were made with.
    pub fn extension<T: MetricsExtension>(&self) -> T {
        self.extensions.get_or_register(|fresh: &T| self.with_registry_mut(|r| fresh.register(r)))
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

    pub(crate) fn appended(&self, aggregate_type: &str, events: usize, took: Duration) {
        self.events_appended.get_or_create(&Self::agg(aggregate_type)).inc_by(events as u64);
        self.append_duration.observe(took.as_secs_f64());
    }

    pub(crate) fn query(&self, operation: &str, took: Duration) {
        self.query_duration
            .get_or_create(&OperationLabels { operation: operation.to_owned() })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn store_size(&self, bytes: u64) {
        self.store_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    fn proj(name: &str) -> ProjectionLabels {
        ProjectionLabels { projection: name.to_owned() }
    }

    pub(crate) fn projection_progress(&self, name: &str, position: u64, lag: Option<u64>) {
        self.projection_position
            .get_or_create(&Self::proj(name))
            .set(i64::try_from(position).unwrap_or(i64::MAX));
        if let Some(lag) = lag {
            self.projection_lag.get_or_create(&Self::proj(name)).set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
    }

    pub(crate) fn projection_events(&self, name: &str, outcome: &str, n: u64) {
        self.projection_events
            .get_or_create(&ProjectionOutcomeLabels {
                projection: name.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc_by(n);
    }

    pub(crate) fn projection_batch(&self, name: &str, took: Duration) {
        self.projection_batch_duration.get_or_create(&Self::proj(name)).observe(took.as_secs_f64());
    }

    pub(crate) fn restarted(&self, child: &str) {
        self.restarts.get_or_create(&ChildLabels { child: child.to_owned() }).inc();
    }

    /// Records a finished replay (the replay metrics).
    pub(crate) fn replay_finished(&self, replayed: u64, failed: u64, took: Duration) {
        let m = &self.seed;
        m.replay_runs.inc();
        m.events_replayed.inc_by(replayed);
        m.replay_failed.inc_by(failed);
        m.replay_last_run.set(unix_now());
        m.replay_last_duration.set(took.as_secs_f64());
        m.replay_last_count.set(i64::try_from(replayed).unwrap_or(i64::MAX));
    }

    /// Records a finished retention clean-up (the retention metrics).
    pub(crate) fn cleanup_finished(&self, deleted: u64, took: Duration) {
        let m = &self.seed;
        let deleted = i64::try_from(deleted).unwrap_or(i64::MAX);
        m.retention_runs.inc();
        m.retention_total_deleted.inc_by(deleted);
        m.retention_last_cleanup.set(unix_now());
        m.retention_last_duration.set(took.as_secs_f64());
        m.retention_last_deleted.set(deleted);
    }

    /// A projection's lag in events, as last measured (0 before the first measurement).
    pub fn projection_lag(&self, projection: &str) -> i64 {
        self.projection_lag.get_or_create(&Self::proj(projection)).get()
    }

    /// Children the supervisor restarted, by child name (`projection:<name>`, `replay`,
    /// `retention`).
    pub fn restarts(&self, child: &str) -> u64 {
        self.restarts.get_or_create(&ChildLabels { child: child.to_owned() }).get()
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
