use factum::Aggregate;

#[derive(Aggregate)]
enum Order {
    Open,
    Closed,
}

fn main() {}
