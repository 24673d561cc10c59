//! Appends: the checked one-statement append of the command path, the append function
//! for the other modes and for a caller's transaction, and the answers to duplicates and
//! races.

use chrono::{DateTime, SubsecRound, Utc};
use factum::store::backend::deduplicated_result;
use factum::store::{AppendResult, GlobalPosition};
use factum::{ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamId, Version};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::error::ErrorKind;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, Row, SqlStr};
use std::borrow::Cow;
use std::sync::atomic::Ordering;
use uuid::Uuid;

use super::{PostgresStore, LEGACY_NONE, LEGACY_SOME};
use crate::rows::{backend, decode_all, to_i64, to_u64};

/// SQLSTATE `serialization_failure`, raised by the append function when a stream would be
/// reordered in the log (with the constraint name `<streams>_transaction_order`).
pub(crate) const SERIALIZATION_FAILURE: &str = "40001";

/// How often [`EventStore::append`](factum::store::EventLog::append) retries an append of mode any or stream-exists that
/// raced a newer transaction or another writer of the same version.
pub(crate) const APPEND_RETRIES: usize = 20;

pub(crate) fn expected_code(expected: ExpectedVersion) -> i64 {
    match expected {
        ExpectedVersion::Any => -1,
        ExpectedVersion::StreamExists => -2,
        ExpectedVersion::NoStream => 0,
        ExpectedVersion::Exact(v) => to_i64(v.0),
    }
}

/// The columns of a batch, as the append function's array parameters. They borrow from
/// the batch: the command path appends once per command, and payloads can be large.
pub(crate) struct Columns<'a> {
    pub(crate) ids: Vec<Uuid>,
    pub(crate) types: Vec<&'a str>,
    pub(crate) versions: Vec<i32>,
    pub(crate) topics: Vec<Option<&'a str>>,
    pub(crate) data: Vec<Json<Cow<'a, RawValue>>>,
    pub(crate) metadata: Vec<Value>,
    pub(crate) occurred_at: Vec<DateTime<Utc>>,
    pub(crate) correlation: Vec<Option<Uuid>>,
    pub(crate) causation: Vec<Option<Uuid>>,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(events: &'a [NewEvent]) -> Columns<'a> {
        let mut c = Columns::with_capacity(events.len());
        events.iter().for_each(|e| c.push(e));
        c
    }

    pub(crate) fn with_capacity(n: usize) -> Columns<'a> {
        Columns {
            ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            topics: Vec::with_capacity(n),
            data: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            occurred_at: Vec::with_capacity(n),
            correlation: Vec::with_capacity(n),
            causation: Vec::with_capacity(n),
        }
    }

    pub(crate) fn push(&mut self, e: &'a NewEvent) {
        self.ids.push(e.event_id);
        self.types.push(&e.event_type);
        // The store traits checked the range.
        self.versions.push(e.schema_version as i32);
        self.topics.push(e.topic.as_deref());
        self.data.push(Json(e.payload_json()));
        self.metadata.push(e.metadata.to_json());
        self.occurred_at.push(e.occurred_at.trunc_subsecs(6));
        self.correlation.push(e.metadata.correlation_id);
        self.causation.push(e.metadata.causation_id);
    }

    /// A query of `sql` with the stream, the expected-version code and the columns bound as
    /// `$1` … `$12`: the parameters the append function and the several-event checked
    /// append share.
    pub(crate) fn bind(
        self,
        sql: SqlStr,
        stream: &StreamId,
        expected: i64,
    ) -> Query<'static, Postgres, PgArguments> {
        sqlx::query(sql)
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(expected)
            .bind(self.ids)
            .bind(self.types)
            .bind(self.versions)
            .bind(self.topics)
            .bind(self.data)
            .bind(self.metadata)
            .bind(self.occurred_at)
            .bind(self.correlation)
            .bind(self.causation)
    }
}

/// The answer to an append whose ids are (partly) stored: the original result for an
/// exact retry, else a duplicate error naming the first stored id.
pub(crate) fn duplicate_outcome(
    stream: &StreamId,
    events: &[NewEvent],
    stored: &[RecordedEvent],
) -> Result<AppendResult, StoreError> {
    deduplicated_result(stream, events, stored).ok_or_else(|| {
        let event_id = events
            .iter()
            .map(|e| e.event_id)
            .find(|id| stored.iter().any(|s| s.event_id == *id))
            .unwrap_or(events[0].event_id);
        StoreError::DuplicateEvent { event_id }
    })
}

