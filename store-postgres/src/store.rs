//! [`PostgresStore`]: the [`EventStore`] on PostgreSQL.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use factum::prelude::*;
use factum::{
    deduplicated_result, validate, AppendResult, Checkpoint, ConsumerRequest, EventFilter, EventPayload,
    EventStream, ExpectedVersion, GlobalPosition, Lease, Limits, LogPage, LogSelector, Metadata, NewEvent,
    OrderBy, PayloadStream, PendingRequest, ProjectionFailure, RecordedEvent, RetentionGuard, Snapshot,
    StoreError, StreamId, ValidFilter, Version, VersionRange, WakeSignal, DEFAULT_QUERY_LIMIT,
};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;
use sqlx::error::ErrorKind;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row, Transaction};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::availability::Availability;
use crate::config::{check_identifier, ConfigError, PostgresConfig, SchemaNames};
use crate::conns::Connections;
use crate::lease::Leases;
use crate::listener::{self, Notifier, Wakes};
use crate::schema::{self, expand};

/// How many events [`EventStore::stream`] reads ahead of its consumer (a buffer of 100).
pub const STREAM_BUFFER: usize = 100;

/// SQLSTATE `serialization_failure`, raised by the append function when a stream would be
/// reordered in the log (with the constraint name `<streams>_transaction_order`).
const SERIALIZATION_FAILURE: &str = "40001";

/// How often [`EventStore::append`] retries an append of mode any or stream-exists that
/// raced a newer transaction or another writer of the same version.
const APPEND_RETRIES: usize = 20;

/// At most this many events are deleted per retention transaction, so that appends, which
/// retention locks out while it deletes, wait for one chunk at most.
const RETENTION_CHUNK: i32 = 10_000;

const INSERT_COLUMNS: &str = "event_id, aggregate_type, aggregate_id, version, event_type, event_version, \
     topic, event_data, metadata, occurred_at, correlation_id, causation_id";

pub(crate) const COLUMNS: &str = "global_position, transaction_id, event_id, aggregate_type, aggregate_id, \
     version, event_type, event_version, topic, event_data, metadata, occurred_at, recorded_at";

/// The SQL text for the configured names, expanded once.
struct Sql {
    append: String,
    /// The append function run in a subtransaction, for appends in a caller's transaction.
    append_in: String,
    /// Enters a projection's batch fence and checks its checkpoint (see `fence`).
    fence: String,
    /// The checked appends at a known version: one event; several; and both again for a
    /// store whose head table still holds heads deleted under schema version 2.
    append_one: [String; 2],
    append_many: [String; 2],
    legacy_heads: String,
    head: String,
    read_stream: String,
    read_payloads: String,
    read_all: String,
    read_category: String,
    /// A page of the log with a reader's selector applied (see `read_log.rs`).
    read_log: String,
    latest_position: String,
    by_ids: String,
    select: String,
    count: String,
    /// One chunk of retention, through the owner's definer function.
    retain: String,
    save_snapshot: String,
    load_snapshot: String,
    delete_snapshot: String,
    load_checkpoint: String,
    save_checkpoint: String,
    advance_checkpoint: String,
    count_after: String,
    record_failure: String,
    failures: String,
    resolve_failure: String,
    storage_bytes: String,
    event_id_constraint: String,
    stream_version_constraint: String,
    transaction_order_constraint: String,
}

