//! The subscriber's acks, sent in batches. A handled message's ack is held until no
//! further message is waiting (or half the prefetch is held, or a handler fails), and
//! then one `basic.ack` with `multiple` set covers it and every earlier delivery of the
//! channel. Under load that is one ack frame for many messages, and the consumer does
//! not wait on the connection between two messages; when the queue is idle, each ack goes
//! out as soon as its message is handled.
//!
//! A message is never acked before its handler returned `Ok`. Acks held when the
//! connection is lost are lost with it, and the broker delivers those messages again,
//! as for an ack lost in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::BasicAckOptions;
use lapin::Acker;

/// How long sending an ack (or a dead letter) may take before its connection counts as
/// lost: a connection that died without closing can leave the send pending for good.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// `op`, or an error when the connection does not carry it out within [`SEND_TIMEOUT`].
pub(crate) async fn bounded<T>(op: impl Future<Output = Result<T, lapin::Error>>) -> Result<T, lapin::Error> {
    match tokio::time::timeout(SEND_TIMEOUT, op).await {
        Ok(result) => result,
        Err(_) => Err(lapin::Error::from(lapin::ErrorKind::IOError(Arc::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the connection did not send within {SEND_TIMEOUT:?}"),
        ))))),
    }
}

/// Acks held back: the last handled delivery's acker stands for all of them.
pub(crate) struct Acks {
    last: Option<Acker>,
    held: usize,
    limit: usize,
}

impl Acks {
    /// Holds at most half of `prefetch` acks, so the broker always has room to send more.
    pub(crate) fn new(prefetch: u16) -> Self {
        Acks { last: None, held: 0, limit: usize::from(prefetch).div_ceil(2).max(1) }
    }

    /// Whether any ack is held.
    pub(crate) fn holding(&self) -> bool {
        self.last.is_some()
    }

    /// Holds the ack of a message its handler succeeded on; sends the held acks once
    /// `limit` are held.
    pub(crate) async fn handled(&mut self, acker: Acker) -> Result<(), lapin::Error> {
        self.last = Some(acker);
        self.held += 1;
        if self.held >= self.limit {
            self.send().await
        } else {
            Ok(())
        }
    }

    /// Sends the held acks, as one ack with `multiple`.
    pub(crate) async fn send(&mut self) -> Result<(), lapin::Error> {
        self.held = 0;
        match self.last.take() {
            Some(acker) => bounded(acker.ack(BasicAckOptions { multiple: true })).await.map(drop),
            None => Ok(()),
        }
    }

    /// Forgets the held acks: their connection is gone, and the broker delivers those
    /// messages again.
    pub(crate) fn forget(&mut self) {
        self.last = None;
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Acks;

    #[test]
    fn holds_at_most_half_the_prefetch() {
        assert_eq!(Acks::new(64).limit, 32);
        assert_eq!(Acks::new(1).limit, 1);
        assert_eq!(Acks::new(3).limit, 2);
        assert!(!Acks::new(64).holding());
    }
}
