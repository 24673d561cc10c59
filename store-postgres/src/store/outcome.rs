//! Appends whose outcome is unknown: the connection was lost after the append was sent
//! (a failover, a server killed, a network cut), so nobody saw whether it committed.
//!
//! Such an append is resolved by its event ids, which the events table keeps unique: the
//! store sends the same append again, as soon as a server accepts writes.
//! - If the first attempt committed, the retry meets its own ids (or the version they
//!   took) and is answered with the stored result, as any exact retry is.
//! - If it did not, the retry is the append: it commits, or meets a true conflict with
//!   another writer's events.
//!
//! Either way the caller gets the true result, never a conflict or an error for an append
//! that committed. If no server accepts writes within the resolution window
//! ([`PoolSettings::outcome_timeout`](crate::PoolSettings::outcome_timeout)), the caller
//! gets [`StoreError::OutcomeUnknown`].

use std::time::{Duration, Instant};

use factum::store::AppendResult;
use factum::{ExpectedVersion, NewEvent, StoreError, StreamId};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::PostgresStore;
use crate::availability::outcome_unknown;

/// How often an unresolved append is tried again while no server accepts writes.
const RETRY_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Resolution {
    resolution: &'static str,
}

/// How unknown outcomes were resolved, since the store was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutcomeStats {
    /// Appends found committed by their ids.
    pub committed: u64,
    /// Appends found not committed, and stored by the retry.
    pub stored_by_retry: u64,
    /// Appends found not committed whose retry met another writer's events (a conflict).
    pub conflicted: u64,
    /// Appends still unknown when the resolution window ended.
    pub unresolved: u64,
}

#[derive(Default)]
pub(crate) struct Outcomes {
    family: Family<Resolution, Counter>,
}

impl Outcomes {
    fn count(&self, resolution: &'static str) {
        self.family.get_or_create(&Resolution { resolution }).inc();
    }

    fn get(&self, resolution: &'static str) -> u64 {
        self.family.get_or_create(&Resolution { resolution }).get()
    }

    pub(crate) fn snapshot(&self) -> OutcomeStats {
        OutcomeStats {
            committed: self.get("committed"),
            stored_by_retry: self.get("stored_by_retry"),
            conflicted: self.get("conflicted"),
            unresolved: self.get("unresolved"),
        }
    }

    /// Registers `append_unknown_outcomes` (`factum_…_total` in the framework's registry).
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "append_unknown_outcomes",
            "Appends whose connection was lost before their answer, by how each was resolved",
            self.family.clone(),
        );
    }
}

/// Whether an append that failed with `e` may have committed.
pub(crate) fn may_have_committed(e: &StoreError) -> bool {
    match e {
        StoreError::Timeout { .. } => true,
        StoreError::Backend(inner) => inner.downcast_ref::<sqlx::Error>().is_some_and(outcome_unknown),
        _ => false,
    }
}

impl PostgresStore {
    /// An append tried alone, each attempt bounded by the operation timeout. `sent` says
    /// that it was sent already (in a flush whose connection was lost), so that its
    /// outcome is unknown from the start; an attempt that loses its connection makes it
    /// so too. An unknown outcome is resolved as the module says.
    pub(crate) async fn append_resolved(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
        sent: bool,
    ) -> Result<AppendResult, StoreError> {
        let mut unknown = sent.then(Instant::now);
        loop {
            let attempt = self.bounded("append", self.append_alone(stream, expected, events)).await;
            let Some(since) = unknown else {
                match attempt {
                    Err(e) if may_have_committed(&e) => {
                        unknown = Some(Instant::now());
                        tracing::warn!(%stream, error = %e, "append outcome unknown; resolving it by its event ids");
                        continue;
                    }
                    other => return other,
                }
            };
            let reason = match attempt {
                Ok(mut result) => {
                    let resolution = if result.deduplicated { "committed" } else { "stored_by_retry" };
                    self.inner.outcomes.count(resolution);
                    tracing::info!(%stream, resolution, after_ms = since.elapsed().as_millis() as u64,
                        "append outcome resolved");
                    // The caller's own append landed (once): not a repeat of an earlier one.
                    result.deduplicated = false;
                    return Ok(result);
                }
                Err(e @ StoreError::Conflict { .. }) => {
                    // Not stored (its ids are not in the log), and the stream moved on.
                    self.inner.outcomes.count("conflicted");
                    return Err(e);
                }
                // Anything else leaves the outcome unknown (a lock or statement timeout
                // behind the first attempt, a read-only server, a stored batch that does
                // not read back equal): try again until the window ends.
                Err(e) => e.to_string(),
            };
            let left = self.inner.outcome_timeout.saturating_sub(since.elapsed());
            if left.is_zero() {
                self.inner.outcomes.count("unresolved");
                tracing::error!(%stream, %reason, "append outcome still unknown at the end of the resolution window");
                return Err(StoreError::OutcomeUnknown { stream: stream.clone(), reason });
            }
            tokio::time::sleep(RETRY_EVERY.min(left)).await;
        }
    }
}
