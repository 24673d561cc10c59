//! The instances that run a build's slices, on PostgreSQL: one row per instance, its
//! time of last contact kept by the server's clock, so that instances' clocks never
//! matter; and a presence lock per instance, held on the store's lease connection, so
//! that an instance killed outright stops counting as soon as its session ends rather
//! than when its row goes stale.

use async_trait::async_trait;
use factum::store::op::{Execute, Heartbeat, Leave};
use factum::store::Member;
use factum::StoreError;
use sqlx::Row;

use super::PostgresStore;
use crate::lease::LOCK_SPACE;
use crate::rows::backend;

impl PostgresStore {
    /// Holds `instance`'s presence lock (taking it again after the lease connection was
    /// lost).
    async fn keep_presence(&self, instance: uuid::Uuid) -> Result<(), StoreError> {
        let held = self
            .inner
            .presence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&instance)
            .is_some_and(factum::store::Lease::is_held);
        if held {
            return Ok(());
        }
        let lease = factum::store::ConsumerStore::try_lease(self, &format!("#member/{instance}")).await?;
        let mut presence = self.inner.presence.lock().unwrap_or_else(|p| p.into_inner());
        match lease {
            Some(lease) => {
                presence.insert(instance, lease);
            }
            None => {
                presence.remove(&instance);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Execute<Heartbeat> for PostgresStore {
    async fn execute(&self, op: Heartbeat) -> Result<Vec<Member>, StoreError> {
        let member = op.member();
        let holds: Vec<i32> = member.holds.iter().map(|&s| i32::from(s)).collect();
        self.bounded("heartbeat", async {
            self.keep_presence(member.instance).await?;
            let mut conn = self.inner.conns.get().await?;
            let rows = sqlx::query(self.inner.sql.heartbeat.clone())
                .bind(op.consumer())
                .bind(member.instance)
                .bind(&member.label)
                .bind(&holds)
                .bind(op.ttl().as_secs_f64())
                .bind(i64::from(LOCK_SPACE))
                .fetch_all(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&rows);
            rows?
                .iter()
                .map(|row| {
                    let corrupt = |e: sqlx::Error| StoreError::Corrupt(format!("a member row: {e}"));
                    let holds: Vec<i32> = row.try_get(2).map_err(corrupt)?;
                    let mut m = Member::new(
                        row.try_get(0).map_err(corrupt)?,
                        row.try_get::<String, _>(1).map_err(corrupt)?,
                        holds.into_iter().filter_map(|s| u16::try_from(s).ok()).collect(),
                    );
                    m.seen_at = row.try_get(3).map_err(corrupt)?;
                    Ok(m)
                })
                .collect()
        })
        .await
    }
}

#[async_trait]
impl Execute<Leave> for PostgresStore {
    async fn execute(&self, op: Leave) -> Result<(), StoreError> {
        self.inner.presence.lock().unwrap_or_else(|p| p.into_inner()).remove(&op.instance());
        self.bounded("leave", async {
            let mut conn = self.inner.conns.get().await?;
            let done = sqlx::query(self.inner.sql.leave.clone())
                .bind(op.consumer())
                .bind(op.instance())
                .execute(&mut *conn)
                .await
                .map_err(backend);
            conn.release(&done);
            done.map(|_| ())
        })
        .await
    }
}
