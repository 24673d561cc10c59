//! The read models: PostgreSQL tables kept current by exactly-once projections, and the
//! queries the HTTP API serves from them.
//!
//! | projection | reads | tables |
//! | --- | --- | --- |
//! | `order_summary` | `Order` events | `order_summary`, `order_lines` |
//! | `customer_history` | `Customer` and `Order` events | `customer_summary`, `customer_orders` |
//! | `audit_log` | every event | `audit_log` |
//!
//! Each projection's writes and its checkpoint commit in one transaction
//! ([`factum_postgres::ExactlyOnce`]), so a crash never applies an event twice or skips one.
//! `order_summary` and `customer_history` may run in slices (the service's
//! `FACTUM_EXAMPLE_SLICES`), which spread over the instances sharing the database;
//! `audit_log` runs in one (see [`Tables::projections`]).
//!
//! An event the order or customer read model cannot take (one that does not decode, say)
//! is tried three times, then recorded as a failure and skipped, rather than holding every
//! order behind it: operators see it in `factum projections failures` or the console, and
//! retry it once the cause is fixed.

use std::time::Duration;

use factum::projection::FailurePolicy;
use factum::Projection;
use factum_postgres::{ExactlyOnce, PostgresStore, ReadModels};
use sqlx::{AssertSqlSafe, PgPool, Row};

use crate::order::Line;

mod projections;
mod views;

use projections::{AuditLog, CustomerHistory, OrderSummary};
pub use views::{AuditEntry, AuditQuery, CustomerOrder, CustomerTotals, CustomerView, OrderView};

/// Three attempts 100 ms and 200 ms apart, then the event is recorded and skipped.
fn skip_after_retries() -> FailurePolicy {
    FailurePolicy::retry_then_skip(3).backoff(Duration::from_millis(100), Duration::from_secs(1))
}

/// The projections' names (their checkpoints' names in `projection_positions`).
pub const PROJECTIONS: [&str; 3] = ["order_summary", "customer_history", "audit_log"];

/// The read models: each projection's tables live in a schema of its own per build
/// ([`ExactlyOnce::schema_per_build`]), created by the projection when it takes a build
/// up, so that a rebuild fills a fresh copy while the live one keeps serving. The
/// handlers and the queries below name the tables unqualified; the queries read the live
/// builds through [`PostgresStore::read_models`].
#[derive(Clone, Debug)]
pub struct Tables {
    store: PostgresStore,
}

impl Tables {
    /// The read models of `store`'s projections.
    pub fn new(store: &PostgresStore) -> Self {
        Tables { store: store.clone() }
    }

    pub(super) fn t(&self, table: &str) -> String {
        table.to_owned()
    }

    /// Grants `role` (the role the service connects as) what the projections need to
    /// keep their builds' schemas: `CREATE` on the database.
    pub async fn grant(&self, pool: &PgPool, role: &str) -> Result<(), sqlx::Error> {
        let role = format!("\"{}\"", role.replace('"', "\"\""));
        let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(pool).await?;
        let database = format!("\"{}\"", database.replace('"', "\"\""));
        sqlx::raw_sql(AssertSqlSafe(format!("GRANT CREATE ON DATABASE {database} TO {role}")))
            .execute(pool)
            .await?;
        Ok(())
    }

    /// A read of the live builds of `projections`; `None` while one has no live build
    /// yet (the service's very first start), whose read model is then empty.
    async fn read(&self, projections: &[&str]) -> Result<Option<ReadModels>, sqlx::Error> {
        let read =
            self.store.read_models(projections).await.map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        Ok((read.builds().len() == projections.len()).then_some(read))
    }

    /// The three projections, ready for [`factum::SupervisorConfig::projection`]:
    /// `order_summary` and `customer_history` in `slices` slices each (from 1 to
    /// [`factum::store::MAX_SLICES`]; 1 is the same as [`Projection::new`]), with one
    /// [`ExactlyOnce`] sink per slice, so that their slices run concurrently and spread
    /// over the instances that share the database. Each stream belongs to one slice, and
    /// each of their rows is written by one stream's events only (an order's or a
    /// customer's), which a slice applies in order.
    ///
    /// `audit_log` stays in one slice: its rows follow the log's order across every
    /// stream, which slices do not keep.
    ///
    /// The slice count of a projection's version is recorded in the database, and
    /// [`factum::Supervisor::start`] refuses another one for the same version: changing it
    /// takes a fresh database or a new projection version.
    pub fn projections(&self, store: &PostgresStore, slices: u16) -> Vec<Projection> {
        let order_summary = {
            let (store, tables) = (store.clone(), self.clone());
            Projection::sliced("order_summary", slices, move |_| {
                ExactlyOnce::new(store.clone(), OrderSummary(tables.clone())).schema_per_build()
            })
            .aggregate_types(["Order"])
            .on_failure(skip_after_retries())
        };
        let customer_history = {
            let (store, tables) = (store.clone(), self.clone());
            Projection::sliced("customer_history", slices, move |_| {
                ExactlyOnce::new(store.clone(), CustomerHistory(tables.clone())).schema_per_build()
            })
            .aggregate_types(["Customer", "Order"])
            .on_failure(skip_after_retries())
        };
        vec![
            order_summary,
            customer_history,
            Projection::new(
                "audit_log",
                ExactlyOnce::new(store.clone(), AuditLog(self.clone())).schema_per_build(),
            ),
        ]
    }

