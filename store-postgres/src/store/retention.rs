//! [`RetentionStore`] on PostgreSQL: deleting old events through the owner's retention
//! function, chunk by chunk.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use factum::store::op::{DeleteBefore, DeleteBeforeGuarded, Execute, StorageBytes};
use factum::store::RetentionGuard;
use factum::StoreError;

use super::PostgresStore;
use crate::rows::{backend, to_u64};

/// At most this many events are deleted per retention transaction, so that appends, which
/// retention locks out while it deletes, wait for one chunk at most.
pub(crate) const RETENTION_CHUNK: i32 = 10_000;

#[async_trait]
impl Execute<DeleteBefore> for PostgresStore {
    async fn execute(&self, op: DeleteBefore) -> Result<u64, StoreError> {
        let cutoff = op.cutoff();
        self.bounded("delete_before", async { self.delete_events(cutoff, None).await }).await
    }
}

#[async_trait]
impl Execute<DeleteBeforeGuarded> for PostgresStore {
    async fn execute(&self, op: DeleteBeforeGuarded) -> Result<u64, StoreError> {
        let (cutoff, guard) = (op.cutoff(), op.guard());
        self.bounded("delete_before_guarded", async { self.delete_events(cutoff, Some(guard)).await }).await
    }
}

#[async_trait]
impl Execute<StorageBytes> for PostgresStore {
    async fn execute(&self, _: StorageBytes) -> Result<Option<u64>, StoreError> {
        self.bounded("storage_bytes", async {
            let bytes: Option<i64> = sqlx::query_scalar(self.inner.sql.storage_bytes.clone())
                .fetch_one(&mut *self.conn().await?)
                .await
                .map_err(backend)?;
            bytes.map(|b| to_u64("table size", b)).transpose()
        })
        .await
    }
}

impl PostgresStore {
    /// Deletes what retention may (with `guard`, in safe mode) chunk by chunk, until a
    /// chunk deletes less than a whole one. Each chunk is one call of the retention
    /// function (the only way events leave, with its owner's rights) in a transaction of
    /// its own that locks appends out, so that no append checks a head that the chunk is
    /// deleting.
    pub(crate) async fn delete_events(
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
            let deleted = sqlx::query_scalar::<_, i64>(self.inner.sql.retain.clone())
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
}
