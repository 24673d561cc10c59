//! [`ExactlyOnce`]: projections into PostgreSQL read models, each batch and its
//! checkpoint in one transaction.

use std::collections::HashMap;
use std::future::Future;

use async_trait::async_trait;
use factum::projection::{catch_panic, Batch, ProjectionSink, SinkError};
use factum::store::{Checkpoint, ConsumerStore, ProjectionBuild, ProjectionFailure};
use factum::{HandlerError, RecordedEvent, StoreError};
use sqlx::{PgConnection, Postgres, Transaction};
use tracing::Instrument;

use crate::rows::backend;
use crate::store::PostgresStore;

/// A projection into tables of the event store's database. Its handler writes through
/// the transaction it is given; the framework moves the checkpoint in that same
/// transaction, so a crash at any point leaves each event applied exactly once.
///
/// ```no_run
/// use factum::{HandlerError, Projection, RecordedEvent};
/// use factum_postgres::{ExactlyOnce, PgProjection, PostgresStore};
/// use sqlx::PgConnection;
///
/// struct OrderCount;
///
/// #[async_trait::async_trait]
/// impl PgProjection for OrderCount {
///     async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
///         sqlx::query("INSERT INTO order_count (customer, n) VALUES ($1, 1) \
///                      ON CONFLICT (customer) DO UPDATE SET n = order_count.n + 1")
///             .bind(event.payload["customer"].as_str())
///             .execute(tx)
///             .await?;
///         Ok(())
///     }
///
///     async fn clear(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
///         sqlx::query("TRUNCATE order_count").execute(tx).await?;
///         Ok(())
///     }
/// }
///
/// # fn define(store: PostgresStore) -> Projection {
/// Projection::new("order_count", ExactlyOnce::new(store, OrderCount))
///     .aggregate_types(["Order"])
///     .event_types(["OrderPlaced"])
/// # }
/// ```
#[async_trait]
pub trait PgProjection: Send + 'static {
    /// Applies one event, writing through `tx`. An error (or a panic) rolls the whole
    /// batch back; the failure policy decides what happens next.
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError>;

    /// Applies a batch of events, in log order, writing through `tx`. By default one
    /// [`handle`](Self::handle) per event; override it to write a whole batch in a few
    /// statements (one multi-row upsert instead of one statement per event is what
    /// makes a catch-up run at the speed of reading the log).
    ///
    /// An error (or a panic) rolls the batch back, and the framework runs the same
    /// events again one [`handle`](Self::handle) at a time, in a new transaction, to
    /// find the event that fails: the failure policy always sees one event.
    ///
    /// ```no_run
    /// # use factum::{HandlerError, RecordedEvent};
    /// # use sqlx::PgConnection;
    /// # struct OrderCount;
    /// # #[async_trait::async_trait]
    /// # impl factum_postgres::PgProjection for OrderCount {
    /// # async fn handle(&mut self, _: &mut PgConnection, _: &RecordedEvent) -> Result<(), HandlerError> { Ok(()) }
    /// async fn handle_batch(&mut self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), HandlerError> {
    ///     let customers: Vec<&str> = events.iter().filter_map(|e| e.payload["customer"].as_str()).collect();
    ///     sqlx::query("INSERT INTO order_count (customer, n) SELECT c, count(*) FROM unnest($1::text[]) AS c GROUP BY c \
    ///                  ON CONFLICT (customer) DO UPDATE SET n = order_count.n + EXCLUDED.n")
    ///         .bind(customers)
    ///         .execute(tx)
    ///         .await?;
    ///     Ok(())
    /// }
    /// # }
    /// ```
    async fn handle_batch(
        &mut self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        for (index, event) in events.iter().enumerate() {
            catch_panic(self.handle(tx, event))
                .instrument(factum::trace::handling_span(event))
                .await
                .map_err(|error| HandlerError::from(AtEvent { index, error }))?;
        }
        Ok(())
    }

    /// Clears the read model, in the transaction that also resets the checkpoint for a
    /// rebuild. By default there is nothing to clear.
    async fn clear(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        let _ = tx;
        Ok(())
    }

    /// Creates the read model's tables, for a projection whose builds are kept apart
    /// ([`ExactlyOnce::schema_per_build`]): called in a transaction whose `search_path`
    /// starts with the build's own schema, so unqualified `CREATE TABLE IF NOT EXISTS`
    /// statements land there. Called each time a build is taken up, so it must be
    /// idempotent. By default there is nothing to create.
    async fn create(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        let _ = tx;
        Ok(())
    }
}

/// The default [`PgProjection::handle_batch`]'s error: which event failed, so that the
/// sink need not run the batch again to find it. Displays as the handler's own error.
struct AtEvent {
    index: usize,
    error: HandlerError,
}

