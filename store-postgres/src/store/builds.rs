//! [`BuildStore`](factum::store::BuildStore) on PostgreSQL: the registry of projection
//! builds, each change one transaction under the projection's registry lock, and the
//! schemas that keep read models apart per build.

use async_trait::async_trait;
use factum::store::op::{Builds, CutOver, Execute, RegisterBuild, ReopenBuild, RetireBuild};
use factum::store::{
    build_to_run, BuildId, BuildState, Checkpoint, GlobalPosition, ProjectionBuild, Retired, Switch,
};
use factum::StoreError;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::PostgresStore;
use crate::rows::{backend, to_u64};

/// The schema that keeps a build's read model apart: `<store schema>_<projection>_v<version>_<build>`,
/// lowercase, with every character other than ASCII letters, digits and `_` made `_`.
/// When that changed the name, or the name would pass PostgreSQL's 63 bytes, it is cut
/// and ends in a hash of the build's consumer name instead, so that two builds never
/// share a schema.
///
/// ```
/// use factum::store::BuildId;
/// use factum_postgres::build_schema;
///
/// assert_eq!(build_schema("public", &BuildId::new("order_summary", 2, 1)), "public_order_summary_v2_1");
/// assert!(build_schema("public", &BuildId::new("Order Summary", 1, 1)).starts_with("public_order_summary_v1_1_"));
/// ```
pub fn build_schema(store_schema: &str, build: &BuildId) -> String {
    let plain = format!("{store_schema}_{}_v{}_{}", build.projection, build.version, build.build);
    let clean: String = plain
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' })
        .collect();
    if clean == plain && clean.len() <= 63 {
        return clean;
    }
    let hash = fnv1a(build.consumer().as_bytes()) ^ fnv1a(store_schema.as_bytes()).rotate_left(7);
    let mut cut = clean.as_str();
    while cut.len() > 54 {
        cut = &cut[..cut.len() - 1];
    }
    format!("{cut}_{hash:08x}")
}

/// The registry's transactions read what committed before each statement (after the
/// registry lock is granted), whatever the server's default isolation level.
const READ_COMMITTED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// FNV-1a, 32 bits: a stable hash, the same in every process and release.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

fn decode(row: &PgRow) -> Result<ProjectionBuild, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let number = |i: usize| -> Result<u32, StoreError> {
        let n: i32 = row.try_get(i).map_err(corrupt)?;
        u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("build number {n}")))
    };
    let state: String = row.try_get(3).map_err(corrupt)?;
    let mut build = ProjectionBuild::new(
        BuildId::new(row.try_get::<String, _>(0).map_err(corrupt)?, number(1)?, number(2)?),
        BuildState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("build state {state:?}")))?,
        row.try_get(4).map_err(corrupt)?,
    );
    build.created_at = row.try_get(5).map_err(corrupt)?;
    build.live_at = row.try_get(6).map_err(corrupt)?;
    build.retired_at = row.try_get(7).map_err(corrupt)?;
    let slices: i32 = row.try_get(8).map_err(corrupt)?;
    build.slices = u16::try_from(slices).map_err(|_| StoreError::Corrupt(format!("slice count {slices}")))?;
    Ok(build)
}

impl PostgresStore {
    async fn builds_on(
        &self,
        conn: &mut PgConnection,
        projection: &str,
    ) -> Result<Vec<ProjectionBuild>, StoreError> {
        let rows = sqlx::query(self.inner.sql.builds.clone())
            .bind(projection)
            .fetch_all(conn)
            .await
            .map_err(backend)?;
        rows.iter().map(decode).collect()
    }

