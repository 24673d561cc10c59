//! Process managers on PostgreSQL, under their failure policies: an event a process cannot
//! take a correlation from is recorded with the reason and skipped, without a panic; a
//! command of a type the manager was not told about stops the process, and is sent, once,
//! when a manager that knows it resumes.

use std::sync::Arc;
use std::time::Duration;

use factum::process::{Decision, Input, Process, ProcessInstance, ProcessManager, Received};
use factum::projection::{FailurePolicy, ProjectionState};
use factum::{Aggregate, Command, DomainEvent, EventStore, Factum, Supervisor, SupervisorConfig};
use factum_tests::{eventually, TestDb};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(command = AccountCommand, event = AccountEvent, error = std::convert::Infallible)]
struct Account;

#[derive(Debug, Clone, Serialize, Deserialize, Command)]
enum AccountCommand {
    Open {
        #[command(id)]
        account: String,
        card: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum AccountEvent {
    Opened { card: Option<String> },
}

impl Account {
    fn handle(
        &self,
        AccountCommand::Open { card, .. }: &AccountCommand,
    ) -> Result<Vec<AccountEvent>, std::convert::Infallible> {
        Ok(vec![AccountEvent::Opened { card: card.clone() }])
    }
    fn apply(&mut self, _: &AccountEvent) {}
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(command = CardCommand, event = CardEvent, error = std::convert::Infallible)]
struct Card {
    activations: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Command)]
enum CardCommand {
    Activate {
        #[command(id)]
        card: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum CardEvent {
    Activated,
}

impl Card {
    fn handle(&self, _: &CardCommand) -> Result<Vec<CardEvent>, std::convert::Infallible> {
        Ok(vec![CardEvent::Activated])
    }
    fn apply(&mut self, _: &CardEvent) {
        self.activations += 1;
    }
}

/// When an account opens with a card, activate the card. The card is the correlation:
/// an account opened without one is an event it cannot take a correlation from.
#[derive(Debug, Default, Clone, Serialize, Deserialize, factum::process::Process)]
#[process(name = "activate_cards", event = AccountEvent, aggregate_types = ["Account"])]
struct ActivateCards;

impl ActivateCards {
    fn correlate(event: &Received<AccountEvent>) -> Result<Option<String>, String> {
        let AccountEvent::Opened { card } = &event.event;
        card.clone().map(Some).ok_or_else(|| "the account was opened without a card".to_owned())
    }
    fn handle(&self, input: &Input<AccountEvent>) -> Decision {
        match input {
            Input::Event(e) => {
                let AccountEvent::Opened { card } = &e.event;
                Decision::new().send(CardCommand::Activate { card: card.clone().unwrap_or_default() }).end()
            }
            _ => Decision::ignore(),
        }
    }
    fn apply(&mut self, _: &Input<AccountEvent>) {}
}

fn open(account: &str, card: Option<&str>) -> AccountCommand {
    AccountCommand::Open { account: account.into(), card: card.map(Into::into) }
}

async fn start(
    store: &Arc<dyn EventStore>,
    factum: &Factum,
    registered: bool,
    policy: FailurePolicy,
) -> Supervisor {
    let mut manager = ProcessManager::<ActivateCards>::new(factum).unwrap().on_failure(policy);
    if registered {
        manager = manager.sends::<CardCommand>();
    }
    let config = SupervisorConfig::default().projection(manager.into_projection());
    Supervisor::start(store.clone(), config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_a_correlation_is_recorded_and_skipped() {
    let db = TestDb::new().await;
    let store: Arc<dyn EventStore> = Arc::new(db.store().await);
    let factum = Factum::new(store.clone());
    let policy =
        FailurePolicy::retry_then_skip(2).backoff(Duration::from_millis(10), Duration::from_millis(20));
    let supervisor = start(&store, &factum, true, policy).await;
    factum.execute(open("a-1", Some("k-1"))).await.unwrap();
    let bad = factum.execute(open("a-2", None)).await.unwrap();
    factum.execute(open("a-3", Some("k-3"))).await.unwrap();

    eventually(Duration::from_secs(30), "k-3 activated after the bad event", || async {
        (factum.load::<Card>("k-3").await.ok()?.0.activations == 1).then_some(())
    })
    .await;
    assert_eq!(factum.load::<Card>("k-1").await.unwrap().0.activations, 1);
    let failures = supervisor.failures(ActivateCards::NAME).await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].stream.aggregate_id(), "a-2");
    assert_eq!(Some(failures[0].position), bad.checkpoint.map(|c| c.position));
    assert!(failures[0].error.contains("without a card"), "{}", failures[0].error);
    assert!(!matches!(supervisor.status(ActivateCards::NAME).unwrap().state, ProjectionState::Failed));
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_of_an_unregistered_type_waits_for_a_manager_that_sends_it() {
    let db = TestDb::new().await;
    let store: Arc<dyn EventStore> = Arc::new(db.store().await);
    let factum = Factum::new(store.clone());
    let policy =
        FailurePolicy::retry_then_stop(2).backoff(Duration::from_millis(10), Duration::from_millis(20));
    let supervisor = start(&store, &factum, false, policy).await;
    factum.execute(open("a-1", Some("k-1"))).await.unwrap();

    let status = eventually(Duration::from_secs(30), "the process to stop", || async {
        let status = supervisor.status(ActivateCards::NAME).ok()?;
        matches!(status.state, ProjectionState::Failed).then_some(status)
    })
    .await;
    assert!(status.last_error.as_deref().unwrap_or_default().contains("not registered"), "{status:?}");
    // The decision is recorded; the command is not sent, and not lost.
    let (instance, version) = factum.load::<ProcessInstance<ActivateCards>>("k-1").await.unwrap();
    assert!(instance.ended && version.0 == 1);
    assert_eq!(factum.load::<Card>("k-1").await.unwrap().1 .0, 0);
    supervisor.shutdown().await.unwrap();

    // A manager that sends it, resumed: the command is sent once; the step is not repeated.
    let supervisor = start(&store, &factum, true, policy).await;
    supervisor.resume(ActivateCards::NAME).await.unwrap();
    eventually(Duration::from_secs(30), "k-1 activated", || async {
        (factum.load::<Card>("k-1").await.ok()?.0.activations == 1).then_some(())
    })
    .await;
    while supervisor.lag(ActivateCards::NAME).await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(factum.load::<Card>("k-1").await.unwrap().0.activations, 1);
    assert_eq!(factum.load::<ProcessInstance<ActivateCards>>("k-1").await.unwrap().1 .0, 1);
    supervisor.shutdown().await.unwrap();
}
