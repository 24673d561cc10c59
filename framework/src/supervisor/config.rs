//! How the supervisor and its children behave.

use std::sync::Arc;
use std::time::Duration;

use super::{HealthConfig, RetentionConfig};
use crate::metrics::Metrics;
use crate::projection::Projection;

/// How the supervisor and its children behave.
#[non_exhaustive]
pub struct SupervisorConfig {
    pub(crate) projections: Vec<Projection>,
    pub(crate) retention: RetentionConfig,
    pub(crate) metrics: Option<Arc<Metrics>>,
    /// The first restart delay after a child fails; it doubles per consecutive failure.
    pub restart_initial: Duration,
    /// The longest restart delay.
    pub restart_max: Duration,
    /// How often a standing-by instance tries to take a projection over (default 1 s).
    pub lease_retry: Duration,
    /// How long shutdown waits for each child to finish its batch (default 30 s).
    pub shutdown_timeout: Duration,
    /// How often the events table's size is measured for the metrics (default 60 s).
    pub storage_interval: Duration,
    /// What [`Supervisor::health`](super::Supervisor::health) counts as healthy.
    pub health: HealthConfig,
}

impl std::fmt::Debug for SupervisorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorConfig")
            .field("projections", &self.projections)
            .field("retention", &self.retention)
            .field("restart_initial", &self.restart_initial)
            .field("restart_max", &self.restart_max)
            .field("lease_retry", &self.lease_retry)
            .finish_non_exhaustive()
    }
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            projections: Vec::new(),
            retention: RetentionConfig::default(),
            metrics: None,
            restart_initial: Duration::from_millis(100),
            restart_max: Duration::from_secs(30),
            lease_retry: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            storage_interval: Duration::from_secs(60),
            health: HealthConfig::default(),
        }
    }
}

impl SupervisorConfig {
    /// Adds a projection.
    #[must_use]
    pub fn projection(mut self, projection: Projection) -> Self {
        self.projections.push(projection);
        self
    }

    /// Sets the retention policy.
    #[must_use]
    pub fn retention(mut self, retention: RetentionConfig) -> Self {
        self.retention = retention;
        self
    }

    /// Registers the metrics in these (shared with [`Factum`](crate::Factum), typically).
    #[must_use]
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets the restart backoff.
    #[must_use]
    pub fn restart_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.restart_initial = initial;
        self.restart_max = max.max(initial);
        self
    }

    /// Sets what [`Supervisor::health`](super::Supervisor::health) counts as healthy.
    #[must_use]
    pub fn health(mut self, health: HealthConfig) -> Self {
        self.health = health;
        self
    }

    /// Sets how often a standing-by instance tries to take a projection over.
    #[must_use]
    pub fn lease_retry(mut self, every: Duration) -> Self {
        self.lease_retry = every;
        self
    }
}
