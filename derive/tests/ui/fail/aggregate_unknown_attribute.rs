use factum::Aggregate;

#[derive(Default, Clone, serde::Serialize, serde::Deserialize, Aggregate)]
#[aggregate(command = C, event = E, error = Er, snapshots = 10)]
struct Order {}

fn main() {}
