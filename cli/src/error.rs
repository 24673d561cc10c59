//! What can go wrong, each as one clear line: `main` prints `error: {it}` and exits with
//! [`CliError::exit_code`].

use factum::store::InvalidInput;
use factum::StoreError;
use factum_postgres::ConfigError;

/// An error of the command line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CliError {
    /// The database settings are missing or invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The store refused or failed an operation.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// An argument was refused by the store's own validation.
    #[error("{0}")]
    Input(#[from] InvalidInput),
    /// An argument that parsed but means nothing here.
    #[error("{0}")]
    Usage(String),
    /// A name that the database does not know (a projection, an event).
    #[error("{0}")]
    NotFound(String),
    /// Writing output or migration files failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A query of the command line's own failed.
    #[error("{0}")]
    Sql(String),
}

impl CliError {
    /// 2 for usage mistakes (as clap uses), 3 for something not found, 1 otherwise.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Input(_) | CliError::Config(_) => 2,
            CliError::NotFound(_) => 3,
            _ => 1,
        }
    }
}

impl From<factum::store::operator::OperatorError> for CliError {
    fn from(e: factum::store::operator::OperatorError) -> Self {
        use factum::store::operator::OperatorError;
        match e {
            OperatorError::NotFound(why) => CliError::NotFound(format!("{why} (see `factum status`)")),
            OperatorError::Refused(why) => CliError::Usage(why),
            OperatorError::Invalid(e) => CliError::Input(e),
            OperatorError::Store(e) => CliError::Store(e),
            other => CliError::Usage(other.to_string()),
        }
    }
}

impl From<factum_postgres::sqlx::Error> for CliError {
    fn from(e: factum_postgres::sqlx::Error) -> Self {
        // The store's own mapping says what happened (refused, no such database, ...).
        CliError::Store(StoreError::backend(e))
    }
}
