//! What an operator reads of a store beyond the store traits: each projection's checkpoint,
//! lag, failures, pending request and lease holder; the gap-safe horizon and what holds it
//! back; the store's size. The `factum` command line shows these (`factum status`).
//!
//! The statements live in `sql/admin/`. Some of them read the whole events table, so
//! call them from tools, not from a service's hot path.

use chrono::{DateTime, Utc};
use factum::store::{BuildState, Checkpoint, GlobalPosition};
use factum::StoreError;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Row, SqlStr};

use crate::lease::LOCK_SPACE;
use crate::rows::{backend, to_i64, to_u64};
use crate::schema::statement;
use crate::PostgresStore;

/// A projection as the store sees it, running or not.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProjectionReport {
    /// The projection's name.
    pub name: String,
    /// Its checkpoint.
    pub checkpoint: Checkpoint,
    /// When the checkpoint last moved.
    pub last_processed_at: DateTime<Utc>,
    /// Events of the log after the checkpoint, of every aggregate type (a projection scoped
    /// to some types reads only theirs).
    pub behind_events: u64,
    /// How long ago the oldest of them was recorded, in seconds.
    pub behind_seconds: Option<f64>,
    /// Its recorded failures.
    pub failures: u64,
    /// An operator's pending request: its kind (`reset`, `retry`) and when it was made.
    pub request: Option<(String, Option<DateTime<Utc>>)>,
    /// Where its failure policy stopped it, as the fields of a recorded failure; `None`
    /// while it runs.
    pub stopped: Option<Value>,
    /// The session holding its lease, if one does.
    pub lease: Option<SessionInfo>,
    /// The state of the projection build it is the checkpoint of (building, live,
    /// replaced, retired), if it is one.
    pub build: Option<BuildState>,
}

/// A database session, as `pg_stat_activity` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The backend's process id.
    pub pid: i32,
    /// The client's `application_name`.
    pub application_name: Option<String>,
    /// The client's address (`None` over a Unix socket).
    pub client_addr: Option<String>,
}

/// The gap-safe horizon: readers of the log see only transactions older than the oldest one
/// still running anywhere in the cluster.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Horizon {
    /// The horizon: the oldest running transaction's id.
    pub transaction: u64,
    /// Committed events that wait behind it.
    pub waiting_events: u64,
    /// The oldest transaction with an id, in any database, if there is one.
    pub oldest: Option<OldestTransaction>,
}

/// The transaction that holds the horizon back.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OldestTransaction {
    /// Its session.
    pub session: SessionInfo,
    /// Its database.
    pub database: Option<String>,
    /// Its user.
    pub user: Option<String>,
    /// Its session's state (`active`, `idle in transaction`, …).
    pub state: Option<String>,
    /// How long the transaction has been open, in seconds.
    pub open_for_seconds: Option<f64>,
    /// The start of its current or last statement.
    pub query: Option<String>,
}

/// The store at a glance. Reads the whole events table.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StoreReport {
    /// Events stored.
    pub events: u64,
    /// Streams with at least one event.
    pub streams: u64,
    /// Streams with a snapshot.
    pub snapshotted_streams: u64,
    /// The events a load reads after the snapshot (or from the start), on average.
    pub tail_after_snapshot: f64,
    /// The events table and its indexes, in bytes.
    pub bytes: Option<u64>,
    /// Events per aggregate type, most first (at most 20).
    pub by_aggregate_type: Vec<(String, u64)>,
    /// The largest aggregates: type, id and events, most first (at most 10).
    pub largest: Vec<(String, String, u64)>,
}

impl PostgresStore {
    fn admin_sql(&self, template: &str) -> SqlStr {
        statement(template, self.names())
    }

    /// Every projection with a checkpoint in this store (or only `only`), by name.
    pub async fn projection_reports(&self, only: Option<&str>) -> Result<Vec<ProjectionReport>, StoreError> {
        let sql = self.admin_sql(include_str!("../sql/admin/projections.sql"));
        let rows = sqlx::query(sql)
            .bind(only)
            .bind(i64::from(LOCK_SPACE))
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(backend)?;
        rows.iter().map(projection).collect()
    }