    /// An order's summary, if the projection has seen it.
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderView>, sqlx::Error> {
        let Some(mut read) = self.read(&["order_summary"]).await? else { return Ok(None) };
        let Some(row) = sqlx::query(
            "SELECT customer_id, status, total, version, updated_at FROM order_summary WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(&mut *read)
        .await?
        else {
            return Ok(None);
        };
        let lines =
            sqlx::query("SELECT sku, quantity, unit_price FROM order_lines WHERE order_id = $1 ORDER BY seq")
                .bind(order_id)
                .fetch_all(&mut *read)
                .await?
                .into_iter()
                .map(|r| Line { sku: r.get(0), quantity: r.get(1), unit_price: r.get(2) })
                .collect();
        Ok(Some(OrderView {
            order_id: order_id.to_owned(),
            customer_id: row.get(0),
            status: row.get(1),
            total: row.get(2),
            version: row.get::<i64, _>(3) as u64,
            updated_at: row.get(4),
            lines,
        }))
    }

    /// A customer's profile, orders and totals, if the projection has seen them.
    pub async fn customer(&self, customer_id: &str) -> Result<Option<CustomerView>, sqlx::Error> {
        let Some(mut read) = self.read(&["customer_history"]).await? else { return Ok(None) };
        let Some(row) =
            sqlx::query("SELECT name, email, active, version FROM customer_summary WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&mut *read)
                .await?
        else {
            return Ok(None);
        };
        let orders: Vec<CustomerOrder> = sqlx::query("SELECT order_id, status, total, placed_at FROM customer_orders WHERE customer_id = $1 ORDER BY placed_at, order_id")
        .bind(customer_id)
        .fetch_all(&mut *read)
        .await?
        .into_iter()
        .map(|r| CustomerOrder { order_id: r.get(0), status: r.get(1), total: r.get(2), placed_at: r.get(3) })
        .collect();
        let totals = CustomerTotals::of(&orders);
        Ok(Some(CustomerView {
            customer_id: customer_id.to_owned(),
            name: row.get(0),
            email: row.get(1),
            active: row.get(2),
            version: row.get::<i64, _>(3) as u64,
            totals,
            orders,
        }))
    }

    /// Audit entries, oldest first, after `after` (a global position), optionally for one
    /// aggregate or one correlation id.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, sqlx::Error> {
        let Some(mut read) = self.read(&["audit_log"]).await? else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT position, event_id, aggregate_type, aggregate_id, version, event_type, topic, payload,
                    metadata, correlation_id, causation_id, occurred_at, recorded_at
               FROM audit_log
              WHERE position > $1
                AND ($2::text IS NULL OR aggregate_type = $2)
                AND ($3::text IS NULL OR aggregate_id = $3)
                AND ($4::uuid IS NULL OR correlation_id = $4)
              ORDER BY position
              LIMIT $5",
        )
        .bind(query.after)
        .bind(&query.aggregate_type)
        .bind(&query.aggregate_id)
        .bind(query.correlation_id)
        .bind(query.limit)
        .fetch_all(&mut *read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                position: r.get(0),
                event_id: r.get(1),
                aggregate_type: r.get(2),
                aggregate_id: r.get(3),
                version: r.get(4),
                event_type: r.get(5),
                topic: r.get(6),
                payload: r.get(7),
                metadata: r.get(8),
                correlation_id: r.get(9),
                causation_id: r.get(10),
                occurred_at: r.get(11),
                recorded_at: r.get(12),
            })
            .collect())
    }

    /// Totals over every order in the order summary, for the simulation's check.
    pub async fn order_totals(&self) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        let Some(mut read) = self.read(&["order_summary"]).await? else { return Ok(Vec::new()) };
        let rows = sqlx::query("SELECT status, count(*), coalesce(sum(total), 0)::bigint FROM order_summary GROUP BY status ORDER BY status")
        .fetch_all(&mut *read)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// Rows in the audit log.
    pub async fn audit_count(&self) -> Result<i64, sqlx::Error> {
        let Some(mut read) = self.read(&["audit_log"]).await? else { return Ok(0) };
        sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(&mut *read).await
    }
}
