//! The publisher's lag gauges, measured on an interval beside it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use factum::store::Checkpoint;
use factum::task::AbortOnDrop;
use factum::{EventStore, StoreError};

use crate::metrics::BusMetrics;

/// Measures every `every`: the events stored after the publisher's stored checkpoint,
/// and how long ago the oldest of them was recorded (0 when there is none).
pub(crate) fn spawn_lag(
    store: Arc<dyn EventStore>,
    name: String,
    categories: Vec<String>,
    metrics: BusMetrics,
    every: Duration,
) -> AbortOnDrop<()> {
    AbortOnDrop::new(tokio::spawn(async move {
        let labels = metrics.publisher(&name);
        loop {
            match measure(store.as_ref(), &name, &categories).await {
                Ok((events, seconds)) => {
                    // The age first: a reader that sees the new count sees its age too.
                    metrics.lag_seconds.get_or_create(&labels).set(seconds);
                    metrics.lag_events.get_or_create(&labels).set(i64::try_from(events).unwrap_or(i64::MAX));
                }
                Err(e) => {
                    tracing::debug!(publisher = %name, error = %e, "could not measure the publisher's lag")
                }
            }
            tokio::time::sleep(every).await;
        }
    }))
}

async fn measure(
    store: &dyn EventStore,
    name: &str,
    categories: &[String],
) -> Result<(u64, f64), StoreError> {
    let checkpoint = store.load_checkpoint(name).await?.unwrap_or(Checkpoint::START);
    let events = store.count_after(checkpoint, categories).await?;
    if events == 0 {
        return Ok((0, 0.0));
    }
    let next = match categories {
        [one] => store.read_category(one, checkpoint, 1).await?,
        _ => store.read_all(checkpoint, 1).await?,
    };
    let seconds =
        next.first().map_or(0.0, |e| (Utc::now() - e.recorded_at).num_milliseconds().max(0) as f64 / 1e3);
    Ok((events, seconds))
}