/// The result of an append from the (version, position, transaction) it wrote per event.
pub(crate) fn appended(
    stream: &StreamId,
    mut written: Vec<(u64, u64, u64)>,
) -> Result<AppendResult, AppendFailure> {
    written.sort_unstable();
    let (Some(first), Some(last)) = (written.first(), written.last()) else {
        return Err(AppendFailure::Other(StoreError::Corrupt("append wrote no rows".into())));
    };
    Ok(AppendResult {
        stream: stream.clone(),
        from_version: Version(first.0),
        to_version: Version(last.0),
        positions: written.iter().map(|(_, p, _)| GlobalPosition(*p)).collect(),
        transaction: last.2,
        deduplicated: false,
    })
}

pub(crate) enum AppendFailure {
    Duplicate,
    VersionTaken,
    Other(StoreError),
}

impl PostgresStore {
    /// Whether the head table still holds heads deleted under schema version 2, which the
    /// checked append must then consult. Asked once per store: this version writes none.
    pub(crate) async fn legacy_heads(&self, conn: &mut PgConnection) -> Result<bool, StoreError> {
        match self.inner.legacy_heads.load(Ordering::Relaxed) {
            LEGACY_NONE => return Ok(false),
            LEGACY_SOME => return Ok(true),
            _ => {}
        }
        let some: bool =
            sqlx::query_scalar(self.inner.sql.legacy_heads.clone()).fetch_one(conn).await.map_err(backend)?;
        self.inner.legacy_heads.store(if some { LEGACY_SOME } else { LEGACY_NONE }, Ordering::Relaxed);
        Ok(some)
    }

