//! A read model for projection tests: a table that records every event a projection
//! applied, with no unique key, so that a duplicate or a gap shows.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use factum::{HandlerError, RecordedEvent};
use factum_postgres::PgProjection;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use uuid::Uuid;

/// Decides, per event, whether the handler fails (or panics) before writing.
pub type Hook = Arc<dyn Fn(&RecordedEvent) -> Result<(), HandlerError> + Send + Sync>;

/// Writes each event it is given into `table` inside the projection's transaction.
pub struct Recorder {
    table: String,
    hook: Option<Hook>,
}

impl Recorder {
    /// Creates `table` (if needed) and a recorder into it.
    pub async fn create(pool: &PgPool, table: &str) -> Recorder {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {table} (seq BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL, \
             stream TEXT NOT NULL, version BIGINT NOT NULL, event_type TEXT NOT NULL)"
        )))
        .execute(pool)
        .await
        .expect("create the read model table");
        Recorder { table: table.to_owned(), hook: None }
    }

    /// A recorder into an existing `table` (made by [`create`](Self::create) as another
    /// role, for a role that may not create tables).
    pub fn existing(table: &str) -> Recorder {
        Recorder { table: table.to_owned(), hook: None }
    }

    /// Runs `hook` before writing each event; its error fails the event.
    pub fn with_hook(mut self, hook: Hook) -> Self {
        self.hook = Some(hook);
        self
    }
}

#[async_trait]
impl PgProjection for Recorder {
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
        if let Some(hook) = &self.hook {
            hook(event)?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (event_id, stream, version, event_type) VALUES ($1, $2, $3, $4)",
            self.table
        )))
        .bind(event.event_id)
        .bind(event.stream.to_string())
        .bind(event.version.0 as i64)
        .bind(&event.event_type)
        .execute(tx)
        .await?;
        Ok(())
    }

    async fn clear(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        sqlx::query(AssertSqlSafe(format!("TRUNCATE {}", self.table))).execute(tx).await?;
        Ok(())
    }
}

/// What a recorder's table holds.
#[derive(Debug)]
pub struct Recorded {
    /// Rows in the table.
    pub rows: u64,
    /// Distinct event ids among them.
    pub ids: HashSet<Uuid>,
    /// Per stream, the versions in the order they were applied.
    pub streams: BTreeMap<String, Vec<i64>>,
}

impl Recorded {
    /// Reads `table`.
    pub async fn read(pool: &PgPool, table: &str) -> Recorded {
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT event_id, stream, version FROM {table} ORDER BY seq")))
                .fetch_all(pool)
                .await
                .expect("read the read model");
        let mut ids = HashSet::new();
        let mut streams: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for row in &rows {
            ids.insert(row.get::<Uuid, _>(0));
            streams.entry(row.get(1)).or_default().push(row.get(2));
        }
        Recorded { rows: rows.len() as u64, ids, streams }
    }

    /// Panics unless the table holds each of `expected` exactly once, nothing else, and
    /// each stream's versions in order without gaps (when `whole_streams`).
    pub fn assert_exactly(&self, expected: &HashSet<Uuid>, whole_streams: bool) {
        assert_eq!(self.rows, self.ids.len() as u64, "{} duplicate rows", self.rows - self.ids.len() as u64);
        let missing = expected.difference(&self.ids).count();
        let extra = self.ids.difference(expected).count();
        assert!(missing == 0 && extra == 0, "{missing} events missing, {extra} unexpected");
        for (stream, versions) in &self.streams {
            if whole_streams {
                let want: Vec<i64> = (1..=versions.len() as i64).collect();
                assert_eq!(versions, &want, "stream {stream}: versions out of order or with gaps");
            } else {
                assert!(versions.windows(2).all(|w| w[0] < w[1]), "stream {stream}: out of order");
            }
        }
    }
}
