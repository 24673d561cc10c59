//! Connecting to the broker, with typed start-up errors. Reconnects wait with
//! [`factum::backoff::Backoff`].

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_a_typed_error() {
        let err = connect("http://nowhere", "t").await.unwrap_err();
        assert!(matches!(err, BusError::InvalidUrl { .. }), "{err:?}");
    }
}
