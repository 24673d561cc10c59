//! [`PostgresStore`]: the [`EventStore`](factum::EventStore) on PostgreSQL, in rooms by role:
//! `sql` (the statements, from `sql/statements/`), `append`, `append_in` (in a caller's
//! transaction), `streams` (several streams in one statement), `coalesce` (the coalescing
//! writer), `log` (reads, queries, wake-ups),
//! `snapshots`, `consumers` (checkpoints, leases, failures), `retention`, `builds` (the
//! registry of projection builds).
//!
//! Taking connections, one rule: an operation of one statement borrows from the
//! connection stack (`self.inner.conns.get()`, kept warm between operations); an
//! operation of several statements takes a transaction (`self.begin()`); only
//! administrative calls (migrations, grants, operators' requests) take a plain pooled
//! connection (`self.conn()`). All three fail at once while the database is known to be
//! down.

use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex, OnceLock};

use factum::store::op::{observe, Observer, Operation};
use factum::store::Limits;
use factum::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::task::JoinHandle;

use crate::availability::Availability;
use crate::config::{check_identifier, ConfigError, PostgresConfig, SchemaNames};
use crate::conns::Connections;
use crate::lease::Leases;
use crate::listener::{self, Notifier, Wakes};
use crate::schema;

mod append;
mod append_in;
mod builds;
mod coalesce;
mod coalescing;
mod consumers;
mod log;
mod members;
mod outcome;
mod payloads;
mod read_log;
mod recent;
mod requests;
mod retention;
mod snapshots;
pub(crate) mod sql;
mod streams;
mod timers;

use crate::rows::backend;
pub use builds::build_schema;
use coalesce::Coalescer;
use coalescing::Counters;
pub use coalescing::{Coalescing, FlushStats};
pub use outcome::OutcomeStats;
use sql::Sql;

/// How many events [`EventStore::stream`](factum::store::EventLog::stream) reads ahead of its consumer (a buffer of 100).
pub const STREAM_BUFFER: usize = 100;

/// An [`EventStore`](factum::EventStore) on PostgreSQL. Cloning it gives another handle to the same pool.
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
    /// How long an append of unknown outcome may take to be resolved, and how each was.
    outcome_timeout: std::time::Duration,
    outcomes: outcome::Outcomes,
    /// Connections for one-statement operations, kept out of the pool between them.
    conns: Arc<Connections>,
    names: SchemaNames,
    sql: Sql,
    channel: Option<String>,
    limits: Limits,
    wakes: Arc<Wakes>,
    listener: Mutex<Option<JoinHandle<()>>>,
    /// Post-commit notifications of [`EventStore::append`](factum::store::EventLog::append) and their task.
    notifier: Arc<Notifier>,
    notify_task: OnceLock<JoinHandle<()>>,
    leases: OnceLock<Leases>,
    /// `LEGACY_UNKNOWN`, `LEGACY_NONE` or `LEGACY_SOME`: see `legacy_heads`.
    legacy_heads: AtomicU8,
    /// How appends share transactions, the writer that does it (started on first use),
    /// and its figures.
    coalescing: Coalescing,
    coalescer: Coalescer,
    flush_counters: Arc<Counters>,
    /// Where the transactional `*_in` operations are reported, once instrumented.
    observer: OnceLock<Arc<dyn Observer>>,
    /// Where this store's recent appends landed (`checkpoint_of` without a round trip).
    recent: recent::Recent,
    /// The presence lock of each instance that runs slices through this store: its
    /// member row counts only while the lock is held (see `members`).
    presence: Mutex<std::collections::HashMap<uuid::Uuid, factum::store::Lease>>,
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

fn validate_config(config: &PostgresConfig) -> Result<(), StoreError> {
    let invalid = |e: ConfigError| StoreError::backend(e);
    config.names.validate().map_err(invalid)?;
    if let Some(channel) = &config.notify_channel {
        check_identifier("notify channel", channel).map_err(invalid)?;
    }
    Ok(())
}

