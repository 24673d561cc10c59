// `#[derive(Process)]` misused. Each module is an independent case.
use factum::process::{Decision, Input, Process, Received};
use factum::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
pub enum Ev {
    Happened,
}

mod no_attribute {
    use super::*;

    #[derive(Default, Clone, Serialize, Deserialize, Process)]
    pub struct Flow {}
}

mod unknown_key_and_bad_list {
    use super::*;

    #[derive(Default, Clone, Serialize, Deserialize, Process)]
    #[process(name = "flow", event = Ev, event_types = [1], slices = 4)]
    pub struct Flow {}
}

mod no_inherent_handle {
    use super::*;

    #[derive(Default, Clone, Serialize, Deserialize, Process)]
    #[process(name = "flow", event = Ev)]
    pub struct Flow {}

    impl Flow {
        fn correlate(_: &Received<Ev>) -> Result<Option<String>, String> {
            Ok(None)
        }

        fn apply(&mut self, _: &Input<Ev>) {}
    }
}

mod handle_returns_another_type {
    use super::*;

    #[derive(Default, Clone, Serialize, Deserialize, Process)]
    #[process(name = "flow", event = Ev)]
    pub struct Flow {}

    impl Flow {
        fn correlate(_: &Received<Ev>) -> Result<Option<String>, String> {
            Ok(None)
        }

        fn handle(&self, _: &Input<Ev>) -> Option<Decision> {
            None
        }

        fn apply(&mut self, _: &Input<Ev>) {}
    }
}

fn main() {}
