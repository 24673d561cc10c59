//! What the HTTP API serves from the read models: an order, a customer, audit entries.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::order::Line;

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
