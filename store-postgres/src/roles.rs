//! Least-privilege roles: an owner that runs the migrations and owns every object of the
//! store, and a runtime role that the service connects as, which owns nothing.
//!
//! The runtime role may append to and read the log, keep snapshots, checkpoints and
//! failures, and call the append, fence and retention functions. It cannot update,
//! delete or truncate events, disable the immutability trigger, or drop anything: events
//! leave only through the retention function, which the owner defines as
//! `SECURITY DEFINER` and which applies the retention rules itself.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use factum::StoreError;

use crate::config::{check_identifier, SchemaNames};
use crate::rows::backend;
use crate::schema::expand;
use crate::store::PostgresStore;

const CREATE_ROLES: &str = include_str!("../sql/roles/create_roles.sql");
const GRANT_RUNTIME: &str = include_str!("../sql/roles/grant_runtime.sql");

/// The names of the two roles of a least-privilege deployment (by default `factum_owner`
/// and `factum_app`).
///
/// ```no_run
/// use factum_postgres::{create_roles, PostgresConfig, PostgresStore, Roles, SchemaNames};
/// use sqlx::Connection;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let roles = Roles::default();
/// // Once, as a role that may create roles:
/// let mut admin = sqlx::PgConnection::connect("postgres://postgres@localhost/shop").await?;
/// create_roles(&mut admin, &SchemaNames::default(), &roles).await?;
/// // At each deployment, as the owner: migrate, then grant the runtime role its share.
/// let owner = PostgresStore::connect(PostgresConfig::from_url("postgres://factum_owner@localhost/shop")?).await?;
/// owner.migrate().await?;
/// owner.grant_runtime(&roles.runtime).await?;
/// // The service connects as the runtime role.
/// let store = PostgresStore::connect(PostgresConfig::from_url("postgres://factum_app@localhost/shop")?).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Roles {
    /// Runs the migrations and owns every object.
    pub owner: String,
    /// What the service connects as.
    pub runtime: String,
}

impl Default for Roles {
    fn default() -> Self {
        Roles { owner: "factum_owner".into(), runtime: "factum_app".into() }
    }
}

impl Roles {
    /// Roles of other names (plain lowercase identifiers).
    pub fn new(owner: impl Into<String>, runtime: impl Into<String>) -> Self {
        Roles { owner: owner.into(), runtime: runtime.into() }
    }

    fn validate(&self) -> Result<(), StoreError> {
        check_identifier("owner role", &self.owner).map_err(StoreError::backend)?;
        check_identifier("runtime role", &self.runtime).map_err(StoreError::backend)?;
        if self.owner == self.runtime {
            return Err(StoreError::backend(crate::ConfigError::InvalidSetting {
                name: "roles",
                reason: "the owner and the runtime role must differ".into(),
            }));
        }
        Ok(())
    }

    /// The SQL that [`create_roles`] runs, for teams that apply SQL with their own tools:
    /// `database` is the (already quoted, if need be) database name.
    pub fn create_sql(&self, names: &SchemaNames, database: &str) -> Result<String, StoreError> {
        self.validate()?;
        Ok(expand(CREATE_ROLES, names)
            .replace("{owner}", &self.owner)
            .replace("{runtime}", &self.runtime)
            .replace("{database}", database))
    }

    /// The SQL that [`PostgresStore::grant_runtime`] runs.
    pub fn grant_sql(&self, names: &SchemaNames) -> Result<String, StoreError> {
        self.validate()?;
        Ok(grant_sql(names, &self.runtime))
    }
}

fn grant_sql(names: &SchemaNames, runtime: &str) -> String {
    expand(GRANT_RUNTIME, names).replace("{runtime}", runtime)
}

/// Creates the owner and runtime roles if they are missing, lets them connect to the
/// current database, and lets the owner create the store's schema (or its objects in
/// the schema, if it exists). Run it as a role that may create roles; running it again
/// changes nothing. Passwords are yours to set (`ALTER ROLE … PASSWORD`).
pub async fn create_roles(
    admin: &mut PgConnection,
    names: &SchemaNames,
    roles: &Roles,
) -> Result<(), StoreError> {
    names.validate().map_err(StoreError::backend)?;
    let database: String = sqlx::query_scalar("SELECT quote_ident(current_database())")
        .fetch_one(&mut *admin)
        .await
        .map_err(backend)?;
    let sql = roles.create_sql(names, &database)?;
    let mut tx = admin.begin().await.map_err(backend)?;
    // Two set-ups at once would both see a role missing: one at a time.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('factum.roles'))")
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(backend)?;
    tx.commit().await.map_err(backend)
}

impl PostgresStore {
    /// Grants `runtime` what the store needs at run time, and nothing more (see
    /// [`Roles`]). Run it connected as the owner, after [`migrate`](Self::migrate);
    /// running it again changes nothing.
    pub async fn grant_runtime(&self, runtime: &str) -> Result<(), StoreError> {
        check_identifier("runtime role", runtime).map_err(StoreError::backend)?;
        let mut conn = self.conn().await?;
        sqlx::raw_sql(AssertSqlSafe(grant_sql(self.names(), runtime)))
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
