use factum::DomainEvent;

#[derive(serde::Serialize, serde::Deserialize, DomainEvent)]
enum E {
    #[event(name = "order.placed")]
    Placed,
    #[event(name = "order.placed")]
    PlacedAgain,
}

fn main() {}