impl std::fmt::Display for AtEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl std::fmt::Debug for AtEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.error, f)
    }
}

impl std::error::Error for AtEvent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.as_error().source()
    }
}

/// The exactly-once [`ProjectionSink`] for a [`PgProjection`].
///
/// By default the handler writes where its SQL says, and a rebuild clears that read
/// model in place. With [`schema_per_build`](Self::schema_per_build), each build of the
/// projection (each version, each rebuild) gets a schema of its own
/// ([`build_schema`](crate::build_schema)): the handler's unqualified table names land
/// there, a rebuild builds a fresh copy while the live one keeps serving, and readers
/// read the live build through [`PostgresStore::read_models`].
#[derive(Debug)]
pub struct ExactlyOnce<P> {
    store: PostgresStore,
    projection: P,
    /// With a schema per build: each prepared build's `search_path`, by consumer name.
    paths: Option<HashMap<String, String>>,
}

impl<P: PgProjection> ExactlyOnce<P> {
    /// A sink that applies `projection` in transactions on `store`'s database.
    pub fn new(store: PostgresStore, projection: P) -> Self {
        ExactlyOnce { store, projection, paths: None }
    }

    /// Keeps each build's tables in a schema of its own, created when the build is taken
    /// up (with [`PgProjection::create`]); every transaction of the handler runs with
    /// `search_path` set to that schema first. The role the service connects as needs
    /// `CREATE` on the database.
    #[must_use]
    pub fn schema_per_build(mut self) -> Self {
        self.paths = Some(HashMap::new());
        self
    }

    /// A transaction inside `consumer`'s batch fence (see `PostgresStore::fence`), if
    /// the checkpoint still is `from`, with the build's `search_path`; else the batch is
    /// fenced off and nothing was written.
    fn begin_fenced<'a>(
        &'a self,
        consumer: &'a str,
        from: Checkpoint,
    ) -> impl Future<Output = Result<Transaction<'static, Postgres>, SinkError>> + Send + 'a {
        let (store, paths) = (&self.store, self.paths.as_ref());
        async move {
            let mut tx = begin_in(store, paths, consumer).await?;
            if store.fence(&mut tx, consumer, from).await? {
                Ok(tx)
            } else {
                Err(SinkError::Fenced)
            }
        }
    }

    /// A transaction with `consumer`'s build's `search_path`, where builds are kept apart.
    fn begin_in<'a>(
        &'a self,
        consumer: &'a str,
    ) -> impl Future<Output = Result<Transaction<'static, Postgres>, SinkError>> + Send + 'a {
        begin_in(&self.store, self.paths.as_ref(), consumer)
    }
}

async fn begin_in(
    store: &PostgresStore,
    paths: Option<&HashMap<String, String>>,
    consumer: &str,
) -> Result<Transaction<'static, Postgres>, SinkError> {
    let mut tx = begin(store).await?;
    if let Some(paths) = paths {
        // A slice's batches go to its build's read model.
        let path = paths
            .get(consumer)
            .or_else(|| paths.get(factum::store::slice_build(consumer)))
            .ok_or_else(|| {
                SinkError::Store(StoreError::Backend(
                    format!("projection build {consumer:?} was not prepared before use").into(),
                ))
            })?;
        set_path(&mut tx, path).await?;
    }
    Ok(tx)
}

async fn set_path(tx: &mut PgConnection, path: &str) -> Result<(), SinkError> {
    sqlx::query("SELECT set_config('search_path', $1, true)")
        .bind(path)
        .execute(tx)
        .await
        .map_err(|e| SinkError::Store(backend(e)))?;
    Ok(())
}

/// `schema`, quoted, ahead of the session's own `search_path` (which may be empty).
pub(crate) fn path_with(schema: &str, rest: &str) -> String {
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    if rest.trim().is_empty() {
        quoted
    } else {
        format!("{quoted}, {rest}")
    }
}

async fn begin(store: &PostgresStore) -> Result<Transaction<'static, Postgres>, SinkError> {
    Ok(store.begin().await?)
}

fn handler(error: HandlerError, index: usize) -> SinkError {
    SinkError::Handler { index, error, prefix_committed: false }
}

async fn commit(tx: Transaction<'static, Postgres>) -> Result<(), SinkError> {
    tx.commit().await.map_err(|e| SinkError::Store(backend(e)))
}