impl Sql {
    fn new(names: &SchemaNames) -> Sql {
        let e = |t: &str| expand(&t.replace("{columns}", COLUMNS), names);
        // The stream's newest stored version: one backward step on the unique index.
        let newest = "(SELECT h.version FROM {schema}.{events} h \
             WHERE h.aggregate_type = $1 AND h.aggregate_id = $2 ORDER BY h.version DESC LIMIT 1)";
        let deleted_head = "(SELECT s.version FROM {schema}.{streams} s \
             WHERE s.aggregate_type = $1 AND s.aggregate_id = $2)";
        let checks = [
            format!("coalesce({newest}, 0) = $3"),
            format!("coalesce(greatest({newest}, {deleted_head}), 0) = $3"),
        ];
        // The version check and the insert in one statement, on the caller's snapshot: the
        // unique index refuses a concurrent second writer of the same version. Retention
        // never deletes a stream's newest event and locks appends out while it deletes, so
        // the newest stored version is the stream's version.
        let one = |check: &String| {
            e(&format!(
                "INSERT INTO {{schema}}.{{events}} ({INSERT_COLUMNS}) \
                 SELECT $4, $1, $2, $3 + 1, $5, $6, $7, $8, $9, $10, $11, $12 WHERE {check} \
                 RETURNING version, global_position"
            ))
        };
        let many = |check: &String| {
            e(&format!(
                "INSERT INTO {{schema}}.{{events}} ({INSERT_COLUMNS}) \
                 SELECT b.event_id, $1, $2, $3 + b.ord, b.event_type, b.event_version, b.topic, b.data, \
                     b.metadata, b.occurred_at, b.correlation_id, b.causation_id \
                 FROM unnest($4::uuid[], $5::text[], $6::int4[], $7::text[], $8::jsonb[], $9::jsonb[], \
                     $10::timestamptz[], $11::uuid[], $12::uuid[]) WITH ORDINALITY AS b(event_id, event_type, \
                     event_version, topic, data, metadata, occurred_at, correlation_id, causation_id, ord) \
                 WHERE {check} ORDER BY b.ord RETURNING version, global_position"
            ))
        };
        Sql {
            append: e("SELECT out_version, out_position, out_transaction, out_conflict \
                 FROM {schema}.{events}_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
            append_in: e("SELECT out_version, out_position, out_transaction, out_conflict, out_duplicate \
                 FROM {schema}.{events}_append_in($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
            fence: e("SELECT {schema}.{positions}_fence($1, $2, $3)"),
            append_one: [one(&checks[0]), one(&checks[1])],
            append_many: [many(&checks[0]), many(&checks[1])],
            legacy_heads: e("SELECT EXISTS (SELECT 1 FROM {schema}.{streams})"),
            head: e(&format!("SELECT coalesce(greatest({newest}, {deleted_head}), 0)")),
            read_stream: e("SELECT {columns} FROM {schema}.{events} \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND version BETWEEN $3 AND $4 ORDER BY version"),
            read_payloads: e("SELECT version, event_type, event_version, event_data::text FROM {schema}.{events} \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > $3 ORDER BY version"),
            // Gap safety: only transactions older than the oldest one still running can no
            // longer add rows; read in (transaction, position) order up to that horizon, in
            // one statement so horizon and rows come from the same snapshot.
            read_all: e("SELECT {columns} FROM {schema}.{events} \
                 WHERE (transaction_id, global_position) > ($1, $2) \
                   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                 ORDER BY transaction_id, global_position LIMIT $3"),
            read_category: e("SELECT {columns} FROM {schema}.{events} \
                 WHERE aggregate_type = $4 AND (transaction_id, global_position) > ($1, $2) \
                   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                 ORDER BY transaction_id, global_position LIMIT $3"),
            read_log: crate::read_log::statement(names),
            latest_position: e("SELECT max(global_position) FROM {schema}.{events}"),
            // The events stored under a batch's ids, plus the rest of what their transactions
            // wrote to the stream: a retry must match the whole original append.
            by_ids: e("SELECT {columns} FROM {schema}.{events} WHERE event_id = ANY($1) \
                 UNION SELECT {columns} FROM {schema}.{events} \
                 WHERE aggregate_type = $2 AND aggregate_id = $3 AND transaction_id IN \
                   (SELECT transaction_id FROM {schema}.{events} WHERE event_id = ANY($1)) \
                 ORDER BY global_position"),
            select: e("SELECT {columns} FROM {schema}.{events}"),
            count: e("SELECT count(*) FROM {schema}.{events}"),
            retain: e("SELECT {schema}.{events}_retain($1, $2, $3, $4, $5)"),
            save_snapshot: e("INSERT INTO {schema}.{snapshots} AS s \
                 (aggregate_type, aggregate_id, version, schema_version, state, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
                 SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version, \
                     state = EXCLUDED.state, created_at = EXCLUDED.created_at \
                 WHERE s.version <= EXCLUDED.version"),
            load_snapshot: e("SELECT version, schema_version, state, created_at FROM {schema}.{snapshots} \
                 WHERE aggregate_type = $1 AND aggregate_id = $2"),
            delete_snapshot: e("DELETE FROM {schema}.{snapshots} WHERE aggregate_type = $1 AND aggregate_id = $2"),
            load_checkpoint: e("SELECT last_processed_transaction, last_processed_position FROM {schema}.{positions} \
                 WHERE projection_name = $1"),
            save_checkpoint: e("INSERT INTO {schema}.{positions} \
                 (projection_name, last_processed_position, last_processed_transaction, last_processed_at) \
                 VALUES ($1, $2, $3, now()) \
                 ON CONFLICT (projection_name) DO UPDATE SET \
                 last_processed_position = EXCLUDED.last_processed_position, \
                 last_processed_transaction = EXCLUDED.last_processed_transaction, \
                 last_processed_at = EXCLUDED.last_processed_at"),
            // Moves the checkpoint only from where the writer believes it is; a missing
            // row counts as the start. Fences off an instance that lost its lease.
            advance_checkpoint: e("WITH moved AS ( \
                   UPDATE {schema}.{positions} SET last_processed_position = $4, \
                       last_processed_transaction = $5, last_processed_at = now() \
                   WHERE projection_name = $1 AND last_processed_position = $2 \
                     AND last_processed_transaction = $3 RETURNING 1), \
                 created AS ( \
                   INSERT INTO {schema}.{positions} (projection_name, last_processed_position, \
                       last_processed_transaction, last_processed_at) \
                   SELECT $1, $4, $5, now() WHERE $2 = 0 AND $3 = 0 \
                     AND NOT EXISTS (SELECT 1 FROM {schema}.{positions} WHERE projection_name = $1) \
                   ON CONFLICT (projection_name) DO NOTHING RETURNING 1) \
                 SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM created)"),
            // Capped, so that measuring a huge lag stays cheap.
            count_after: e("SELECT count(*) FROM (SELECT 1 FROM {schema}.{events} \
                 WHERE (transaction_id, global_position) > ($1, $2) \
                   AND (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3)) LIMIT 10000000) AS t"),
            record_failure: e("INSERT INTO {schema}.{failures} (projection_name, event_id, aggregate_type, \
                 aggregate_id, version, global_position, transaction_id, event_type, error, attempts, failed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (projection_name, event_id) DO UPDATE SET error = EXCLUDED.error, \
                 attempts = EXCLUDED.attempts, failed_at = EXCLUDED.failed_at"),
            failures: e("SELECT projection_name, event_id, aggregate_type, aggregate_id, version, global_position, \
                 transaction_id, event_type, error, attempts, failed_at FROM {schema}.{failures} \
                 WHERE projection_name = $1 ORDER BY transaction_id, global_position"),
            resolve_failure: e("DELETE FROM {schema}.{failures} WHERE projection_name = $1 AND event_id = $2"),
            storage_bytes: e("SELECT pg_total_relation_size(to_regclass('{schema}.{events}'))"),
            event_id_constraint: format!("{}_event_id_key", names.events),
            stream_version_constraint: format!("{}_stream_version_key", names.events),
            transaction_order_constraint: format!("{}_transaction_order", names.streams),
        }
    }
}

/// An [`EventStore`] on PostgreSQL. Cloning it gives another handle to the same pool.
///
/// ```no_run
/// use factum::prelude::*;
/// use factum::{ExpectedVersion, NewEvent, StreamId};
/// use factum_postgres::{PostgresConfig, PostgresStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect(PostgresConfig::from_env()?).await?;
/// store.migrate().await?;
/// let order = StreamId::new("Order", "ord-123")?;
/// store
///     .append(&order, ExpectedVersion::NoStream, vec![NewEvent::new("OrderPlaced", serde_json::json!({}))])
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// Fails operations fast while the database is known to be down.
    avail: Arc<Availability>,
    /// The most an [`EventStore`] operation may take.
    timeout: std::time::Duration,
    /// Connections for one-statement operations, kept out of the pool between them.
    conns: Arc<Connections>,
    names: SchemaNames,
    sql: Sql,
    channel: Option<String>,
    limits: Limits,
    wakes: Arc<Wakes>,
    listener: Mutex<Option<JoinHandle<()>>>,
    /// Post-commit notifications of [`EventStore::append`] and their task.
    notifier: Arc<Notifier>,
    notify_task: OnceLock<JoinHandle<()>>,
    leases: OnceLock<Leases>,
    /// `LEGACY_UNKNOWN`, `LEGACY_NONE` or `LEGACY_SOME`: see `legacy_heads`.
    legacy_heads: AtomicU8,
}

const LEGACY_UNKNOWN: u8 = 0;
const LEGACY_NONE: u8 = 1;
const LEGACY_SOME: u8 = 2;

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            listener.abort();
        }
        if let Some(task) = self.notify_task.get() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("names", &self.inner.names)
            .field("channel", &self.inner.channel)
            .finish_non_exhaustive()
    }
}

/// Maps a database error to a store error. Specific constraint violations are handled
/// where they can occur; everything else is a backend error.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::backend(e)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(field: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {field}: {v}")))
}

fn decode(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    decode_with(row, &mut None)
}

