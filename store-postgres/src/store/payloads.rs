//! An aggregate's load ([`LogBackend::read_payloads`](factum::store::LogBackend::read_payloads)):
//! the events after its snapshot, read on the stream index whatever the statistics.
//!
//! The first [`PAGE`] events come through `{events}_payloads`, one statement: the usual
//! load, a snapshot and a short tail, ends there. But a function computes all its rows
//! before it sends the first, so a longer stream's rest is read in a transaction that
//! first sets the same planner settings the function is declared with
//! (`stream_index_only.sql`), and sent as it is read: a task of its own reads it and
//! hands it over in chunks, while the caller folds.

use factum::store::{EventPayload, PayloadStream, Snapshot};
use factum::{StoreError, StreamId, Version};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::postgres::PgRow;
use sqlx::{Executor, PgConnection, Row, SqlStr};
use tokio::sync::mpsc;

use super::PostgresStore;
use crate::rows::{backend, to_i64, to_u64};

/// Events per page of a load.
pub(crate) const PAGE: usize = 1_000;
/// Events the task that reads a long stream's rest hands over at a time.
const CHUNK: usize = 250;

impl PostgresStore {
    /// The stream's events after `after`: the first page, then, if it was full, the rest.
    pub(crate) fn payloads(&self, stream: &StreamId, after: Version) -> PayloadStream<'static> {
        let (store, stream) = (self.clone(), stream.clone());
        let first = futures_util::stream::once(async move {
            let page = store.payload_page(&stream, after).await;
            (store, stream, page)
        });
        Box::pin(first.flat_map(|(store, stream, page)| -> PayloadStream<'static> {
            match page {
                Ok(page) => store.page_then_rest(stream, page),
                Err(e) => Box::pin(futures_util::stream::iter([Err(e)])),
            }
        }))
    }

    /// An aggregate's cold load in one statement (`load_aggregate.sql`): its snapshot and
    /// the first page of its events after it; the rest, if the page was full, as
    /// [`payloads`](Self::payloads) reads it.
    pub(crate) async fn load_first(
        &self,
        stream: &StreamId,
        snapshot_schema: u32,
    ) -> Result<(Option<Snapshot>, PayloadStream<'static>), StoreError> {
        let mut conn = self.inner.conns.get().await?;
        let rows = sqlx::query(self.inner.sql.load_aggregate.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(i32::try_from(snapshot_schema).unwrap_or(i32::MAX))
            .bind(PAGE as i32)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend);
        conn.release(&rows);
        let mut rows = rows?.into_iter().peekable();
        // The snapshot's row, if any, is the first: the one with no event type.
        let snapshot = match rows.next_if(|r| matches!(r.try_get::<Option<String>, _>(1), Ok(None))) {
            Some(row) => Some(snapshot(stream, &row)?),
            None => None,
        };
        let page = rows.map(|row| payload(&row)).collect::<Result<Vec<_>, _>>()?;
        Ok((snapshot, self.clone().page_then_rest(stream.clone(), page)))
    }

    /// A first page of a stream's events, then, if it was full, the rest after it.
    fn page_then_rest(self, stream: StreamId, page: Vec<EventPayload>) -> PayloadStream<'static> {
        let rest = match page.last() {
            Some(last) if page.len() >= PAGE => Some(self.rest(stream, last.version)),
            _ => None,
        };
        let page = futures_util::stream::iter(page.into_iter().map(Ok));
        match rest {
            Some(rest) => Box::pin(page.chain(rest)),
            None => Box::pin(page),
        }
    }

    /// A long stream's rest after `after`, read by a task of its own and handed over in
    /// chunks, so that the caller folds while the task reads.
    fn rest(self, stream: StreamId, after: Version) -> PayloadStream<'static> {
        let (tx, rx) = mpsc::channel::<Result<Vec<EventPayload>, StoreError>>(4);
        let producer = async move {
            if let Err(e) = self.payload_rest(&stream, after, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        };
        // Spawned on first poll, so building the stream needs no runtime.
        let start = futures_util::stream::once(async move {
            tokio::spawn(producer);
        });
        let chunks =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        let events = chunks.flat_map(|chunk| match chunk {
            Ok(events) => futures_util::stream::iter(events.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => futures_util::stream::iter(vec![Err(e)]),
        });
        Box::pin(start.filter_map(|()| async { None }).chain(events))
    }

    /// One page of the stream's events after `after`.
    async fn payload_page(&self, stream: &StreamId, after: Version) -> Result<Vec<EventPayload>, StoreError> {
        let mut conn = self.inner.conns.get().await?;
        let rows = sqlx::query(self.inner.sql.read_payloads.clone())
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

    /// The stream's events after `after`, handed to `to` in chunks as they are read, in a
    /// transaction under the stream-index settings.
    async fn payload_rest(
        &self,
        stream: &StreamId,
        after: Version,
        to: &mpsc::Sender<Result<Vec<EventPayload>, StoreError>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        run_raw(self.inner.sql.stream_index_only.clone(), &mut tx).await.map_err(backend)?;
        {
            let mut rows = rows_after(self.inner.sql.read_payloads_rest.clone(), &mut tx, stream, after);
            let mut chunk = Vec::with_capacity(CHUNK);
            while let Some(row) = rows.try_next().await.map_err(backend)? {
                chunk.push(payload(&row)?);
                if chunk.len() == CHUNK {
                    // A closed channel means the caller dropped the stream: stop reading
                    // (the transaction rolls back as it drops).
                    if to.send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if !chunk.is_empty() && to.send(Ok(chunk)).await.is_err() {
                return Ok(());
            }
        }
        tx.commit().await.map_err(backend)
    }
}

/// Runs `sql`'s statements, as a boxed future: a spawned task needs its future `Send` for
/// every lifetime, which the compiler cannot see through sqlx's executor futures.
fn run_raw(sql: SqlStr, conn: &mut PgConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move { conn.execute(sql).await.map(|_| ()) })
}

/// The rows of `sql` for the stream after `after`, as a boxed stream (as [`run_raw`]).
fn rows_after<'c>(
    sql: SqlStr,
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

/// The snapshot row of `load_aggregate.sql`: version, no event type, schema version, the
/// state as JSON text, and when it was written.
fn snapshot(stream: &StreamId, row: &PgRow) -> Result<Snapshot, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let schema_version: i32 = row.try_get(2).map_err(corrupt)?;
    let state: String = row.try_get(3).map_err(corrupt)?;
    Ok(Snapshot {
        stream: stream.clone(),
        version: Version(to_u64("snapshot version", row.try_get(0).map_err(corrupt)?)?),
        schema_version: u32::try_from(schema_version)
            .map_err(|_| StoreError::Corrupt(format!("snapshot schema_version {schema_version}")))?,
        state: serde_json::from_str(&state)
            .map_err(|e| StoreError::Corrupt(format!("snapshot state: {e}")))?,
        created_at: row.try_get(4).map_err(corrupt)?,
    })
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
