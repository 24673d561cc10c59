//! Durable timers on PostgreSQL: one row per stream and timer name (schema version 13).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use factum::store::op::{CancelTimers, Execute, RemoveTimer, SetTimer, Timers};
use factum::store::Timer;
use factum::{StoreError, StreamId, Version};
use sqlx::Row;
use uuid::Uuid;

use super::PostgresStore;
use crate::rows::backend;

#[async_trait]
impl Execute<SetTimer> for PostgresStore {
    async fn execute(&self, op: SetTimer) -> Result<(), StoreError> {
        let t = op.timer();
        self.bounded("set_timer", async {
            let mut conn = self.inner.conns.get().await?;
            let done = sqlx::query(self.inner.sql.set_timer.clone())
                .bind(t.stream.aggregate_type())
                .bind(t.stream.aggregate_id())
                .bind(&t.name)
                .bind(t.id)
                .bind(t.deadline)
                .bind(t.version.0 as i64)
                .execute(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&done);
            done.map(|_| ())
        })
        .await
    }
}

#[async_trait]
impl Execute<CancelTimers> for PostgresStore {
    async fn execute(&self, op: CancelTimers) -> Result<u64, StoreError> {
        self.bounded("cancel_timers", async {
            let mut conn = self.inner.conns.get().await?;
            let done = sqlx::query(self.inner.sql.cancel_timers.clone())
                .bind(op.stream().aggregate_type())
                .bind(op.stream().aggregate_id())
                .bind(op.name())
                .bind(op.except())
                .bind(op.version().0 as i64)
                .execute(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&done);
            done.map(|r| r.rows_affected())
        })
        .await
    }
}

#[async_trait]
impl Execute<Timers> for PostgresStore {
    async fn execute(&self, op: Timers) -> Result<Vec<Timer>, StoreError> {
        self.bounded("timers", async {
            let mut conn = self.inner.conns.get().await?;
            let rows = sqlx::query(self.inner.sql.timers.clone())
                .bind(op.category())
                .bind(op.due_before())
                .bind(op.limit() as i64)
                .fetch_all(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&rows);
            rows?.iter().map(timer).collect()
        })
        .await
    }
}

#[async_trait]
impl Execute<RemoveTimer> for PostgresStore {
    async fn execute(&self, op: RemoveTimer) -> Result<bool, StoreError> {
        self.bounded("remove_timer", async {
            let mut conn = self.inner.conns.get().await?;
            let done = sqlx::query(self.inner.sql.remove_timer.clone())
                .bind(op.stream().aggregate_type())
                .bind(op.stream().aggregate_id())
                .bind(op.id())
                .execute(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&done);
            done.map(|r| r.rows_affected() > 0)
        })
        .await
    }
}

fn timer(row: &sqlx::postgres::PgRow) -> Result<Timer, StoreError> {
    let aggregate_type: String = row.try_get("aggregate_type").map_err(backend)?;
    let aggregate_id: String = row.try_get("aggregate_id").map_err(backend)?;
    let stream = StreamId::new(aggregate_type, aggregate_id)?;
    let id: Uuid = row.try_get("timer_id").map_err(backend)?;
    let deadline: DateTime<Utc> = row.try_get("deadline").map_err(backend)?;
    let version: i64 = row.try_get("version").map_err(backend)?;
    Ok(Timer {
        stream,
        name: row.try_get("name").map_err(backend)?,
        id,
        deadline,
        version: Version(version as u64),
    })
}
