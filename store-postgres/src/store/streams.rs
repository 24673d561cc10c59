//! Appends to several streams in one statement (`append_streams.sql`): the flushes of the
//! coalescing writer, where each append stands alone, and the atomic multi-stream append,
//! where all commit or none does.

use factum::store::{AppendResult, StreamAppend};
use factum::{ExpectedVersion, NewEvent, StoreError, StreamId, Version};
use sqlx::{PgConnection, Row};
use std::collections::HashMap;
use uuid::Uuid;

use super::append::{appended, expected_code, AppendFailure, Columns, APPEND_RETRIES};
use super::PostgresStore;
use crate::rows::backend;

/// One stream's append in a statement of several: at a known version (`Exact` or
/// `NoStream`).
pub(crate) struct Part<'a> {
    pub(crate) stream: &'a StreamId,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: &'a [NewEvent],
}

impl PostgresStore {
    /// Appends `parts` (distinct streams, each at a known version) in one autocommit
    /// statement. Each part's result, or `None` if it was not stored because its stream
    /// was not at its version: that part alone, or, when `atomic`, every part.
    pub(crate) async fn append_streams_on(
        &self,
        conn: &mut PgConnection,
        parts: &[Part<'_>],
        atomic: bool,
    ) -> Result<Vec<Option<AppendResult>>, AppendFailure> {
        let legacy = self.legacy_heads(&mut *conn).await.map_err(AppendFailure::Other)?;
        let n: usize = parts.iter().map(|p| p.events.len()).sum();
        let (mut types, mut ids, mut bases) = (Vec::new(), Vec::new(), Vec::new());
        let (mut numbers, mut places) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut c = Columns::with_capacity(n);
        for (i, p) in parts.iter().enumerate() {
            types.push(p.stream.aggregate_type());
            ids.push(p.stream.aggregate_id());
            bases.push(expected_code(p.expected));
            for (j, e) in p.events.iter().enumerate() {
                numbers.push(i as i64 + 1);
                places.push(j as i64 + 1);
                c.push(e);
            }
        }
        let sql = if atomic { &self.inner.sql.append_atomic } else { &self.inner.sql.append_streams };
        let rows = sqlx::query(sql.clone())
            .bind(types)
            .bind(ids)
            .bind(bases)
            .bind(numbers)
            .bind(places)
            .bind(c.ids)
            .bind(c.types)
            .bind(c.versions)
            .bind(c.topics)
            .bind(c.data)
            .bind(c.metadata)
            .bind(c.occurred_at)
            .bind(c.correlation)
            .bind(c.causation)
            .bind(legacy)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.append_error(e, parts[0].stream))?;
        let mut written: HashMap<Uuid, (u64, u64, u64)> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let other = |e| AppendFailure::Other(backend(e));
            let id: Uuid = row.try_get(0).map_err(other)?;
            let version: i64 = row.try_get(1).map_err(other)?;
            let position: i64 = row.try_get(2).map_err(other)?;
            let transaction: i64 = row.try_get(3).map_err(other)?;
            written.insert(id, (version.max(0) as u64, position.max(0) as u64, transaction.max(0) as u64));
        }
        parts
            .iter()
            .map(|p| {
                let rows: Option<Vec<(u64, u64, u64)>> =
                    p.events.iter().map(|e| written.get(&e.event_id).copied()).collect();
                rows.map(|rows| appended(p.stream, rows)).transpose()
            })
            .collect()
    }

    /// [`EventLog::append_many`](factum::store::EventLog::append_many) on `conn`.
    pub(crate) async fn append_many_on(
        &self,
        conn: &mut PgConnection,
        appends: &[StreamAppend],
    ) -> Result<Vec<AppendResult>, StoreError> {
        for _ in 0..=APPEND_RETRIES {
            // The versions of appends of mode any or stream-exists are read first; a
            // writer that moves such a stream meanwhile makes the statement store
            // nothing, and the appends are tried again.
            let mut parts = Vec::with_capacity(appends.len());
            for a in appends {
                let expected = match a.expected {
                    ExpectedVersion::Any | ExpectedVersion::StreamExists => {
                        let head = self.head(&mut *conn, &a.stream).await?;
                        if a.expected == ExpectedVersion::StreamExists && head == Version::INITIAL {
                            break;
                        }
                        ExpectedVersion::Exact(head)
                    }
                    known => known,
                };
                parts.push(Part { stream: &a.stream, expected, events: &a.events });
            }
            if parts.len() == appends.len() {
                match self.append_streams_on(conn, &parts, true).await {
                    Ok(results) if results.iter().all(Option::is_some) => {
                        let results: Vec<AppendResult> = results.into_iter().flatten().collect();
                        for r in &results {
                            self.committed(r.stream.aggregate_type());
                        }
                        return Ok(results);
                    }
                    Ok(_)
                    | Err(AppendFailure::VersionTaken)
                    | Err(AppendFailure::Duplicate)
                    | Err(AppendFailure::Other(StoreError::RetryTransaction { .. })) => {}
                    Err(AppendFailure::Other(e)) => return Err(e),
                }
            }
            // Nothing was stored. An exact retry of a stored append is answered with its
            // results; then the first stream not at its version is the conflict.
            if let Some(outcome) = self.many_duplicate_outcome(conn, appends).await? {
                return outcome;
            }
            for a in appends {
                let actual = self.head(&mut *conn, &a.stream).await?;
                if !a.expected.is_satisfied_by(actual) {
                    return Err(StoreError::Conflict {
                        stream: a.stream.clone(),
                        expected: a.expected,
                        actual,
                    });
                }
            }
        }
        Err(StoreError::RetryTransaction { stream: appends[0].stream.clone() })
    }

    /// When some of the appends' ids are stored: their original results if the appends
    /// are exactly what was stored, else the duplicate error. `None` when none is stored.
    async fn many_duplicate_outcome(
        &self,
        conn: &mut PgConnection,
        appends: &[StreamAppend],
    ) -> Result<Option<Result<Vec<AppendResult>, StoreError>>, StoreError> {
        let mut stored = Vec::with_capacity(appends.len());
        for a in appends {
            stored.push(self.read_batch_ids(&mut *conn, &a.stream, &a.events).await?);
        }
        if stored.iter().all(Vec::is_empty) {
            return Ok(None);
        }
        let results: Option<Vec<AppendResult>> = appends
            .iter()
            .zip(&stored)
            .map(|(a, s)| factum::store::backend::deduplicated_result(&a.stream, &a.events, s))
            .collect();
        Ok(Some(results.ok_or_else(|| {
            let stored_ids: Vec<Uuid> = stored.iter().flatten().map(|e| e.event_id).collect();
            let event_id = appends
                .iter()
                .flat_map(|a| &a.events)
                .map(|e| e.event_id)
                .find(|id| stored_ids.contains(id))
                .unwrap_or(stored_ids[0]);
            StoreError::DuplicateEvent { event_id }
        })))
    }
}
