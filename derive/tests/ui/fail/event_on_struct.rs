use factum::DomainEvent;

#[derive(DomainEvent)]
struct Placed {
    id: String,
}

fn main() {}
