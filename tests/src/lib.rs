//! Test support for factum: a fresh PostgreSQL database per test, and the conformance
//! suite that every [`EventStore`](factum::EventStore) backend must pass.
//!
//! Tests find the server through `DATABASE_URL` (set by `scripts/test.sh` to a database
//! made for the run); without it they use `postgres://postgres@127.0.0.1:5432/postgres`.

pub mod builds;
pub mod cluster;
pub mod conformance;
pub mod counter;
pub mod faulty;
pub mod history;
pub mod loads;
pub mod recorder;
pub mod slices;
pub mod timers;

/// Compiles the README's Rust snippets as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// Compiles the Rust snippets of `docs/event-store.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/event-store.md")]
struct EventStoreDocDoctests;

/// Compiles the Rust snippets of `docs/processes.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/processes.md")]
struct ProcessesDocDoctests;

/// Compiles the Rust snippets of `docs/projections.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/projections.md")]
struct ProjectionsDocDoctests;

/// Compiles the Rust snippets of `docs/getting-started.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/getting-started.md")]
struct GettingStartedDocDoctests;

/// Compiles the Rust snippets of `docs/testing-a-backend.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/testing-a-backend.md")]
struct TestingABackendDocDoctests;

/// Compiles the Rust snippets of `docs/aggregates.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/aggregates.md")]
struct AggregatesDocDoctests;

use std::time::Duration;

use factum_postgres::{PostgresConfig, PostgresStore};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

/// A database of its own for one test, dropped (with its connections) when this is.
pub struct TestDb {
    base: PgConnectOptions,
    name: String,
}

fn base_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    url.parse().expect("DATABASE_URL is not a PostgreSQL URL")
}

impl TestDb {
    /// Creates a fresh, empty database named after the run's database.
    pub async fn new() -> TestDb {
        let base = base_options();
        let prefix = match base.get_database() {
            Some(db) if db.starts_with("factum_run_") => db.to_owned(),
            _ => "factum_test".to_owned(),
        };
        let name = format!("{prefix}_t{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let mut conn = base.connect().await.expect("cannot connect to DATABASE_URL; run scripts/test.sh");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("cannot create a test database");
        conn.close().await.ok();
        TestDb { base, name }
    }

    /// Connect options for the test's database.
    pub fn options(&self) -> PgConnectOptions {
        self.base.clone().database(&self.name)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for the test's database (the run's URL with the database swapped), for a
    /// child process.
    pub fn url(&self) -> String {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
        let (scheme, rest) = base.split_once("://").expect("DATABASE_URL has no scheme");
        let authority = rest.split('/').next().unwrap_or(rest);
        format!("{scheme}://{authority}/{}{query}", self.name)
    }

    /// A store config for an existing database (another process's test database).
    pub fn config_for(name: &str) -> PostgresConfig {
        PostgresConfig::from_options(base_options().database(name))
    }

    /// A store config for the test's database.
    pub fn config(&self) -> PostgresConfig {
        PostgresConfig::from_options(self.options())
    }

    /// A store config for the test's database whose connections carry `application_name`,
    /// so that a test can find (and kill) one instance's backends.
    pub fn config_with_app(&self, application_name: &str) -> PostgresConfig {
        PostgresConfig::from_options(self.options().application_name(application_name))
    }

    /// A migrated store on the test's database with default settings.
    pub async fn store(&self) -> PostgresStore {
        self.store_with(self.config()).await
    }

    /// A migrated store on the test's database with the given settings.
    pub async fn store_with(&self, config: PostgresConfig) -> PostgresStore {
        let store = PostgresStore::connect(config).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// A plain connection to the test's database.
    pub async fn connect(&self) -> PgConnection {
        self.options().connect().await.expect("connect")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let base = self.base.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async work on a thread of its own.
        let dropper = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = base.connect().await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = tokio::time::timeout(
                        Duration::from_secs(30),
                        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn),
                    )
                    .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
