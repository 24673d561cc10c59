//! Exponential backoff: the delays between tries that grow from a first delay to a cap.
//! Every retry loop of the framework (projections'
//! failure policy and outage waits, aggregates' conflict retries, the supervisor's
//! restarts, replay and retention) takes its delays from here.

use std::time::Duration;

/// Delays that double from a first delay up to a cap, one per failed try.
///
/// ```
/// use std::time::Duration;
/// use factum::backoff::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(300));
/// let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
/// assert_eq!(delays, [50, 100, 200, 300, 300]);
/// backoff.reset(); // after a success
/// assert_eq!(backoff.next_delay(), Duration::from_millis(50));
/// // The same delays without state: the delay after the n-th failure.
/// assert_eq!(Backoff::after_failures(Duration::from_millis(50), Duration::from_millis(300), 3), Duration::from_millis(200));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles per try, never above `max` (nor below `initial`).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, next: initial, max: max.max(initial) }
    }

    /// The delay before the next try; the one after it doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Starts over at the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The delay after the `failures`-th failure in a row (1-based; 0 counts as 1):
    /// `initial` doubled `failures - 1` times, at most `max`.
    pub fn after_failures(initial: Duration, max: Duration, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        initial.saturating_mul(factor).min(max.max(initial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let delays: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000]);
        let mut flat = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!((flat.next_delay(), flat.next_delay()), (Duration::from_secs(2), Duration::from_secs(2)));
    }

    #[test]
    fn stateless_delays_match_the_stateful_ones() {
        let (initial, max) = (Duration::from_millis(5), Duration::from_millis(250));
        let mut b = Backoff::new(initial, max);
        for failures in 1..=12 {
            assert_eq!(Backoff::after_failures(initial, max, failures), b.next_delay(), "after {failures}");
        }
        assert_eq!(Backoff::after_failures(initial, max, 0), initial);
        assert_eq!(Backoff::after_failures(initial, max, u32::MAX), max);
    }
}
