// Mistakes in `#[derive(DomainEvent)]`. Each enum is an independent case, and each is
// used as an event afterwards: a derive that gave up would show as trait-bound errors.
use factum::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum BadTopic {
    #[event(topic = "order..placed")]
    Placed,
}

#[derive(Serialize, Deserialize, DomainEvent)]
enum DuplicateName {
    #[event(name = "order.placed")]
    Placed,
    #[event(name = "order.placed")]
    PlacedAgain,
}

// An unknown key first, in the middle and last: each is reported, and the keys around
// it still count (the version is 2, so `upcast` is allowed).
#[derive(Serialize, Deserialize, DomainEvent)]
enum UnknownKeys {
    #[event(nmae = "placed", version = 2, upcast = up)]
    First,
    #[event(version = 2, nmae = "placed", upcast = up)]
    Middle,
    #[event(version = 2, upcast = up, nmae = "placed")]
    Last,
    #[event(version = 2, upcast = up, deprecated, since(2))]
    Flags,
}

fn up(_: u32, v: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(v)
}

#[derive(Serialize, Deserialize, DomainEvent)]
enum UpcastWithoutVersion {
    #[event(upcast = up)]
    Placed,
}

#[derive(Serialize, Deserialize, DomainEvent)]
enum BadValues {
    #[event(version = 0, name = "", topic = "a b")]
    Placed,
    #[event(version = "2", name = placed)]
    Shipped,
}

#[derive(Serialize, Deserialize, DomainEvent)]
enum DuplicateKey {
    #[event(version = 2, version = 3)]
    Placed,
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(topic = "orders")]
enum OnTheEnum {
    Placed,
}

// The payload is stored without the variant's name, and decoded by the variant's Rust
// name: serde must not rename variants or change the enum's representation.
#[derive(Serialize, Deserialize, DomainEvent)]
enum SerdeRename {
    #[serde(rename = "order_placed")]
    Placed,
    #[serde(alias = "shipped", rename(deserialize = "order_shipped"))]
    Shipped,
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[serde(rename_all = "snake_case")]
enum SerdeRenameAll {
    Placed,
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[serde(tag = "type", content = "data")]
enum SerdeAdjacentlyTagged {
    Placed { id: String },
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[serde(untagged)]
enum SerdeUntagged {
    Placed { id: String },
}

#[derive(DomainEvent)]
struct OnAStruct {
    id: String,
}

fn store(_: &impl DomainEvent) {}

fn main() {
    store(&BadTopic::Placed);
    store(&DuplicateName::Placed);
    store(&UnknownKeys::First);
    store(&UpcastWithoutVersion::Placed);
    store(&BadValues::Placed);
    store(&DuplicateKey::Placed);
    store(&OnTheEnum::Placed);
    store(&SerdeRename::Placed);
    store(&SerdeRenameAll::Placed);
    store(&SerdeAdjacentlyTagged::Placed { id: "o-1".into() });
    store(&SerdeUntagged::Placed { id: "o-1".into() });
    store(&OnAStruct { id: "o-1".into() });
}
