//! [`ConsumerStore`] on PostgreSQL: checkpoints (and their transactional twins for
//! exactly-once projections, with the batch fence), leases, recorded failures and
//! operators' requests.

use async_trait::async_trait;
use factum::store::op::{
    AdvanceCheckpoint, CompleteRequest, CountAfter, Execute, Failures, LoadCheckpoint, LoadRequest,
    MakeRequest, RecordFailure, RecordStop, ResolveFailure, SaveCheckpoint, Stopped, TryLease,
};
use factum::store::{validate, Checkpoint, GlobalPosition, Lease, PendingRequest, ProjectionFailure};
use factum::StoreError;
use sqlx::PgConnection;
use uuid::Uuid;

use super::PostgresStore;
use crate::lease::Leases;
use crate::rows::{backend, decode_failure, to_i64, to_u64};

#[async_trait]
impl Execute<LoadCheckpoint> for PostgresStore {
    async fn execute(&self, op: LoadCheckpoint) -> Result<Option<Checkpoint>, StoreError> {
        let consumer = op.consumer();
        self.bounded("load_checkpoint", async {
            let mut conn = self.inner.conns.get().await?;
            let row: Result<Option<(i64, i64)>, _> = sqlx::query_as(self.inner.sql.load_checkpoint.clone())
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
}

#[async_trait]
impl Execute<SaveCheckpoint> for PostgresStore {
    async fn execute(&self, op: SaveCheckpoint) -> Result<(), StoreError> {
        self.bounded("save_checkpoint", async {
            let mut conn = self.inner.conns.get().await?;
            let result = self.save_checkpoint_on(&mut conn, &op).await;
            conn.release(&result);
            result
        })
        .await
    }
}

#[async_trait]
impl Execute<AdvanceCheckpoint> for PostgresStore {
    async fn execute(&self, op: AdvanceCheckpoint) -> Result<bool, StoreError> {
        self.bounded("advance_checkpoint", async {
            let mut conn = self.inner.conns.get().await?;
            let result = self.advance_checkpoint_on(&mut conn, &op).await;
            conn.release(&result);
            result
        })
        .await
    }
}

#[async_trait]
impl Execute<CountAfter> for PostgresStore {
    async fn execute(&self, op: CountAfter) -> Result<u64, StoreError> {
        let (after, aggregate_types) = (op.after(), op.aggregate_types());
        self.bounded("count_after", async {
            let mut conn = self.inner.conns.get().await?;
            let n = sqlx::query_scalar::<_, i64>(self.inner.sql.count_after.clone())
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
}

#[async_trait]
impl Execute<TryLease> for PostgresStore {
    async fn execute(&self, op: TryLease) -> Result<Option<Lease>, StoreError> {
        let name = op.consumer();
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
}

#[async_trait]
impl Execute<RecordFailure> for PostgresStore {
    async fn execute(&self, op: RecordFailure) -> Result<(), StoreError> {
        self.bounded("record_failure", async {
            let mut conn = self.conn().await?;
            self.record_failure_on(&mut conn, &op).await
        })
        .await
    }
}

#[async_trait]
impl Execute<Failures> for PostgresStore {
    async fn execute(&self, op: Failures) -> Result<Vec<ProjectionFailure>, StoreError> {
        let projection = op.consumer();
        self.bounded("failures", async {
            let rows = sqlx::query(self.inner.sql.failures.clone())
                .bind(projection)
                .fetch_all(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            rows.iter().map(decode_failure).collect()
        })
        .await
    }
}

#[async_trait]
impl Execute<ResolveFailure> for PostgresStore {
    async fn execute(&self, op: ResolveFailure) -> Result<bool, StoreError> {
        self.bounded("resolve_failure", async {
            let mut conn = self.conn().await?;
            self.resolve_failure_on(&mut conn, &op).await
        })
        .await
    }
}

#[async_trait]
impl Execute<RecordStop> for PostgresStore {
    async fn execute(&self, op: RecordStop) -> Result<(), StoreError> {
        let failure = op.failure();
        self.bounded("record_stop", async {
            bind_failure(sqlx::query(self.inner.sql.record_stop.clone()), failure)
                .execute(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Execute<Stopped> for PostgresStore {
    async fn execute(&self, op: Stopped) -> Result<Option<ProjectionFailure>, StoreError> {
        let projection = op.consumer();
        self.bounded("stopped", async {
            let row = sqlx::query(self.inner.sql.stopped.clone())
                .bind(projection)
                .fetch_optional(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            row.as_ref().map(decode_failure).transpose()
        })
        .await
    }
}

#[async_trait]
impl Execute<MakeRequest> for PostgresStore {
    async fn execute(&self, op: MakeRequest) -> Result<PendingRequest, StoreError> {
        let (consumer, request) = (op.consumer(), op.request());
        self.bounded("request", self.record_request(consumer, request)).await
    }
}

#[async_trait]
impl Execute<LoadRequest> for PostgresStore {
    async fn execute(&self, op: LoadRequest) -> Result<Option<PendingRequest>, StoreError> {
        let consumer = op.consumer();
        self.bounded("pending_request", self.load_request(consumer)).await
    }
}

#[async_trait]
impl Execute<CompleteRequest> for PostgresStore {
    async fn execute(&self, op: CompleteRequest) -> Result<bool, StoreError> {
        let (consumer, requested_at) = (op.consumer(), op.requested_at());
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
        let op = SaveCheckpoint::new(consumer, checkpoint)?;
        self.observed(&op, self.save_checkpoint_on(conn, &op)).await
    }

    async fn save_checkpoint_on(
        &self,
        conn: &mut PgConnection,
        op: &SaveCheckpoint,
    ) -> Result<(), StoreError> {
        let checkpoint = op.checkpoint();
        sqlx::query(self.inner.sql.save_checkpoint.clone())
            .bind(op.consumer())
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
        sqlx::query_scalar(self.inner.sql.fence.clone())
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
        let op = AdvanceCheckpoint::new(consumer, from, to)?;
        self.observed(&op, self.advance_checkpoint_on(conn, &op)).await
    }

    async fn advance_checkpoint_on(
        &self,
        conn: &mut PgConnection,
        op: &AdvanceCheckpoint,
    ) -> Result<bool, StoreError> {
        let (from, to) = (op.from(), op.to());
        let moved: i64 = sqlx::query_scalar(self.inner.sql.advance_checkpoint.clone())
            .bind(op.consumer())
            .bind(to_i64(from.position.0))
            .bind(to_i64(from.transaction))
            .bind(to_i64(to.position.0))
            .bind(to_i64(to.transaction))
            .fetch_one(conn)
            .await
            .map_err(backend)?;
        Ok(moved == 1)
    }

    /// Records a projection's failure inside a transaction the caller owns.
    pub async fn record_failure_in(
        &self,
        conn: &mut PgConnection,
        failure: &ProjectionFailure,
    ) -> Result<(), StoreError> {
        let op = RecordFailure::new(failure.clone())?;
        self.observed(&op, self.record_failure_on(conn, &op)).await
    }

    async fn record_failure_on(&self, conn: &mut PgConnection, op: &RecordFailure) -> Result<(), StoreError> {
        bind_failure(sqlx::query(self.inner.sql.record_failure.clone()), op.failure())
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
        let op = ResolveFailure::new(projection, event_id)?;
        self.observed(&op, self.resolve_failure_on(conn, &op)).await
    }

    async fn resolve_failure_on(
        &self,
        conn: &mut PgConnection,
        op: &ResolveFailure,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(self.inner.sql.resolve_failure.clone())
            .bind(op.projection())
            .bind(op.event_id())
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
