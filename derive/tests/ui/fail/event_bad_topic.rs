use factum::DomainEvent;

#[derive(serde::Serialize, serde::Deserialize, DomainEvent)]
enum E {
    #[event(topic = "order..placed")]
    Placed,
}

fn main() {}
