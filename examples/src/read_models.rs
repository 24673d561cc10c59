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

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use factum::{DomainEvent, HandlerError, Projection, RecordedEvent};
use factum_postgres::{ExactlyOnce, PgProjection, PostgresStore};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};

use crate::customer::CustomerEvent;
use crate::order::{Line, OrderEvent, OrderStatus};

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

    fn t(&self, table: &str) -> String {
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
        sqlx::raw_sql(&ddl).execute(pool).await?;
        Ok(())
    }

    /// Grants `role` what the projections and queries need on the tables: reading,
    /// writing, and clearing them for a rebuild.
    pub async fn grant(&self, pool: &PgPool, role: &str) -> Result<(), sqlx::Error> {
        let role = format!("\"{}\"", role.replace('"', "\"\""));
        let tables = self.all().join(", ");
        sqlx::raw_sql(&format!("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {tables} TO {role}"))
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
        let Some(row) = sqlx::query(&format!(
            "SELECT customer_id, status, total, version, updated_at FROM {} WHERE order_id = $1",
            self.t("order_summary")
        ))
        .bind(order_id)
        .fetch_optional(pool)
        .await?
        else {
            return Ok(None);
        };
        let lines = sqlx::query(&format!(
            "SELECT sku, quantity, unit_price FROM {} WHERE order_id = $1 ORDER BY seq",
            self.t("order_lines")
        ))
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
        let Some(row) = sqlx::query(&format!(
            "SELECT name, email, active, version FROM {} WHERE customer_id = $1",
            self.t("customer_summary")
        ))
        .bind(customer_id)
        .fetch_optional(pool)
        .await?
        else {
            return Ok(None);
        };
        let orders: Vec<CustomerOrder> = sqlx::query(&format!(
            "SELECT order_id, status, total, placed_at FROM {} WHERE customer_id = $1 ORDER BY placed_at, order_id",
            self.t("customer_orders")
        ))
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
        let rows = sqlx::query(&format!(
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
        ))
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
        let rows = sqlx::query(&format!(
            "SELECT status, count(*), coalesce(sum(total), 0)::bigint FROM {} GROUP BY status ORDER BY status",
            self.t("order_summary")
        ))
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// Rows in the audit log.
    pub async fn audit_count(&self, pool: &PgPool) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}", self.t("audit_log"))).fetch_one(pool).await
    }
}

/// An order, as the `order_summary` projection sees it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    /// The order's id.
    pub order_id: String,
    /// The ordering customer.
    pub customer_id: String,
    /// `open`, `confirmed`, `shipped` or `cancelled`.
    pub status: String,
    /// Its lines, in the order they were first added.
    pub lines: Vec<Line>,
    /// The sum of the lines, in cents.
    pub total: i64,
    /// The order's version the view reflects.
    pub version: u64,
    /// When the last event reflected was recorded.
    pub updated_at: DateTime<Utc>,
}

/// A customer with their order history.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    /// The customer's id.
    pub customer_id: String,
    /// Their name.
    pub name: String,
    /// Their email.
    pub email: String,
    /// Whether they can place orders.
    pub active: bool,
    /// The customer's version the profile reflects.
    pub version: u64,
    /// Counts and spend.
    pub totals: CustomerTotals,
    /// Their orders, oldest first.
    pub orders: Vec<CustomerOrder>,
}

/// One order in a customer's history.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CustomerOrder {
    /// The order's id.
    pub order_id: String,
    /// Its status.
    pub status: String,
    /// Its total, in cents.
    pub total: i64,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
}

/// A customer's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CustomerTotals {
    /// Orders placed.
    pub orders: u64,
    /// Orders still open.
    pub open: u64,
    /// Orders confirmed and not shipped.
    pub confirmed: u64,
    /// Orders shipped.
    pub shipped: u64,
    /// Orders cancelled.
    pub cancelled: u64,
    /// The total of confirmed and shipped orders, in cents.
    pub spent: i64,
}

