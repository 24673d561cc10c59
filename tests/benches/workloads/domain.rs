//! The aggregate the command workloads run: small state, one small event per command.

use super::*;

/// A bench account: a balance and a count of deposits.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, factum::Aggregate)]
#[aggregate(name = "Account", command = AccountCommand, event = AccountEvent, error = AccountError, snapshot_every = 100)]
pub(super) struct Account {
    pub(super) balance: i64,
    pub(super) deposits: u64,
}

#[derive(Debug, Clone, factum::Command)]
#[command(id = id)]
pub(super) enum AccountCommand {
    Deposit { id: String, amount: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, factum::DomainEvent)]
pub(super) enum AccountEvent {
    #[event(name = "account.deposited", topic = "account.money.deposited")]
    Deposited { amount: i64, customer: String },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum AccountError {
    #[error("amount must be positive")]
    NotPositive,
}

impl Account {
    pub(super) fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Deposit { amount, .. } if *amount <= 0 => Err(AccountError::NotPositive),
            AccountCommand::Deposit { id, amount } => {
                Ok(vec![AccountEvent::Deposited { amount: *amount, customer: id.clone() }])
            }
        }
    }

    pub(super) fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited { amount, .. } => {
                self.balance += amount;
                self.deposits += 1;
            }
        }
    }
}

pub(super) fn payload(id: &str, amount: i64) -> Value {
    json!({ "amount": amount, "customer": id })
}

pub(super) fn new_event(id: &str, amount: i64) -> NewEvent {
    let metadata = Metadata {
        correlation_id: Some(Uuid::now_v7()),
        causation_id: Some(Uuid::now_v7()),
        ..Metadata::default()
    };
    NewEvent::new("account.deposited", payload(id, amount))
        .with_topic("account.money.deposited")
        .with_metadata(metadata)
}
