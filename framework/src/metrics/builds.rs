//! The metrics of projection builds: how far a build being built has come, and how long
//! builds took.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::ProjectionLabels;
use super::{Metrics, MetricsExtension};

/// `factum_projection_build_position`, `factum_projection_build_seconds` and
/// `factum_projection_builds`, by projection.
#[derive(Clone, Default)]
pub(crate) struct BuildMetrics {
    position: Family<ProjectionLabels, Gauge>,
    seconds: Family<ProjectionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    builds: Family<ProjectionLabels, Counter>,
}

impl MetricsExtension for BuildMetrics {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("factum");
        r.register(
            "projection_build_position",
            "Global position of the last event a build being built (a new version, or a rebuild's copy) processed",
            self.position.clone(),
        );
        r.register(
            "projection_build_seconds",
            "Time the last build of a projection took, from its start to readers switching to it",
            self.seconds.clone(),
        );
        r.register("projection_builds", "Builds that became live, by projection", self.builds.clone());
    }
}

fn labels(projection: &str) -> ProjectionLabels {
    ProjectionLabels { projection: projection.to_owned() }
}

impl Metrics {
    /// A build being built of `projection` reached `position`.
    pub(crate) fn projection_building(&self, projection: &str, position: u64) {
        let m = self.extension::<BuildMetrics>();
        m.position.get_or_create(&labels(projection)).set(i64::try_from(position).unwrap_or(i64::MAX));
    }

    /// A build of `projection` became live after `took`.
    pub(crate) fn projection_built(&self, projection: &str, took: std::time::Duration) {
        let m = self.extension::<BuildMetrics>();
        m.seconds.get_or_create(&labels(projection)).set(took.as_secs_f64());
        m.builds.get_or_create(&labels(projection)).inc();
    }
}