    /// The stream's version: its newest stored event's, or a head that retention deleted
    /// under schema version 2.
    pub(crate) async fn head(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
    ) -> Result<Version, StoreError> {
        let legacy = self.legacy_heads(&mut *conn).await?;
        let v: i64 = sqlx::query_scalar(self.inner.sql.head.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(legacy)
            .fetch_one(conn)
            .await
            .map_err(backend)?;
        Ok(Version(to_u64("version", v)?))
    }

    /// The append at a version the caller knows (exact or no stream), in one statement
    /// that checks the head and inserts: the hot path of every command.
    pub(crate) async fn append_checked(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendFailure> {
        let legacy = self.legacy_heads(&mut *conn).await.map_err(AppendFailure::Other)?;
        let from = expected_code(expected);
        let query = if let [e] = events {
            sqlx::query(self.inner.sql.append_one.clone())
                .bind(stream.aggregate_type())
                .bind(stream.aggregate_id())
                .bind(from)
                .bind(e.event_id)
                .bind(&e.event_type)
                // validate::batch checked the range.
                .bind(e.schema_version as i32)
                .bind(e.topic.as_deref())
                .bind(Json(e.payload_json()))
                .bind(e.metadata.to_json())
                .bind(e.occurred_at.trunc_subsecs(6))
                .bind(e.metadata.correlation_id)
                .bind(e.metadata.causation_id)
                .bind(legacy)
        } else {
            Columns::new(events).bind(self.inner.sql.append_many.clone(), stream, from).bind(legacy)
        };
        let rows = query.fetch_all(&mut *conn).await.map_err(|e| self.append_error(e, stream))?;
        if rows.is_empty() {
            let actual = self.head(conn, stream).await.map_err(AppendFailure::Other)?;
            return Err(AppendFailure::Other(StoreError::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            }));
        }
        let mut written = Vec::with_capacity(rows.len());
        for row in &rows {
            let version: i64 = row.try_get(0).map_err(|e| AppendFailure::Other(backend(e)))?;
            let position: i64 = row.try_get(1).map_err(|e| AppendFailure::Other(backend(e)))?;
            let transaction: i64 = row.try_get(2).map_err(|e| AppendFailure::Other(backend(e)))?;
            written.push((version.max(0) as u64, position.max(0) as u64, transaction.max(0) as u64));
        }
        appended(stream, written)
    }

    /// [`EventStore::append`](factum::store::EventLog::append) in a transaction of its own,
    /// on a connection from the stack.
    pub(crate) async fn append_alone(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, StoreError> {
        let mut conn = self.inner.conns.get().await?;
        let result = self.append_on(&mut conn, stream, expected, events).await;
        conn.release(&result);
        result
    }

    /// [`EventStore::append`](factum::store::EventLog::append) on `conn`, once validated.
    pub(crate) async fn append_on(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, StoreError> {
        // Committed on its own (autocommit): notified after the commit, see `Notifier`.
        let outcome = match expected {
            ExpectedVersion::Exact(_) | ExpectedVersion::NoStream => {
                self.append_checked(conn, stream, expected, events).await
            }
            // The head is read in the database, under the stream's advisory lock.
            ExpectedVersion::Any | ExpectedVersion::StreamExists => {
                let mut outcome = self.append_rows(conn, stream, expected, events).await;
                for _ in 0..APPEND_RETRIES {
                    match outcome {
                        // Nothing was written: a new transaction has a newer id, and the
                        // winner of the version is in its snapshot.
                        Err(
                            AppendFailure::Other(StoreError::RetryTransaction { .. })
                            | AppendFailure::VersionTaken,
                        ) => {
                            outcome = self.append_rows(conn, stream, expected, events).await;
                        }
                        _ => break,
                    }
                }
                outcome
            }
        };
        let conflict = match outcome {
            Ok(result) => {
                self.committed(stream.aggregate_type());
                return Ok(result);
            }
            Err(AppendFailure::Duplicate) => {
                let stored = self.read_batch_ids(conn, stream, events).await?;
                return duplicate_outcome(stream, events, &stored);
            }
            Err(AppendFailure::Other(e @ StoreError::Conflict { .. })) => e,
            Err(AppendFailure::Other(e)) => return Err(e),
            // Another writer took the version between the check and the insert.
            Err(AppendFailure::VersionTaken) => {
                let actual = self.head(conn, stream).await?;
                StoreError::Conflict { stream: stream.clone(), expected, actual }
            }
        };
        // The version check runs before the insert: a retry of a stored batch meets a
        // conflict first. Like the in-memory store, let the duplicate id decide.
        let stored = self.read_batch_ids(conn, stream, events).await?;
        if stored.is_empty() {
            Err(conflict)
        } else {
            duplicate_outcome(stream, events, &stored)
        }
    }

    pub(crate) async fn append_rows(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendFailure> {
        // Autocommit: notified after the commit, see `Notifier`.
        let rows = Columns::new(events)
            .bind(self.inner.sql.append.clone(), stream, expected_code(expected))
            .bind(None::<&str>)
            .fetch_all(conn)
            .await
            .map_err(|e| self.append_error(e, stream))?;
        let mut written = Vec::with_capacity(rows.len());
        for row in &rows {
            let version: i64 = row.try_get(0).map_err(|e| AppendFailure::Other(backend(e)))?;
            let position: Option<i64> = row.try_get(1).map_err(|e| AppendFailure::Other(backend(e)))?;
            let conflict: bool = row.try_get(3).map_err(|e| AppendFailure::Other(backend(e)))?;
            if conflict {
                return Err(AppendFailure::Other(StoreError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual: Version(version.max(0) as u64),
                }));
            }
            let transaction: Option<i64> = row.try_get(2).map_err(|e| AppendFailure::Other(backend(e)))?;
            written.push((
                version.max(0) as u64,
                position.unwrap_or_default().max(0) as u64,
                transaction.unwrap_or_default().max(0) as u64,
            ));
        }
        appended(stream, written)
    }

    pub(crate) fn append_error(&self, e: sqlx::Error, stream: &StreamId) -> AppendFailure {
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some(SERIALIZATION_FAILURE)
                && db.constraint() == Some(self.inner.sql.transaction_order_constraint.as_str())
            {
                return AppendFailure::Other(StoreError::RetryTransaction { stream: stream.clone() });
            }
            if db.kind() == ErrorKind::UniqueViolation {
                let constraint = db.constraint().unwrap_or_default();
                if constraint == self.inner.sql.event_id_constraint {
                    return AppendFailure::Duplicate;
                }
                if constraint == self.inner.sql.stream_version_constraint {
                    // A writer that takes no stream lock (a checked append) took the version
                    // first: the unique constraint is the last line.
                    return AppendFailure::VersionTaken;
                }
            }
        }
        AppendFailure::Other(backend(e))
    }

    pub(crate) async fn read_batch_ids(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        events: &[NewEvent],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let rows = sqlx::query(self.inner.sql.by_ids.clone())
            .bind(ids)
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .fetch_all(conn)
            .await
            .map_err(backend)?;
        decode_all(&rows)
    }
}
