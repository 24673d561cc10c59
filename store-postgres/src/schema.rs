//! The embedded migrations and the SQL text, expanded for the configured names.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqlSafeStr, SqlStr};

use crate::config::SchemaNames;

/// The embedded migrations, in order: (version, description, SQL template).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../sql/0001_init.sql")),
    (2, "projections", include_str!("../sql/0002_projections.sql")),
    (3, "append without head writes", include_str!("../sql/0003_append_without_head_writes.sql")),
    (
        4,
        "append_in savepoint and batch fence",
        include_str!("../sql/0004_append_in_savepoint_and_batch_fence.sql"),
    ),
    (5, "retention function", include_str!("../sql/0005_retention_function.sql")),
    (6, "operator requests", include_str!("../sql/0006_operator_requests.sql")),
    (7, "physical schema", include_str!("../sql/0007_physical_schema.sql")),
    (8, "projection stops", include_str!("../sql/0008_projection_stops.sql")),
    (9, "stream lookups", include_str!("../sql/0009_stream_lookups.sql")),
    (10, "projection builds", include_str!("../sql/0010_projection_builds.sql")),
    (11, "trace context", include_str!("../sql/0011_trace_context.sql")),
    (12, "projection slices", include_str!("../sql/0012_projection_slices.sql")),
    (13, "process timers", include_str!("../sql/0013_process_timers.sql")),
    (14, "version checks", include_str!("../sql/0014_version_checks.sql")),
];

/// The query indexes that migration 7 creates in place of `{query_indexes}`, unless the
/// configuration switches them off.
const QUERY_INDEXES: &str = include_str!("../sql/indexes/query.sql");

/// The partial GIN on the metadata, one of the query indexes (migration 11 rebuilds it).
const METADATA_INDEX: &str = include_str!("../sql/indexes/metadata.sql");

/// Replaces `{schema}`, `{events}`, … in a template with the configured names, which were
/// validated as plain identifiers, and `{query_indexes}` with the query indexes or, when
/// they are switched off, a comment saying so.
pub(crate) fn expand(template: &str, names: &SchemaNames) -> String {
    let indexes = if names.query_indexes {
        QUERY_INDEXES
    } else {
        "-- Query indexes switched off (SchemaNames::query_indexes): only the log's own indexes."
    };
    let metadata_index = if names.query_indexes {
        METADATA_INDEX
    } else {
        "-- Query indexes switched off (SchemaNames::query_indexes): no metadata index."
    };
    template
        .replace("{query_indexes}", indexes)
        .replace("{metadata_index}", metadata_index)
        .replace("{schema}", &names.schema)
        .replace("{events}", &names.events)
        .replace("{streams}", &names.streams)
        .replace("{snapshots}", &names.snapshots)
        .replace("{positions}", &names.positions)
        .replace("{failures}", &names.failures)
        .replace("{migrations}", &names.migrations)
}

/// A template [`expand`]ed into a statement for sqlx, shared so that a clone is cheap.
pub(crate) fn statement(template: &str, names: &SchemaNames) -> SqlStr {
    AssertSqlSafe(Arc::<str>::from(expand(template, names))).into_sql_str()
}

/// Applies the migrations not yet applied, in one transaction, under an advisory lock so
/// that several instances starting together apply them once.
///
/// When every migration is applied already, nothing is locked or created: a runtime role
/// without DDL privileges may call this at start-up.
pub(crate) async fn migrate(conn: &mut PgConnection, names: &SchemaNames) -> Result<Vec<i32>, sqlx::Error> {
    if pending(conn, names).await?.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('factum.migrate.' || $1))")
        .bind(&names.schema)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(statement(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.{migrations} (
             version INTEGER PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );",
        names,
    ))
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i32> = sqlx::query_scalar(statement("SELECT version FROM {schema}.{migrations}", names))
        .fetch_all(&mut *tx)
        .await?;
    let mut newly = Vec::new();
    for (version, description, template) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        sqlx::raw_sql(statement(template, names)).execute(&mut *tx).await?;
        sqlx::query(statement(
            "INSERT INTO {schema}.{migrations} (version, description) VALUES ($1, $2)",
            names,
        ))
        .bind(version)
        .bind(description)
        .execute(&mut *tx)
        .await?;
        newly.push(*version);
    }
    tx.commit().await?;
    Ok(newly)
}

