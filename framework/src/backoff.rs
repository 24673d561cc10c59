//! Exponential backoff: the delays between tries that grow from a first delay to a cap.

use std::time::Duration;

/// Delays that double from `initial` up to `max`, one per failed try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles per try, never above `max` (nor below `initial`).
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff { next: initial, max: max.max(initial) }
    }

    /// The delay before the next try; the one after it doubles.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
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
}