/// Decodes a row; `last` is the stream of the row before, reused (not validated again)
/// when this row belongs to the same stream, as runs of rows in a page usually do.
fn decode_with(row: &PgRow, last: &mut Option<StreamId>) -> Result<RecordedEvent, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let aggregate_type: &str = row.try_get(3).map_err(corrupt)?;
    let aggregate_id: &str = row.try_get(4).map_err(corrupt)?;
    let stream = match last {
        Some(s) if s.aggregate_type() == aggregate_type && s.aggregate_id() == aggregate_id => s.clone(),
        _ => {
            let s = StreamId::new(aggregate_type, aggregate_id)
                .map_err(|e| StoreError::Corrupt(format!("stored stream id: {e}")))?;
            *last = Some(s.clone());
            s
        }
    };
    let schema_version: i32 = row.try_get(7).map_err(corrupt)?;
    Ok(RecordedEvent {
        position: GlobalPosition(to_u64("global_position", row.try_get(0).map_err(corrupt)?)?),
        transaction: to_u64("transaction_id", row.try_get(1).map_err(corrupt)?)?,
        event_id: row.try_get(2).map_err(corrupt)?,
        stream,
        version: Version(to_u64("version", row.try_get(5).map_err(corrupt)?)?),
        event_type: row.try_get(6).map_err(corrupt)?,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| StoreError::Corrupt(format!("event_version {schema_version}")))?,
        topic: row.try_get(8).map_err(corrupt)?,
        payload: row.try_get(9).map_err(corrupt)?,
        metadata: Metadata::from_json(row.try_get(10).map_err(corrupt)?),
        occurred_at: row.try_get(11).map_err(corrupt)?,
        recorded_at: row.try_get(12).map_err(corrupt)?,
    })
}

fn decode_failure(row: &PgRow) -> Result<ProjectionFailure, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let aggregate_type: String = row.try_get(2).map_err(corrupt)?;
    let aggregate_id: String = row.try_get(3).map_err(corrupt)?;
    let attempts: i32 = row.try_get(9).map_err(corrupt)?;
    Ok(ProjectionFailure {
        projection: row.try_get(0).map_err(corrupt)?,
        event_id: row.try_get(1).map_err(corrupt)?,
        stream: StreamId::new(aggregate_type, aggregate_id)
            .map_err(|e| StoreError::Corrupt(format!("stored stream id: {e}")))?,
        version: Version(to_u64("version", row.try_get(4).map_err(corrupt)?)?),
        position: GlobalPosition(to_u64("global_position", row.try_get(5).map_err(corrupt)?)?),
        transaction: to_u64("transaction_id", row.try_get(6).map_err(corrupt)?)?,
        event_type: row.try_get(7).map_err(corrupt)?,
        error: row.try_get(8).map_err(corrupt)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        failed_at: row.try_get(10).map_err(corrupt)?,
    })
}

pub(crate) fn decode_all(rows: &[PgRow]) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut last = None;
    rows.iter().map(|row| decode_with(row, &mut last)).collect()
}

fn expected_code(expected: ExpectedVersion) -> i64 {
    match expected {
        ExpectedVersion::Any => -1,
        ExpectedVersion::StreamExists => -2,
        ExpectedVersion::NoStream => 0,
        ExpectedVersion::Exact(v) => to_i64(v.0),
    }
}

/// The columns of a batch, as the append function's array parameters. They borrow from
/// the batch: the command path appends once per command, and payloads can be large.
struct Columns<'a> {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    versions: Vec<i32>,
    topics: Vec<Option<&'a str>>,
    data: Vec<&'a Value>,
    metadata: Vec<Value>,
    occurred_at: Vec<DateTime<Utc>>,
    correlation: Vec<Option<Uuid>>,
    causation: Vec<Option<Uuid>>,
}

