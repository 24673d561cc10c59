//! The actor that runs one live aggregate.

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rand::Rng;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::load::{catch_up, panic_message};
use super::Shared;
use super::{encode, Aggregate, CommandError, DomainEvent, Executed, SnapshotContext, SnapshotPolicy};
use crate::backoff::Backoff;
use crate::store::{ExpectedVersion, Metadata, Snapshot, StoreError, StreamId, Version, VersionRange};
use uuid::Uuid;

/// The messages an aggregate actor handles.
pub(crate) enum AggregateMsg<A: Aggregate> {
    /// Run a command.
    Execute {
        command: Arc<A::Command>,
        metadata: Arc<Metadata>,
        /// Run at most once under this command id (`Factum::execute_once`).
        once: Option<Once>,
        /// The caller's span: the command's span is its child, so that one trace runs
        /// from the caller through the append.
        caller: tracing::Span,
        reply: RpcReplyPort<Result<Executed<A>, CommandError<A::Error>>>,
    },
    /// Reply with the current state and version.
    State { reply: RpcReplyPort<Loaded<A>> },
}

/// A command run at most once: its events' ids derive from `id`, which is also their
/// causation id, so that the store refuses a second landing of them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Once {
    pub(crate) id: Uuid,
    /// Whether the command may have run before (a retry after a crash): the store is
    /// asked before deciding. A first dispatch need not ask: nothing can be stored
    /// under its id yet, and a concurrent second landing is refused by the ids.
    pub(crate) check_first: bool,
}

/// The id of the `index`th event a command run once records: the same for every run of
/// the command, different for every command.
pub(crate) fn event_id_of(command: Uuid, index: usize) -> Uuid {
    Uuid::new_v5(&command, &(index as u64).to_be_bytes())
}

/// An aggregate's state and version, or why it could not be had.
pub(crate) type Loaded<A> = Result<(A, Version), CommandError<<A as Aggregate>::Error>>;

/// The behaviour of an aggregate actor; all its data lives in [`ActorState`].
pub(crate) struct AggregateActor<A>(PhantomData<fn() -> A>);

impl<A> AggregateActor<A> {
    pub(crate) fn new() -> Self {
        AggregateActor(PhantomData)
    }
}

/// What an actor starts from.
pub(crate) struct Args<A> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stream: StreamId,
    /// The actor's place under the live-actor cap, released when it stops.
    pub(crate) permit: OwnedSemaphorePermit,
    /// The state, loaded by the caller that spawns the actor (so a load error reaches it
    /// typed).
    pub(crate) state: A,
    pub(crate) version: Version,
    /// The version of the snapshot the state was loaded from (0: none).
    pub(crate) snapshot_version: Version,
    /// When to snapshot: the configured policy for `A`, or its declared one.
    pub(crate) policy: SnapshotPolicy,
}

pub(crate) struct ActorState<A: Aggregate> {
    shared: Arc<Shared>,
    stream: StreamId,
    state: A,
    version: Version,
    policy: SnapshotPolicy,
    /// The newest snapshot loaded or written (0: none).
    last_snapshot: Version,
    /// The last append failed in a way that may or may not have committed: reload first.
    stale: bool,
    /// No message handled yet: the state was loaded from the store for the message that
    /// started the actor, so a state request need not catch up again.
    fresh: bool,
    _permit: OwnedSemaphorePermit,
}

impl<A: Aggregate> ActorState<A> {
    async fn reload_if_stale(&mut self) -> Result<(), CommandError<A::Error>> {
        if self.stale {
            catch_up::<A>(&self.shared, &self.stream, &mut self.state, &mut self.version).await?;
            self.stale = false;
        }
        Ok(())
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cfg = &self.shared.config;
        let exp =
            Backoff::after_failures(cfg.retry_base_delay, cfg.retry_max_delay, attempt.saturating_add(1));
        // Full jitter: spread retries of competing writers apart.
        let jitter = rand::thread_rng().gen_range(0.5..=1.0);
        exp.mul_f64(jitter)
    }

