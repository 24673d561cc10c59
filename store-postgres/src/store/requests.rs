//! Operators' requests to projections ([`ConsumerRequest`]), and what retention would
//! delete: the store's side of the `factum` command line.

use chrono::{DateTime, Utc};
use factum::store::{validate, Checkpoint, ConsumerRequest, GlobalPosition, PendingRequest, RetentionGuard};
use factum::StoreError;
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::rows::backend;
use crate::store::PostgresStore;

impl PostgresStore {
    pub(crate) async fn record_request(
        &self,
        consumer: &str,
        request: ConsumerRequest,
    ) -> Result<PendingRequest, StoreError> {
        let (kind, to, clear) = match request {
            ConsumerRequest::Reset { to, clear } => ("reset", Some(to), Some(clear)),
            ConsumerRequest::RetryFailures => ("retry", None, None),
            // The build's version and number, where a reset keeps its checkpoint.
            ConsumerRequest::Switch { version, build } => (
                "switch",
                Some(Checkpoint {
                    transaction: u64::from(version),
                    position: GlobalPosition(u64::from(build)),
                }),
                None,
            ),
        };
        let row = sqlx::query(self.inner.sql.request.clone())
            .bind(consumer)
            .bind(kind)
            .bind(to.map(|c| to_i64(c.transaction)))
            .bind(to.map(|c| to_i64(c.position.0)))
            .bind(clear)
            .fetch_one(&mut *self.conn().await?)
            .await
            .map_err(backend)?;
        decode(&row)
    }

    pub(crate) async fn load_request(&self, consumer: &str) -> Result<Option<PendingRequest>, StoreError> {
        // Asked about once a second by every running projection: a one-statement
        // operation, on the connection stack.
        let mut conn = self.inner.conns.get().await?;
        let row = sqlx::query(self.inner.sql.pending_request.clone())
            .bind(consumer)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend);
        conn.release(&row);
        row?.as_ref().map(decode).transpose()
    }

    pub(crate) async fn clear_request(
        &self,
        consumer: &str,
        requested_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(self.inner.sql.complete_request.clone())
            .bind(consumer)
            .bind(requested_at)
            .execute(&mut *self.conn().await?)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    /// How many events retention would delete now with `cutoff` (and `guard`, in safe
    /// mode), by the same rules as [`delete_before`](factum::store::RetentionStore::delete_before)
    /// and [`delete_before_guarded`](factum::store::RetentionStore::delete_before_guarded), without
    /// deleting anything or keeping appends out.
    pub async fn count_retainable(
        &self,
        cutoff: DateTime<Utc>,
        guard: Option<&RetentionGuard>,
    ) -> Result<u64, StoreError> {
        if let Some(guard) = guard {
            for consumer in &guard.unprocessed_by {
                validate::consumer_name(consumer)?;
            }
        }
        let (consumers, unsnapshotted) = match guard {
            Some(guard) => (guard.unprocessed_by.clone(), guard.unsnapshotted),
            None => (Vec::new(), false),
        };
        let n: i64 = sqlx::query_scalar(self.inner.sql.retainable_count.clone())
            .bind(cutoff)
            .bind(guard.is_some())
            .bind(&consumers)
            .bind(unsnapshotted)
            .fetch_one(&mut *self.conn().await?)
            .await
            .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn decode(row: &PgRow) -> Result<PendingRequest, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(format!("stored request: {e}"));
    let kind: String = row.try_get(0).map_err(corrupt)?;
    let at: DateTime<Utc> = row.try_get(4).map_err(corrupt)?;
    let request = match kind.as_str() {
        "retry" => ConsumerRequest::RetryFailures,
        "switch" => {
            let version: Option<i64> = row.try_get(1).map_err(corrupt)?;
            let build: Option<i64> = row.try_get(2).map_err(corrupt)?;
            match (version.map(u32::try_from), build.map(u32::try_from)) {
                (Some(Ok(version)), Some(Ok(build))) => ConsumerRequest::Switch { version, build },
                _ => return Err(StoreError::Corrupt("stored switch request without a build".into())),
            }
        }
        "reset" => {
            let tx: Option<i64> = row.try_get(1).map_err(corrupt)?;
            let pos: Option<i64> = row.try_get(2).map_err(corrupt)?;
            let clear: Option<bool> = row.try_get(3).map_err(corrupt)?;
            let (Some(tx), Some(pos)) = (tx, pos) else {
                return Err(StoreError::Corrupt("stored reset request without a checkpoint".into()));
            };
            let (Ok(transaction), Ok(position)) = (u64::try_from(tx), u64::try_from(pos)) else {
                return Err(StoreError::Corrupt(format!(
                    "stored reset request at a negative checkpoint: {tx}/{pos}"
                )));
            };
            ConsumerRequest::Reset {
                to: Checkpoint { transaction, position: GlobalPosition(position) },
                clear: clear.unwrap_or(false),
            }
        }
        other => return Err(StoreError::Corrupt(format!("stored request of unknown kind {other:?}"))),
    };
    Ok(PendingRequest::new(request, at))
}
