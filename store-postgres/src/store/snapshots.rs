//! [`SnapshotStore`] on PostgreSQL: one snapshot per stream, never replaced by an older one.

use async_trait::async_trait;
use factum::store::op::{DeleteSnapshot, Execute, LoadSnapshot, SaveSnapshot};
use factum::store::Snapshot;
use factum::{StoreError, Version};
use sqlx::Row;

use super::PostgresStore;
use crate::rows::{backend, to_i64, to_u64};

#[async_trait]
impl Execute<SaveSnapshot> for PostgresStore {
    async fn execute(&self, op: SaveSnapshot) -> Result<(), StoreError> {
        let snapshot = op.snapshot();
        self.bounded("save_snapshot", async {
            let mut conn = self.inner.conns.get().await?;
            let done = sqlx::query(self.inner.sql.save_snapshot.clone())
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
}

#[async_trait]
impl Execute<LoadSnapshot> for PostgresStore {
    async fn execute(&self, op: LoadSnapshot) -> Result<Option<Snapshot>, StoreError> {
        let stream = op.stream();
        self.bounded("load_snapshot", async {
            let mut conn = self.inner.conns.get().await?;
            let row = sqlx::query(self.inner.sql.load_snapshot.clone())
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
}

#[async_trait]
impl Execute<DeleteSnapshot> for PostgresStore {
    async fn execute(&self, op: DeleteSnapshot) -> Result<bool, StoreError> {
        let stream = op.stream();
        self.bounded("delete_snapshot", async {
            sqlx::query_scalar(self.inner.sql.delete_snapshot.clone())
                .bind(stream.aggregate_type())
                .bind(stream.aggregate_id())
                .fetch_one(&mut *self.conn().await?)
                .await
                .map_err(backend)
        })
        .await
    }
}