    /// Runs a command: decide, append at our version, and on conflict catch up and retry.
    async fn execute(
        &mut self,
        command: &A::Command,
        metadata: &Metadata,
        once: Option<Once>,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        self.reload_if_stale().await?;
        let max_attempts = self.shared.config.max_conflict_retries + 1;
        let mut attempt = 0;
        // Whether the command may have run before: then a decision that records nothing
        // (no events, or a domain error) first asks the stream. A decision with events
        // needs no asking: their ids are the command's, and a second landing is refused.
        let mut check = once.is_some_and(|o| o.check_first);
        loop {
            attempt += 1;
            let decided = catch_unwind(AssertUnwindSafe(|| self.state.handle(command)))
                .map_err(|p| CommandError::Panicked { committed: false, message: panic_message(p) })?;
            let records_nothing = !matches!(&decided, Ok(events) if !events.is_empty());
            if let (Some(once), true, true) = (once, check, records_nothing) {
                let before = self.version;
                if let Some(done) = self.already_done(once.id).await? {
                    return Ok(done);
                }
                if self.version != before {
                    // The stream had moved on (another instance wrote): decide again on it.
                    continue;
                }
            }
            let events = decided.map_err(CommandError::Domain)?;
            if events.is_empty() {
                return Ok(Executed {
                    aggregate_id: self.stream.aggregate_id().to_owned(),
                    version: self.version,
                    events,
                    checkpoint: None,
                    repeated: false,
                });
            }
            let mut batch = events.iter().map(|e| encode(e, metadata)).collect::<Result<Vec<_>, _>>()?;
            if let Some(once) = once {
                for (index, event) in batch.iter_mut().enumerate() {
                    event.event_id = event_id_of(once.id, index);
                }
            }
            match self.shared.store.append(&self.stream, ExpectedVersion::Exact(self.version), batch).await {
                Ok(result) if result.deduplicated => {
                    // An exact retry of an append that landed: the stream is past it.
                    catch_up::<A>(&self.shared, &self.stream, &mut self.state, &mut self.version).await?;
                    return Ok(Executed {
                        aggregate_id: self.stream.aggregate_id().to_owned(),
                        version: result.to_version,
                        events,
                        checkpoint: result.checkpoint(),
                        repeated: true,
                    });
                }
                Ok(result) => {
                    for event in &events {
                        catch_unwind(AssertUnwindSafe(|| self.state.apply(event))).map_err(|p| {
                            CommandError::Panicked { committed: true, message: panic_message(p) }
                        })?;
                    }
                    self.version = result.to_version;
                    return Ok(Executed {
                        aggregate_id: self.stream.aggregate_id().to_owned(),
                        version: self.version,
                        events,
                        checkpoint: result.checkpoint(),
                        repeated: false,
                    });
                }
                Err(StoreError::Conflict { .. }) => {
                    self.shared.metrics.conflict(A::TYPE);
                    if attempt >= max_attempts {
                        return Err(CommandError::Conflict {
                            stream: self.stream.clone(),
                            attempts: attempt,
                        });
                    }
                    tokio::time::sleep(self.backoff(attempt - 1)).await;
                    catch_up::<A>(&self.shared, &self.stream, &mut self.state, &mut self.version).await?;
                    self.shared.metrics.retry(A::TYPE);
                    // What the stream gained may be this very command, run elsewhere.
                    check = once.is_some();
                }
                Err(StoreError::DuplicateEvent { event_id }) if once.is_some() => {
                    // Another run of this command landed first: report what it recorded.
                    catch_up::<A>(&self.shared, &self.stream, &mut self.state, &mut self.version).await?;
                    if let Some(done) = self.already_done(once.map(|o| o.id).unwrap_or_default()).await? {
                        return Ok(done);
                    }
                    return Err(CommandError::Store(StoreError::DuplicateEvent { event_id }));
                }
                Err(e) => {
                    // The append may or may not have committed: the next command reloads.
                    self.stale = true;
                    return Err(CommandError::Store(e));
                }
            }
        }
    }

