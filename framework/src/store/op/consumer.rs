//! The operations of the log's consumers: see [`ConsumerStore`](crate::store::ConsumerStore)
//! for each one's contract.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::error::InvalidInput;
use crate::store::{validate, Checkpoint, ConsumerRequest, Lease, PendingRequest, ProjectionFailure};

use super::Operation;

/// Declares an operation on one consumer's name: the type, its checked constructor, its
/// accessor and its [`Operation`] impl.
macro_rules! by_name {
    ($(#[$doc:meta])* $op:ident, $name:literal, $output:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $op {
            consumer: String,
        }

        impl $op {
            /// Checks the consumer's (projection's) name.
            pub fn new(consumer: impl Into<String>) -> Result<Self, InvalidInput> {
                let consumer = consumer.into();
                validate::consumer_name(&consumer)?;
                Ok($op { consumer })
            }

            /// The consumer's (projection's) name.
            pub fn consumer(&self) -> &str {
                &self.consumer
            }
        }

        impl Operation for $op {
            const NAME: &'static str = $name;
            type Output = $output;
        }
    };
}

by_name!(
    /// [`ConsumerStore::load_checkpoint`](crate::store::ConsumerStore::load_checkpoint).
    LoadCheckpoint, "load_checkpoint", Option<Checkpoint>
);
by_name!(
    /// [`ConsumerStore::try_lease`](crate::store::ConsumerStore::try_lease).
    TryLease, "try_lease", Option<Lease>
);
by_name!(
    /// [`ConsumerStore::failures`](crate::store::ConsumerStore::failures).
    Failures, "failures", Vec<ProjectionFailure>
);
by_name!(
    /// [`ConsumerStore::stopped`](crate::store::ConsumerStore::stopped).
    Stopped, "stopped", Option<ProjectionFailure>
);
by_name!(
    /// [`ConsumerStore::pending_request`](crate::store::ConsumerStore::pending_request).
    LoadRequest, "pending_request", Option<PendingRequest>
);

/// [`ConsumerStore::save_checkpoint`](crate::store::ConsumerStore::save_checkpoint).
#[derive(Debug)]
pub struct SaveCheckpoint {
    consumer: String,
    checkpoint: Checkpoint,
}

impl SaveCheckpoint {
    /// Checks the name and that the checkpoint fits the store.
    pub fn new(consumer: impl Into<String>, checkpoint: Checkpoint) -> Result<Self, InvalidInput> {
        let consumer = consumer.into();
        validate::consumer_name(&consumer)?;
        validate::checkpoint(checkpoint)?;
        Ok(SaveCheckpoint { consumer, checkpoint })
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The checkpoint saved.
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }
}

impl Operation for SaveCheckpoint {
    const NAME: &'static str = "save_checkpoint";
    type Output = ();
}

/// [`ConsumerStore::advance_checkpoint`](crate::store::ConsumerStore::advance_checkpoint).
#[derive(Debug)]
pub struct AdvanceCheckpoint {
    consumer: String,
    from: Checkpoint,
    to: Checkpoint,
}

impl AdvanceCheckpoint {
    /// Checks the name and that both checkpoints fit the store.
    pub fn new(consumer: impl Into<String>, from: Checkpoint, to: Checkpoint) -> Result<Self, InvalidInput> {
        let consumer = consumer.into();
        validate::consumer_name(&consumer)?;
        validate::checkpoint(from)?;
        validate::checkpoint(to)?;
        Ok(AdvanceCheckpoint { consumer, from, to })
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Where the checkpoint must still be.
    pub fn from(&self) -> Checkpoint {
        self.from
    }

    /// Where it moves.
    pub fn to(&self) -> Checkpoint {
        self.to
    }
}

impl Operation for AdvanceCheckpoint {
    const NAME: &'static str = "advance_checkpoint";
    type Output = bool;
}

/// [`ConsumerStore::count_after`](crate::store::ConsumerStore::count_after).
#[derive(Debug)]
pub struct CountAfter {
    after: Checkpoint,
    aggregate_types: Vec<String>,
}

impl CountAfter {
    /// Checks the checkpoint and the aggregate types' names.
    pub fn new(after: Checkpoint, aggregate_types: Vec<String>) -> Result<Self, InvalidInput> {
        validate::checkpoint(after)?;
        aggregate_types.iter().try_for_each(|t| validate::category(t))?;
        Ok(CountAfter { after, aggregate_types })
    }

