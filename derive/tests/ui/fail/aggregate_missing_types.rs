use factum::Aggregate;

#[derive(Default, Clone, serde::Serialize, serde::Deserialize, Aggregate)]
#[aggregate(name = "Order")]
struct Order {}

fn main() {}
