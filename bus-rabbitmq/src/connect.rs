//! Connecting to the broker, with typed start-up errors and a reconnect backoff.

use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

use crate::error::{is_access_refused, redact, BusError};

/// Parses `url` and opens a connection named `name` (shown by `rabbitmqctl
/// list_connections`), mapping failures to [`BusError`]s.
pub(crate) async fn connect(url: &str, name: &str) -> Result<Connection, BusError> {
    let uri: AMQPUri =
        url.parse().map_err(|reason: String| BusError::InvalidUrl { url: redact(url), reason })?;
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect_uri(uri, properties).await.map_err(|e| classify(url, e))
}

fn classify(url: &str, error: lapin::Error) -> BusError {
    if is_access_refused(&error) {
        BusError::AccessRefused { url: redact(url), reason: error.to_string() }
    } else if error.is_io_error() {
        BusError::Unreachable { url: redact(url), reason: error.to_string() }
    } else {
        BusError::Amqp(error)
    }
}

/// Whether a connection error can pass by waiting (the broker is down or restarting),
/// as opposed to a configuration error that waiting will not fix.
pub(crate) fn is_transient(error: &BusError) -> bool {
    matches!(error, BusError::Unreachable { .. } | BusError::Amqp(_))
}

/// Exponential backoff for reconnecting: `initial`, doubling to `max`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max: max.max(initial), next: initial }
    }

    /// The delay to wait now; the next one doubles.
    pub(crate) fn delay(&mut self) -> Duration {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        now
    }

    /// Starts over at the shortest delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<_> = (0..4).map(|_| b.delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.delay().as_millis(), 100);
    }

    #[tokio::test]
    async fn a_bad_url_is_a_typed_error() {
        let err = connect("http://nowhere", "t").await.unwrap_err();
        assert!(matches!(err, BusError::InvalidUrl { .. }), "{err:?}");
    }
}
