//! A test kit for application teams' aggregate tests: given some events, when a
//! command runs, then expect events or a domain error. It runs the whole command path
//! (encoding, the actor, the store) on an [`InMemoryStore`].
//!
//! ```
//! # use factum::{Aggregate, Command, DomainEvent};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
//! # #[aggregate(command = Cmd, event = Ev, error = Error)]
//! # struct Account { balance: i64 }
//! # #[derive(Debug, Command)]
//! # #[command(id = id)]
//! # enum Cmd { Withdraw { id: String, amount: i64 } }
//! # #[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
//! # enum Ev { Deposited { amount: i64 }, Withdrawn { amount: i64 } }
//! # #[derive(Debug, PartialEq, thiserror::Error)]
//! # #[error("insufficient funds")]
//! # struct Error;
//! # impl Account {
//! #     fn handle(&self, c: &Cmd) -> Result<Vec<Ev>, Error> {
//! #         let Cmd::Withdraw { amount, .. } = c;
//! #         if *amount > self.balance { Err(Error) } else { Ok(vec![Ev::Withdrawn { amount: *amount }]) }
//! #     }
//! #     fn apply(&mut self, e: &Ev) {
//! #         match e { Ev::Deposited { amount } => self.balance += amount, Ev::Withdrawn { amount } => self.balance -= amount }
//! #     }
//! # }
//! use factum::testing::AggregateTest;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! AggregateTest::<Account>::given([Ev::Deposited { amount: 100 }])
//!     .when(Cmd::Withdraw { id: "acc-1".into(), amount: 30 })
//!     .await
//!     .then_expect_events(&[Ev::Withdrawn { amount: 30 }]);
//!
//! AggregateTest::<Account>::given([])
//!     .when(Cmd::Withdraw { id: "acc-1".into(), amount: 30 })
//!     .await
//!     .then_expect_error(|e| *e == Error);
//! # }
//! ```

mod process;

pub use process::{ProcessOutcome, ProcessTest};

use std::fmt::Debug;
use std::sync::Arc;

use crate::aggregate::Factum;
use crate::aggregate::{encode, Aggregate, Command, CommandError, Executed};
use crate::prelude::*;
use crate::store::{ExpectedVersion, Metadata, StreamId, Version};
use crate::InMemoryStore;

/// The events an aggregate starts from.
pub struct AggregateTest<A: Aggregate> {
    given: Vec<A::Event>,
}

/// What the command did, to check.
pub struct Outcome<A: Aggregate> {
    /// The command's result.
    pub result: Result<Executed<A>, CommandError<A::Error>>,
    /// The aggregate's state after the command (from the store).
    pub state: A,
    /// Its version after the command.
    pub version: Version,
}

impl<A: Aggregate> AggregateTest<A> {
    /// Starts from these events (stored before the command runs).
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        AggregateTest { given: events.into_iter().collect() }
    }

    /// Runs `command` on a fresh in-memory store holding the given events.
    ///
    /// # Panics
    ///
    /// If the given events cannot be encoded or stored, or the state cannot be read back:
    /// the test itself is wrong.
    pub async fn when(self, command: A::Command) -> Outcome<A>
    where
        A::Command: crate::aggregate::AggregateCommand<Aggregate = A>,
    {
        let store = Arc::new(InMemoryStore::new());
        let stream =
            StreamId::new(A::TYPE, command.aggregate_id()).expect("the command's aggregate id is valid");
        let id = stream.aggregate_id().to_owned();
        if !self.given.is_empty() {
            let batch = self
                .given
                .iter()
                .map(|e| encode(e, &Metadata::default()))
                .collect::<Result<Vec<_>, _>>()
                .expect("given events encode");
            store.append(&stream, ExpectedVersion::NoStream, batch).await.expect("given events are stored");
        }
        let factum = Factum::new(store);
        let result = factum.execute(command).await;
        let (state, version) = factum.load::<A>(&id).await.expect("state loads after the command");
        factum.shutdown();
        Outcome { result, state, version }
    }
}

impl<A: Aggregate> Outcome<A> {
    /// Asserts the command succeeded with exactly these events.
    ///
    /// # Panics
    ///
    /// If it failed or recorded other events.
    pub fn then_expect_events(&self, expected: &[A::Event]) -> &Self
    where
        A::Event: PartialEq + Debug,
    {
        match &self.result {
            Ok(done) => assert_eq!(done.events.as_slice(), expected, "the command recorded other events"),
            Err(e) => panic!("expected events {expected:?}, the command failed: {e}"),
        }
        self
    }

    /// Asserts the command was refused with a domain error that `check` accepts.
    ///
    /// # Panics
    ///
    /// If it succeeded, failed otherwise, or `check` returns false.
    pub fn then_expect_error(&self, check: impl FnOnce(&A::Error) -> bool) -> &Self
    where
        A::Event: Debug,
    {
        match &self.result {
            Err(CommandError::Domain(e)) => assert!(check(e), "unexpected domain error: {e}"),
            Err(e) => panic!("expected a domain error, got: {e}"),
            Ok(done) => panic!("expected a domain error, the command recorded {:?}", done.events),
        }
        self
    }

    /// Asserts something of the state after the command.
    ///
    /// # Panics
    ///
    /// If `check` returns false.
    pub fn then_state(&self, check: impl FnOnce(&A) -> bool) -> &Self
    where
        A: Debug,
    {
        assert!(check(&self.state), "unexpected state: {:?}", self.state);
        self
    }
}
