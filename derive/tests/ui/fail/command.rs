// Mistakes in `#[derive(Command)]`. Each type is an independent case, and each is used
// as a command afterwards: a derive that gave up would show as trait-bound errors there.
use factum::Command;

#[derive(Command)]
enum MissingId {
    Place {
        #[command(id)]
        order_id: String,
    },
    Cancel {
        order_id: String,
    },
}

#[derive(Command)]
#[command(id = order_id)]
enum NamedFieldMissing {
    Place { order_id: String },
    Cancel { id: String },
}

#[derive(Command)]
struct TwoIds {
    #[command(id)]
    order_id: String,
    #[command(id)]
    customer_id: String,
}

// An unknown key before, between and after `id`: each is reported, and `id` still
// counts, so there is no "no aggregate id" error.
#[derive(Command)]
#[command(route = "orders", id = order_id)]
enum UnknownKeyFirst {
    Place { order_id: String },
}

#[derive(Command)]
#[command(id = order_id, route = "orders")]
enum UnknownKeyLast {
    Place { order_id: String },
}

#[derive(Command)]
struct UnknownFieldKey {
    #[command(key, id, shard)]
    order_id: String,
}

#[derive(Command)]
#[command(id = order_id, id = customer_id)]
struct DuplicateKey {
    order_id: String,
    customer_id: String,
}

#[derive(Command)]
#[command(id = "order_id")]
struct IdAsString {
    order_id: String,
}

#[derive(Command)]
enum NoVariants {}

#[derive(Command)]
union NotAnEnum {
    id: u64,
}

fn route(_: &impl Command) {}

fn main() {
    route(&MissingId::Place { order_id: "o-1".into() });
    route(&NamedFieldMissing::Place { order_id: "o-1".into() });
    route(&TwoIds { order_id: "o-1".into(), customer_id: "c-1".into() });
    route(&UnknownKeyFirst::Place { order_id: "o-1".into() });
    route(&UnknownKeyLast::Place { order_id: "o-1".into() });
    route(&UnknownFieldKey { order_id: "o-1".into() });
    route(&DuplicateKey { order_id: "o-1".into(), customer_id: "c-1".into() });
    route(&IdAsString { order_id: "o-1".into() });
    let _ = |c: &NoVariants| route(c);
    route(&NotAnEnum { id: 1 });
}