impl CustomerTotals {
    /// Totals over `orders`.
    pub fn of(orders: &[CustomerOrder]) -> Self {
        let mut t = CustomerTotals::default();
        for o in orders {
            t.orders += 1;
            match o.status.as_str() {
                "open" => t.open += 1,
                "confirmed" => t.confirmed += 1,
                "shipped" => t.shipped += 1,
                "cancelled" => t.cancelled += 1,
                _ => {}
            }
            if matches!(o.status.as_str(), "confirmed" | "shipped") {
                t.spent += o.total;
            }
        }
        t
    }
}

/// Which audit entries to list.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Entries after this global position.
    pub after: i64,
    /// Only this aggregate type.
    pub aggregate_type: Option<String>,
    /// Only this aggregate id.
    pub aggregate_id: Option<String>,
    /// Only this correlation id.
    pub correlation_id: Option<uuid::Uuid>,
    /// At most this many.
    pub limit: i64,
}

/// One event in the audit log, with its metadata (the audit trail).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The event's global position.
    pub position: i64,
    /// The event's id.
    pub event_id: uuid::Uuid,
    /// `Order` or `Customer`.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The event's version in its stream.
    pub version: i64,
    /// The stored event type.
    pub event_type: String,
    /// The event's topic.
    pub topic: Option<String>,
    /// The payload.
    pub payload: serde_json::Value,
    /// All metadata (correlation, causation, user, custom keys).
    pub metadata: serde_json::Value,
    /// The request's correlation id.
    pub correlation_id: Option<uuid::Uuid>,
    /// What caused the event.
    pub causation_id: Option<uuid::Uuid>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it was stored.
    pub recorded_at: DateTime<Utc>,
}

fn decode<E: DomainEvent>(event: &RecordedEvent) -> Result<E, HandlerError> {
    E::from_stored(&event.event_type, event.schema_version, event.payload.clone()).map_err(HandlerError::from)
}

fn version(event: &RecordedEvent) -> i64 {
    event.version.0 as i64
}

struct OrderSummary(Tables);

#[async_trait]
impl PgProjection for OrderSummary {
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
        let (os, ol) = (self.0.t("order_summary"), self.0.t("order_lines"));
        let id = event.stream.aggregate_id();
        let status = |s: OrderStatus| s.as_str();
        match decode::<OrderEvent>(event)? {
            OrderEvent::Placed { customer_id } => {
                sqlx::query(&format!(
                    "INSERT INTO {os} (order_id, customer_id, status, total, version, updated_at)
                     VALUES ($1, $2, $3, 0, $4, $5)"
                ))
                .bind(id)
                .bind(customer_id)
                .bind(status(OrderStatus::Open))
                .bind(version(event))
                .bind(event.recorded_at)
                .execute(&mut *tx)
                .await?;
                return Ok(());
            }
            OrderEvent::ItemAdded { sku, quantity, unit_price } => {
                sqlx::query(&format!(
                    "INSERT INTO {ol} (order_id, sku, quantity, unit_price, seq) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (order_id, sku) DO UPDATE SET quantity = {ol}.quantity + EXCLUDED.quantity"
                ))
                .bind(id)
                .bind(&sku)
                .bind(quantity)
                .bind(unit_price)
                .bind(version(event))
                .execute(&mut *tx)
                .await?;
            }
            OrderEvent::ItemRemoved { sku, .. } => {
                sqlx::query(&format!("DELETE FROM {ol} WHERE order_id = $1 AND sku = $2"))
                    .bind(id)
                    .bind(&sku)
                    .execute(&mut *tx)
                    .await?;
            }
            OrderEvent::Confirmed { .. } => set_status(tx, &os, id, OrderStatus::Confirmed).await?,
            OrderEvent::Shipped => set_status(tx, &os, id, OrderStatus::Shipped).await?,
            OrderEvent::Cancelled { .. } => set_status(tx, &os, id, OrderStatus::Cancelled).await?,
        }
        sqlx::query(&format!(
            "UPDATE {os} SET version = $2, updated_at = $3,
                    total = (SELECT coalesce(sum(quantity * unit_price), 0) FROM {ol} WHERE order_id = $1)
              WHERE order_id = $1"
        ))
        .bind(id)
        .bind(version(event))
        .bind(event.recorded_at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn clear(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        sqlx::query(&format!("TRUNCATE {}, {}", self.0.t("order_summary"), self.0.t("order_lines")))
            .execute(tx)
            .await?;
        Ok(())
    }
}

async fn set_status(
    tx: &mut PgConnection,
    table: &str,
    id: &str,
    status: OrderStatus,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("UPDATE {table} SET status = $2 WHERE order_id = $1"))
        .bind(id)
        .bind(status.as_str())
        .execute(tx)
        .await?;
    Ok(())
}

