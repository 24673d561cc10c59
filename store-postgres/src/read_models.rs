//! [`ReadModels`]: reading the live builds of projections whose builds are kept apart.

use std::ops::{Deref, DerefMut};

use factum::store::{validate, BuildId};
use factum::StoreError;
use sqlx::{PgConnection, Postgres, Transaction};

use crate::rows::backend;
use crate::store::PostgresStore;

/// A read-only transaction over the live builds of some projections: their schemas come
/// first on its `search_path`, so the same unqualified SQL the handlers write reads the
/// live copy. The registry and the tables are read in one snapshot (`REPEATABLE READ`),
/// so a cut-over is seen whole or not at all: a reader never sees a half-built build, and
/// a row never goes back to an older version from one read to the next.
///
/// It dereferences to a [`PgConnection`]; dropping it ends the transaction.
///
/// ```no_run
/// use factum_postgres::PostgresStore;
///
/// # async fn run(store: PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
/// let mut read = store.read_models(&["order_summary"]).await?;
/// let total: Option<i64> = sqlx::query_scalar("SELECT total FROM order_summary WHERE order_id = $1")
///     .bind("o-1")
///     .fetch_optional(&mut *read)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ReadModels {
    tx: Transaction<'static, Postgres>,
    live: Vec<BuildId>,
}

impl ReadModels {
    /// The live builds read, in the order the projections were named; a projection with
    /// no live build yet is missing.
    pub fn builds(&self) -> &[BuildId] {
        &self.live
    }
}

impl Deref for ReadModels {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for ReadModels {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl PostgresStore {
    /// Opens a [`ReadModels`] transaction over the live builds of `projections`.
    pub async fn read_models(&self, projections: &[&str]) -> Result<ReadModels, StoreError> {
        for name in projections {
            validate::consumer_name(name)?;
        }
        let mut tx = self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        let names: Vec<&str> = projections.to_vec();
        let (_, names, versions, builds): (String, Vec<String>, Vec<i32>, Vec<i32>) =
            sqlx::query_as(self.sql().read_models.clone())
                .bind(names)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
        let live = names
            .into_iter()
            .zip(versions)
            .zip(builds)
            .map(|((name, version), build)| BuildId::new(name, version as u32, build as u32))
            .collect();
        Ok(ReadModels { tx, live })
    }
}
