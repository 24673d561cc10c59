//! Sending a recorded command to its aggregate: one dispatcher per command type a
//! process may send, found by the aggregate type the step recorded.

use std::marker::PhantomData;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::decision::SentCommand;
use crate::aggregate::{Aggregate, AggregateCommand, CommandError, Factum};
use crate::store::Metadata;

/// How sending a command ended.
pub(crate) enum Sent {
    /// It ran (now or before).
    Done,
    /// Its aggregate refused it, or it cannot run there: the process hears of it.
    Refused(String),
    /// It may run later (the store away, conflicts outlasting the retries, a timeout),
    /// or the record cannot be sent (it does not decode): a failure of the step.
    Failed(String),
}

/// Sends the recorded commands of one aggregate type.
#[async_trait]
pub(crate) trait Dispatch: Send + Sync + 'static {
    async fn send(
        &self,
        factum: &Factum,
        command: &SentCommand,
        id: Uuid,
        metadata: Metadata,
        check_first: bool,
    ) -> Sent;
}

/// The dispatcher of the command type `C`.
pub(crate) struct Typed<C>(PhantomData<fn() -> C>);

impl<C> Typed<C> {
    pub(crate) fn new() -> Self {
        Typed(PhantomData)
    }
}

#[async_trait]
impl<C> Dispatch for Typed<C>
where
    C: AggregateCommand + DeserializeOwned,
{
    async fn send(
        &self,
        factum: &Factum,
        sent: &SentCommand,
        id: Uuid,
        metadata: Metadata,
        check_first: bool,
    ) -> Sent {
        let command: C = match serde_json::from_value(sent.command.clone()) {
            Ok(command) => command,
            Err(e) => {
                return Sent::Failed(format!(
                    "the recorded command for {} does not decode: {e}",
                    <C::Aggregate as Aggregate>::TYPE
                ))
            }
        };
        match factum.run_once(command, id, metadata, check_first).await {
            Ok(_) => Sent::Done,
            Err(CommandError::Domain(e)) => Sent::Refused(e.to_string()),
            Err(CommandError::InvalidCommand(e)) => Sent::Refused(format!("invalid command: {e}")),
            Err(e) => Sent::Failed(format!(
                "sending a command to {} {}: {e}",
                <C::Aggregate as Aggregate>::TYPE,
                sent.aggregate_id
            )),
        }
    }
}
