//! The replay and retention metrics, under the names their operators already know.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The replay and retention metrics, under their established names (no prefix).
#[derive(Default)]
pub(super) struct SeedMetrics {
    pub(super) replay_runs: Counter,
    pub(super) events_replayed: Counter,
    pub(super) replay_failed: Counter,
    pub(super) replay_last_run: Gauge<f64, AtomicU64>,
    pub(super) replay_last_duration: Gauge<f64, AtomicU64>,
    pub(super) replay_last_count: Gauge,
    pub(super) retention_runs: Counter,
    pub(super) retention_total_deleted: Gauge,
    pub(super) retention_last_cleanup: Gauge<f64, AtomicU64>,
    pub(super) retention_last_duration: Gauge<f64, AtomicU64>,
    pub(super) retention_last_deleted: Gauge,
}

impl SeedMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register("eventstore_replay_runs", "Total replay operations", self.replay_runs.clone());
        r.register(
            "eventstore_events_replayed",
            "Total events processed by replays",
            self.events_replayed.clone(),
        );
        r.register(
            "eventstore_replay_failed_events",
            "Events a replay handler failed on",
            self.replay_failed.clone(),
        );
        r.register(
            "eventstore_replay_last_run_timestamp",
            "Unix timestamp of the last replay's end",
            self.replay_last_run.clone(),
        );
        r.register(
            "eventstore_replay_last_duration_seconds",
            "Duration of the last replay",
            self.replay_last_duration.clone(),
        );
        r.register(
            "eventstore_replay_last_count",
            "Events processed in the last replay",
            self.replay_last_count.clone(),
        );
        r.register(
            "eventstore_retention_cleanup_runs",
            "Total retention clean-ups",
            self.retention_runs.clone(),
        );
        // A gauge, not a counter: a counter's exposition name would gain `_total`, and
        // the established name, as is.
        r.register(
            "eventstore_retention_total_events_deleted",
            "Total events deleted by retention (monotonic)",
            self.retention_total_deleted.clone(),
        );
        r.register(
            "eventstore_retention_last_cleanup_timestamp",
            "Unix timestamp of the last clean-up",
            self.retention_last_cleanup.clone(),
        );
        r.register(
            "eventstore_retention_last_cleanup_duration_seconds",
            "Duration of the last clean-up",
            self.retention_last_duration.clone(),
        );
        r.register(
            "eventstore_retention_last_cleanup_deleted",
            "Events deleted in the last clean-up",
            self.retention_last_deleted.clone(),
        );
    }
}
