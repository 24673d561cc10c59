//! The three projections that keep the read models current, each a [`PgProjection`] whose
//! writes commit with its checkpoint.

use async_trait::async_trait;
use factum::{DomainEvent, HandlerError, RecordedEvent};
use factum_postgres::PgProjection;
use sqlx::{AssertSqlSafe, PgConnection};

use super::Tables;
use crate::customer::CustomerEvent;
use crate::order::{OrderEvent, OrderStatus};

fn decode<E: DomainEvent>(event: &RecordedEvent) -> Result<E, HandlerError> {
    E::from_stored(&event.event_type, event.schema_version, event.payload.clone()).map_err(HandlerError::from)
}

fn version(event: &RecordedEvent) -> i64 {
    event.version.0 as i64
}

/// Each projection's tables, created in its build's schema (unqualified names land
/// there: see [`PgProjection::create`]).
const ORDER_SUMMARY: &str = "
    CREATE TABLE IF NOT EXISTS order_summary (
        order_id    text PRIMARY KEY,
        customer_id text NOT NULL,
        status      text NOT NULL,
        total       bigint NOT NULL DEFAULT 0,
        version     bigint NOT NULL,
        updated_at  timestamptz NOT NULL
    );
    CREATE TABLE IF NOT EXISTS order_lines (
        order_id   text NOT NULL,
        sku        text NOT NULL,
        quantity   bigint NOT NULL,
        unit_price bigint NOT NULL,
        seq        bigint NOT NULL,
        PRIMARY KEY (order_id, sku)
    );";

const CUSTOMER_HISTORY: &str = "
    CREATE TABLE IF NOT EXISTS customer_summary (
        customer_id text PRIMARY KEY,
        name        text NOT NULL,
        email       text NOT NULL,
        active      boolean NOT NULL,
        version     bigint NOT NULL
    );
    CREATE TABLE IF NOT EXISTS customer_orders (
        order_id    text PRIMARY KEY,
        customer_id text NOT NULL,
        status      text NOT NULL,
        total       bigint NOT NULL DEFAULT 0,
        placed_at   timestamptz NOT NULL
    );
    CREATE INDEX IF NOT EXISTS customer_orders_by_customer ON customer_orders (customer_id, placed_at);";

const AUDIT_LOG: &str = "
    CREATE TABLE IF NOT EXISTS audit_log (
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
    CREATE INDEX IF NOT EXISTS audit_log_by_stream ON audit_log (aggregate_type, aggregate_id, version);
    CREATE INDEX IF NOT EXISTS audit_log_by_correlation ON audit_log (correlation_id);";

async fn create(tx: &mut PgConnection, ddl: &'static str) -> Result<(), HandlerError> {
    for statement in ddl.split(';').filter(|s| !s.trim().is_empty()) {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    Ok(())
}

pub(super) struct OrderSummary(pub(super) Tables);

#[async_trait]
impl PgProjection for OrderSummary {
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
        let (os, ol) = (self.0.t("order_summary"), self.0.t("order_lines"));
        let id = event.stream.aggregate_id();
        let status = |s: OrderStatus| s.as_str();
        match decode::<OrderEvent>(event)? {
            OrderEvent::Placed { customer_id } => {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {os} (order_id, customer_id, status, total, version, updated_at)
                     VALUES ($1, $2, $3, 0, $4, $5)"
                )))
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
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {ol} (order_id, sku, quantity, unit_price, seq) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (order_id, sku) DO UPDATE SET quantity = {ol}.quantity + EXCLUDED.quantity"
                )))
                .bind(id)
                .bind(&sku)
                .bind(quantity)
                .bind(unit_price)
                .bind(version(event))
                .execute(&mut *tx)
                .await?;
            }
            OrderEvent::ItemRemoved { sku, .. } => {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {ol} WHERE order_id = $1 AND sku = $2")))
                    .bind(id)
                    .bind(&sku)
                    .execute(&mut *tx)
                    .await?;
            }
            OrderEvent::Confirmed { .. } => set_status(tx, &os, id, OrderStatus::Confirmed).await?,
            OrderEvent::Shipped => set_status(tx, &os, id, OrderStatus::Shipped).await?,
            OrderEvent::Cancelled { .. } => set_status(tx, &os, id, OrderStatus::Cancelled).await?,
        }
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {os} SET version = $2, updated_at = $3,
                    total = (SELECT coalesce(sum(quantity * unit_price), 0) FROM {ol} WHERE order_id = $1)
              WHERE order_id = $1"
        )))
        .bind(id)
        .bind(version(event))
        .bind(event.recorded_at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn create(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        create(tx, ORDER_SUMMARY).await
    }

    async fn clear(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        sqlx::query(AssertSqlSafe(format!(
            "TRUNCATE {}, {}",
            self.0.t("order_summary"),
            self.0.t("order_lines")
        )))
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
    sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET status = $2 WHERE order_id = $1")))
        .bind(id)
        .bind(status.as_str())
        .execute(tx)
        .await?;
    Ok(())
}

pub(super) struct CustomerHistory(pub(super) Tables);

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
            sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .bind(version(event))
                .bind(text)
                .bind(email)
                .execute(&mut *tx)
                .await?;
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
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(amount)
            .bind(customer)
            .bind(event.recorded_at)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    async fn create(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        create(tx, CUSTOMER_HISTORY).await
    }

    async fn clear(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        sqlx::query(AssertSqlSafe(format!(
            "TRUNCATE {}, {}",
            self.0.t("customer_summary"),
            self.0.t("customer_orders")
        )))
        .execute(tx)
        .await?;
        Ok(())
    }
}

pub(super) struct AuditLog(pub(super) Tables);

#[async_trait]
impl PgProjection for AuditLog {
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (position, event_id, aggregate_type, aggregate_id, version, event_type, topic,
                             payload, metadata, correlation_id, causation_id, occurred_at, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            self.0.t("audit_log")
        )))
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

    async fn create(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        create(tx, AUDIT_LOG).await
    }

    async fn clear(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        sqlx::query(AssertSqlSafe(format!("TRUNCATE {}", self.0.t("audit_log")))).execute(tx).await?;
        Ok(())
    }
}
