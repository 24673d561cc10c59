//! The log cursor's read on PostgreSQL: a page of the log with the reader's selector
//! applied in the query, so that only the selected events' rows (payloads included) come
//! back, while the reader still moves past the whole page.

use factum::store::{Checkpoint, GlobalPosition, LogPage, LogSelector};
use factum::StoreError;
use sqlx::{Row, SqlStr};

use crate::rows::{backend, decode_all};
use crate::store::PostgresStore;

impl PostgresStore {
    pub(crate) async fn read_log_page(
        &self,
        sql: SqlStr,
        after: Checkpoint,
        selector: &LogSelector,
        limit: usize,
    ) -> Result<Option<LogPage>, StoreError> {
        let topics: Vec<String> = selector.topics.iter().map(|t| t.to_postgres_regex()).collect();
        let mut conn = self.inner.conns.get().await?;
        let rows = sqlx::query(sql)
            .bind(after.transaction as i64)
            .bind(after.position.0 as i64)
            .bind(limit as i64)
            .bind(selector.single_category())
            .bind(&selector.aggregate_types)
            .bind(&selector.event_types)
            .bind(&topics)
            .bind(selector.slice.map(|s| i32::from(s.count())))
            .bind(selector.slice.map(|s| i32::from(s.index())))
            .fetch_all(&mut *conn)
            .await
            .map_err(backend);
        conn.release(&rows);
        let rows = rows?;
        let Some(first) = rows.first() else { return Ok(None) };
        let corrupt = |e: sqlx::Error| StoreError::Corrupt(format!("a page of the log: {e}"));
        let last_tx: i64 = first.try_get("last_transaction").map_err(corrupt)?;
        let last_pos: i64 = first.try_get("last_position").map_err(corrupt)?;
        let n: i64 = first.try_get("n").map_err(corrupt)?;
        let (Ok(transaction), Ok(position)) = (u64::try_from(last_tx), u64::try_from(last_pos)) else {
            return Err(StoreError::Corrupt(format!("a negative checkpoint: {last_tx}/{last_pos}")));
        };
        // A page without a match is one row of NULL events.
        let selected: Vec<_> =
            rows.into_iter().filter(|r| r.try_get::<Option<i64>, _>(0).is_ok_and(|p| p.is_some())).collect();
        let events = decode_all(&selected)?;
        let to = Checkpoint { transaction, position: GlobalPosition(position) };
        Ok(Some(LogPage::new(events, to, n as usize, limit)))
    }
}
