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

use factum::Projection;
use factum_postgres::{ExactlyOnce, PostgresStore};
use sqlx::{AssertSqlSafe, PgPool, Row};

use crate::order::Line;

mod projections;
mod views;

use projections::{AuditLog, CustomerHistory, OrderSummary};
pub use views::{AuditEntry, AuditQuery, CustomerOrder, CustomerTotals, CustomerView, OrderView};

/// The projections' names (their checkpoints' names in `projection_positions`).
pub const PROJECTIONS: [&str; 3] = ["order_summary", "customer_history", "audit_log"];

/// The read-model tables, in the store's schema.
#[derive(Clone, Debug)]
pub struct Tables {
    schema: String,
}

impl Tables {
    /// The tables in `schema` (the store's schema).
    pub fn new(schema: &str) -> Self {
        Tables { schema: format!("\"{}\"", schema.replace('"', "\"\"")) }
    }

    pub(super) fn t(&self, table: &str) -> String {
        format!("{}.{table}", self.schema)
    }

    /// The tables' qualified names.
    fn all(&self) -> [String; 5] {
        ["order_summary", "order_lines", "customer_summary", "customer_orders", "audit_log"]
            .map(|t| self.t(t))
    }

    /// Creates the tables if they do not exist. When they all exist nothing is created,
    /// so that a runtime role without DDL privileges may call this at start-up.
    pub async fn create(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let missing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM unnest($1::text[]) AS t(name) WHERE to_regclass(t.name) IS NULL",
        )
        .bind(self.all().to_vec())
        .fetch_one(pool)
        .await?;
        if missing == 0 {
            return Ok(());
        }
        // One multi-statement query is one transaction: the lock keeps two instances that
        // start together from racing on the same CREATE TABLE.
        let ddl = format!(
            "SELECT pg_advisory_xact_lock(hashtext('factum_example.read_models'));
            CREATE TABLE IF NOT EXISTS {os} (
                order_id    text PRIMARY KEY,
                customer_id text NOT NULL,
                status      text NOT NULL,
                total       bigint NOT NULL DEFAULT 0,
                version     bigint NOT NULL,
                updated_at  timestamptz NOT NULL
            );
            CREATE TABLE IF NOT EXISTS {ol} (
                order_id   text NOT NULL,
                sku        text NOT NULL,
                quantity   bigint NOT NULL,
                unit_price bigint NOT NULL,
                seq        bigint NOT NULL,
                PRIMARY KEY (order_id, sku)
            );
            CREATE TABLE IF NOT EXISTS {cs} (
                customer_id text PRIMARY KEY,
                name        text NOT NULL,
                email       text NOT NULL,
                active      boolean NOT NULL,
                version     bigint NOT NULL
            );
            CREATE TABLE IF NOT EXISTS {co} (
                order_id    text PRIMARY KEY,
                customer_id text NOT NULL,
                status      text NOT NULL,
                total       bigint NOT NULL DEFAULT 0,
                placed_at   timestamptz NOT NULL
            );
            CREATE INDEX IF NOT EXISTS customer_orders_by_customer ON {co} (customer_id, placed_at);
            CREATE TABLE IF NOT EXISTS {al} (
                position       bigint PRIMARY KEY,
                event_id       uuid NOT NULL UNIQUE,
                aggregate_type text NOT NULL,
                aggregate_id   text NOT NULL,
                version        bigint NOT NULL,
                event_type     text NOT NULL,
                topic          text,
                payload        jsonb NOT NULL,
                metadata       jsonb NOT NULL,
                correlation_id uuid,
                causation_id   uuid,
                occurred_at    timestamptz NOT NULL,
                recorded_at    timestamptz NOT NULL
            );
            CREATE INDEX IF NOT EXISTS audit_log_by_stream ON {al} (aggregate_type, aggregate_id, version);
            CREATE INDEX IF NOT EXISTS audit_log_by_correlation ON {al} (correlation_id);",
            os = self.t("order_summary"),
            ol = self.t("order_lines"),
            cs = self.t("customer_summary"),
            co = self.t("customer_orders"),
            al = self.t("audit_log"),
        );
        sqlx::raw_sql(AssertSqlSafe(ddl)).execute(pool).await?;
        Ok(())
    }

    /// Grants `role` what the projections and queries need on the tables: reading,
    /// writing, and clearing them for a rebuild.
    pub async fn grant(&self, pool: &PgPool, role: &str) -> Result<(), sqlx::Error> {
        let role = format!("\"{}\"", role.replace('"', "\"\""));
        let tables = self.all().join(", ");
        sqlx::raw_sql(AssertSqlSafe(format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {tables} TO {role}"
        )))
        .execute(pool)
        .await?;
        Ok(())
    }

    /// The three projections, ready for [`factum::SupervisorConfig::projection`].
    pub fn projections(&self, store: &PostgresStore) -> Vec<Projection> {
        vec![
            Projection::new("order_summary", ExactlyOnce::new(store.clone(), OrderSummary(self.clone())))
                .aggregate_types(["Order"]),
            Projection::new(
                "customer_history",
                ExactlyOnce::new(store.clone(), CustomerHistory(self.clone())),
            )
            .aggregate_types(["Customer", "Order"]),
            Projection::new("audit_log", ExactlyOnce::new(store.clone(), AuditLog(self.clone()))),
        ]
    }

    /// An order's summary, if the projection has seen it.
    pub async fn order(&self, pool: &PgPool, order_id: &str) -> Result<Option<OrderView>, sqlx::Error> {
        let Some(row) = sqlx::query(AssertSqlSafe(format!(
            "SELECT customer_id, status, total, version, updated_at FROM {} WHERE order_id = $1",
            self.t("order_summary")
        )))
        .bind(order_id)
        .fetch_optional(pool)
        .await?
        else {
            return Ok(None);
        };
        let lines = sqlx::query(AssertSqlSafe(format!(
            "SELECT sku, quantity, unit_price FROM {} WHERE order_id = $1 ORDER BY seq",
            self.t("order_lines")
        )))
        .bind(order_id)
        .fetch_all(pool)
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
    pub async fn customer(
        &self,
        pool: &PgPool,
        customer_id: &str,
    ) -> Result<Option<CustomerView>, sqlx::Error> {
        let Some(row) = sqlx::query(AssertSqlSafe(format!(
            "SELECT name, email, active, version FROM {} WHERE customer_id = $1",
            self.t("customer_summary")
        )))
        .bind(customer_id)
        .fetch_optional(pool)
        .await?
        else {
            return Ok(None);
        };
        let orders: Vec<CustomerOrder> = sqlx::query(AssertSqlSafe(format!(
            "SELECT order_id, status, total, placed_at FROM {} WHERE customer_id = $1 ORDER BY placed_at, order_id",
            self.t("customer_orders")
        )))
        .bind(customer_id)
        .fetch_all(pool)
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
    pub async fn audit(&self, pool: &PgPool, query: &AuditQuery) -> Result<Vec<AuditEntry>, sqlx::Error> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT position, event_id, aggregate_type, aggregate_id, version, event_type, topic, payload,
                    metadata, correlation_id, causation_id, occurred_at, recorded_at
               FROM {}
              WHERE position > $1
                AND ($2::text IS NULL OR aggregate_type = $2)
                AND ($3::text IS NULL OR aggregate_id = $3)
                AND ($4::uuid IS NULL OR correlation_id = $4)
              ORDER BY position
              LIMIT $5",
            self.t("audit_log")
        )))
        .bind(query.after)
        .bind(&query.aggregate_type)
        .bind(&query.aggregate_id)
        .bind(query.correlation_id)
        .bind(query.limit)
        .fetch_all(pool)
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
    pub async fn order_totals(&self, pool: &PgPool) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT status, count(*), coalesce(sum(total), 0)::bigint FROM {} GROUP BY status ORDER BY status",
            self.t("order_summary")
        )))
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// Rows in the audit log.
    pub async fn audit_count(&self, pool: &PgPool) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", self.t("audit_log"))))
            .fetch_one(pool)
            .await
    }
}
