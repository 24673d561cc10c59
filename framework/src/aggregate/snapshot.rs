//! When an aggregate's actor saves a snapshot: [`SnapshotPolicy`].

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

use super::Aggregate;
use crate::store::Version;

/// When an aggregate's actor saves a snapshot of its state, after a command that recorded
/// events.
///
/// Each aggregate type's default is its `#[aggregate(snapshot_every = N)]`
/// ([`Aggregate::SNAPSHOT_EVERY`]; 0 means [`Never`](Self::Never)).
/// [`FactumConfig::snapshot_policy`](crate::FactumConfig::snapshot_policy) overrides it at
/// run time, per aggregate type. A snapshot is written in the background and never fails
/// a command; loading reads the newest snapshot, then the events after it, so any policy
/// gives the same state, only the load time differs.
///
/// ```
/// use factum::Version;
/// use factum::aggregate::{SnapshotContext, SnapshotPolicy};
///
/// // Every 2 events: when the version crosses a multiple of 2.
/// let every_2 = SnapshotPolicy::every(2)?;
/// let ctx = SnapshotContext::new("Account", "acc-1", Version(1), Version(2), Version(0));
/// assert!(every_2.should_snapshot(&ctx));
///
/// // A zero interval is a typed error, not a silent "never".
/// assert!(SnapshotPolicy::every(0).is_err());
/// assert!(!SnapshotPolicy::Never.should_snapshot(&ctx));
///
/// // Your own rule: here, once 500 events have piled up since the last snapshot.
/// let custom = SnapshotPolicy::custom(|ctx| ctx.events_since_snapshot() >= 500);
/// assert!(!custom.should_snapshot(&ctx));
/// # Ok::<(), factum::aggregate::SnapshotPolicyError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum SnapshotPolicy {
    /// Snapshot whenever the version crosses a multiple of this many events: a command
    /// that takes the aggregate from version 98 to 101 with an interval of 50 writes one
    /// snapshot, at 101.
    Every(NonZeroU64),
    /// Never snapshot: every load replays the whole stream.
    Never,
    /// Ask a function, after each command that recorded events.
    Custom(Arc<dyn Fn(&SnapshotContext<'_>) -> bool + Send + Sync>),
}

/// Why a snapshot policy could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotPolicyError {
    /// An interval of zero events; use [`SnapshotPolicy::Never`] to never snapshot.
    #[error("a snapshot interval must be at least 1 event; use SnapshotPolicy::Never to never snapshot")]
    ZeroInterval,
}

impl SnapshotPolicy {
    /// Snapshot whenever the version crosses a multiple of `events`; 0 is an error.
    pub fn every(events: u64) -> Result<Self, SnapshotPolicyError> {
        NonZeroU64::new(events).map(SnapshotPolicy::Every).ok_or(SnapshotPolicyError::ZeroInterval)
    }

    /// A policy of your own: `decide` is called after each command that recorded events,
    /// on the actor's task, and must be quick. A panic in it counts as "no snapshot".
    pub fn custom(decide: impl Fn(&SnapshotContext<'_>) -> bool + Send + Sync + 'static) -> Self {
        SnapshotPolicy::Custom(Arc::new(decide))
    }

    /// The aggregate type's own default: its `snapshot_every` ([`Aggregate::SNAPSHOT_EVERY`]),
    /// 0 being [`Never`](Self::Never).
    pub fn declared<A: Aggregate>() -> Self {
        NonZeroU64::new(A::SNAPSHOT_EVERY).map_or(SnapshotPolicy::Never, SnapshotPolicy::Every)
    }

    /// Whether to snapshot after the command that `ctx` describes.
    pub fn should_snapshot(&self, ctx: &SnapshotContext<'_>) -> bool {
        match self {
            SnapshotPolicy::Every(every) => ctx.after.0 / every.get() != ctx.before.0 / every.get(),
            SnapshotPolicy::Never => false,
            SnapshotPolicy::Custom(decide) => decide(ctx),
        }
    }
}

impl fmt::Debug for SnapshotPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotPolicy::Every(n) => f.debug_tuple("Every").field(n).finish(),
            SnapshotPolicy::Never => f.write_str("Never"),
            SnapshotPolicy::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Two custom policies are equal only if they are the same function (clones of one
/// policy).
impl PartialEq for SnapshotPolicy {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SnapshotPolicy::Every(a), SnapshotPolicy::Every(b)) => a == b,
            (SnapshotPolicy::Never, SnapshotPolicy::Never) => true,
            (SnapshotPolicy::Custom(a), SnapshotPolicy::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for SnapshotPolicy {}

/// What a [`SnapshotPolicy`] decides on: the command that just committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotContext<'a> {
    /// The aggregate type ([`Aggregate::TYPE`]).
    pub aggregate_type: &'a str,
    /// The aggregate's id.
    pub aggregate_id: &'a str,
    /// The version before the command.
    pub before: Version,
    /// The version after the command (greater than `before`).
    pub after: Version,
    /// The version of the newest snapshot this actor loaded or wrote; 0 if none.
    pub last_snapshot: Version,
}

impl<'a> SnapshotContext<'a> {
    /// A context, for testing a policy of your own.
    pub fn new(
        aggregate_type: &'a str,
        aggregate_id: &'a str,
        before: Version,
        after: Version,
        last_snapshot: Version,
    ) -> Self {
        SnapshotContext { aggregate_type, aggregate_id, before, after, last_snapshot }
    }

    /// How many events a load would replay after the newest snapshot.
    pub fn events_since_snapshot(&self) -> u64 {
        self.after.0.saturating_sub(self.last_snapshot.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(before: u64, after: u64, last: u64) -> SnapshotContext<'static> {
        SnapshotContext::new("T", "t-1", Version(before), Version(after), Version(last))
    }

    #[test]
    fn every_fires_when_a_multiple_is_crossed() {
        let p = SnapshotPolicy::every(50).unwrap();
        assert!(!p.should_snapshot(&ctx(0, 49, 0)));
        assert!(p.should_snapshot(&ctx(49, 50, 0)));
        assert!(p.should_snapshot(&ctx(48, 53, 0)), "a batch that jumps over 50");
        assert!(!p.should_snapshot(&ctx(50, 99, 50)));
        assert!(p.should_snapshot(&ctx(98, 101, 50)));
        let one = SnapshotPolicy::every(1).unwrap();
        assert!(one.should_snapshot(&ctx(7, 8, 7)));
    }

    #[test]
    fn zero_is_an_error_and_never_never_fires() {
        assert_eq!(SnapshotPolicy::every(0), Err(SnapshotPolicyError::ZeroInterval));
        assert!(!SnapshotPolicy::Never.should_snapshot(&ctx(0, 1_000_000, 0)));
    }

    #[test]
    fn custom_sees_the_context() {
        let p = SnapshotPolicy::custom(|c| c.aggregate_id == "t-1" && c.events_since_snapshot() >= 10);
        assert!(!p.should_snapshot(&ctx(5, 9, 0)));
        assert!(p.should_snapshot(&ctx(9, 10, 0)));
        assert!(!p.should_snapshot(&ctx(19, 20, 12)));
        assert_eq!(p.clone(), p, "a clone is the same policy");
        assert_ne!(p, SnapshotPolicy::custom(|_| true));
        assert_eq!(format!("{p:?}"), "Custom(..)");
    }
}
