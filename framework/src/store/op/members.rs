//! The operations on the instances that run a projection's slices: see
//! [`ConsumerStore::heartbeat`](crate::store::ConsumerStore::heartbeat).

use std::time::Duration;

use uuid::Uuid;

use crate::store::error::InvalidInput;
use crate::store::{validate, Member};

use super::Operation;

/// [`ConsumerStore::heartbeat`](crate::store::ConsumerStore::heartbeat).
#[derive(Debug)]
pub struct Heartbeat {
    consumer: String,
    member: Member,
    ttl: Duration,
}

impl Heartbeat {
    /// Checks the build's consumer name, the member's label and the time to live (from
    /// 100 ms to an hour).
    pub fn new(consumer: impl Into<String>, member: Member, ttl: Duration) -> Result<Self, InvalidInput> {
        let consumer = consumer.into();
        validate::consumer_name(&consumer)?;
        validate::name("member label", &member.label)?;
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&ttl) {
            return Err(InvalidInput::OutOfRange { field: "ttl", reason: "must be from 100 ms to an hour" });
        }
        Ok(Heartbeat { consumer, member, ttl })
    }

    /// The build's consumer name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The instance and what it holds.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// How long a member not seen again counts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl Operation for Heartbeat {
    const NAME: &'static str = "heartbeat";
    type Output = Vec<Member>;
}

/// [`ConsumerStore::leave`](crate::store::ConsumerStore::leave).
#[derive(Debug)]
pub struct Leave {
    consumer: String,
    instance: Uuid,
}

impl Leave {
    /// Checks the build's consumer name.
    pub fn new(consumer: impl Into<String>, instance: Uuid) -> Result<Self, InvalidInput> {
        let consumer = consumer.into();
        validate::consumer_name(&consumer)?;
        Ok(Leave { consumer, instance })
    }

    /// The build's consumer name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The instance that leaves.
    pub fn instance(&self) -> Uuid {
        self.instance
    }
}

impl Operation for Leave {
    const NAME: &'static str = "leave";
    type Output = ();
}