    /// What a command run once recorded, if it already ran: the events of the stream
    /// caused by its id, with the actor's state caught up past them. Reads the stream
    /// (through its index); asked only when a run may be a repeat and its decision would
    /// record nothing, or when its events' ids are found taken.
    async fn already_done(&mut self, id: Uuid) -> Result<Option<Executed<A>>, CommandError<A::Error>> {
        catch_up::<A>(&self.shared, &self.stream, &mut self.state, &mut self.version).await?;
        if self.version == Version::INITIAL {
            return Ok(None);
        }
        let stored = self.shared.store.read_stream(&self.stream, VersionRange::ALL).await?;
        let caused: Vec<_> = stored.into_iter().filter(|e| e.metadata.causation_id == Some(id)).collect();
        let Some(last) = caused.last() else { return Ok(None) };
        let (version, checkpoint) = (last.version, Some(last.checkpoint()));
        let events = caused
            .into_iter()
            .map(|e| A::Event::from_stored(&e.event_type, e.schema_version, e.payload))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Executed {
            aggregate_id: self.stream.aggregate_id().to_owned(),
            version,
            events,
            checkpoint,
            repeated: true,
        }))
    }

    /// Saves a snapshot in the background when the policy asks for one. Never fails the
    /// command: a failed write is logged and counted.
    fn maybe_snapshot(&mut self, before: Version) {
        let ctx = SnapshotContext::new(
            A::TYPE,
            self.stream.aggregate_id(),
            before,
            self.version,
            self.last_snapshot,
        );
        match catch_unwind(AssertUnwindSafe(|| self.policy.should_snapshot(&ctx))) {
            Ok(true) => {}
            Ok(false) => return,
            Err(p) => {
                tracing::warn!(aggregate_type = A::TYPE, panic = %panic_message(p),
                    "the snapshot policy panicked; no snapshot");
                return;
            }
        }
        // Written or not, the next decision counts from here: a failed write is not
        // retried at every command.
        self.last_snapshot = self.version;
        let state = match serde_json::to_value(&self.state) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(aggregate_type = A::TYPE, error = %e, "cannot serialize state for a snapshot");
                self.shared.metrics.snapshot_write(A::TYPE, false);
                return;
            }
        };
        let snapshot = Snapshot {
            stream: self.stream.clone(),
            version: self.version,
            schema_version: A::SNAPSHOT_VERSION,
            state,
            created_at: chrono::Utc::now(),
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let ok = match shared.store.save_snapshot(&snapshot).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(aggregate_type = A::TYPE, aggregate_id = snapshot.stream.aggregate_id(),
                        error = %e, "snapshot write failed");
                    false
                }
            };
            shared.metrics.snapshot_write(A::TYPE, ok);
        });
    }
}

#[ractor::async_trait]
impl<A: Aggregate> Actor for AggregateActor<A> {
    type Msg = AggregateMsg<A>;
    type State = ActorState<A>;
    type Arguments = Args<A>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Args<A>,
    ) -> Result<Self::State, ActorProcessingErr> {
        args.shared.metrics.actor_started(A::TYPE);
        Ok(ActorState {
            shared: args.shared,
            stream: args.stream,
            state: args.state,
            version: args.version,
            policy: args.policy,
            last_snapshot: args.snapshot_version,
            stale: false,
            fresh: true,
            _permit: args.permit,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.shared.metrics.actor_stopped(A::TYPE);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let fresh = std::mem::replace(&mut state.fresh, false);
        let panicked = match message {
            AggregateMsg::Execute { command, metadata, once, caller, reply } => {
                let span = tracing::info_span!(parent: &caller, "factum.command", aggregate_type = A::TYPE,
                    aggregate_id = state.stream.aggregate_id(),
                    correlation_id = ?metadata.correlation_id, causation_id = ?metadata.causation_id);
                let started = Instant::now();
                let before = state.version;
                let result = state.execute(&command, &metadata, once).instrument(span).await;
                state.shared.metrics.command(A::TYPE, outcome(&result), started.elapsed());
                let panicked = matches!(result, Err(CommandError::Panicked { .. }));
                let committed = state.version != before;
                let _ = reply.send(result);
                if !panicked && committed {
                    state.maybe_snapshot(before);
                }
                panicked
            }
            AggregateMsg::State { reply } => {
                // Other processes may have written since: catch up before answering
                // (unless the actor was loaded for this very request).
                state.stale |= !fresh;
                let result = state.reload_if_stale().await.map(|()| (state.state.clone(), state.version));
                let panicked = matches!(result, Err(CommandError::Panicked { .. }));
                let _ = reply.send(result);
                panicked
            }
        };
        if panicked {
            // The state may be half-folded: stop, and let the next message reload.
            myself.stop(Some("user code panicked".into()));
        }
        Ok(())
    }
}

fn outcome<A: Aggregate>(result: &Result<Executed<A>, CommandError<A::Error>>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(CommandError::Domain(_)) => "rejected",
        Err(CommandError::Conflict { .. }) => "conflict",
        Err(_) => "error",
    }
}
