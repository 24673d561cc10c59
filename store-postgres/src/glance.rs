//! What a console shows on every view, read cheaply however large the store: one event by
//! its id, the table's size from the planner's statistics, and the events of a range of
//! positions by aggregate type (for rates between two samples).

use factum::store::GlobalPosition;
use factum::{RecordedEvent, StoreError};
use sqlx::Row;
use uuid::Uuid;

use crate::rows::{backend, decode, to_i64, to_u64};
use crate::schema::statement;
use crate::store::sql::COLUMNS;
use crate::PostgresStore;

/// The events table's size as the planner last measured it: no row is counted.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct StoreEstimate {
    /// The rows the table held when it was last vacuumed or analysed; `None` before it
    /// ever was.
    pub events: Option<u64>,
    /// The table and its indexes, in bytes.
    pub bytes: u64,
}

impl PostgresStore {
    /// The event with this id, if it is stored (through the event-id index).
    pub async fn event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let sql = statement(
            &format!("SELECT {COLUMNS} FROM {{schema}}.{{events}} WHERE event_id = $1"),
            self.names(),
        );
        let row = sqlx::query(sql)
            .bind(event_id)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(backend)?;
        row.as_ref().map(decode).transpose()
    }

    /// The events table's size from the statistics: cheap on any store, and as fresh as
    /// the last (auto)vacuum or analyse.
    pub async fn estimate(&self) -> Result<StoreEstimate, StoreError> {
        let sql = statement(
            "SELECT CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::int8 END,
                    pg_total_relation_size(c.oid)
             FROM pg_class c WHERE c.oid = to_regclass('{schema}.{events}')",
            self.names(),
        );
        let row = sqlx::query(sql).fetch_one(&mut *self.conn().await?).await.map_err(backend)?;
        let events: Option<i64> = row.try_get(0).map_err(backend)?;
        let bytes: i64 = row.try_get(1).map_err(backend)?;
        Ok(StoreEstimate {
            events: events.map(|n| to_u64("events", n)).transpose()?,
            bytes: to_u64("bytes", bytes)?,
        })
    }

    /// The events stored at positions after `after`, up to and including `up_to`, counted
    /// by aggregate type (most first): reads that range of the position index only.
    pub async fn counts_by_type(
        &self,
        after: GlobalPosition,
        up_to: GlobalPosition,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let sql = statement(
            "SELECT aggregate_type, count(*) FROM {schema}.{events}
             WHERE global_position > $1 AND global_position <= $2
             GROUP BY aggregate_type ORDER BY count(*) DESC, aggregate_type",
            self.names(),
        );
        let rows: Vec<(String, i64)> = sqlx::query_as(sql)
            .bind(to_i64(after.0))
            .bind(to_i64(up_to.0))
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(backend)?;
        rows.into_iter().map(|(t, n)| Ok((t, to_u64("events", n)?))).collect()
    }
}
