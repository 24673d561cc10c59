//! What a failed connection or statement says: whether the server was unreachable,
//! whether a statement that failed may have committed, and a one-line description.

/// Whether `e` says the server could not be reached or went away, rather than that a
/// statement was refused.
pub(crate) fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => {
            true
        }
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // connection_exception, admin/crash shutdown, cannot_connect_now, too_many_connections
            // read_only_sql_transaction: a standby, or a primary that was demoted.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300" | "25006")
        }),
        _ => false,
    }
}

/// Whether a statement that failed with `e` may have committed: the connection broke
/// after it was sent (or the server ended the session), so nobody saw its answer. A
/// statement refused by the server, or a connection never made, did not commit.
pub(crate) fn outcome_unknown(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02"))
        }
        _ => false,
    }
}

/// A server that refused the login: no such database, or failed authentication.
pub(crate) fn is_login_refusal(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("3D000" | "28P01" | "28000")))
}

/// A server that answered with a refusal of this connection only.
pub(crate) fn is_refusal(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("53300"))
}

/// A one-line description of a connection failure, for the error and the logs.
pub(crate) fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the database server running?)".to_owned()
        }
        sqlx::Error::PoolTimedOut => "no database connection within the pool's acquire timeout".to_owned(),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("57P03") => format!("the database server is starting up or shutting down: {}", db.message()),
            Some("3D000") => format!("the database does not exist: {}", db.message()),
            Some("28P01" | "28000") => format!("authentication failed: {}", db.message()),
            _ => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_are_told_from_refused_statements() {
        let refused = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_connection_error(&refused()));
        assert!(is_connection_error(&sqlx::Error::PoolTimedOut));
        assert!(!is_connection_error(&sqlx::Error::RowNotFound));
        assert!(!is_connection_error(&sqlx::Error::PoolClosed));
        assert_eq!(describe(&refused()), "connection refused (is the database server running?)");
    }
}
