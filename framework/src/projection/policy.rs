//! What a projection does when an event keeps failing.

use std::time::Duration;

/// What a projection does once an event has failed `max_attempts` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExhausted {
    /// Stop the projection and report the error in its status; `resume` tries again.
    Stop,
    /// Record the event as failed (see [`EventStore::failures`](crate::store::ConsumerStore::failures)), move past it, go on.
    SkipAndRecord,
}

/// How a projection handles a failing event: retry with exponential backoff, then stop
/// or skip it. The default: 5 attempts, 100 ms doubling to 30 s, then stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailurePolicy {
    /// Attempts per event, the first included (at least 1).
    pub max_attempts: u32,
    /// The delay before the second attempt; it doubles per attempt.
    pub initial_backoff: Duration,
    /// The longest delay.
    pub max_backoff: Duration,
    /// What to do after the last attempt.
    pub on_exhausted: OnExhausted,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            on_exhausted: OnExhausted::Stop,
        }
    }
}

impl FailurePolicy {
    /// Try each event `attempts` times, then stop the projection.
    pub fn retry_then_stop(attempts: u32) -> Self {
        FailurePolicy { max_attempts: attempts.max(1), ..Self::default() }
    }

    /// Try each event `attempts` times, then record it as failed and go on.
    pub fn retry_then_skip(attempts: u32) -> Self {
        FailurePolicy {
            max_attempts: attempts.max(1),
            on_exhausted: OnExhausted::SkipAndRecord,
            ..Self::default()
        }
    }

    /// Sets the backoff between attempts.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The delay after the `attempt`-th failed attempt (1-based).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        crate::backoff::Backoff::after_failures(self.initial_backoff, self.max_backoff, attempt)
    }
}