impl<'a> Columns<'a> {
    fn new(events: &'a [NewEvent]) -> Columns<'a> {
        let n = events.len();
        let mut c = Columns {
            ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            topics: Vec::with_capacity(n),
            data: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            occurred_at: Vec::with_capacity(n),
            correlation: Vec::with_capacity(n),
            causation: Vec::with_capacity(n),
        };
        for e in events {
            c.ids.push(e.event_id);
            c.types.push(&e.event_type);
            // validate::batch checked the range.
            c.versions.push(e.schema_version as i32);
            c.topics.push(e.topic.as_deref());
            c.data.push(&e.payload);
            c.metadata.push(e.metadata.to_json());
            c.occurred_at.push(e.occurred_at.trunc_subsecs(6));
            c.correlation.push(e.metadata.correlation_id);
            c.causation.push(e.metadata.causation_id);
        }
        c
    }

    /// A query of `sql` with the stream, the expected-version code and the columns bound as
    /// `$1` … `$12`: the parameters the append function and the several-event checked
    /// append share.
    fn bind<'q>(self, sql: &'q str, stream: &'q StreamId, expected: i64) -> Query<'q, Postgres, PgArguments>
    where
        'a: 'q,
    {
        sqlx::query(sql)
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(expected)
            .bind(self.ids)
            .bind(self.types)
            .bind(self.versions)
            .bind(self.topics)
            .bind(self.data)
            .bind(self.metadata)
            .bind(self.occurred_at)
            .bind(self.correlation)
            .bind(self.causation)
    }
}

impl PostgresStore {
    /// Connects a pool with the configured settings. Does not touch the schema: call
    /// [`migrate`](Self::migrate) at start-up to create or upgrade it.
    pub async fn connect(config: PostgresConfig) -> Result<Self, StoreError> {
        validate_config(&config)?;
        // One direct connection first: a refused connection, a missing database or a
        // failed login is answered at once with the server's reason, where the pool would
        // retry until its acquire timeout.
        let direct = sqlx::ConnectOptions::connect(&config.connect);
        match tokio::time::timeout(config.pool.connect_timeout, direct).await {
            Ok(Ok(conn)) => {
                sqlx::Connection::close(conn).await.ok();
            }
            Ok(Err(e))
                if crate::availability::is_connection_error(&e)
                    || crate::availability::is_login_refusal(&e) =>
            {
                return Err(StoreError::Unavailable { reason: crate::availability::describe(&e) });
            }
            Ok(Err(e)) => return Err(backend(e)),
            Err(_) => {
                return Err(StoreError::Unavailable {
                    reason: format!(
                        "no answer from the database server within {:?}",
                        config.pool.connect_timeout
                    ),
                })
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.pool.max_connections)
            .idle_timeout(config.pool.idle_timeout)
            .acquire_timeout(config.pool.connect_timeout)
            .connect_with(config.connect.clone())
            .await;
        let pool = match pool {
            Ok(pool) => pool,
            // The pool may say only that it timed out: ask the server once for the reason
            // (refused, starting up, no such database, authentication failed).
            Err(e) if crate::availability::is_connection_error(&e) => {
                let reason = match sqlx::ConnectOptions::connect(&config.connect).await {
                    Err(direct) => crate::availability::describe(&direct),
                    Ok(_) => crate::availability::describe(&e),
                };
                return Err(StoreError::Unavailable { reason });
            }
            Err(e) => return Err(backend(e)),
        };
        Self::from_pool(pool, config)
    }

    /// Uses an existing pool; its connection settings win over the config's.
    ///
    /// The store's one-statement operations keep a connection out of the pool for up to
    /// 100 ms between uses, so the pool's `before_acquire` and `after_release` hooks run
    /// only when a connection passes through the pool (see the operations guide).
    pub fn from_pool(pool: PgPool, config: PostgresConfig) -> Result<Self, StoreError> {
        validate_config(&config)?;
        let avail = Availability::new((*pool.connect_options()).clone());
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                conns: Arc::new(Connections::new(pool.clone(), avail.clone())),
                avail,
                timeout: config.pool.operation_timeout,
                pool,
                sql: Sql::new(&config.names),
                names: config.names,
                channel: config.notify_channel,
                limits: config.limits,
                wakes: Arc::new(Wakes::default()),
                listener: Mutex::new(None),
                notifier: Arc::new(Notifier::default()),
                notify_task: OnceLock::new(),
                leases: OnceLock::new(),
                legacy_heads: AtomicU8::new(LEGACY_UNKNOWN),
            }),
        })
    }

    /// Creates or upgrades the schema with the embedded migrations; safe to call from
    /// several instances at once. Returns the versions it applied.
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        let mut conn = self.conn().await?;
        schema::migrate(&mut conn, &self.inner.names).await.map_err(backend)
    }

    /// Each embedded migration, and when this database applied it (`None`: pending).
    pub async fn migrations(&self) -> Result<Vec<schema::MigrationStatus>, StoreError> {
        let mut conn = self.conn().await?;
        schema::status(&mut conn, &self.inner.names).await.map_err(backend)
    }

    /// The connection pool, for the application's own queries.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Runs one [`EventStore`] operation within the operation timeout.
    pub(crate) async fn timed<T>(
        &self,
        operation: &'static str,
        run: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.timeout, run).await {
            Ok(result) => result,
            Err(_) => {
                self.inner.avail.suspect_stall();
                Err(StoreError::Timeout { operation, after: self.inner.timeout })
            }
        }
    }

    /// A connection from the pool, failing fast while the database is known to be down.
    pub(crate) async fn conn(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.inner.avail.acquire(&self.inner.pool, self.inner.pool.acquire()).await
    }

    /// A transaction on a connection from the pool, failing fast while the database is
    /// known to be down.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.inner.avail.acquire(&self.inner.pool, self.inner.pool.begin()).await
    }

    /// The schema and table names in use.
    pub fn names(&self) -> &SchemaNames {
        &self.inner.names
    }

    /// The plan PostgreSQL makes for [`query`](factum::EventStore::query) with `filter`, as
    /// `EXPLAIN (FORMAT JSON)` gives it: for checking which index a filter uses.
    pub async fn explain_query(&self, filter: &EventFilter) -> Result<Value, StoreError> {
        let valid = filter.validate(&self.inner.limits)?;
        let base = format!("EXPLAIN (FORMAT JSON) {}", self.inner.sql.select);
        let mut qb = self.select_on(&base, &valid, Some(filter.limit.unwrap_or(DEFAULT_QUERY_LIMIT)));
        qb.build_query_scalar().fetch_one(&mut *self.conn().await?).await.map_err(backend)
    }

    /// Appends inside a transaction the caller owns (transaction-first): the events commit
    /// or roll back with the caller's own writes, and subscribers are notified only on
    /// commit.
    ///
    /// The append runs in a subtransaction (a savepoint), so a refused append leaves the
    /// caller's transaction usable:
    /// - [`StoreError::Conflict`] carries the stream's true version, also when a writer
    ///   outside this transaction took the version while this append was being written;
    /// - a duplicate event id is answered as by [`EventStore::append`]: the original
    ///   result for an exact retry of a stored append, else [`StoreError::DuplicateEvent`].
    ///
    /// Only [`StoreError::RetryTransaction`] means that the transaction is aborted: the
    /// stream's newest event was written by a newer transaction (committing would put the
    /// stream out of order in the log), or, under `REPEATABLE READ` or `SERIALIZABLE`, the
    /// writer that took the version is outside this transaction's snapshot. Roll back and
    /// run the transaction again.
    ///
    /// ```no_run
    /// # use factum::{ExpectedVersion, NewEvent, StreamId};
    /// # async fn run(store: factum_postgres::PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO outbox (body) VALUES ('hello')").execute(&mut *tx).await?;
    /// let stream = StreamId::new("Order", "o-1")?;
    /// store.append_in(&mut tx, &stream, ExpectedVersion::Any, vec![NewEvent::new("Noted", serde_json::json!({}))]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        validate::batch(&events, &self.inner.limits)?;
        // The caller commits: the notification goes with its transaction.
        let rows = Columns::new(&events)
            .bind(&self.inner.sql.append_in, stream, expected_code(expected))
            .bind(self.inner.channel.as_deref())
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| match self.append_error(e, stream) {
                AppendFailure::Other(e) => e,
                // Both are caught in the database; the caller's transaction is aborted
                // only if they escape it.
                AppendFailure::Duplicate | AppendFailure::VersionTaken => {
                    StoreError::RetryTransaction { stream: stream.clone() }
                }
            })?;
        let mut written = Vec::with_capacity(rows.len());
        for row in &rows {
            let duplicate: bool = row.try_get(4).map_err(backend)?;
            if duplicate {
                let stored = self.read_batch_ids(conn, stream, &events).await?;
                return duplicate_outcome(stream, &events, &stored);
            }
            let version: i64 = row.try_get(0).map_err(backend)?;
            let conflict: bool = row.try_get(3).map_err(backend)?;
            if conflict {
                // As in `append`: the version check runs first, so an exact retry of a
                // stored batch meets a conflict; the stored ids decide.
                let stored = self.read_batch_ids(conn, stream, &events).await?;
                if !stored.is_empty() {
                    return duplicate_outcome(stream, &events, &stored);
                }
                let actual = Version(to_u64("version", version)?);
                return Err(StoreError::Conflict { stream: stream.clone(), expected, actual });
            }
            let position: Option<i64> = row.try_get(1).map_err(backend)?;
            written.push((to_u64("version", version)?, to_u64("position", position.unwrap_or_default())?));
        }
        appended(stream, written).map_err(|f| match f {
            AppendFailure::Other(e) => e,
            AppendFailure::Duplicate | AppendFailure::VersionTaken => {
                StoreError::Corrupt("append wrote no rows".into())
            }
        })
    }

    /// Saves a consumer's checkpoint inside a transaction the caller owns, so that a read
    /// model and its checkpoint commit together.
    pub async fn save_checkpoint_in(
        &self,
        conn: &mut PgConnection,
        consumer: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), StoreError> {
        validate::consumer_name(consumer)?;
        validate::checkpoint(checkpoint)?;
        sqlx::query(&self.inner.sql.save_checkpoint)
            .bind(consumer)
            .bind(to_i64(checkpoint.position.0))
            .bind(to_i64(checkpoint.transaction))
            .execute(conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Enters `consumer`'s batch fence in the caller's transaction: waits until no other
    /// transaction is inside it (the fence is held until commit or rollback), then says
    /// whether the stored checkpoint still is `from`. A projection that took the lease
    /// from another instance thus never applies a batch while the previous holder's batch
    /// transaction is open, and never applies one from a checkpoint that moved.
    pub(crate) async fn fence(
        &self,
        conn: &mut PgConnection,
        consumer: &str,
        from: Checkpoint,
    ) -> Result<bool, StoreError> {
        validate::consumer_name(consumer)?;
        validate::checkpoint(from)?;
        sqlx::query_scalar(&self.inner.sql.fence)
            .bind(consumer)
            .bind(to_i64(from.position.0))
            .bind(to_i64(from.transaction))
            .fetch_one(conn)
            .await
            .map_err(backend)
    }

    /// Moves a consumer's checkpoint from `from` to `to` inside a transaction the caller
    /// owns, only if it still is `from` (see [`EventStore::advance_checkpoint`]).
    pub async fn advance_checkpoint_in(
        &self,
        conn: &mut PgConnection,
        consumer: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        validate::consumer_name(consumer)?;
        validate::checkpoint(from)?;
        validate::checkpoint(to)?;
        let moved: i64 = sqlx::query_scalar(&self.inner.sql.advance_checkpoint)
            .bind(consumer)
            .bind(to_i64(from.position.0))
            .bind(to_i64(from.transaction))
            .bind(to_i64(to.position.0))
            .bind(to_i64(to.transaction))
            .fetch_one(conn)
            .await
            .map_err(backend)?;
        Ok(moved == 1)
    }

    /// Deletes what retention may (with `guard`, in safe mode) chunk by chunk, until a
    /// chunk deletes less than a whole one. Each chunk is one call of the retention
    /// function (the only way events leave, with its owner's rights) in a transaction of
    /// its own that locks appends out, so that no append checks a head that the chunk is
    /// deleting.
    async fn delete_events(
        &self,
        cutoff: DateTime<Utc>,
        guard: Option<&RetentionGuard>,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        let (consumers, unsnapshotted) = match guard {
            Some(guard) => (guard.unprocessed_by.clone(), guard.unsnapshotted),
            None => (Vec::new(), false),
        };
        loop {
            let mut conn = self.inner.conns.get().await?;
            let deleted = sqlx::query_scalar::<_, i64>(&self.inner.sql.retain)
                .bind(cutoff)
                .bind(guard.is_some())
                .bind(&consumers)
                .bind(unsnapshotted)
                .bind(RETENTION_CHUNK)
                .fetch_one(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&deleted);
            let deleted = to_u64("deleted", deleted?)?;
            total += deleted;
            if deleted < RETENTION_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// Whether the head table still holds heads deleted under schema version 2, which the
    /// checked append must then consult. Asked once per store: this version writes none.
    async fn legacy_heads(&self, conn: &mut PgConnection) -> Result<bool, StoreError> {
        match self.inner.legacy_heads.load(Ordering::Relaxed) {
            LEGACY_NONE => return Ok(false),
            LEGACY_SOME => return Ok(true),
            _ => {}
        }
        let some: bool =
            sqlx::query_scalar(&self.inner.sql.legacy_heads).fetch_one(conn).await.map_err(backend)?;
        self.inner.legacy_heads.store(if some { LEGACY_SOME } else { LEGACY_NONE }, Ordering::Relaxed);
        Ok(some)
    }

    /// The stream's version: its newest stored event's, or a head that retention deleted
    /// under schema version 2.
    async fn head(&self, conn: &mut PgConnection, stream: &StreamId) -> Result<Version, StoreError> {
        let v: i64 = sqlx::query_scalar(&self.inner.sql.head)
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .fetch_one(conn)
            .await
            .map_err(backend)?;
        Ok(Version(to_u64("version", v)?))
    }

    /// The append at a version the caller knows (exact or no stream), in one statement
    /// that checks the head and inserts: the hot path of every command.
    async fn append_checked(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendFailure> {
        let legacy = usize::from(self.legacy_heads(&mut *conn).await.map_err(AppendFailure::Other)?);
        let from = expected_code(expected);
        let query = if let [e] = events {
            sqlx::query(&self.inner.sql.append_one[legacy])
                .bind(stream.aggregate_type())
                .bind(stream.aggregate_id())
                .bind(from)
                .bind(e.event_id)
                .bind(&e.event_type)
                // validate::batch checked the range.
                .bind(e.schema_version as i32)
                .bind(e.topic.as_deref())
                .bind(&e.payload)
                .bind(e.metadata.to_json())
                .bind(e.occurred_at.trunc_subsecs(6))
                .bind(e.metadata.correlation_id)
                .bind(e.metadata.causation_id)
        } else {
            Columns::new(events).bind(&self.inner.sql.append_many[legacy], stream, from)
        };
        let rows = query.fetch_all(&mut *conn).await.map_err(|e| self.append_error(e, stream))?;
        if rows.is_empty() {
            let actual = self.head(conn, stream).await.map_err(AppendFailure::Other)?;
            return Err(AppendFailure::Other(StoreError::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            }));
        }
        let mut written = Vec::with_capacity(rows.len());
        for row in &rows {
            let version: i64 = row.try_get(0).map_err(|e| AppendFailure::Other(backend(e)))?;
            let position: i64 = row.try_get(1).map_err(|e| AppendFailure::Other(backend(e)))?;
            written.push((version.max(0) as u64, position.max(0) as u64));
        }
        appended(stream, written)
    }

    /// [`EventStore::append`] on `conn`, once validated.
    async fn append_on(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, StoreError> {
        // Committed on its own (autocommit): notified after the commit, see `Notifier`.
        let outcome = match expected {
            ExpectedVersion::Exact(_) | ExpectedVersion::NoStream => {
                self.append_checked(conn, stream, expected, events).await
            }
            // The head is read in the database, under the stream's advisory lock.
            ExpectedVersion::Any | ExpectedVersion::StreamExists => {
                let mut outcome = self.append_rows(conn, stream, expected, events).await;
                for _ in 0..APPEND_RETRIES {
                    match outcome {
                        // Nothing was written: a new transaction has a newer id, and the
                        // winner of the version is in its snapshot.
                        Err(
                            AppendFailure::Other(StoreError::RetryTransaction { .. })
                            | AppendFailure::VersionTaken,
                        ) => {
                            outcome = self.append_rows(conn, stream, expected, events).await;
                        }
                        _ => break,
                    }
                }
                outcome
            }
        };
        let conflict = match outcome {
            Ok(result) => {
                self.committed(stream.aggregate_type());
                return Ok(result);
            }
            Err(AppendFailure::Duplicate) => {
                let stored = self.read_batch_ids(conn, stream, events).await?;
                return duplicate_outcome(stream, events, &stored);
            }
            Err(AppendFailure::Other(e @ StoreError::Conflict { .. })) => e,
            Err(AppendFailure::Other(e)) => return Err(e),
            // Another writer took the version between the check and the insert.
            Err(AppendFailure::VersionTaken) => {
                let actual = self.head(conn, stream).await?;
                StoreError::Conflict { stream: stream.clone(), expected, actual }
            }
        };
        // The version check runs before the insert: a retry of a stored batch meets a
        // conflict first. Like the in-memory store, let the duplicate id decide.
        let stored = self.read_batch_ids(conn, stream, events).await?;
        if stored.is_empty() {
            Err(conflict)
        } else {
            duplicate_outcome(stream, events, &stored)
        }
    }

    pub(crate) async fn advance_checkpoint_in_pool(
        &self,
        consumer: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        let mut conn = self.inner.conns.get().await?;
        let result = self.advance_checkpoint_in(&mut conn, consumer, from, to).await;
        conn.release(&result);
        result
    }

    /// Records a projection's failure inside a transaction the caller owns.
    pub async fn record_failure_in(
        &self,
        conn: &mut PgConnection,
        failure: &ProjectionFailure,
    ) -> Result<(), StoreError> {
        validate::consumer_name(&failure.projection)?;
        sqlx::query(&self.inner.sql.record_failure)
            .bind(&failure.projection)
            .bind(failure.event_id)
            .bind(failure.stream.aggregate_type())
            .bind(failure.stream.aggregate_id())
            .bind(to_i64(failure.version.0))
            .bind(to_i64(failure.position.0))
            .bind(to_i64(failure.transaction))
            .bind(&failure.event_type)
            .bind(&failure.error)
            .bind(i32::try_from(failure.attempts).unwrap_or(i32::MAX))
            .bind(failure.failed_at)
            .execute(conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Removes a recorded failure inside a transaction the caller owns.
    pub async fn resolve_failure_in(
        &self,
        conn: &mut PgConnection,
        projection: &str,
        event_id: Uuid,
    ) -> Result<bool, StoreError> {
        validate::consumer_name(projection)?;
        let done = sqlx::query(&self.inner.sql.resolve_failure)
            .bind(projection)
            .bind(event_id)
            .execute(conn)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn append_rows(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendFailure> {
        // Autocommit: notified after the commit, see `Notifier`.
        let rows = Columns::new(events)
            .bind(&self.inner.sql.append, stream, expected_code(expected))
            .bind(None::<&str>)
            .fetch_all(conn)
            .await
            .map_err(|e| self.append_error(e, stream))?;
        let mut written = Vec::with_capacity(rows.len());
        for row in &rows {
            let version: i64 = row.try_get(0).map_err(|e| AppendFailure::Other(backend(e)))?;
            let position: Option<i64> = row.try_get(1).map_err(|e| AppendFailure::Other(backend(e)))?;
            let conflict: bool = row.try_get(3).map_err(|e| AppendFailure::Other(backend(e)))?;
            if conflict {
                return Err(AppendFailure::Other(StoreError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual: Version(version.max(0) as u64),
                }));
            }
            written.push((version.max(0) as u64, position.unwrap_or_default().max(0) as u64));
        }
        appended(stream, written)
    }

    fn append_error(&self, e: sqlx::Error, stream: &StreamId) -> AppendFailure {
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some(SERIALIZATION_FAILURE)
                && db.constraint() == Some(self.inner.sql.transaction_order_constraint.as_str())
            {
                return AppendFailure::Other(StoreError::RetryTransaction { stream: stream.clone() });
            }
            if db.kind() == ErrorKind::UniqueViolation {
                let constraint = db.constraint().unwrap_or_default();
                if constraint == self.inner.sql.event_id_constraint {
                    return AppendFailure::Duplicate;
                }
                if constraint == self.inner.sql.stream_version_constraint {
                    // A writer that takes no stream lock (a checked append) took the version
                    // first: the unique constraint is the last line.
                    return AppendFailure::VersionTaken;
                }
            }
        }
        AppendFailure::Other(backend(e))
    }

    async fn read_batch_ids(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        events: &[NewEvent],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let rows = sqlx::query(&self.inner.sql.by_ids)
            .bind(ids)
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .fetch_all(conn)
            .await
            .map_err(backend)?;
        decode_all(&rows)
    }

    fn filtered(&self, base: &str, f: &ValidFilter<'_>) -> QueryBuilder<'static, Postgres> {
        crate::filter::filtered(base, f, &self.inner.names)
    }

    fn select(&self, f: &ValidFilter<'_>, limit: Option<usize>) -> QueryBuilder<'static, Postgres> {
        self.select_on(&self.inner.sql.select, f, limit)
    }

    fn select_on(
        &self,
        base: &str,
        f: &ValidFilter<'_>,
        limit: Option<usize>,
    ) -> QueryBuilder<'static, Postgres> {
        let mut qb = self.filtered(base, f);
        let dir = if f.filter.ascending { "ASC" } else { "DESC" };
        match f.filter.order_by {
            OrderBy::GlobalPosition => qb.push(format_args!(" ORDER BY global_position {dir}")),
            _ => qb.push(format_args!(" ORDER BY occurred_at {dir}, global_position {dir}")),
        };
        if let Some(limit) = limit {
            qb.push(" LIMIT ").push_bind(to_i64(limit as u64));
        }
        if f.filter.offset > 0 {
            qb.push(" OFFSET ").push_bind(to_i64(f.filter.offset as u64));
        }
        qb
    }

    /// After an append committed: wakes this process's readers at once and queues the
    /// `NOTIFY` for other processes.
    fn committed(&self, category: &str) {
        self.inner.wakes.wake(Some(category));
        let Some(channel) = &self.inner.channel else { return };
        self.inner.notifier.push(category);
        if self.inner.notify_task.get().is_none() {
            let task =
                listener::notify(self.inner.pool.clone(), channel.clone(), self.inner.notifier.clone());
            // Two first appends may race here; the loser's task is aborted at once.
            if let Err(task) = self.inner.notify_task.set(tokio::spawn(task)) {
                task.abort();
            }
        }
    }

    fn ensure_listener(&self) {
        let Some(channel) = &self.inner.channel else { return };
        let mut guard = self.inner.listener.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        // Outside a Tokio runtime, subscribers fall back to polling.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let task = listener::run(self.inner.pool.clone(), channel.clone(), self.inner.wakes.clone());
        *guard = Some(runtime.spawn(task));
    }
}

/// The answer to an append whose ids are (partly) stored: the original result for an
/// exact retry, else a duplicate error naming the first stored id.
fn duplicate_outcome(
    stream: &StreamId,
    events: &[NewEvent],
    stored: &[RecordedEvent],
) -> Result<AppendResult, StoreError> {
    deduplicated_result(stream, events, stored).ok_or_else(|| {
        let event_id = events
            .iter()
            .map(|e| e.event_id)
            .find(|id| stored.iter().any(|s| s.event_id == *id))
            .unwrap_or(events[0].event_id);
        StoreError::DuplicateEvent { event_id }
    })
}

/// The result of an append from the (version, position) pairs it wrote.
fn appended(stream: &StreamId, mut written: Vec<(u64, u64)>) -> Result<AppendResult, AppendFailure> {
    written.sort_unstable();
    let (Some(first), Some(last)) = (written.first(), written.last()) else {
        return Err(AppendFailure::Other(StoreError::Corrupt("append wrote no rows".into())));
    };
    Ok(AppendResult {
        stream: stream.clone(),
        from_version: Version(first.0),
        to_version: Version(last.0),
        positions: written.iter().map(|(_, p)| GlobalPosition(*p)).collect(),
        deduplicated: false,
    })
}

enum AppendFailure {
    Duplicate,
    VersionTaken,
    Other(StoreError),
}

fn validate_config(config: &PostgresConfig) -> Result<(), StoreError> {
    let invalid = |e: ConfigError| StoreError::backend(e);
    config.names.validate().map_err(invalid)?;
    if let Some(channel) = &config.notify_channel {
        check_identifier("notify channel", channel).map_err(invalid)?;
    }
    Ok(())
}

#[async_trait]
impl EventLog for PostgresStore {
    fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.timed("append", async {
            validate::batch(&events, &self.inner.limits)?;
            let mut conn = self.inner.conns.get().await?;
            let result = self.append_on(&mut conn, stream, expected, &events).await;
            conn.release(&result);
            result
        })
        .await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.timed("stream_version", async {
            let mut conn = self.inner.conns.get().await?;
            let result = self.head(&mut conn, stream).await;
            conn.release(&result);
            result
        })
        .await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.timed("read_stream", async {
            let mut conn = self.inner.conns.get().await?;
            let rows = sqlx::query(&self.inner.sql.read_stream)
                .bind(stream.aggregate_type())
                .bind(stream.aggregate_id())
                .bind(to_i64(range.from.0))
                .bind(range.to.map_or(i64::MAX, |v| to_i64(v.0)))
                .fetch_all(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&rows);
            decode_all(&rows?)
        })
        .await
    }

    fn read_payloads<'a>(&'a self, stream: &'a StreamId, after: Version) -> PayloadStream<'a> {
        // Rows are decoded as they arrive, so the caller folds events while PostgreSQL
        // still sends the rest.
        let rows = sqlx::query(&self.inner.sql.read_payloads)
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(to_i64(after.0))
            .fetch(&self.inner.pool);
        self.inner.avail.guard(
            "read_payloads",
            self.inner.timeout,
            Box::pin(rows.map(|row| {
                let row = row.map_err(backend)?;
                let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
                let schema_version: i32 = row.try_get(2).map_err(corrupt)?;
                Ok(EventPayload::new(
                    Version(to_u64("version", row.try_get(0).map_err(corrupt)?)?),
                    row.try_get(1).map_err(corrupt)?,
                    u32::try_from(schema_version)
                        .map_err(|_| StoreError::Corrupt(format!("event_version {schema_version}")))?,
                    row.try_get(3).map_err(corrupt)?,
                ))
            })),
        )
    }

    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.timed("read_all", async {
            validate::page_limit(limit, &self.inner.limits)?;
            let mut conn = self.inner.conns.get().await?;
            let rows = sqlx::query(&self.inner.sql.read_all)
                .bind(to_i64(after.transaction))
                .bind(to_i64(after.position.0))
                .bind(to_i64(limit as u64))
                .fetch_all(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&rows);
            let rows = rows?;
            decode_all(&rows)
        })
        .await
    }

    async fn read_log(
        &self,
        after: Checkpoint,
        selector: &LogSelector,
        limit: usize,
    ) -> Result<Option<LogPage>, StoreError> {
        self.timed("read_log", self.read_log_page(&self.inner.sql.read_log, after, selector, limit)).await
    }

    async fn read_category(
        &self,
        category: &str,
        after: Checkpoint,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.timed("read_category", async {
            validate::category(category)?;
            validate::page_limit(limit, &self.inner.limits)?;
            let mut conn = self.inner.conns.get().await?;
            let rows = sqlx::query(&self.inner.sql.read_category)
                .bind(to_i64(after.transaction))
                .bind(to_i64(after.position.0))
                .bind(to_i64(limit as u64))
                .bind(category)
                .fetch_all(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&rows);
            let rows = rows?;
            decode_all(&rows)
        })
        .await
    }

    async fn latest_position(&self) -> Result<Option<GlobalPosition>, StoreError> {
        self.timed("latest_position", async {
            let max: Option<i64> = sqlx::query_scalar(&self.inner.sql.latest_position)
                .fetch_one(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            max.map(|p| to_u64("global_position", p).map(GlobalPosition)).transpose()
        })
        .await
    }

    async fn query(&self, filter: &EventFilter) -> Result<Vec<RecordedEvent>, StoreError> {
        self.timed("query", async {
            let valid = filter.validate(&self.inner.limits)?;
            let mut qb = self.select(&valid, Some(filter.limit.unwrap_or(DEFAULT_QUERY_LIMIT)));
            let rows = qb.build().fetch_all(&mut *self.conn().await?).await.map_err(backend)?;
            decode_all(&rows)
        })
        .await
    }

    async fn count(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        self.timed("count", async {
            let valid = filter.validate(&self.inner.limits)?;
            let mut qb = self.filtered(&self.inner.sql.count, &valid);
            let n: i64 =
                qb.build_query_scalar().fetch_one(&mut *self.conn().await?).await.map_err(backend)?;
            to_u64("count", n)
        })
        .await
    }

    fn stream(&self, filter: EventFilter) -> EventStream {
        let qb = filter.validate(&self.inner.limits).map(|valid| self.select(&valid, filter.limit));
        let mut qb = match qb {
            Ok(qb) => qb,
            Err(e) => return Box::pin(futures_util::stream::iter([Err(e.into())])),
        };
        let pool = self.inner.pool.clone();
        let (tx, rx) = mpsc::channel::<Result<RecordedEvent, StoreError>>(STREAM_BUFFER);
        let producer = async move {
            let mut rows = qb.build().fetch(&pool);
            loop {
                let item = match rows.try_next().await {
                    Ok(Some(row)) => decode(&row),
                    Ok(None) => break,
                    Err(e) => Err(backend(e)),
                };
                let failed = item.is_err();
                // A closed channel means the consumer dropped the stream: stop reading.
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        };
        // Spawned on first poll, so building the stream needs no runtime.
        let start = futures_util::stream::once(async move {
            tokio::spawn(producer);
        });
        let items =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        self.inner.avail.guard(
            "stream",
            self.inner.timeout,
            Box::pin(start.filter_map(|()| async { None }).chain(items)),
        )
    }

    fn wake_signal(&self) -> WakeSignal {
        let receiver = self.inner.wakes.all.subscribe();
        self.ensure_listener();
        receiver
    }

    fn category_wake_signal(&self, category: &str) -> WakeSignal {
        let receiver = self.inner.wakes.category(category);
        self.ensure_listener();
        receiver
    }
}

#[async_trait]
impl SnapshotStore for PostgresStore {
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.timed("save_snapshot", async {
            validate::snapshot(snapshot)?;
            let mut conn = self.inner.conns.get().await?;
            let done = sqlx::query(&self.inner.sql.save_snapshot)
                .bind(snapshot.stream.aggregate_type())
                .bind(snapshot.stream.aggregate_id())
                .bind(to_i64(snapshot.version.0))
                .bind(snapshot.schema_version as i32)
                .bind(&snapshot.state)
                .bind(snapshot.created_at)
                .execute(&mut *conn)
                .await
                .map_err(backend)
                .map(|_| ());
            conn.release(&done);
            done
        })
        .await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.timed("load_snapshot", async {
            let mut conn = self.inner.conns.get().await?;
            let row = sqlx::query(&self.inner.sql.load_snapshot)
                .bind(stream.aggregate_type())
                .bind(stream.aggregate_id())
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&row);
            let row = row?;
            let Some(row) = row else { return Ok(None) };
            let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
            let schema_version: i32 = row.try_get(1).map_err(corrupt)?;
            Ok(Some(Snapshot {
                stream: stream.clone(),
                version: Version(to_u64("snapshot version", row.try_get(0).map_err(corrupt)?)?),
                schema_version: u32::try_from(schema_version)
                    .map_err(|_| StoreError::Corrupt(format!("snapshot schema_version {schema_version}")))?,
                state: row.try_get(2).map_err(corrupt)?,
                created_at: row.try_get(3).map_err(corrupt)?,
            }))
        })
        .await
    }

    async fn delete_snapshot(&self, stream: &StreamId) -> Result<bool, StoreError> {
        self.timed("delete_snapshot", async {
            let done = sqlx::query(&self.inner.sql.delete_snapshot)
                .bind(stream.aggregate_type())
                .bind(stream.aggregate_id())
                .execute(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }
}

#[async_trait]
impl ConsumerStore for PostgresStore {
    async fn load_checkpoint(&self, consumer: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.timed("load_checkpoint", async {
            validate::consumer_name(consumer)?;
            let mut conn = self.inner.conns.get().await?;
            let row: Result<Option<(i64, i64)>, _> = sqlx::query_as(&self.inner.sql.load_checkpoint)
                .bind(consumer)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&row);
            let row = row?;
            row.map(|(tx, pos)| {
                Ok(Checkpoint {
                    transaction: to_u64("checkpoint transaction", tx)?,
                    position: GlobalPosition(to_u64("checkpoint position", pos)?),
                })
            })
            .transpose()
        })
        .await
    }

    async fn save_checkpoint(&self, consumer: &str, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.timed("save_checkpoint", async {
            let mut conn = self.inner.conns.get().await?;
            let result = self.save_checkpoint_in(&mut conn, consumer, checkpoint).await;
            conn.release(&result);
            result
        })
        .await
    }

    async fn advance_checkpoint(
        &self,
        consumer: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, StoreError> {
        self.timed("advance_checkpoint", async { self.advance_checkpoint_in_pool(consumer, from, to).await })
            .await
    }

    async fn count_after(&self, after: Checkpoint, aggregate_types: &[String]) -> Result<u64, StoreError> {
        self.timed("count_after", async {
            validate::checkpoint(after)?;
            let n: i64 = sqlx::query_scalar(&self.inner.sql.count_after)
                .bind(to_i64(after.transaction))
                .bind(to_i64(after.position.0))
                .bind(aggregate_types)
                .fetch_one(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            to_u64("count", n)
        })
        .await
    }

    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.timed("try_lease", async {
            validate::consumer_name(name)?;
            let leases = self.inner.leases.get_or_init(|| {
                Leases::start(
                    self.inner.pool.clone(),
                    self.inner.avail.clone(),
                    self.inner.names.schema.clone(),
                )
            });
            leases.try_lease(name).await
        })
        .await
    }

    async fn record_failure(&self, failure: &ProjectionFailure) -> Result<(), StoreError> {
        self.timed("record_failure", async {
            let mut conn = self.conn().await?;
            self.record_failure_in(&mut conn, failure).await
        })
        .await
    }

    async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, StoreError> {
        self.timed("failures", async {
            validate::consumer_name(projection)?;
            let rows = sqlx::query(&self.inner.sql.failures)
                .bind(projection)
                .fetch_all(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            rows.iter().map(decode_failure).collect()
        })
        .await
    }

    async fn resolve_failure(&self, projection: &str, event_id: Uuid) -> Result<bool, StoreError> {
        self.timed("resolve_failure", async {
            let mut conn = self.conn().await?;
            self.resolve_failure_in(&mut conn, projection, event_id).await
        })
        .await
    }

    async fn request(&self, consumer: &str, request: ConsumerRequest) -> Result<PendingRequest, StoreError> {
        self.timed("request", self.record_request(consumer, request)).await
    }

    async fn pending_request(&self, consumer: &str) -> Result<Option<PendingRequest>, StoreError> {
        self.timed("pending_request", self.load_request(consumer)).await
    }

    async fn complete_request(
        &self,
        consumer: &str,
        requested_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.timed("complete_request", self.clear_request(consumer, requested_at)).await
    }
}

#[async_trait]
impl RetentionStore for PostgresStore {
    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.timed("delete_before", async { self.delete_events(cutoff, None).await }).await
    }

    async fn delete_before_guarded(
        &self,
        cutoff: DateTime<Utc>,
        guard: &RetentionGuard,
    ) -> Result<u64, StoreError> {
        self.timed("delete_before_guarded", async {
            validate::retention_guard(guard)?;
            self.delete_events(cutoff, Some(guard)).await
        })
        .await
    }

    async fn storage_bytes(&self) -> Result<Option<u64>, StoreError> {
        self.timed("storage_bytes", async {
            let bytes: Option<i64> = sqlx::query_scalar(&self.inner.sql.storage_bytes)
                .fetch_one(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            bytes.map(|b| to_u64("table size", b)).transpose()
        })
        .await
    }
}