    /// The gap-safe horizon and what holds it back.
    pub async fn horizon(&self) -> Result<Horizon, StoreError> {
        let sql = self.admin_sql(include_str!("../sql/admin/horizon.sql"));
        let row = sqlx::query(sql).fetch_one(&mut *self.conn().await?).await.map_err(backend)?;
        let pid: Option<i32> = row.try_get(2).map_err(backend)?;
        let oldest = match pid {
            Some(pid) => Some(OldestTransaction {
                session: SessionInfo {
                    pid,
                    application_name: row.try_get(5).map_err(backend)?,
                    client_addr: None,
                },
                database: row.try_get(3).map_err(backend)?,
                user: row.try_get(4).map_err(backend)?,
                state: row.try_get(6).map_err(backend)?,
                open_for_seconds: row.try_get(7).map_err(backend)?,
                query: row.try_get(8).map_err(backend)?,
            }),
            None => None,
        };
        Ok(Horizon {
            transaction: to_u64("horizon", row.try_get(0).map_err(backend)?)?,
            waiting_events: to_u64("waiting events", row.try_get(1).map_err(backend)?)?,
            oldest,
        })
    }

    /// The store's size, streams and snapshot coverage. Reads the whole events table.
    pub async fn store_report(&self) -> Result<StoreReport, StoreError> {
        let mut conn = self.conn().await?;
        let sql = self.admin_sql(include_str!("../sql/admin/store.sql"));
        let row = sqlx::query(sql).fetch_one(&mut *conn).await.map_err(backend)?;
        let sql = self.admin_sql(include_str!("../sql/admin/by_type.sql"));
        let by_type: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(&mut *conn).await.map_err(backend)?;
        let sql = self.admin_sql(include_str!("../sql/admin/largest.sql"));
        let largest: Vec<(String, String, i64)> =
            sqlx::query_as(sql).fetch_all(&mut *conn).await.map_err(backend)?;
        let bytes: Option<i64> = row.try_get(4).map_err(backend)?;
        Ok(StoreReport {
            events: to_u64("events", row.try_get(0).map_err(backend)?)?,
            streams: to_u64("streams", row.try_get(1).map_err(backend)?)?,
            snapshotted_streams: to_u64("snapshotted streams", row.try_get(2).map_err(backend)?)?,
            tail_after_snapshot: row.try_get(3).map_err(backend)?,
            bytes: bytes.map(|b| to_u64("bytes", b)).transpose()?,
            by_aggregate_type: by_type
                .into_iter()
                .map(|(t, n)| Ok((t, to_u64("events", n)?)))
                .collect::<Result<_, StoreError>>()?,
            largest: largest
                .into_iter()
                .map(|(t, id, n)| Ok((t, id, to_u64("events", n)?)))
                .collect::<Result<_, StoreError>>()?,
        })
    }

    /// The names of the consumers (projections) with a checkpoint in this store.
    pub async fn consumer_names(&self) -> Result<Vec<String>, StoreError> {
        let sql = self.admin_sql("SELECT projection_name FROM {schema}.{positions} ORDER BY 1");
        sqlx::query_scalar(sql).fetch_all(&mut *self.conn().await?).await.map_err(backend)
    }

    /// The checkpoint just after the event at `position`, if an event is stored there.
    pub async fn checkpoint_at(&self, position: GlobalPosition) -> Result<Option<Checkpoint>, StoreError> {
        let sql = self.admin_sql("SELECT transaction_id FROM {schema}.{events} WHERE global_position = $1");
        let tx: Option<i64> = sqlx::query_scalar(sql)
            .bind(to_i64(position.0))
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(backend)?;
        tx.map(|tx| Ok(Checkpoint { transaction: to_u64("transaction", tx)?, position })).transpose()
    }
}

fn projection(row: &PgRow) -> Result<ProjectionReport, StoreError> {
    let get = |i: usize| row.try_get::<Option<i64>, _>(i).map_err(backend);
    let pid: Option<i32> = row.try_get(9).map_err(backend)?;
    let request: Option<String> = row.try_get(7).map_err(backend)?;
    let requested_at: Option<DateTime<Utc>> = row.try_get(8).map_err(backend)?;
    Ok(ProjectionReport {
        name: row.try_get(0).map_err(backend)?,
        checkpoint: Checkpoint {
            transaction: to_u64("transaction", get(1)?.unwrap_or_default())?,
            position: GlobalPosition(to_u64("position", get(2)?.unwrap_or_default())?),
        },
        last_processed_at: row.try_get(3).map_err(backend)?,
        behind_events: to_u64("behind", get(4)?.unwrap_or_default())?,
        behind_seconds: row.try_get(5).map_err(backend)?,
        failures: to_u64("failures", get(6)?.unwrap_or_default())?,
        request: request.map(|kind| (kind, requested_at)),
        stopped: row.try_get(12).map_err(backend)?,
        lease: pid.map(|pid| SessionInfo {
            pid,
            application_name: row.try_get(10).ok().flatten(),
            client_addr: row.try_get(11).ok().flatten(),
        }),
        build: row.try_get::<Option<String>, _>(13).map_err(backend)?.and_then(|s| BuildState::parse(&s)),
    })
}