/// The versions of the embedded migrations that the database has not applied.
pub(crate) async fn pending(conn: &mut PgConnection, names: &SchemaNames) -> Result<Vec<i32>, sqlx::Error> {
    let table = format!("{}.{}", names.schema, names.migrations);
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&table).fetch_one(&mut *conn).await?;
    let applied: Vec<i32> = if exists {
        sqlx::query_scalar(statement("SELECT version FROM {schema}.{migrations}", names))
            .fetch_all(&mut *conn)
            .await?
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS.iter().map(|m| m.0).filter(|v| !applied.contains(v)).collect())
}

/// One of the store's embedded migrations, with the configured names filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migration {
    /// Its version: migrations apply in version order.
    pub version: i32,
    /// What it does, in a few words.
    pub description: &'static str,
    /// Its SQL.
    pub sql: String,
}

impl Migration {
    /// The migration as a script of its own for teams that apply SQL with their own tool:
    /// it creates the migrations table if needed, runs the migration and records it there,
    /// in one transaction, so that [`PostgresStore::migrate`](crate::PostgresStore::migrate)
    /// later finds it applied.
    pub fn script(&self, names: &SchemaNames) -> String {
        format!(
            "-- factum migration {version}: {description}\n\
             BEGIN;\n\
             SELECT pg_advisory_xact_lock(hashtext('factum.migrate.' || '{schema}'));\n\
             CREATE SCHEMA IF NOT EXISTS {schema};\n\
             CREATE TABLE IF NOT EXISTS {schema}.{migrations} (\n\
             \x20   version INTEGER PRIMARY KEY,\n\
             \x20   description TEXT NOT NULL,\n\
             \x20   applied_at TIMESTAMPTZ NOT NULL DEFAULT now()\n\
             );\n\
             {sql}\n\
             INSERT INTO {schema}.{migrations} (version, description) VALUES ({version}, '{description}');\n\
             COMMIT;\n",
            version = self.version,
            description = self.description,
            schema = names.schema,
            migrations = names.migrations,
            sql = self.sql.trim_end(),
        )
    }
}

/// Whether a migration is applied, as [`PostgresStore::migrations`](crate::PostgresStore::migrations) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// The migration's version.
    pub version: i32,
    /// What it does.
    pub description: &'static str,
    /// When it was applied; `None` while pending.
    pub applied_at: Option<DateTime<Utc>>,
}

/// The embedded migrations, in order, with `names` filled in.
pub fn migrations(names: &SchemaNames) -> Vec<Migration> {
    MIGRATIONS
        .iter()
        .map(|(version, description, template)| Migration {
            version: *version,
            description,
            sql: expand(template, names),
        })
        .collect()
}

/// Each embedded migration and when the database applied it.
pub(crate) async fn status(
    conn: &mut PgConnection,
    names: &SchemaNames,
) -> Result<Vec<MigrationStatus>, sqlx::Error> {
    let table = format!("{}.{}", names.schema, names.migrations);
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&table).fetch_one(&mut *conn).await?;
    let applied: Vec<(i32, DateTime<Utc>)> = if exists {
        sqlx::query_as(statement("SELECT version, applied_at FROM {schema}.{migrations}", names))
            .fetch_all(&mut *conn)
            .await?
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .map(|(version, description, _)| MigrationStatus {
            version: *version,
            description,
            applied_at: applied.iter().find(|(v, _)| v == version).map(|(_, at)| *at),
        })
        .collect())
}