struct CustomerHistory(Tables);

#[async_trait]
impl PgProjection for CustomerHistory {
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
        let (cs, co) = (self.0.t("customer_summary"), self.0.t("customer_orders"));
        let id = event.stream.aggregate_id();
        // Every statement binds the same four parameters; sqlx sends their types, so a
        // statement may leave some unused.
        if event.stream.aggregate_type() == "Customer" {
            let (sql, text, email) = match decode::<CustomerEvent>(event)? {
                CustomerEvent::Registered { name, email } => (
                    format!("INSERT INTO {cs} (customer_id, name, email, active, version) VALUES ($1, $3, $4, true, $2)"),
                    Some(name),
                    Some(email),
                ),
                CustomerEvent::EmailChanged { email } => {
                    (format!("UPDATE {cs} SET email = $4, version = $2 WHERE customer_id = $1"), None, Some(email))
                }
                CustomerEvent::Deactivated => {
                    (format!("UPDATE {cs} SET active = false, version = $2 WHERE customer_id = $1"), None, None)
                }
            };
            sqlx::query(&sql).bind(id).bind(version(event)).bind(text).bind(email).execute(&mut *tx).await?;
            return Ok(());
        }
        let (sql, amount, customer) = match decode::<OrderEvent>(event)? {
            OrderEvent::Placed { customer_id } => (
                format!("INSERT INTO {co} (order_id, customer_id, status, total, placed_at) VALUES ($1, $3, 'open', 0, $4)"),
                None,
                Some(customer_id),
            ),
            OrderEvent::ItemAdded { quantity, unit_price, .. } => {
                (format!("UPDATE {co} SET total = total + $2 WHERE order_id = $1"), Some(quantity * unit_price), None)
            }
            OrderEvent::ItemRemoved { quantity, unit_price, .. } => {
                (format!("UPDATE {co} SET total = total - $2 WHERE order_id = $1"), Some(quantity * unit_price), None)
            }
            OrderEvent::Confirmed { total } => {
                (format!("UPDATE {co} SET status = 'confirmed', total = $2 WHERE order_id = $1"), Some(total), None)
            }
            OrderEvent::Shipped => (format!("UPDATE {co} SET status = 'shipped' WHERE order_id = $1"), None, None),
            OrderEvent::Cancelled { .. } => {
                (format!("UPDATE {co} SET status = 'cancelled' WHERE order_id = $1"), None, None)
            }
        };
        sqlx::query(&sql)
            .bind(id)
            .bind(amount)
            .bind(customer)
            .bind(event.recorded_at)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    async fn clear(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        sqlx::query(&format!("TRUNCATE {}, {}", self.0.t("customer_summary"), self.0.t("customer_orders")))
            .execute(tx)
            .await?;
        Ok(())
    }
}

struct AuditLog(Tables);

#[async_trait]
impl PgProjection for AuditLog {
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
        sqlx::query(&format!(
            "INSERT INTO {} (position, event_id, aggregate_type, aggregate_id, version, event_type, topic,
                             payload, metadata, correlation_id, causation_id, occurred_at, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            self.0.t("audit_log")
        ))
        .bind(event.position.0 as i64)
        .bind(event.event_id)
        .bind(event.stream.aggregate_type())
        .bind(event.stream.aggregate_id())
        .bind(version(event))
        .bind(&event.event_type)
        .bind(&event.topic)
        .bind(&event.payload)
        .bind(event.metadata.to_json())
        .bind(event.metadata.correlation_id)
        .bind(event.metadata.causation_id)
        .bind(event.occurred_at)
        .bind(event.recorded_at)
        .execute(tx)
        .await?;
        Ok(())
    }

    async fn clear(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        sqlx::query(&format!("TRUNCATE {}", self.0.t("audit_log"))).execute(tx).await?;
        Ok(())
    }
}
