use factum::Aggregate;

#[derive(Default, Clone, serde::Serialize, serde::Deserialize, Aggregate)]
#[aggregate(command = C, event = E, error = Er, snapshot_every = "often")]
struct Order {}

fn main() {}