#[async_trait]
impl<P: PgProjection> ProjectionSink for ExactlyOnce<P> {
    async fn apply(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        if batch.events.is_empty() {
            // Nothing selected: only the checkpoint moves.
            return match ConsumerStore::advance_checkpoint(
                &self.store,
                batch.projection,
                batch.from,
                batch.to,
            )
            .await?
            {
                true => Ok(()),
                false => Err(SinkError::Fenced),
            };
        }
        let mut tx = self.begin_fenced(batch.projection, batch.from).await?;
        if let Err(error) = catch_panic(self.projection.handle_batch(&mut tx, batch.events)).await {
            // The transaction is dropped: rolled back, nothing of the batch kept.
            if let Some(index) = error.as_error().downcast_ref::<AtEvent>().map(|a| a.index) {
                return Err(handler(error, index));
            }
            // An overriding handle_batch failed somewhere: find the failing event one at
            // a time, in a new transaction.
            drop(tx);
            tx = self.begin_fenced(batch.projection, batch.from).await?;
            for (index, event) in batch.events.iter().enumerate() {
                // On error the transaction is dropped: rolled back, nothing of the batch kept.
                catch_panic(self.projection.handle(&mut tx, event))
                    .instrument(factum::trace::handling_span(event))
                    .await
                    .map_err(|e| handler(e, index))?;
            }
        }
        if !self.store.advance_checkpoint_in(&mut tx, batch.projection, batch.from, batch.to).await? {
            return Err(SinkError::Fenced);
        }
        commit(tx).await
    }

    async fn skip(&mut self, failure: &ProjectionFailure, from: Checkpoint) -> Result<(), SinkError> {
        let mut tx = self.begin_fenced(&failure.projection, from).await?;
        self.store.record_failure_in(&mut tx, failure).await?;
        if !self.store.advance_checkpoint_in(&mut tx, &failure.projection, from, failure.checkpoint()).await?
        {
            return Err(SinkError::Fenced);
        }
        commit(tx).await
    }

    async fn retry_failed(&mut self, projection: &str, event: &RecordedEvent) -> Result<(), SinkError> {
        let mut tx = self.begin_in(projection).await?;
        // Inside the fence, so as not to interleave with a batch; the checkpoint may be anywhere.
        self.store.fence(&mut tx, projection, Checkpoint::START).await?;
        catch_panic(self.projection.handle(&mut tx, event)).await.map_err(|e| handler(e, 0))?;
        self.store.resolve_failure_in(&mut tx, projection, event.event_id).await?;
        commit(tx).await
    }

    async fn reset(&mut self, projection: &str, to: Checkpoint, clear: bool) -> Result<(), SinkError> {
        let mut tx = self.begin_in(projection).await?;
        // Inside the fence: a previous holder's open batch ends before the reset.
        self.store.fence(&mut tx, projection, Checkpoint::START).await?;
        if clear {
            catch_panic(self.projection.clear(&mut tx)).await.map_err(|e| handler(e, 0))?;
        }
        self.store.save_checkpoint_in(&mut tx, projection, to).await?;
        commit(tx).await
    }

    async fn prepare(&mut self, build: &ProjectionBuild) -> Result<(), SinkError> {
        let Some(paths) = &self.paths else {
            return Ok(());
        };
        let consumer = build.id.consumer();
        let schema = build
            .location
            .clone()
            .unwrap_or_else(|| crate::build_schema(&self.store.names().schema, &build.id));
        let sql = |e| SinkError::Store(backend(e));
        let mut tx = begin(&self.store).await?;
        // Inside the fence: a previous holder's batch ends first, two instances never
        // create the same schema at once, and a retirement has either committed (then
        // nothing is created again) or not begun.
        self.store.fence(&mut tx, &consumer, Checkpoint::START).await?;
        let names = self.store.names();
        let state: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT state FROM {}.{}_builds WHERE consumer_name = $1",
            names.schema, names.positions
        )))
        .bind(&consumer)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql)?;
        if state.as_deref() == Some("retired") {
            return Ok(());
        }
        let existed: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(&schema)
                .fetch_one(&mut *tx)
                .await
                .map_err(sql)?;
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", schema.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut *tx).await.map_err(sql)?;
        if !existed && self.store.load_checkpoint(&consumer).await?.is_some_and(|c| c != Checkpoint::START) {
            // A projection that kept its read model elsewhere before (no schema per build):
            // its new schema starts empty, so it replays the log from the start into it.
            tracing::warn!(projection = %consumer, "read model now kept per build: replaying it from the start into its schema");
            self.store.save_checkpoint_in(&mut tx, &consumer, Checkpoint::START).await?;
        }
        let rest: String = sqlx::query_scalar("SELECT current_setting('search_path')")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| SinkError::Store(backend(e)))?;
        let path = path_with(&schema, &rest);
        set_path(&mut tx, &path).await?;
        catch_panic(self.projection.create(&mut tx)).await.map_err(|e| handler(e, 0))?;
        commit(tx).await?;
        if !paths.contains_key(&consumer) {
            self.paths.get_or_insert_with(HashMap::new).insert(consumer, path);
        }
        Ok(())
    }

    fn keeps_builds_apart(&self) -> bool {
        self.paths.is_some()
    }
}
