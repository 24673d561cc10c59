//! The bus's errors: what can go wrong while connecting and declaring, at start-up.

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};

/// Why the bus could not connect to the broker or set up its exchange or queue.
///
/// Returned at start-up ([`Publisher::connect`](crate::Publisher::connect),
/// [`Subscriber::start`](crate::Subscriber::start)), so that a misconfiguration is a
/// clear error before anything runs. Later outages are waited out, not returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The URL is not an AMQP URL (`amqp://user:password@host:port/vhost`).
    #[error("invalid AMQP URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, with any password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No broker answered at the URL's address.
    #[error("no AMQP broker reachable at {url}: {reason}")]
    Unreachable {
        /// The URL, with any password masked.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// The broker refused the user name and password, or the user may not use the
    /// virtual host.
    #[error("the broker at {url} refused the credentials or the virtual host: {reason}")]
    AccessRefused {
        /// The URL, with any password masked.
        url: String,
        /// The broker's reason.
        reason: String,
    },
    /// The exchange exists with another type or other properties than the bus declares
    /// (a durable topic exchange).
    #[error("exchange {exchange:?} exists with another type or other properties: {reason}")]
    ExchangeMismatch {
        /// The exchange.
        exchange: String,
        /// The broker's reason.
        reason: String,
    },
    /// The queue exists with other properties (durability, type, arguments) than the
    /// subscriber declares.
    #[error("queue {queue:?} exists with other properties: {reason}")]
    QueueMismatch {
        /// The queue.
        queue: String,
        /// The broker's reason.
        reason: String,
    },
    /// A name or pattern in the configuration is not usable (empty, too long, or a
    /// topic pattern that does not parse).
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other protocol or I/O error from the broker.
    #[error("AMQP error: {0}")]
    Amqp(#[source] lapin::Error),
    /// The event store or the deduplication table failed.
    #[error("store error: {0}")]
    Store(String),
}

/// Masks the password in an AMQP URL for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = rest.find(['/', '?']).map_or((rest, ""), |i| rest.split_at(i));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Whether an AMQP error is the broker refusing access.
pub(crate) fn is_access_refused(error: &lapin::Error) -> bool {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => matches!(
            e.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
        ),
        lapin::ErrorKind::AuthProviderError(_) => true,
        _ => {
            // RabbitMQ closes the socket after a failed PLAIN login; lapin reports it
            // as a connection-state error whose text names the refusal.
            let text = error.to_string();
            text.contains("ACCESS_REFUSED") || text.contains("ACCESS-REFUSED")
        }
    }
}

/// Whether an AMQP error is a declaration that conflicts with what exists.
pub(crate) fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e)
            if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    )
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_masks_the_password_only() {
        assert_eq!(redact("amqp://guest:secret@host:5672/%2f"), "amqp://guest:***@host:5672/%2f");
        assert_eq!(redact("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact("not a url"), "not a url");
    }
}
