//! [`Deduplicated`]: a subscriber handler whose effects happen once per event id, in
//! PostgreSQL, the way `factum_postgres::ExactlyOnce` keeps a read model's checkpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use factum::projection::catch_panic;
use factum::HandlerError;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, SqlSafeStr, SqlStr};

use crate::error::BusError;
use crate::message::BusEvent;
use crate::subscriber::MessageHandler;

/// The deduplication table unless told otherwise.
pub const DEFAULT_DEDUP_TABLE: &str = "factum_bus_processed";

const CREATE: &str = include_str!("../sql/dedup_create.sql");
const CLAIM: &str = include_str!("../sql/dedup_claim.sql");

/// A handler that writes through a PostgreSQL transaction, for [`Deduplicated`].
#[async_trait]
pub trait PgMessageHandler: Send + 'static {
    /// Applies one event, writing through `tx`. An error (or a panic) rolls back its
    /// writes and the event's claim together; the subscriber retries it.
    async fn handle(&mut self, tx: &mut PgConnection, event: &BusEvent) -> Result<(), HandlerError>;
}

/// Runs a [`PgMessageHandler`] so that each event id takes effect once per consumer:
/// in one transaction it claims the event id in a table (`consumer`, `event_id`) and
/// runs the handler; a message whose id was claimed before is acked without running
/// the handler. A crash before the commit leaves neither the claim nor the writes, so
/// the redelivered message runs again.
///
/// ```no_run
/// use factum::HandlerError;
/// use factum_rabbitmq::{BusEvent, Deduplicated, PgMessageHandler, Subscriber, SubscriberConfig};
/// use sqlx::PgConnection;
///
/// struct CountOrders;
///
/// #[async_trait::async_trait]
/// impl PgMessageHandler for CountOrders {
///     async fn handle(&mut self, tx: &mut PgConnection, _event: &BusEvent) -> Result<(), HandlerError> {
///         sqlx::query("UPDATE order_count SET n = n + 1").execute(tx).await?;
///         Ok(())
///     }
/// }
///
/// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let handler = Deduplicated::new(pool, "order-counter", CountOrders).await?;
/// let config = SubscriberConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f", "order-counter").bind(["order.#"]);
/// let subscriber = Subscriber::start(config, handler).await?;
/// # subscriber.stop().await; Ok(()) }
/// ```
pub struct Deduplicated<H> {
    pool: PgPool,
    consumer: String,
    claim: SqlStr,
    handler: H,
    duplicates: Arc<AtomicU64>,
}

impl<H> std::fmt::Debug for Deduplicated<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deduplicated").field("consumer", &self.consumer).finish_non_exhaustive()
    }
}

/// Checks a table name: an identifier, optionally schema-qualified (`schema.table`).
fn valid_table(table: &str) -> bool {
    let ident = |s: &str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && s.len() <= 63
    };
    match table.split_once('.') {
        Some((schema, name)) => ident(schema) && ident(name),
        None => ident(table),
    }
}

impl<H: PgMessageHandler> Deduplicated<H> {
    /// Deduplicates `handler`'s events as `consumer`, in [`DEFAULT_DEDUP_TABLE`]
    /// (created if absent).
    pub async fn new(pool: PgPool, consumer: impl Into<String>, handler: H) -> Result<Self, BusError> {
        Self::with_table(pool, DEFAULT_DEDUP_TABLE, consumer, handler).await
    }

    /// As [`new`](Self::new), in `table` (`name` or `schema.name`, created if absent).
    pub async fn with_table(
        pool: PgPool,
        table: &str,
        consumer: impl Into<String>,
        handler: H,
    ) -> Result<Self, BusError> {
        if !valid_table(table) {
            return Err(BusError::InvalidConfig {
                field: "table",
                reason: format!("{table:?} is not an identifier or schema.identifier"),
            });
        }
        let consumer = consumer.into();
        if consumer.is_empty() {
            return Err(BusError::InvalidConfig { field: "consumer", reason: "must not be empty".into() });
        }
        sqlx::query(AssertSqlSafe(CREATE.replace("{table}", table)))
            .execute(&pool)
            .await
            .map_err(|e| BusError::Store(e.to_string()))?;
        Ok(Deduplicated {
            pool,
            consumer,
            claim: AssertSqlSafe(Arc::<str>::from(CLAIM.replace("{table}", table))).into_sql_str(),
            handler,
            duplicates: Arc::default(),
        })
    }

    /// Counts the messages acked as duplicates, shared with the handler once it runs.
    pub fn duplicates(&self) -> Arc<AtomicU64> {
        self.duplicates.clone()
    }
}

#[async_trait]
impl<H: PgMessageHandler> MessageHandler for Deduplicated<H> {
    async fn handle(&mut self, event: &BusEvent) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(self.claim.clone())
            .bind(&self.consumer)
            .bind(event.event_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !claimed {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(()); // handled before: the transaction rolls back, the message is acked
        }
        catch_panic(self.handler.handle(&mut tx, event)).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::valid_table;

    #[test]
    fn table_names_are_identifiers() {
        assert!(valid_table("factum_bus_processed"));
        assert!(valid_table("bus.processed"));
        for bad in ["", "1x", "a;drop", "a.b.c", "a b", "\"x\""] {
            assert!(!valid_table(bad), "{bad}");
        }
    }
}
