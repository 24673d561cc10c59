//! One live actor per aggregate: a concurrent map of slots, the live-actor cap, and
//! passivation of idle actors.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ractor::{Actor, ActorRef};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use super::actor::{AggregateActor, AggregateMsg, Args};
use super::load::load;
use super::Shared;
use super::{Aggregate, CommandError};
use crate::store::StreamId;

type Key = (&'static str, String);

/// Where one aggregate's actor lives. Two concurrent first commands share the slot, and
/// the `OnceCell` lets exactly one of them load and spawn the actor.
pub(crate) struct Slot<A: Aggregate> {
    actor: OnceCell<ActorRef<AggregateMsg<A>>>,
    last_used: AtomicU64,
}

trait AnySlot: Send + Sync + 'static {
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn last_used(&self) -> u64;
    fn is_live(&self) -> bool;
    /// Finishes the actor's queued messages, then stops it; later messages are refused
    /// (and their callers retry on a fresh actor).
    fn passivate(&self);
}

impl<A: Aggregate> AnySlot for Slot<A> {
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
    fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }
    fn is_live(&self) -> bool {
        self.actor.initialized()
    }
    fn passivate(&self) {
        if let Some(actor) = self.actor.get() {
            let _ = actor.drain();
        }
    }
}

pub(crate) struct Registry {
    slots: DashMap<Key, Arc<dyn AnySlot>>,
    permits: Arc<Semaphore>,
    cap: usize,
    idle_timeout: Duration,
    epoch: Instant,
    sweeper: AtomicBool,
}

impl Registry {
    pub(crate) fn new(cap: usize, idle_timeout: Duration) -> Self {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        Registry {
            slots: DashMap::new(),
            permits: Arc::new(Semaphore::new(cap)),
            cap,
            idle_timeout,
            epoch: Instant::now(),
            sweeper: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Live actors: the places taken under the cap.
    pub(crate) fn live(&self) -> usize {
        self.cap - self.permits.available_permits()
    }

    /// The live actor for `(A, id)`, loading and spawning it if there is none.
    pub(crate) async fn actor<A: Aggregate>(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        stream: &StreamId,
    ) -> Result<(Arc<Slot<A>>, ActorRef<AggregateMsg<A>>), CommandError<A::Error>> {
        self.start_sweeper();
        let key = (A::TYPE, stream.aggregate_id().to_owned());
        let any = self
            .slots
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Slot::<A> { actor: OnceCell::new(), last_used: AtomicU64::new(0) }))
            .clone();
        let slot: Arc<Slot<A>> = any.into_any().downcast().map_err(|_| {
            CommandError::Unavailable(format!("two aggregate types share the name {:?}", A::TYPE))
        })?;
        slot.last_used.store(self.now(), Ordering::Relaxed);
        let spawned = slot
            .actor
            .get_or_try_init(|| async {
                let loaded = load::<A>(shared, stream).await?;
                let permit = self.permit(&key).await;
                let args = Args {
                    shared: shared.clone(),
                    stream: stream.clone(),
                    permit,
                    state: loaded.state,
                    version: loaded.version,
                    snapshot_version: loaded.snapshot_version,
                    policy: shared.config.snapshot_policy_of::<A>(),
                };
                let (actor, _) = Actor::spawn(None, AggregateActor::<A>::new(), args)
                    .await
                    .map_err(|e| CommandError::Unavailable(format!("cannot start actor: {e}")))?;
                Ok::<_, CommandError<A::Error>>(actor)
            })
            .await;
        match spawned {
            Ok(actor) => Ok((slot.clone(), actor.clone())),
            Err(e) => {
                self.remove(stream.aggregate_id(), &slot);
                Err(e)
            }
        }
    }

    /// A place under the live-actor cap; when there is none, the least recently used
    /// actors are passivated to make room.
    async fn permit(&self, spawning: &Key) -> OwnedSemaphorePermit {
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return permit;
            }
            self.evict_lru(spawning);
            // Evicted actors release their permits as they stop.
            if let Ok(Ok(permit)) =
                tokio::time::timeout(Duration::from_millis(100), self.permits.clone().acquire_owned()).await
            {
                return permit;
            }
        }
    }

    fn evict_lru(&self, spawning: &Key) {
        let mut live: Vec<(u64, Key)> = self
            .slots
            .iter()
            .filter(|e| e.key() != spawning && e.value().is_live())
            .map(|e| (e.value().last_used(), e.key().clone()))
            .collect();
        let batch = (self.cap / 10).max(1);
        if live.len() > batch {
            live.select_nth_unstable_by_key(batch, |(used, _)| *used);
            live.truncate(batch);
        }
        for (_, key) in live {
            if let Some((_, slot)) = self.slots.remove(&key) {
                slot.passivate();
            }
        }
    }

    /// Forgets `slot` if it is still the one registered (its actor stopped or failed).
    pub(crate) fn remove<A: Aggregate>(&self, aggregate_id: &str, slot: &Arc<Slot<A>>) {
        let key = (A::TYPE, aggregate_id.to_owned());
        self.slots.remove_if(&key, |_, v| std::ptr::addr_eq(Arc::as_ptr(v), Arc::as_ptr(slot)));
    }

    /// Passivates every actor idle for longer than the idle timeout.
    fn sweep(&self) {
        let now = self.now();
        let idle = self.idle_timeout.as_millis() as u64;
        self.slots.retain(|_, slot| {
            let keep = !slot.is_live() || now.saturating_sub(slot.last_used()) < idle;
            if !keep {
                slot.passivate();
            }
            keep
        });
    }

    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeper.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Registry> = Arc::downgrade(self);
        let every = (self.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(registry) = weak.upgrade() else { return };
                registry.sweep();
            }
        });
    }

    /// Passivates every actor.
    pub(crate) fn shutdown(&self) {
        self.slots.retain(|_, slot| {
            slot.passivate();
            false
        });
    }
}