impl PostgresStore {
    /// Connects a pool with the configured settings. Does not touch the schema: call
    /// [`migrate`](Self::migrate) at start-up to create or upgrade it.
    pub async fn connect(mut config: PostgresConfig) -> Result<Self, StoreError> {
        validate_config(&config)?;
        let targets = config.targets();
        if targets.len() > 1 {
            // A replicated cluster: start on the server that accepts writes.
            let index = crate::hosts::find_primary(&targets, config.pool.connect_timeout)
                .await
                .map_err(|reason| StoreError::Unavailable { reason })?;
            config.connect = targets[index].clone();
        }
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
        let avail = Availability::new(targets);
        let mut options = PgPoolOptions::new()
            .max_connections(config.pool.max_connections)
            .idle_timeout(config.pool.idle_timeout)
            .acquire_timeout(config.pool.connect_timeout);
        if avail.follows() {
            // Only connections to the current primary are handed out (see availability.rs).
            let (fresh, idle) = (avail.clone(), avail.clone());
            options = options
                .after_connect(move |conn, _| {
                    let avail = fresh.clone();
                    Box::pin(async move { avail.check_new(conn).await })
                })
                .before_acquire(move |_, meta| {
                    let stale = idle.predates_move(meta.age);
                    Box::pin(async move { Ok(!stale) })
                });
        }
        let pool = options.connect_with(config.connect.clone()).await;
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
        Self::assemble(pool, config, avail)
    }

    /// Uses an existing pool; its connection settings win over the config's.
    ///
    /// The store's one-statement operations keep a connection out of the pool for up to
    /// 100 ms between uses, so the pool's `before_acquire` and `after_release` hooks run
    /// only when a connection passes through the pool (see the operations guide).
    ///
    /// With [`PostgresConfig::hosts`], the store points this pool at whichever server
    /// is the primary (with the pool's own user, database and TLS settings); the checks
    /// that [`connect`](Self::connect) adds to its own pool, so that no connection made
    /// to the old primary is handed out after a failover, are the application's to add.
    pub fn from_pool(pool: PgPool, config: PostgresConfig) -> Result<Self, StoreError> {
        validate_config(&config)?;
        let base = (*pool.connect_options()).clone();
        let targets =
            if config.hosts.is_empty() { vec![base] } else { crate::hosts::targets(&base, &config.hosts) };
        let avail = Availability::new(targets);
        Self::assemble(pool, config, avail)
    }

    fn assemble(pool: PgPool, config: PostgresConfig, avail: Arc<Availability>) -> Result<Self, StoreError> {
        avail.attach(&pool);
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                conns: Arc::new(Connections::new(pool.clone(), avail.clone())),
                avail,
                timeout: config.pool.operation_timeout,
                outcome_timeout: config.pool.outcome_timeout,
                outcomes: outcome::Outcomes::default(),
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
                coalescing: config.coalescing,
                coalescer: Coalescer::default(),
                flush_counters: Arc::new(Counters::default()),
                observer: OnceLock::new(),
                recent: recent::Recent::default(),
                presence: Mutex::new(std::collections::HashMap::new()),
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
    pub(crate) async fn bounded<T>(
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

    /// A transaction begun with `statement` (an isolation level), as [`begin`](Self::begin).
    pub(crate) async fn begin_with(
        &self,
        statement: &'static str,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.inner.avail.acquire(&self.inner.pool, self.inner.pool.begin_with(statement)).await
    }

    pub(crate) fn sql(&self) -> &Sql {
        &self.inner.sql
    }

    /// How appends whose connection was lost after they were sent were resolved, so far
    /// (see [`PoolSettings::outcome_timeout`](crate::PoolSettings::outcome_timeout)).
    pub fn outcome_stats(&self) -> OutcomeStats {
        self.inner.outcomes.snapshot()
    }

    /// The coalescing writer's figures so far (see [`Coalescing`]).
    pub fn flush_stats(&self) -> FlushStats {
        self.inner.flush_counters.snapshot()
    }

    /// Runs an operation inside the caller's transaction (the `*_in` methods): the same
    /// operation as through the store traits, so the same checks ran as it was built,
    /// and reported to the metrics the store was instrumented with.
    pub(crate) async fn observed<Op: Operation>(
        &self,
        op: &Op,
        run: impl std::future::Future<Output = Result<Op::Output, StoreError>>,
    ) -> Result<Op::Output, StoreError> {
        let started = std::time::Instant::now();
        let outcome = tracing::Instrument::instrument(run, op.span()).await;
        if let Some(observer) = self.inner.observer.get() {
            observe::<Op>(&**observer, &outcome, started.elapsed());
        }
        outcome
    }

    /// The schema and table names in use.
    pub fn names(&self) -> &SchemaNames {
        &self.inner.names
    }

    /// After an append committed: wakes this process's readers at once and queues the
    /// `NOTIFY` for other processes.
    pub(crate) fn committed(&self, category: &str) {
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

    pub(crate) fn ensure_listener(&self) {
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
