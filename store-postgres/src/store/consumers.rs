//! [`ConsumerStore`] on PostgreSQL: checkpoints (and their transactional twins for
//! exactly-once projections, with the batch fence), leases, recorded failures and
//! operators' requests.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use factum::store::backend::ConsumerBackend;
use factum::store::{
    validate, Checkpoint, ConsumerRequest, GlobalPosition, Lease, PendingRequest, ProjectionFailure,
};
use factum::StoreError;
use sqlx::PgConnection;
use uuid::Uuid;

use super::PostgresStore;
use crate::lease::Leases;
use crate::rows::{backend, decode_failure, to_i64, to_u64};

#[async_trait]
impl ConsumerBackend for PostgresStore {
    async fn load_checkpoint(&self, consumer: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.bounded("load_checkpoint", async {
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
        self.bounded("save_checkpoint", async {
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
        self.bounded("advance_checkpoint", async {
            self.advance_checkpoint_in_pool(consumer, from, to).await
        })
        .await
    }

    async fn count_after(&self, after: Checkpoint, aggregate_types: &[String]) -> Result<u64, StoreError> {
        self.bounded("count_after", async {
            let mut conn = self.inner.conns.get().await?;
            let n = sqlx::query_scalar::<_, i64>(&self.inner.sql.count_after)
                .bind(to_i64(after.transaction))
                .bind(to_i64(after.position.0))
                .bind(aggregate_types)
                .fetch_one(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&n);
            to_u64("count", n?)
        })
        .await
    }

    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.bounded("try_lease", async {
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
        self.bounded("record_failure", async {
            let mut conn = self.conn().await?;
            self.record_failure_in(&mut conn, failure).await
        })
        .await
    }

    async fn failures(&self, projection: &str) -> Result<Vec<ProjectionFailure>, StoreError> {
        self.bounded("failures", async {
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
        self.bounded("resolve_failure", async {
            let mut conn = self.conn().await?;
            self.resolve_failure_in(&mut conn, projection, event_id).await
        })
        .await
    }

    async fn record_stop(&self, failure: &ProjectionFailure) -> Result<(), StoreError> {
        self.bounded("record_stop", async {
            bind_failure(sqlx::query(&self.inner.sql.record_stop), failure)
                .execute(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn stopped(&self, projection: &str) -> Result<Option<ProjectionFailure>, StoreError> {
        self.bounded("stopped", async {
            let row = sqlx::query(&self.inner.sql.stopped)
                .bind(projection)
                .fetch_optional(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            row.as_ref().map(decode_failure).transpose()
        })
        .await
    }

    async fn request(&self, consumer: &str, request: ConsumerRequest) -> Result<PendingRequest, StoreError> {
        self.bounded("request", self.record_request(consumer, request)).await
    }

    async fn pending_request(&self, consumer: &str) -> Result<Option<PendingRequest>, StoreError> {
        self.bounded("pending_request", self.load_request(consumer)).await
    }

    async fn complete_request(
        &self,
        consumer: &str,
        requested_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.bounded("complete_request", self.clear_request(consumer, requested_at)).await
    }
}

impl PostgresStore {
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
    /// owns, only if it still is `from` (see [`EventStore::advance_checkpoint`](factum::store::ConsumerStore::advance_checkpoint)).
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
        bind_failure(sqlx::query(&self.inner.sql.record_failure), failure)
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
}

/// Binds a failure's fields as `$1..$11`, in the order of `record_failure.sql` and
/// `record_stop.sql`.
fn bind_failure<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    failure: &'q ProjectionFailure,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
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
}
