//! Reading rows back into the framework's values, and sqlx errors into store errors.

use factum::store::{GlobalPosition, ProjectionFailure};
use factum::{Metadata, RecordedEvent, StoreError, StreamId, Version};
use sqlx::postgres::PgRow;
use sqlx::Row;

/// Maps a database error to a store error. Specific constraint violations are handled
/// where they can occur; everything else is a backend error.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::backend(e)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(field: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {field}: {v}")))
}

pub(crate) fn decode(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    decode_with(row, &mut None)
}

/// Decodes a row; `last` is the stream of the row before, reused (not validated again)
/// when this row belongs to the same stream, as runs of rows in a page usually do.
pub(crate) fn decode_with(row: &PgRow, last: &mut Option<StreamId>) -> Result<RecordedEvent, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let aggregate_type: &str = row.try_get(3).map_err(corrupt)?;
    let aggregate_id: &str = row.try_get(4).map_err(corrupt)?;
    let stream = match last {
        Some(s) if s.aggregate_type() == aggregate_type && s.aggregate_id() == aggregate_id => s.clone(),
        _ => {
            let s = StreamId::new(aggregate_type, aggregate_id)
                .map_err(|e| StoreError::Corrupt(format!("stored stream id: {e}")))?;
            *last = Some(s.clone());
            s
        }
    };
    let schema_version: i32 = row.try_get(7).map_err(corrupt)?;
    Ok(RecordedEvent {
        position: GlobalPosition(to_u64("global_position", row.try_get(0).map_err(corrupt)?)?),
        transaction: to_u64("transaction_id", row.try_get(1).map_err(corrupt)?)?,
        event_id: row.try_get(2).map_err(corrupt)?,
        stream,
        version: Version(to_u64("version", row.try_get(5).map_err(corrupt)?)?),
        event_type: row.try_get(6).map_err(corrupt)?,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| StoreError::Corrupt(format!("event_version {schema_version}")))?,
        topic: row.try_get(8).map_err(corrupt)?,
        payload: row.try_get(9).map_err(corrupt)?,
        metadata: Metadata::from_json(row.try_get(10).map_err(corrupt)?),
        occurred_at: row.try_get(11).map_err(corrupt)?,
        recorded_at: row.try_get(12).map_err(corrupt)?,
    })
}

pub(crate) fn decode_failure(row: &PgRow) -> Result<ProjectionFailure, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let aggregate_type: String = row.try_get(2).map_err(corrupt)?;
    let aggregate_id: String = row.try_get(3).map_err(corrupt)?;
    let attempts: i32 = row.try_get(9).map_err(corrupt)?;
    Ok(ProjectionFailure {
        projection: row.try_get(0).map_err(corrupt)?,
        event_id: row.try_get(1).map_err(corrupt)?,
        stream: StreamId::new(aggregate_type, aggregate_id)
            .map_err(|e| StoreError::Corrupt(format!("stored stream id: {e}")))?,
        version: Version(to_u64("version", row.try_get(4).map_err(corrupt)?)?),
        position: GlobalPosition(to_u64("global_position", row.try_get(5).map_err(corrupt)?)?),
        transaction: to_u64("transaction_id", row.try_get(6).map_err(corrupt)?)?,
        event_type: row.try_get(7).map_err(corrupt)?,
        error: row.try_get(8).map_err(corrupt)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        failed_at: row.try_get(10).map_err(corrupt)?,
    })
}

pub(crate) fn decode_all(rows: &[PgRow]) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut last = None;
    rows.iter().map(|row| decode_with(row, &mut last)).collect()
}
