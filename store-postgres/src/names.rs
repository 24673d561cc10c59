//! The schema and table names a store uses, checked to be plain identifiers.

use crate::config::ConfigError;

/// Names of the schema and tables the store uses, and whether the events table carries
/// query indexes. Every name is checked to be a plain lowercase identifier before it
/// reaches SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaNames {
    /// The PostgreSQL schema (default `public`, so the standard monitoring SQL runs as is).
    pub schema: String,
    /// The events table (default `events`).
    pub events: String,
    /// The per-stream head table (default `event_streams`).
    pub streams: String,
    /// The snapshots table (default `snapshots`).
    pub snapshots: String,
    /// The consumer checkpoints table (default `projection_positions`).
    pub positions: String,
    /// The projections' recorded failures (default `projection_failures`).
    pub failures: String,
    /// The applied-migrations table (default `factum_migrations`).
    pub migrations: String,
    /// Whether the events table carries the query indexes (default `true`), so that every
    /// filter of [`query`](factum::store::EventLog::query), [`count`](factum::store::EventLog::count)
    /// and [`stream`](factum::store::EventLog::stream) uses an index. `false` keeps only the
    /// log's own indexes, which appends, stream reads and catch-up need: cheaper appends
    /// for a store nobody queries ad hoc, whose filtered queries then read the whole
    /// table. Migration 7 creates the indexes or not by this setting; every store on the
    /// database should use the same one. See `docs/event-store.md` (Indexes).
    pub query_indexes: bool,
}

impl Default for SchemaNames {
    fn default() -> Self {
        SchemaNames {
            schema: "public".into(),
            events: "events".into(),
            streams: "event_streams".into(),
            snapshots: "snapshots".into(),
            positions: "projection_positions".into(),
            failures: "projection_failures".into(),
            migrations: "factum_migrations".into(),
            query_indexes: true,
        }
    }
}

pub(crate) fn check_identifier(what: &'static str, value: &str) -> Result<(), ConfigError> {
    let mut bytes = value.bytes();
    let ok = (1..=40).contains(&value.len())
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidIdentifier { what, value: value.to_owned() })
    }
}

impl SchemaNames {
    /// The default names inside another schema.
    pub fn in_schema(schema: impl Into<String>) -> Self {
        SchemaNames { schema: schema.into(), ..Self::default() }
    }

    /// Sets the events table's name.
    #[must_use]
    pub fn events(mut self, name: impl Into<String>) -> Self {
        self.events = name.into();
        self
    }

    /// Sets the stream head table's name.
    #[must_use]
    pub fn streams(mut self, name: impl Into<String>) -> Self {
        self.streams = name.into();
        self
    }

    /// Sets the snapshots table's name.
    #[must_use]
    pub fn snapshots(mut self, name: impl Into<String>) -> Self {
        self.snapshots = name.into();
        self
    }

    /// Sets the checkpoints table's name.
    #[must_use]
    pub fn positions(mut self, name: impl Into<String>) -> Self {
        self.positions = name.into();
        self
    }

    /// Sets the recorded-failures table's name.
    #[must_use]
    pub fn failures(mut self, name: impl Into<String>) -> Self {
        self.failures = name.into();
        self
    }

    /// Sets the applied-migrations table's name.
    #[must_use]
    pub fn migrations(mut self, name: impl Into<String>) -> Self {
        self.migrations = name.into();
        self
    }

    /// Keeps the query indexes (`true`, the default) or only the log's own (`false`): see
    /// the field of the same name.
    ///
    /// ```
    /// use factum_postgres::SchemaNames;
    /// let lean = SchemaNames::default().query_indexes(false);
    /// assert!(!lean.query_indexes);
    /// ```
    #[must_use]
    pub fn query_indexes(mut self, on: bool) -> Self {
        self.query_indexes = on;
        self
    }

    /// Fills `{schema}`, `{events}`, `{streams}`, `{snapshots}`, `{positions}`,
    /// `{failures}` and `{migrations}` in an SQL template with these names, once they are
    /// checked to be plain identifiers: for tools that run their own SQL against a store.
    ///
    /// ```
    /// use factum_postgres::SchemaNames;
    /// let sql = SchemaNames::in_schema("shop").expand("SELECT count(*) FROM {schema}.{events}")?;
    /// assert_eq!(sql, "SELECT count(*) FROM shop.events");
    /// # Ok::<(), factum_postgres::ConfigError>(())
    /// ```
    pub fn expand(&self, template: &str) -> Result<String, ConfigError> {
        self.validate()?;
        Ok(crate::schema::expand(template, self))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_identifier("schema", &self.schema)?;
        check_identifier("events table", &self.events)?;
        check_identifier("streams table", &self.streams)?;
        check_identifier("snapshots table", &self.snapshots)?;
        check_identifier("positions table", &self.positions)?;
        check_identifier("failures table", &self.failures)?;
        check_identifier("migrations table", &self.migrations)
    }
}
