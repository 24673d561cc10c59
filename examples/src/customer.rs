//! The customer aggregate: register, change email, deactivate.

use factum::{Aggregate, Command, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::validate::{check_email, check_name};

/// A customer's state, folded from its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(
    name = "Customer",
    command = CustomerCommand,
    event = CustomerEvent,
    error = CustomerError,
    snapshot_every = 50
)]
pub struct Customer {
    /// Whether the customer has been registered.
    pub registered: bool,
    /// Their name.
    pub name: String,
    /// Their current email address.
    pub email: String,
    /// Whether they may still place orders.
    pub active: bool,
}

/// What can be asked of a customer.
#[derive(Debug, Clone, Command)]
#[command(id = customer_id)]
pub enum CustomerCommand {
    /// Registers a new customer.
    Register {
        /// The customer's id.
        customer_id: String,
        /// Their name.
        name: String,
        /// Their email address.
        email: String,
    },
    /// Changes the email address.
    ChangeEmail {
        /// The customer's id.
        customer_id: String,
        /// The new address.
        email: String,
    },
    /// Deactivates the customer: no new orders.
    Deactivate {
        /// The customer's id.
        customer_id: String,
    },
}

/// What happened to a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub enum CustomerEvent {
    /// A customer registered.
    #[event(name = "CustomerRegistered", topic = "customer.lifecycle.registered")]
    Registered {
        /// Their name.
        name: String,
        /// Their email address.
        email: String,
    },
    /// The email address changed.
    #[event(name = "CustomerEmailChanged", topic = "customer.profile.email_changed")]
    EmailChanged {
        /// The new address.
        email: String,
    },
    /// The customer was deactivated.
    #[event(name = "CustomerDeactivated", topic = "customer.lifecycle.deactivated")]
    Deactivated,
}

/// Why a customer command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    /// The id is already taken.
    #[error("customer {0} is already registered")]
    AlreadyRegistered(String),
    /// No customer has this id.
    #[error("customer {0} is not registered")]
    NotRegistered(String),
    /// The customer is inactive.
    #[error("customer {0} is inactive")]
    Inactive(String),
    /// The name is empty, too long or has control characters.
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    /// The email address is not one.
    #[error("invalid email: {0}")]
    InvalidEmail(&'static str),
}

impl Customer {
    fn handle(&self, command: &CustomerCommand) -> Result<Vec<CustomerEvent>, CustomerError> {
        match command {
            CustomerCommand::Register { customer_id, name, email } => {
                if self.registered {
                    return Err(CustomerError::AlreadyRegistered(customer_id.clone()));
                }
                check_name(name).map_err(CustomerError::InvalidName)?;
                check_email(email).map_err(CustomerError::InvalidEmail)?;
                Ok(vec![CustomerEvent::Registered { name: name.trim().to_owned(), email: email.clone() }])
            }
            CustomerCommand::ChangeEmail { customer_id, email } => {
                self.require_active(customer_id)?;
                check_email(email).map_err(CustomerError::InvalidEmail)?;
                if *email == self.email {
                    return Ok(vec![]);
                }
                Ok(vec![CustomerEvent::EmailChanged { email: email.clone() }])
            }
            CustomerCommand::Deactivate { customer_id } => {
                if !self.registered {
                    return Err(CustomerError::NotRegistered(customer_id.clone()));
                }
                // Deactivating twice is a no-op, not an error: the outcome is the same.
                Ok(if self.active { vec![CustomerEvent::Deactivated] } else { vec![] })
            }
        }
    }

    fn apply(&mut self, event: &CustomerEvent) {
        match event {
            CustomerEvent::Registered { name, email } => {
                *self = Customer { registered: true, name: name.clone(), email: email.clone(), active: true };
            }
            CustomerEvent::EmailChanged { email } => self.email = email.clone(),
            CustomerEvent::Deactivated => self.active = false,
        }
    }

    /// Refuses unless the customer is registered and active.
    pub fn require_active(&self, customer_id: &str) -> Result<(), CustomerError> {
        if !self.registered {
            return Err(CustomerError::NotRegistered(customer_id.to_owned()));
        }
        if !self.active {
            return Err(CustomerError::Inactive(customer_id.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use factum::testing::AggregateTest;

    fn register(email: &str) -> CustomerCommand {
        CustomerCommand::Register { customer_id: "c-1".into(), name: "Ada".into(), email: email.into() }
    }

    #[tokio::test]
    async fn registers_once_with_a_valid_email() {
        AggregateTest::<Customer>::given([]).when(register("ada@example.com")).await.then_expect_events(&[
            CustomerEvent::Registered { name: "Ada".into(), email: "ada@example.com".into() },
        ]);
        AggregateTest::<Customer>::given([])
            .when(register("not-an-email"))
            .await
            .then_expect_error(|e| matches!(e, CustomerError::InvalidEmail(_)));
        AggregateTest::<Customer>::given([CustomerEvent::Registered {
            name: "Ada".into(),
            email: "ada@example.com".into(),
        }])
        .when(register("ada@example.com"))
        .await
        .then_expect_error(|e| matches!(e, CustomerError::AlreadyRegistered(_)));
    }

    #[tokio::test]
    async fn an_inactive_customer_cannot_change_email() {
        AggregateTest::<Customer>::given([
            CustomerEvent::Registered { name: "Ada".into(), email: "ada@example.com".into() },
            CustomerEvent::Deactivated,
        ])
        .when(CustomerCommand::ChangeEmail { customer_id: "c-1".into(), email: "a@b.example".into() })
        .await
        .then_expect_error(|e| matches!(e, CustomerError::Inactive(_)));
    }
}
