// `handle` and `apply` whose signatures do not fit the aggregate's types. Each module is
// an independent case.
use factum::{Aggregate, Command, DomainEvent};
use serde::{Deserialize, Serialize};

/// The command, event and error of the `Order` declared beside it, named apart from the
/// other cases' so that the messages name them as a user's crate would.
macro_rules! order_types {
    ($command:ident, $event:ident, $error:ident) => {
        #[derive(Command)]
        pub struct $command {
            #[command(id)]
            pub id: String,
        }

        #[derive(Serialize, Deserialize, DomainEvent)]
        pub enum $event {
            Happened,
        }

        #[derive(Debug, thiserror::Error)]
        #[error("never")]
        pub struct $error;
    };
}

mod handle_returns_another_error {
    use super::*;
    order_types!(C1, E1, Er1);

    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C1, event = E1, error = Er1)]
    pub struct Order {}

    impl Order {
        fn handle(&self, _: &C1) -> Result<Vec<E1>, String> {
            Ok(vec![E1::Happened])
        }

        fn apply(&mut self, _: &E1) {}
    }
}

mod handle_returns_events_only {
    use super::*;
    order_types!(C2, E2, Er2);

    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C2, event = E2, error = Er2)]
    pub struct Order {}

    impl Order {
        fn handle(&self, _: &C2) -> Vec<E2> {
            vec![E2::Happened]
        }

        fn apply(&mut self, _: &E2) {}
    }
}

mod handle_path_returns_another_type {
    use super::*;
    order_types!(C3, E3, Er3);

    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C3, event = E3, error = Er3, handle = decide)]
    pub struct Order {}

    fn decide(_: &Order, _: &C3) -> Result<Option<E3>, Er3> {
        Ok(None)
    }

    impl Order {
        fn apply(&mut self, _: &E3) {}
    }
}

mod handle_takes_another_command {
    use super::*;
    order_types!(C4, E4, Er4);

    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C4, event = E4, error = Er4)]
    pub struct Order {}

    impl Order {
        fn handle(&self, _: &String) -> Result<Vec<E4>, Er4> {
            Ok(vec![E4::Happened])
        }

        fn apply(&mut self, _: &E4) {}
    }
}

mod apply_takes_the_event_by_value {
    use super::*;
    order_types!(C5, E5, Er5);

    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C5, event = E5, error = Er5)]
    pub struct Order {}

    impl Order {
        fn handle(&self, _: &C5) -> Result<Vec<E5>, Er5> {
            Ok(vec![E5::Happened])
        }

        fn apply(&mut self, _: E5) {}
    }
}

// No inherent `handle` or `apply`: the calls must not recurse into the trait methods.
mod without_handle_and_apply {
    use super::*;
    order_types!(C6, E6, Er6);

    #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
    #[aggregate(command = C6, event = E6, error = Er6)]
    pub struct Order {}
}

fn main() {}