    async fn lock_builds(&self, conn: &mut PgConnection, projection: &str) -> Result<(), StoreError> {
        sqlx::query(self.inner.sql.build_lock.clone())
            .bind(projection)
            .execute(conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn set_state(
        &self,
        conn: &mut PgConnection,
        id: &BuildId,
        state: BuildState,
    ) -> Result<(), StoreError> {
        sqlx::query(self.inner.sql.set_build_state.clone())
            .bind(&id.projection)
            .bind(id.version as i32)
            .bind(id.build as i32)
            .bind(state.as_str())
            .execute(conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Enters `consumer`'s batch fence (no batch of it is in flight, and none commits
    /// until this transaction ends) and reads its checkpoint.
    async fn fenced_checkpoint(
        &self,
        conn: &mut PgConnection,
        consumer: &str,
    ) -> Result<Checkpoint, StoreError> {
        sqlx::query(self.inner.sql.fence.clone())
            .bind(consumer)
            .bind(0i64)
            .bind(0i64)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        self.checkpoint_on(conn, consumer).await
    }

    async fn checkpoint_on(&self, conn: &mut PgConnection, consumer: &str) -> Result<Checkpoint, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(self.inner.sql.load_checkpoint.clone())
            .bind(consumer)
            .fetch_optional(conn)
            .await
            .map_err(backend)?;
        match row {
            None => Ok(Checkpoint::START),
            Some((tx, pos)) => Ok(Checkpoint {
                transaction: to_u64("checkpoint transaction", tx)?,
                position: GlobalPosition(to_u64("checkpoint position", pos)?),
            }),
        }
    }
}

#[async_trait]
impl Execute<RegisterBuild> for PostgresStore {
    async fn execute(&self, op: RegisterBuild) -> Result<ProjectionBuild, StoreError> {
        self.bounded("register_build", async {
            let mut tx = self.begin_with(READ_COMMITTED).await?;
            self.lock_builds(&mut tx, op.projection()).await?;
            let builds = self.builds_on(&mut tx, op.projection()).await?;
            op.check_layout(&builds)?;
            let of_version = || builds.iter().filter(|b| b.id.version == op.version());
            if !op.fresh() {
                if let Some(current) = build_to_run(&builds, op.version()) {
                    return Ok(current.clone());
                }
            }
            let number = of_version().map(|b| b.id.build).max().unwrap_or(0) + 1;
            let id = BuildId::new(op.projection(), op.version(), number);
            let live = builds.iter().any(|b| b.state == BuildState::Live);
            let state = if live { BuildState::Building } else { BuildState::Live };
            let row = sqlx::query(self.inner.sql.insert_build.clone())
                .bind(&id.projection)
                .bind(id.version as i32)
                .bind(id.build as i32)
                .bind(id.consumer())
                .bind(state.as_str())
                .bind(build_schema(&self.inner.names.schema, &id))
                .bind(i32::from(op.slice_count()))
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
            let build = decode(&row)?;
            tx.commit().await.map_err(backend)?;
            Ok(build)
        })
        .await
    }
}

#[async_trait]
impl Execute<Builds> for PostgresStore {
    async fn execute(&self, op: Builds) -> Result<Vec<ProjectionBuild>, StoreError> {
        self.bounded("builds", async {
            let mut conn = self.inner.conns.get().await?;
            let found = self.builds_on(&mut conn, op.projection()).await;
            conn.release(&found);
            found
        })
        .await
    }
}

#[async_trait]
impl Execute<CutOver> for PostgresStore {
    async fn execute(&self, op: CutOver) -> Result<Switch, StoreError> {
        let target = op.build();
        self.bounded("cut_over", async {
            let mut tx = self.begin_with(READ_COMMITTED).await?;
            self.lock_builds(&mut tx, &target.projection).await?;
            let builds = self.builds_on(&mut tx, &target.projection).await?;
            let Some(build) = builds.iter().find(|b| &b.id == target && b.state != BuildState::Retired)
            else {
                return Ok(Switch::Unknown);
            };
            if build.state == BuildState::Live {
                return Ok(Switch::Switched { replaced: None });
            }
            let live = builds.iter().find(|b| b.state == BuildState::Live);
            if let Some(live) = live {
                // Inside the live build's fences its checkpoints stand still until commit:
                // the build must have processed at least as much as every one of them (as
                // its fastest slice, for a live build in slices), and a build in slices is
                // as far as its slowest slice.
                let mut live_at = None::<Checkpoint>;
                for consumer in live.consumers() {
                    let at = self.fenced_checkpoint(&mut tx, &consumer).await?;
                    live_at = Some(live_at.map_or(at, |m| m.max(at)));
                }
                let mut build_at = None::<Checkpoint>;
                for consumer in build.consumers() {
                    let at = self.checkpoint_on(&mut tx, &consumer).await?;
                    build_at = Some(build_at.map_or(at, |m| m.min(at)));
                }
                let (live_at, build_at) =
                    (live_at.unwrap_or(Checkpoint::START), build_at.unwrap_or(Checkpoint::START));
                if build_at < live_at {
                    return Ok(Switch::Behind { live: live_at, build: build_at });
                }
                self.set_state(&mut tx, &live.id, BuildState::Replaced).await?;
            }
            let live = live.map(|b| b.id.clone());
            self.set_state(&mut tx, target, BuildState::Live).await?;
            tx.commit().await.map_err(backend)?;
            Ok(Switch::Switched { replaced: live })
        })
        .await
    }
}

#[async_trait]
impl Execute<RetireBuild> for PostgresStore {
    async fn execute(&self, op: RetireBuild) -> Result<Retired, StoreError> {
        let target = op.build();
        self.bounded("retire_build", async {
            let mut tx = self.begin_with(READ_COMMITTED).await?;
            self.lock_builds(&mut tx, &target.projection).await?;
            let builds = self.builds_on(&mut tx, &target.projection).await?;
            let Some(build) = builds.iter().find(|b| &b.id == target) else {
                return Ok(Retired::Unknown);
            };
            match build.state {
                BuildState::Live => return Ok(Retired::Live),
                BuildState::Retired => return Ok(Retired::Retired),
                _ => {}
            }
            // Inside its fences: no batch of it is in flight while its schema goes.
            for consumer in build.consumers() {
                self.fenced_checkpoint(&mut tx, &consumer).await?;
            }
            self.set_state(&mut tx, target, BuildState::Retired).await?;
            if let Some(schema) = &build.location {
                let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", schema.replace('"', "\"\""));
                sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut *tx).await.map_err(backend)?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(Retired::Retired)
        })
        .await
    }
}

#[async_trait]
impl Execute<ReopenBuild> for PostgresStore {
    async fn execute(&self, op: ReopenBuild) -> Result<bool, StoreError> {
        let target = op.build();
        self.bounded("reopen_build", async {
            let mut tx = self.begin_with(READ_COMMITTED).await?;
            self.lock_builds(&mut tx, &target.projection).await?;
            let builds = self.builds_on(&mut tx, &target.projection).await?;
            if !builds.iter().any(|b| &b.id == target && b.state == BuildState::Replaced) {
                return Ok(false);
            }
            self.set_state(&mut tx, target, BuildState::Building).await?;
            tx.commit().await.map_err(backend)?;
            Ok(true)
        })
        .await
    }
}
