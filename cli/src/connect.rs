//! Which database and which names: flags first, then the environment.

use std::time::Duration;

use clap::Args;
use factum_postgres::{PoolSettings, PostgresConfig, PostgresStore, SchemaNames};

use crate::error::CliError;

/// The database and the store's names, shared by every command.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Database")]
pub(crate) struct Database {
    /// The database URL (else DATABASE_HOST, DATABASE_NAME, DATABASE_USER,
    /// DATABASE_PASSWORD and DATABASE_PORT).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// The schema that holds the store's tables.
    #[arg(long, env = "FACTUM_SCHEMA", default_value = "public", global = true, hide_env_values = true)]
    schema: String,
    /// The events table.
    #[arg(
        long,
        env = "FACTUM_EVENTS_TABLE",
        default_value = "events",
        global = true,
        hide_env_values = true
    )]
    events_table: String,
    /// The table of streams' heads.
    #[arg(
        long,
        env = "FACTUM_STREAMS_TABLE",
        default_value = "event_streams",
        global = true,
        hide_env_values = true
    )]
    streams_table: String,
    /// The snapshots table.
    #[arg(
        long,
        env = "FACTUM_SNAPSHOTS_TABLE",
        default_value = "snapshots",
        global = true,
        hide_env_values = true
    )]
    snapshots_table: String,
    /// The projections' checkpoints table.
    #[arg(
        long,
        env = "FACTUM_POSITIONS_TABLE",
        default_value = "projection_positions",
        global = true,
        hide_env_values = true
    )]
    positions_table: String,
    /// The projections' recorded failures table.
    #[arg(
        long,
        env = "FACTUM_FAILURES_TABLE",
        default_value = "projection_failures",
        global = true,
        hide_env_values = true
    )]
    failures_table: String,
    /// The applied migrations table.
    #[arg(
        long,
        env = "FACTUM_MIGRATIONS_TABLE",
        default_value = "factum_migrations",
        global = true,
        hide_env_values = true
    )]
    migrations_table: String,
    /// The lean schema: the events table without the query indexes (only for
    /// `migrate --print-sql` / `--out` and a first `migrate`; every store on a database
    /// should use the same setting).
    #[arg(long, env = "FACTUM_LEAN_SCHEMA", global = true, hide_env_values = true)]
    lean_schema: bool,
    /// How long to wait for a connection, in seconds.
    #[arg(long, env = "FACTUM_CONNECT_TIMEOUT", default_value_t = 5, global = true, hide_env_values = true)]
    connect_timeout: u64,
}

impl Database {
    /// The names, checked to be plain identifiers.
    pub(crate) fn names(&self) -> Result<SchemaNames, CliError> {
        let names = SchemaNames::in_schema(&self.schema)
            .events(&self.events_table)
            .streams(&self.streams_table)
            .snapshots(&self.snapshots_table)
            .positions(&self.positions_table)
            .failures(&self.failures_table)
            .migrations(&self.migrations_table)
            .query_indexes(!self.lean_schema);
        names.expand("")?;
        Ok(names)
    }

    /// Connects (a small pool: a command line runs a few statements).
    pub(crate) async fn connect(&self) -> Result<PostgresStore, CliError> {
        let config = match &self.database_url {
            Some(url) if !url.is_empty() => PostgresConfig::from_url(url)?,
            _ => PostgresConfig::from_env()?,
        };
        let timeout = Duration::from_secs(self.connect_timeout.max(1));
        let config = config
            .with_schema(self.names()?)
            .with_pool(PoolSettings::default().max_connections(4).connect_timeout(timeout));
        Ok(PostgresStore::connect(config).await?)
    }

    /// Connects, and checks that the store's schema is there (a clear error before any
    /// query meets a missing table).
    pub(crate) async fn store(&self) -> Result<PostgresStore, CliError> {
        let store = self.connect().await?;
        let migrations = store.migrations().await?;
        if migrations.iter().all(|m| m.applied_at.is_none()) {
            let names = store.names();
            return Err(CliError::NotFound(format!(
                "no factum store in schema {:?} (table {}.{} not found or empty): run `factum migrate`, or check --schema",
                names.schema, names.schema, names.migrations
            )));
        }
        Ok(store)
    }
}
