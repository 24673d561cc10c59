//! The order aggregate: place, add and remove items, confirm, ship, cancel.

use factum::{Aggregate, Command, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::validate::{check_id, check_text, MAX_QUANTITY, MAX_UNIT_PRICE};

/// Where an order is in its life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Not placed yet (no events).
    #[default]
    New,
    /// Placed; items can be added and removed.
    Open,
    /// Confirmed; no more changes, can be shipped.
    Confirmed,
    /// Shipped; final.
    Shipped,
    /// Cancelled; final.
    Cancelled,
}

impl OrderStatus {
    /// The status as stored in the read models.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::Open => "open",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Line {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
    /// The price of one, in cents.
    pub unit_price: i64,
}

/// An order's state, folded from its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "Order", command = OrderCommand, event = OrderEvent, error = OrderError, snapshot_every = 50)]
pub struct Order {
    /// The ordering customer.
    pub customer_id: String,
    /// Where the order is.
    pub status: OrderStatus,
    /// Its lines, in the order they were first added.
    pub lines: Vec<Line>,
}

impl Order {
    /// The sum of the lines, in cents.
    pub fn total(&self) -> i64 {
        self.lines.iter().map(|l| l.quantity * l.unit_price).sum()
    }
}

/// What can be asked of an order.
#[derive(Debug, Clone, Serialize, Deserialize, Command)]
#[command(id = order_id)]
pub enum OrderCommand {
    /// Places a new order. The customer's standing is checked by
    /// [`crate::app::App::order`] before this command runs.
    Place {
        /// The order's id.
        order_id: String,
        /// The ordering customer.
        customer_id: String,
    },
    /// Adds `quantity` of `sku`; adding a SKU again adds to its line.
    AddItem {
        /// The order's id.
        order_id: String,
        /// The product.
        sku: String,
        /// How many, at least 1.
        quantity: i64,
        /// The price of one, in cents, at least 1.
        unit_price: i64,
    },
    /// Removes the line of `sku`.
    RemoveItem {
        /// The order's id.
        order_id: String,
        /// The product.
        sku: String,
    },
    /// Confirms the order: its lines are final.
    Confirm {
        /// The order's id.
        order_id: String,
    },
    /// Ships a confirmed order.
    Ship {
        /// The order's id.
        order_id: String,
    },
    /// Cancels an order that has not shipped.
    Cancel {
        /// The order's id.
        order_id: String,
        /// Why.
        reason: String,
    },
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum OrderEvent {
    /// The order was placed.
    #[event(name = "OrderPlaced", topic = "order.lifecycle.placed")]
    Placed {
        /// The ordering customer.
        customer_id: String,
    },
    /// Items were added.
    #[event(name = "OrderItemAdded", topic = "order.items.added")]
    ItemAdded {
        /// The product.
        sku: String,
        /// How many were added.
        quantity: i64,
        /// The price of one, in cents.
        unit_price: i64,
    },
    /// A line was removed.
    #[event(name = "OrderItemRemoved", topic = "order.items.removed")]
    ItemRemoved {
        /// The product.
        sku: String,
        /// The line's quantity when it was removed.
        quantity: i64,
        /// The line's unit price, in cents.
        unit_price: i64,
    },
    /// The order was confirmed.
    #[event(name = "OrderConfirmed", topic = "order.lifecycle.confirmed")]
    Confirmed {
        /// The total at confirmation, in cents.
        total: i64,
    },
    /// The order was shipped.
    #[event(name = "OrderShipped", topic = "order.lifecycle.shipped")]
    Shipped,
    /// The order was cancelled.
    #[event(name = "OrderCancelled", topic = "order.lifecycle.cancelled")]
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The id is taken.
    #[error("order {0} already exists")]
    AlreadyPlaced(String),
    /// No order has this id.
    #[error("order {0} does not exist")]
    NotFound(String),
    /// The customer id is not a valid id.
    #[error("invalid customer id: {0}")]
    InvalidCustomerId(&'static str),
    /// The SKU is not a valid id.
    #[error("invalid sku: {0}")]
    InvalidSku(&'static str),
    /// Quantities are 1 to 10,000.
    #[error("quantity must be between 1 and 10000, got {0}")]
    InvalidQuantity(i64),
    /// Prices are 1 to 100,000,000 cents.
    #[error("unit price must be between 1 and 100000000 cents, got {0}")]
    InvalidPrice(i64),
    /// The SKU is on the order at another price.
    #[error("{sku} is already on the order at {existing} cents, not {asked}")]
    PriceMismatch {
        /// The product.
        sku: String,
        /// The price on the order.
        existing: i64,
        /// The price asked.
        asked: i64,
    },
    /// A line would exceed the quantity limit.
    #[error("{sku} would exceed 10000 items on one line")]
    TooMany {
        /// The product.
        sku: String,
    },
    /// The SKU is not on the order.
    #[error("{0} is not on the order")]
    UnknownItem(String),
    /// Lines cannot change after confirmation.
    #[error("the order is {0} and can no longer be changed")]
    Locked(&'static str),
    /// An order without lines cannot be confirmed.
    #[error("an empty order cannot be confirmed")]
    Empty,
    /// Only confirmed orders ship.
    #[error("the order is {0}; only confirmed orders can be shipped")]
    NotConfirmed(&'static str),
    /// Cancelled and shipped orders take no more commands.
    #[error("the order is {0}; nothing more can happen to it")]
    Closed(&'static str),
    /// A cancellation needs a reason.
    #[error("invalid reason: {0}")]
    InvalidReason(&'static str),
}

impl Order {
    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderCommand as C;
        use OrderStatus as S;
        let status = self.status.as_str();
        match command {
            C::Place { order_id, customer_id } => {
                if self.status != S::New {
                    return Err(OrderError::AlreadyPlaced(order_id.clone()));
                }
                check_id(customer_id).map_err(OrderError::InvalidCustomerId)?;
                return Ok(vec![OrderEvent::Placed { customer_id: customer_id.clone() }]);
            }
            C::AddItem { order_id, .. }
            | C::RemoveItem { order_id, .. }
            | C::Confirm { order_id }
            | C::Ship { order_id }
            | C::Cancel { order_id, .. }
                if self.status == S::New =>
            {
                return Err(OrderError::NotFound(order_id.clone()));
            }
            _ if matches!(self.status, S::Shipped | S::Cancelled) => return Err(OrderError::Closed(status)),
            _ => {}
        }
        match command {
            C::Place { order_id, .. } => Err(OrderError::AlreadyPlaced(order_id.clone())),
            C::AddItem { .. } | C::RemoveItem { .. } if self.status != S::Open => {
                Err(OrderError::Locked(status))
            }
            C::AddItem { sku, quantity, unit_price, .. } => {
                check_id(sku).map_err(OrderError::InvalidSku)?;
                if !(1..=MAX_QUANTITY).contains(quantity) {
                    return Err(OrderError::InvalidQuantity(*quantity));
                }
                if !(1..=MAX_UNIT_PRICE).contains(unit_price) {
                    return Err(OrderError::InvalidPrice(*unit_price));
                }
                if let Some(line) = self.lines.iter().find(|l| l.sku == *sku) {
                    if line.unit_price != *unit_price {
                        return Err(OrderError::PriceMismatch {
                            sku: sku.clone(),
                            existing: line.unit_price,
                            asked: *unit_price,
                        });
                    }
                    if line.quantity + quantity > MAX_QUANTITY {
                        return Err(OrderError::TooMany { sku: sku.clone() });
                    }
                }
                Ok(vec![OrderEvent::ItemAdded {
                    sku: sku.clone(),
                    quantity: *quantity,
                    unit_price: *unit_price,
                }])
            }
            C::RemoveItem { sku, .. } => match self.lines.iter().find(|l| l.sku == *sku) {
                None => Err(OrderError::UnknownItem(sku.clone())),
                Some(line) => Ok(vec![OrderEvent::ItemRemoved {
                    sku: sku.clone(),
                    quantity: line.quantity,
                    unit_price: line.unit_price,
                }]),
            },
            C::Confirm { .. } => match self.status {
                S::Confirmed => Ok(vec![]), // confirming twice changes nothing
                _ if self.lines.is_empty() => Err(OrderError::Empty),
                _ => Ok(vec![OrderEvent::Confirmed { total: self.total() }]),
            },
            C::Ship { .. } if self.status != S::Confirmed => Err(OrderError::NotConfirmed(status)),
            C::Ship { .. } => Ok(vec![OrderEvent::Shipped]),
            C::Cancel { reason, .. } => {
                check_text(reason).map_err(OrderError::InvalidReason)?;
                Ok(vec![OrderEvent::Cancelled { reason: reason.clone() }])
            }
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { customer_id } => {
                self.customer_id = customer_id.clone();
                self.status = OrderStatus::Open;
            }
            OrderEvent::ItemAdded { sku, quantity, unit_price } => {
                match self.lines.iter_mut().find(|l| l.sku == *sku) {
                    Some(line) => line.quantity += quantity,
                    None => self.lines.push(Line {
                        sku: sku.clone(),
                        quantity: *quantity,
                        unit_price: *unit_price,
                    }),
                }
            }
            OrderEvent::ItemRemoved { sku, .. } => self.lines.retain(|l| l.sku != *sku),
            OrderEvent::Confirmed { .. } => self.status = OrderStatus::Confirmed,
            OrderEvent::Shipped => self.status = OrderStatus::Shipped,
            OrderEvent::Cancelled { .. } => self.status = OrderStatus::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use factum::testing::AggregateTest;

    fn placed() -> OrderEvent {
        OrderEvent::Placed { customer_id: "c-1".into() }
    }
    fn added(sku: &str, quantity: i64, unit_price: i64) -> OrderEvent {
        OrderEvent::ItemAdded { sku: sku.into(), quantity, unit_price }
    }
    fn add(sku: &str, quantity: i64, unit_price: i64) -> OrderCommand {
        OrderCommand::AddItem { order_id: "o-1".into(), sku: sku.into(), quantity, unit_price }
    }
    fn id() -> String {
        "o-1".into()
    }

    #[tokio::test]
    async fn lines_merge_and_total() {
        AggregateTest::<Order>::given([placed(), added("A", 2, 150)])
            .when(add("A", 3, 150))
            .await
            .then_state(|o| o.lines.len() == 1 && o.total() == 750);
        AggregateTest::<Order>::given([placed(), added("A", 2, 150)])
            .when(add("A", 1, 99))
            .await
            .then_expect_error(|e| matches!(e, OrderError::PriceMismatch { .. }));
    }

    #[tokio::test]
    async fn every_rule_refuses() {
        type Case = (Vec<OrderEvent>, OrderCommand, fn(&OrderError) -> bool);
        let cases: Vec<Case> = vec![
            (vec![], add("A", 1, 1), |e| matches!(e, OrderError::NotFound(_))),
            (vec![placed()], OrderCommand::Place { order_id: id(), customer_id: "c".into() }, |e| {
                matches!(e, OrderError::AlreadyPlaced(_))
            }),
            (vec![placed()], add("A", 0, 1), |e| matches!(e, OrderError::InvalidQuantity(0))),
            (vec![placed()], add("A", 1, -5), |e| matches!(e, OrderError::InvalidPrice(-5))),
            (vec![placed()], add("A/B", 1, 1), |e| matches!(e, OrderError::InvalidSku(_))),
            (vec![placed()], OrderCommand::Confirm { order_id: id() }, |e| matches!(e, OrderError::Empty)),
            (vec![placed(), added("A", 1, 1)], OrderCommand::Ship { order_id: id() }, |e| {
                matches!(e, OrderError::NotConfirmed("open"))
            }),
            (vec![placed(), added("A", 1, 1), OrderEvent::Confirmed { total: 1 }], add("B", 1, 1), |e| {
                matches!(e, OrderError::Locked("confirmed"))
            }),
            (
                vec![placed(), OrderEvent::Cancelled { reason: "x".into() }],
                OrderCommand::Cancel { order_id: id(), reason: "again".into() },
                |e| matches!(e, OrderError::Closed("cancelled")),
            ),
            (vec![placed()], OrderCommand::RemoveItem { order_id: id(), sku: "Z".into() }, |e| {
                matches!(e, OrderError::UnknownItem(_))
            }),
        ];
        for (given, when, check) in cases {
            AggregateTest::<Order>::given(given).when(when).await.then_expect_error(check);
        }
    }
}
