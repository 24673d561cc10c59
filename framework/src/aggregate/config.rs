//! [`FactumConfig`]: how the command side behaves.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Aggregate, SnapshotPolicy};

/// How the command side behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FactumConfig {
    /// Passivate an aggregate's actor after this long without a command (default 5 min).
    pub idle_timeout: Duration,
    /// At most this many live actors; the least recently used are passivated first
    /// (default 10,000).
    pub max_live_actors: usize,
    /// Re-run a command at most this many times after concurrency conflicts (default 5).
    pub max_conflict_retries: u32,
    /// The first retry's delay; it doubles per retry, with jitter (default 5 ms).
    pub retry_base_delay: Duration,
    /// The longest retry delay (default 250 ms).
    pub retry_max_delay: Duration,
    /// How long a caller waits for an actor's reply (default 30 s).
    pub command_timeout: Duration,
    /// Snapshot policies set at run time, by aggregate type; the others use their
    /// declared `snapshot_every`.
    snapshot_policies: BTreeMap<&'static str, SnapshotPolicy>,
}

impl Default for FactumConfig {
    fn default() -> Self {
        FactumConfig {
            idle_timeout: Duration::from_secs(300),
            max_live_actors: 10_000,
            max_conflict_retries: 5,
            retry_base_delay: Duration::from_millis(5),
            retry_max_delay: Duration::from_millis(250),
            command_timeout: Duration::from_secs(30),
            snapshot_policies: BTreeMap::new(),
        }
    }
}

impl FactumConfig {
    /// Sets the idle timeout.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the live-actor cap.
    #[must_use]
    pub fn max_live_actors(mut self, cap: usize) -> Self {
        self.max_live_actors = cap;
        self
    }

    /// Sets how many times a conflicting command is re-run.
    #[must_use]
    pub fn max_conflict_retries(mut self, retries: u32) -> Self {
        self.max_conflict_retries = retries;
        self
    }

    /// Sets the retry delays.
    #[must_use]
    pub fn retry_delays(mut self, base: Duration, max: Duration) -> Self {
        self.retry_base_delay = base;
        self.retry_max_delay = max;
        self
    }

    /// Sets when aggregates of type `A` are snapshotted, instead of their declared
    /// `#[aggregate(snapshot_every = N)]`. Setting it again for the same type replaces
    /// it.
    ///
    /// ```
    /// use factum::FactumConfig;
    /// use factum::aggregate::SnapshotPolicy;
    /// # #[derive(Default, Clone, serde::Serialize, serde::Deserialize, factum::Aggregate)]
    /// # #[aggregate(name = "Account", command = AccountCommand, event = AccountEvent, error = AccountError, snapshot_every = 100)]
    /// # struct Account { balance: i64 }
    /// # #[derive(factum::Command)]
    /// # #[command(id = id)]
    /// # enum AccountCommand { Deposit { id: String, amount: i64 } }
    /// # #[derive(serde::Serialize, serde::Deserialize, factum::DomainEvent)]
    /// # enum AccountEvent { Deposited { amount: i64 } }
    /// # #[derive(Debug, thiserror::Error)]
    /// # #[error("never")]
    /// # struct AccountError;
    /// # impl Account {
    /// #     fn handle(&self, c: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
    /// #         let AccountCommand::Deposit { amount, .. } = c;
    /// #         Ok(vec![AccountEvent::Deposited { amount: *amount }])
    /// #     }
    /// #     fn apply(&mut self, e: &AccountEvent) {
    /// #         let AccountEvent::Deposited { amount } = e;
    /// #         self.balance += amount;
    /// #     }
    /// # }
    /// # fn main() -> Result<(), factum::aggregate::SnapshotPolicyError> {
    /// // Declared `snapshot_every = 100`; this deployment wants every 20 events.
    /// let config = FactumConfig::default().snapshot_policy::<Account>(SnapshotPolicy::every(20)?);
    /// assert_eq!(config.snapshot_policy_of::<Account>(), SnapshotPolicy::every(20)?);
    /// assert_eq!(FactumConfig::default().snapshot_policy_of::<Account>(), SnapshotPolicy::every(100)?);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn snapshot_policy<A: Aggregate>(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshot_policies.insert(A::TYPE, policy);
        self
    }

    /// The snapshot policy of aggregates of type `A`: the one set with
    /// [`snapshot_policy`](Self::snapshot_policy), or else the declared one
    /// ([`SnapshotPolicy::declared`]).
    pub fn snapshot_policy_of<A: Aggregate>(&self) -> SnapshotPolicy {
        self.snapshot_policies.get(A::TYPE).cloned().unwrap_or_else(SnapshotPolicy::declared::<A>)
    }
}
