//! An aggregate's load ([`EventLog::read_payloads`](factum::store::EventLog::read_payloads)):
//! the events after its snapshot, read on the stream index whatever the statistics.
//!
//! The first [`PAGE`] events come through `{events}_payloads`, one statement: the usual
//! load, a snapshot and a short tail, ends there. But a function computes all its rows
//! before it sends the first, so a longer stream's rest is read in a transaction that
//! first sets the same planner settings the function is declared with
//! (`stream_index_only.sql`), and sent as it is read, while the caller folds. A task of
//! its own reads, a page ahead of the caller.

use factum::store::{EventPayload, PayloadStream};
use factum::{StoreError, StreamId, Version};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::postgres::PgRow;
use sqlx::{Executor, PgConnection, Row};
use tokio::sync::mpsc;

use super::PostgresStore;
use crate::rows::{backend, to_i64, to_u64};

/// Events per page of a load.
pub(crate) const PAGE: usize = 1_000;

impl PostgresStore {
    /// The stream's events after `after`, read a page ahead of the caller.
    pub(crate) fn payloads(&self, stream: &StreamId, after: Version) -> PayloadStream<'static> {
        let (store, stream) = (self.clone(), stream.clone());
        // Room for a whole page: the task reads the next page as soon as it has handed
        // this one over.
        let (tx, rx) = mpsc::channel::<Result<EventPayload, StoreError>>(PAGE);
        let producer = async move {
            let page = match store.payload_page(&stream, after).await {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let full = page.len() >= PAGE;
            let mut last = after;
            for event in page {
                last = event.version;
                // A closed channel means the caller dropped the stream: stop reading.
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if full {
                if let Err(e) = store.payload_rest(&stream, last, &tx).await {
                    let _ = tx.send(Err(e)).await;
                }
            }
        };
        // Spawned on first poll, so building the stream needs no runtime.
        let start = futures_util::stream::once(async move {
            tokio::spawn(producer);
        });
        let items =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        Box::pin(start.filter_map(|()| async { None }).chain(items))
    }

    /// One page of the stream's events after `after`.
    async fn payload_page(&self, stream: &StreamId, after: Version) -> Result<Vec<EventPayload>, StoreError> {
        let mut conn = self.inner.conns.get().await?;
        let rows = sqlx::query(&self.inner.sql.read_payloads)
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(to_i64(after.0))
            .bind(PAGE as i32)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend);
        conn.release(&rows);
        rows?.iter().map(payload).collect()
    }

    /// The stream's events after `after`, sent to `to` as they are read, in a transaction
    /// under the stream-index settings.
    async fn payload_rest(
        &self,
        stream: &StreamId,
        after: Version,
        to: &mpsc::Sender<Result<EventPayload, StoreError>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        run_raw(&self.inner.sql.stream_index_only, &mut tx).await.map_err(backend)?;
        {
            let mut rows = rows_after(&self.inner.sql.read_payloads_rest, &mut tx, stream, after);
            while let Some(row) = rows.try_next().await.map_err(backend)? {
                if to.send(payload(&row)).await.is_err() {
                    // The caller is gone; the transaction rolls back as it drops.
                    return Ok(());
                }
            }
        }
        tx.commit().await.map_err(backend)
    }
}

/// Runs `sql`'s statements, as a boxed future: a spawned task needs its future `Send` for
/// every lifetime, which the compiler cannot see through sqlx's executor futures.
fn run_raw<'c>(sql: &'c str, conn: &'c mut PgConnection) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move { conn.execute(sql).await.map(|_| ()) })
}

/// The rows of `sql` for the stream after `after`, as a boxed stream (as [`run_raw`]).
fn rows_after<'c>(
    sql: &'c str,
    conn: &'c mut PgConnection,
    stream: &'c StreamId,
    after: Version,
) -> BoxStream<'c, Result<PgRow, sqlx::Error>> {
    sqlx::query(sql)
        .bind(stream.aggregate_type())
        .bind(stream.aggregate_id())
        .bind(to_i64(after.0))
        .fetch(conn)
}

fn payload(row: &PgRow) -> Result<EventPayload, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let schema_version: i32 = row.try_get(2).map_err(corrupt)?;
    Ok(EventPayload::new(
        Version(to_u64("version", row.try_get(0).map_err(corrupt)?)?),
        row.try_get(1).map_err(corrupt)?,
        u32::try_from(schema_version)
            .map_err(|_| StoreError::Corrupt(format!("event_version {schema_version}")))?,
        row.try_get(3).map_err(corrupt)?,
    ))
}
