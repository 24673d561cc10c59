use factum::DomainEvent;

fn up(_: u32, v: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(v)
}

#[derive(serde::Serialize, serde::Deserialize, DomainEvent)]
enum E {
    #[event(upcast = up)]
    Placed,
}

fn main() {}
