//! The whole surface of the three derives on one domain, with its generated methods called.

use factum::aggregate::AggregateCommand;
use factum::{Aggregate, Command, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "Order", command = OrderCommand, event = OrderEvent, error = OrderError, snapshot_every = 50)]
struct Order {
    lines: u32,
}

#[derive(Command)]
enum OrderCommand {
    Place {
        #[command(id)]
        order_id: String,
    },
    AddLine(#[command(id)] String, u32),
}

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
enum OrderEvent {
    #[event(name = "order.placed", topic = "order.lifecycle.placed")]
    Placed,
    #[event(version = 2, upcast = upcast_line)]
    LineAdded { qty: u32 },
}

fn upcast_line(_from: u32, payload: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(payload)
}

#[derive(Debug, thiserror::Error)]
#[error("order error")]
struct OrderError;

impl Order {
    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        Ok(match command {
            OrderCommand::Place { .. } => vec![OrderEvent::Placed],
            OrderCommand::AddLine(_, qty) => vec![OrderEvent::LineAdded { qty: *qty }],
        })
    }

    fn apply(&mut self, event: &OrderEvent) {
        if let OrderEvent::LineAdded { .. } = event {
            self.lines += 1;
        }
    }
}

fn routes<C: AggregateCommand>() {}

#[test]
fn full_domain() {
    routes::<OrderCommand>();
    assert_eq!(Order::TYPE, "Order");
    assert_eq!(Order::SNAPSHOT_EVERY, 50);
    assert_eq!(OrderCommand::AddLine("o-1".into(), 2).aggregate_id(), "o-1");
    let place = OrderCommand::Place { order_id: "o-2".into() };
    assert_eq!(place.aggregate_id(), "o-2");
    assert!(matches!(Aggregate::handle(&Order::default(), &place).unwrap()[..], [OrderEvent::Placed]));
    assert_eq!(OrderEvent::Placed.event_type(), "order.placed");
    assert_eq!(OrderEvent::Placed.topic(), Some("order.lifecycle.placed"));
    assert_eq!(OrderEvent::LineAdded { qty: 1 }.schema_version(), 2);
    let payload = OrderEvent::LineAdded { qty: 3 }.to_payload().unwrap();
    assert_eq!(payload, serde_json::json!({"qty": 3}));
    let back = OrderEvent::from_stored("LineAdded", 1, payload).unwrap();
    assert!(matches!(back, OrderEvent::LineAdded { qty: 3 }));
}
