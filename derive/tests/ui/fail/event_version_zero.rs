use factum::DomainEvent;

#[derive(serde::Serialize, serde::Deserialize, DomainEvent)]
enum E {
    #[event(version = 0)]
    Placed,
}

fn main() {}
