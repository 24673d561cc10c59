//! Attributes that sit beside the derives' own and must keep working: serde attributes
//! that leave the stored form alone, keys split over several `#[aggregate]`s, and a
//! `handle = path` beside an inherent `apply`.

use factum::{Aggregate, Command, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(command = Open, event = AccountEvent)]
#[aggregate(error = Refused, handle = decide, snapshot_version = 3)]
struct Account {
    #[serde(rename = "open")]
    is_open: bool,
}

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { .. } => self.is_open = true,
        }
    }
}

fn decide(account: &Account, command: &Open) -> Result<Vec<AccountEvent>, Refused> {
    if account.is_open {
        return Err(Refused);
    }
    Ok(vec![AccountEvent::Opened { owner: command.owner.clone() }])
}

#[derive(Debug, Command)]
struct Open {
    #[command(id)]
    account: String,
    owner: String,
}

// A container rename, a variant alias and a field rename leave the payload's shape and
// the variant names that decoding goes through alone.
#[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
#[serde(rename = "AccountEvents")]
enum AccountEvent {
    #[event(name = "account.opened", version = 2, upcast = from_v1)]
    #[serde(alias = "opened")]
    Opened {
        #[serde(rename = "holder")]
        owner: String,
    },
}

fn from_v1(_: u32, payload: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(serde_json::json!({ "holder": payload["name"] }))
}

#[derive(Debug, thiserror::Error)]
#[error("the account is already open")]
struct Refused;

#[test]
fn allowed_attributes() {
    assert_eq!(Account::TYPE, "Account");
    assert_eq!(Account::SNAPSHOT_VERSION, 3);
    let command = Open { account: "a-1".into(), owner: "Ada".into() };
    assert_eq!(command.aggregate_id(), "a-1");
    let mut account = Account::default();
    let events = Aggregate::handle(&account, &command).unwrap();
    assert_eq!(events, vec![AccountEvent::Opened { owner: "Ada".into() }]);
    for e in &events {
        Aggregate::apply(&mut account, e);
    }
    assert!(Aggregate::handle(&account, &command).is_err());

    let payload = events[0].to_payload().unwrap();
    assert_eq!(payload, serde_json::json!({ "holder": "Ada" }));
    let back = AccountEvent::from_json("account.opened", 2, r#"{"holder":"Ada"}"#).unwrap();
    assert_eq!(back, events[0]);
    let upcast =
        AccountEvent::from_stored("account.opened", 1, serde_json::json!({ "name": "Ada" })).unwrap();
    assert_eq!(upcast, events[0]);
}
