use factum::DomainEvent;

#[derive(serde::Serialize, serde::Deserialize, DomainEvent)]
enum E {
    #[event(nmae = "placed")]
    Placed,
}

fn main() {}
