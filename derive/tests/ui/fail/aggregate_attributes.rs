// Mistakes in `#[aggregate(...)]`. Each module is an independent case; each declares a
// full domain and uses it, so that a derive that gave up would show as trait-bound
// errors at the uses (it must not: only the real mistakes are reported).
use factum::{Aggregate, Command, DomainEvent, Factum};
use serde::{Deserialize, Serialize};

/// The command, event and error of the `Order` declared beside it, its `handle` and
/// `apply`, and code that needs `Order: Aggregate` and `C: AggregateCommand`.
macro_rules! order_domain {
    () => {
        #[derive(Command)]
        pub struct C {
            #[command(id)]
            pub id: String,
        }

        #[derive(Serialize, Deserialize, DomainEvent)]
        pub enum E {
            Happened,
        }

        #[derive(Debug, thiserror::Error)]
        #[error("never")]
        pub struct Er;

        impl Order {
            fn handle(&self, _: &C) -> Result<Vec<E>, Er> {
                Ok(vec![E::Happened])
            }

            fn apply(&mut self, _: &E) {}
        }

        pub async fn uses(factum: &Factum) {
            let _ = factum.execute(C { id: "o-1".into() }).await;
            let _ = factum.load::<Order>("o-1").await;
        }
    };
}

mod unknown_key_first {
    use super::*;
    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(snapshots = 10, command = C, event = E, error = Er)]
    pub struct Order {}
    order_domain!();
}

mod unknown_key_in_the_middle {
    use super::*;
    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C, event = E, snapshots = 10, error = Er)]
    pub struct Order {}
    order_domain!();
}

mod unknown_key_last {
    use super::*;
    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C, event = E, error = Er, snapshots = 10)]
    pub struct Order {}
    order_domain!();
}

// Every mistake of one attribute is reported: unknown keys with a value, as a flag and
// as a list, and a value of the wrong kind.
mod several_mistakes {
    use super::*;
    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(commands = C, command = C, snapshot_every = "often", event = E, no_snapshots, error = Er, upcast(v1))]
    pub struct Order {}
    order_domain!();
}

// Keys may be split over several attributes; a mistake in one does not hide the others.
mod split_attributes {
    use super::*;
    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C, nmae = "Order")]
    #[aggregate(event = E, error = Er, snapshot_version = 0)]
    pub struct Order {}
    order_domain!();
}

mod duplicate_key {
    use super::*;
    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C, event = E, error = Er, name = "Order", name = "Orders")]
    pub struct Order {}
    order_domain!();
}

mod bad_values {
    use super::*;
    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(name = "", command = C, event = E, error = Er, snapshot_every = -1, snapshot_version = 0)]
    pub struct Order {}
    order_domain!();
}

// A type that does not exist is one error, where it is named.
mod unknown_type {
    use super::*;

    #[derive(Command)]
    pub struct OrderCmd {
        #[command(id)]
        pub id: String,
    }

    #[derive(Serialize, Deserialize, DomainEvent)]
    pub enum E {
        Happened,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    pub struct Er;

    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = OrderCommand, event = E, error = Er)]
    pub struct Order {}

    impl Order {
        fn handle(&self, _: &OrderCmd) -> Result<Vec<E>, Er> {
            Ok(vec![E::Happened])
        }

        fn apply(&mut self, _: &E) {}
    }
}

mod missing_types {
    use super::*;
    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(name = "Order")]
    pub struct Order {}

    pub async fn uses(factum: &Factum) {
        let _ = factum.load::<Order>("o-1").await;
    }
}

mod no_attribute {
    use super::*;
    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    pub struct Order {}

    pub async fn uses(factum: &Factum) {
        let _ = factum.load::<Order>("o-1").await;
    }
}

mod on_an_enum {
    use super::*;
    #[derive(Aggregate)]
    pub enum Order {
        Open,
        Closed,
    }
}

mod generic {
    use super::*;
    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C, event = E, error = Er)]
    pub struct Order<T> {
        pub t: T,
    }
}

fn main() {}
