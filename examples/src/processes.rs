//! Two workflows across the customer and the order, as process managers:
//!
//! - [`CustomerOrders`]: deactivating a customer cancels each of their orders that has
//!   not shipped, with the reason `customer_deactivated`; an order placed after the
//!   deactivation (the check and the deactivation raced) is cancelled too. An order that
//!   shipped or was cancelled meanwhile refuses the command, and the refusal is recorded.
//! - [`ShipDeadline`]: a confirmed order not shipped within the deadline
//!   ([`set_ship_deadline`]; the service's `FACTUM_EXAMPLE_SHIP_DEADLINE`, default a day)
//!   is cancelled with the reason `not_shipped_in_time`.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use factum::process::{Decision, Input, Process, Received};
use factum::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::order::{OrderCommand, OrderEvent};

/// The reason [`CustomerOrders`] gives its cancellations.
pub const CUSTOMER_DEACTIVATED: &str = "customer_deactivated";
/// The reason [`ShipDeadline`] gives its cancellations.
pub const NOT_SHIPPED_IN_TIME: &str = "not_shipped_in_time";
/// The ship deadline unless set: a day.
pub const DEFAULT_SHIP_DEADLINE: Duration = Duration::from_secs(86_400);

static SHIP_DEADLINE: OnceLock<Duration> = OnceLock::new();

/// Sets the ship deadline, once, at start-up (later calls change nothing); `false` if it
/// was already set to another value.
pub fn set_ship_deadline(deadline: Duration) -> bool {
    *SHIP_DEADLINE.get_or_init(|| deadline) == deadline
}

/// How long a confirmed order may wait to ship.
pub fn ship_deadline() -> Duration {
    *SHIP_DEADLINE.get_or_init(|| DEFAULT_SHIP_DEADLINE)
}

/// The events [`CustomerOrders`] listens to, from two aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum CustomerOrdersEvent {
    /// An order was placed (its stream is the order's).
    #[event(name = "OrderPlaced")]
    OrderPlaced {
        /// The ordering customer: the correlation.
        customer_id: String,
    },
    /// The customer was deactivated (its stream is the customer's).
    #[event(name = "CustomerDeactivated")]
    Deactivated,
}

/// One customer's orders, and whether the customer was deactivated. Correlated by
/// customer id; it never ends, since a deactivated customer's order placed late is still
/// to be cancelled.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Process)]
#[process(name = "customer_orders", event = CustomerOrdersEvent, event_types = ["OrderPlaced", "CustomerDeactivated"])]
pub struct CustomerOrders {
    /// The orders placed and not yet sent a cancellation.
    pub open: BTreeSet<String>,
    /// Whether the customer was deactivated.
    pub deactivated: bool,
    /// Cancellations refused (the order had shipped or was already cancelled).
    pub refused: u64,
}

impl CustomerOrders {
    /// An order's customer, or the deactivated customer.
    pub fn correlate(event: &Received<CustomerOrdersEvent>) -> Result<Option<String>, String> {
        let id = match &event.event {
            CustomerOrdersEvent::OrderPlaced { customer_id } => customer_id.clone(),
            CustomerOrdersEvent::Deactivated => event.stream.aggregate_id().to_owned(),
        };
        crate::validate::check_id(&id).map_err(|e| format!("customer id {id:?}: {e}"))?;
        Ok(Some(id))
    }

    /// Cancels the open orders on deactivation, and an order placed after it.
    pub fn handle(&self, input: &Input<CustomerOrdersEvent>) -> Decision {
        match input {
            Input::Event(e) => match &e.event {
                CustomerOrdersEvent::OrderPlaced { .. } if self.deactivated => {
                    Decision::new().send(cancel(e.stream.aggregate_id(), CUSTOMER_DEACTIVATED))
                }
                CustomerOrdersEvent::OrderPlaced { .. } => Decision::new(),
                CustomerOrdersEvent::Deactivated if self.deactivated => Decision::ignore(),
                CustomerOrdersEvent::Deactivated => self
                    .open
                    .iter()
                    .fold(Decision::new(), |d, order| d.send(cancel(order, CUSTOMER_DEACTIVATED))),
            },
            // The order shipped or was cancelled in between: nothing to undo.
            Input::Refused(_) => Decision::new(),
            Input::Timer(_) => Decision::ignore(),
        }
    }

    /// Tracks the open orders and the deactivation.
    pub fn apply(&mut self, input: &Input<CustomerOrdersEvent>) {
        match input {
            Input::Event(e) => match &e.event {
                CustomerOrdersEvent::OrderPlaced { .. } if !self.deactivated => {
                    self.open.insert(e.stream.aggregate_id().to_owned());
                }
                CustomerOrdersEvent::OrderPlaced { .. } => {}
                CustomerOrdersEvent::Deactivated => {
                    self.deactivated = true;
                    self.open.clear();
                }
            },
            Input::Refused(_) => self.refused += 1,
            Input::Timer(_) => {}
        }
    }
}

/// One confirmed order's deadline to ship. Correlated by order id; it ends when the
/// order ships, is cancelled, or is cancelled by it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Process)]
#[process(
    name = "ship_deadline",
    event = OrderEvent,
    aggregate_types = ["Order"],
    event_types = ["OrderConfirmed", "OrderShipped", "OrderCancelled"]
)]
pub struct ShipDeadline {
    /// The order, once confirmed.
    pub order_id: Option<String>,
    /// Whether the deadline passed and the cancellation was sent.
    pub overdue: bool,
    /// Whether the cancellation was refused (the order shipped just in time).
    pub refused: bool,
}

/// The timer's name.
const SHIP_BY: &str = "ship_by";

impl ShipDeadline {
    /// The order.
    pub fn correlate(event: &Received<OrderEvent>) -> Result<Option<String>, String> {
        Ok(Some(event.stream.aggregate_id().to_owned()))
    }

    /// Sets the timer on confirmation, cancels the order when it fires, ends when the
    /// order ships or is cancelled.
    pub fn handle(&self, input: &Input<OrderEvent>) -> Decision {
        match input {
            Input::Event(e) => match &e.event {
                OrderEvent::Confirmed { .. } => Decision::new().set_timer_after(SHIP_BY, ship_deadline()),
                // An order never confirmed has no deadline: no instance to end.
                OrderEvent::Shipped | OrderEvent::Cancelled { .. } if self.order_id.is_some() => {
                    Decision::new().end()
                }
                _ => Decision::ignore(),
            },
            Input::Timer(t) if t.name == SHIP_BY => match &self.order_id {
                Some(order) => Decision::new().send(cancel(order, NOT_SHIPPED_IN_TIME)).end(),
                None => Decision::new().end(),
            },
            Input::Timer(_) => Decision::ignore(),
            Input::Refused(_) => Decision::new(),
        }
    }

    /// Keeps the order's id, and whether it went overdue or the cancellation was refused.
    pub fn apply(&mut self, input: &Input<OrderEvent>) {
        match input {
            Input::Event(e) => {
                if let OrderEvent::Confirmed { .. } = e.event {
                    self.order_id = Some(e.stream.aggregate_id().to_owned());
                }
            }
            Input::Timer(_) => self.overdue = true,
            Input::Refused(_) => self.refused = true,
        }
    }
}

/// The order's cancellation, for a process to send.
fn cancel(order_id: &str, reason: &str) -> OrderCommand {
    OrderCommand::Cancel { order_id: order_id.to_owned(), reason: reason.to_owned() }
}
