//! The service's health as the supervisor sees it: whether the store answers, and
//! whether every projection is live and close behind the log.

use std::time::Duration;

use crate::projection::{ProjectionState, ProjectionStatus};
use crate::store::{BuildState, EventStore};

/// How healthy the service is, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HealthStatus {
    /// The store did not answer within the probe's timeout.
    Unavailable,
    /// The store answers, but a projection is not live or lags beyond the bound: read
    /// models are behind.
    Degraded,
    /// The store answers and every projection is live (here or in another instance).
    Ok,
}

impl HealthStatus {
    /// `"ok"`, `"degraded"` or `"unavailable"`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unavailable => "unavailable",
        }
    }
}

/// What [`Supervisor::health`](crate::Supervisor::health) found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Why it is not [`HealthStatus::Ok`], one line per cause.
    pub reasons: Vec<String>,
}

/// The health checks' settings. Defaults: a projection whose last measured lag is more
/// than 1,000 events is behind; the store must answer within 800 ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthConfig {
    /// The most events a live projection may lag before the service is degraded.
    pub max_lag: u64,
    /// How long the store's probe may take; kept under a second so that a health check
    /// answers within one whatever the database does.
    pub probe_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { max_lag: 1_000, probe_timeout: Duration::from_millis(800) }
    }
}

/// Probes the store and judges the projections' statuses.
pub(crate) async fn check(
    store: &dyn EventStore,
    statuses: &[ProjectionStatus],
    config: HealthConfig,
) -> Health {
    let mut reasons = Vec::new();
    let mut status = HealthStatus::Ok;
    match tokio::time::timeout(config.probe_timeout, store.latest_position()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            status = HealthStatus::Unavailable;
            reasons.push(format!("store: {e}"));
        }
        Err(_) => {
            status = HealthStatus::Unavailable;
            reasons.push(format!("store: no answer within {} ms", config.probe_timeout.as_millis()));
        }
    }
    for s in statuses {
        let behind = match &s.state {
            // Standing by: live in the instance that holds the lease. Retired: a newer
            // build serves.
            ProjectionState::Live | ProjectionState::Standby | ProjectionState::Retired => None,
            ProjectionState::CatchingUp => None,
            other => Some(format!("projection {} is {}", s.name, state_name(other))),
        };
        // A build still building serves nobody yet: the live one does.
        let building = s.build.as_ref().is_some_and(|b| b.state == BuildState::Building);
        let lagging = match s.lag {
            Some(lag) if lag > config.max_lag && s.state != ProjectionState::Standby && !building => {
                Some(format!("projection {} lags {lag} events (more than {})", s.name, config.max_lag))
            }
            _ => None,
        };
        for reason in behind.into_iter().chain(lagging) {
            status = status.min(HealthStatus::Degraded);
            reasons.push(reason);
        }
    }
    Health { status, reasons }
}

fn state_name(state: &ProjectionState) -> String {
    match state {
        ProjectionState::Starting => "starting".into(),
        ProjectionState::Paused => "paused".into(),
        ProjectionState::Rebuilding => "rebuilding".into(),
        ProjectionState::Retrying { attempts } => format!("retrying a failed event ({attempts} attempts)"),
        ProjectionState::Failed => "stopped by its failure policy".into(),
        ProjectionState::WaitingForStore => "waiting for the store".into(),
        ProjectionState::Stopped => "stopped".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemoryStore;

    fn status(name: &str, state: ProjectionState, lag: Option<u64>) -> ProjectionStatus {
        let mut s = ProjectionStatus::new(name, 1);
        s.state = state;
        s.lag = lag;
        s
    }

    #[tokio::test]
    async fn live_and_standby_are_ok_the_rest_degrades() {
        let store = InMemoryStore::new();
        let config = HealthConfig::default();
        let fine =
            [status("a", ProjectionState::Live, Some(3)), status("b", ProjectionState::Standby, Some(5_000))];
        assert_eq!(check(&store, &fine, config).await, Health { status: HealthStatus::Ok, reasons: vec![] });

        let bad = [
            status("a", ProjectionState::WaitingForStore, None),
            status("b", ProjectionState::Live, Some(1_001)),
            status("c", ProjectionState::CatchingUp, Some(10)),
        ];
        let health = check(&store, &bad, config).await;
        assert_eq!(health.status, HealthStatus::Degraded);
        assert_eq!(
            health.reasons,
            ["projection a is waiting for the store", "projection b lags 1001 events (more than 1000)"]
        );
    }
}