    /// Where counting starts (exclusive).
    pub fn after(&self) -> Checkpoint {
        self.after
    }

    /// The aggregate types counted; all when empty.
    pub fn aggregate_types(&self) -> &[String] {
        &self.aggregate_types
    }
}

impl Operation for CountAfter {
    const NAME: &'static str = "count_after";
    type Output = u64;
}

/// Declares an operation on one projection's failure record.
macro_rules! by_failure {
    ($(#[$doc:meta])* $op:ident, $name:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $op {
            failure: ProjectionFailure,
        }

        impl $op {
            /// Checks the projection's name.
            pub fn new(failure: ProjectionFailure) -> Result<Self, InvalidInput> {
                validate::consumer_name(&failure.projection)?;
                Ok($op { failure })
            }

            /// The failure recorded.
            pub fn failure(&self) -> &ProjectionFailure {
                &self.failure
            }
        }

        impl Operation for $op {
            const NAME: &'static str = $name;
            type Output = ();
        }
    };
}

by_failure!(
    /// [`ConsumerStore::record_failure`](crate::store::ConsumerStore::record_failure).
    RecordFailure, "record_failure"
);
by_failure!(
    /// [`ConsumerStore::record_stop`](crate::store::ConsumerStore::record_stop).
    RecordStop, "record_stop"
);

/// [`ConsumerStore::resolve_failure`](crate::store::ConsumerStore::resolve_failure).
#[derive(Debug)]
pub struct ResolveFailure {
    projection: String,
    event_id: Uuid,
}

impl ResolveFailure {
    /// Checks the projection's name.
    pub fn new(projection: impl Into<String>, event_id: Uuid) -> Result<Self, InvalidInput> {
        let projection = projection.into();
        validate::consumer_name(&projection)?;
        Ok(ResolveFailure { projection, event_id })
    }

    /// The projection's name.
    pub fn projection(&self) -> &str {
        &self.projection
    }

    /// The event the failure was recorded at.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }
}

impl Operation for ResolveFailure {
    const NAME: &'static str = "resolve_failure";
    type Output = bool;
}

/// [`ConsumerStore::request`](crate::store::ConsumerStore::request).
#[derive(Debug)]
pub struct MakeRequest {
    consumer: String,
    request: ConsumerRequest,
}

impl MakeRequest {
    /// Checks the name and, for a reset, the checkpoint.
    pub fn new(consumer: impl Into<String>, request: ConsumerRequest) -> Result<Self, InvalidInput> {
        let consumer = consumer.into();
        validate::consumer_name(&consumer)?;
        if let ConsumerRequest::Reset { to, .. } = &request {
            validate::checkpoint(*to)?;
        }
        Ok(MakeRequest { consumer, request })
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// What is asked of it.
    pub fn request(&self) -> ConsumerRequest {
        self.request
    }
}

impl Operation for MakeRequest {
    const NAME: &'static str = "request";
    type Output = PendingRequest;
}

/// [`ConsumerStore::complete_request`](crate::store::ConsumerStore::complete_request).
#[derive(Debug)]
pub struct CompleteRequest {
    consumer: String,
    requested_at: DateTime<Utc>,
}

impl CompleteRequest {
    /// Checks the name.
    pub fn new(consumer: impl Into<String>, requested_at: DateTime<Utc>) -> Result<Self, InvalidInput> {
        let consumer = consumer.into();
        validate::consumer_name(&consumer)?;
        Ok(CompleteRequest { consumer, requested_at })
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// When the request carried out was made.
    pub fn requested_at(&self) -> DateTime<Utc> {
        self.requested_at
    }
}

impl Operation for CompleteRequest {
    const NAME: &'static str = "complete_request";
    type Output = bool;
}
