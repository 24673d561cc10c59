//! Appends inside a transaction the caller owns (transaction-first).

use factum::store::op::Append;
use factum::store::AppendResult;
use factum::{ExpectedVersion, NewEvent, StoreError, StreamId, Version};
use sqlx::{PgConnection, Row};

use super::append::{appended, duplicate_outcome, expected_code, AppendFailure, Columns};
use super::PostgresStore;
use crate::rows::{backend, to_u64};

impl PostgresStore {
    /// Appends inside a transaction the caller owns (transaction-first): the events commit
    /// or roll back with the caller's own writes, and subscribers are notified only on
    /// commit.
    ///
    /// The append runs in a subtransaction (a savepoint), so a refused append leaves the
    /// caller's transaction usable:
    /// - [`StoreError::Conflict`] carries the stream's true version, also when a writer
    ///   outside this transaction took the version while this append was being written;
    /// - a duplicate event id is answered as by [`EventStore::append`](factum::store::EventLog::append): the original
    ///   result for an exact retry of a stored append, else [`StoreError::DuplicateEvent`].
    ///
    /// Only [`StoreError::RetryTransaction`] means that the transaction is aborted: the
    /// stream's newest event was written by a newer transaction (committing would put the
    /// stream out of order in the log), or, under `REPEATABLE READ` or `SERIALIZABLE`, the
    /// writer that took the version is outside this transaction's snapshot. Roll back and
    /// run the transaction again.
    ///
    /// ```no_run
    /// # use factum::{ExpectedVersion, NewEvent, StreamId};
    /// # async fn run(store: factum_postgres::PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO outbox (body) VALUES ('hello')").execute(&mut *tx).await?;
    /// let stream = StreamId::new("Order", "o-1")?;
    /// store.append_in(&mut tx, &stream, ExpectedVersion::Any, vec![NewEvent::new("Noted", serde_json::json!({}))]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let op = Append::new(stream.clone(), expected, events, &self.inner.limits)?;
        self.observed(&op, self.append_on_caller(conn, &op)).await
    }

    async fn append_on_caller(
        &self,
        conn: &mut PgConnection,
        op: &Append,
    ) -> Result<AppendResult, StoreError> {
        let (stream, expected, events) = (op.stream(), op.expected(), op.events());
        // The caller commits: the notification goes with its transaction.
        let rows = Columns::new(events)
            .bind(self.inner.sql.append_in.clone(), stream, expected_code(expected))
            .bind(self.inner.channel.as_deref())
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| match self.append_error(e, stream) {
                AppendFailure::Other(e) => e,
                // Both are caught in the database; the caller's transaction is aborted
                // only if they escape it.
                AppendFailure::Duplicate | AppendFailure::VersionTaken => {
                    StoreError::RetryTransaction { stream: stream.clone() }
                }
            })?;
        let mut written = Vec::with_capacity(rows.len());
        for row in &rows {
            let duplicate: bool = row.try_get(4).map_err(backend)?;
            if duplicate {
                let stored = self.read_batch_ids(conn, stream, events).await?;
                return duplicate_outcome(stream, events, &stored);
            }
            let version: i64 = row.try_get(0).map_err(backend)?;
            let conflict: bool = row.try_get(3).map_err(backend)?;
            if conflict {
                // As in `append`: the version check runs first, so an exact retry of a
                // stored batch meets a conflict; the stored ids decide.
                let stored = self.read_batch_ids(conn, stream, events).await?;
                if !stored.is_empty() {
                    return duplicate_outcome(stream, events, &stored);
                }
                let actual = Version(to_u64("version", version)?);
                return Err(StoreError::Conflict { stream: stream.clone(), expected, actual });
            }
            let position: Option<i64> = row.try_get(1).map_err(backend)?;
            let transaction: Option<i64> = row.try_get(2).map_err(backend)?;
            written.push((
                to_u64("version", version)?,
                to_u64("position", position.unwrap_or_default())?,
                to_u64("transaction", transaction.unwrap_or_default())?,
            ));
        }
        appended(stream, written).map_err(|f| match f {
            AppendFailure::Other(e) => e,
            AppendFailure::Duplicate | AppendFailure::VersionTaken => {
                StoreError::Corrupt("append wrote no rows".into())
            }
        })
    }
}
