//! A struct command, `#[command(id = field)]` on a struct, and `handle`/`apply` named by path.

use factum::{Aggregate, Command, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Command)]
struct Rename {
    #[command(id)]
    user: String,
    name: String,
}

#[derive(Command)]
#[command(id = user)]
struct Touch {
    user: String,
}

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
enum UserEvent {
    Renamed { name: String },
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(command = Rename, event = UserEvent, error = Never, handle = decide, apply = evolve, snapshot_every = 0)]
struct User {
    name: String,
}

fn decide(_: &User, c: &Rename) -> Result<Vec<UserEvent>, Never> {
    Ok(vec![UserEvent::Renamed { name: c.name.clone() }])
}

fn evolve(u: &mut User, e: &UserEvent) {
    let UserEvent::Renamed { name } = e;
    u.name = name.clone();
}

#[test]
fn struct_command_and_custom_fns() {
    assert_eq!(User::TYPE, "User");
    assert_eq!(User::SNAPSHOT_EVERY, 0);
    assert_eq!(Touch { user: "u".into() }.aggregate_id(), "u");
    let r = Rename { user: "u-1".into(), name: "Ada".into() };
    assert_eq!(r.aggregate_id(), "u-1");
    let mut u = User::default();
    for e in Aggregate::handle(&u, &r).unwrap() {
        Aggregate::apply(&mut u, &e);
    }
    assert_eq!(u.name, "Ada");
}
