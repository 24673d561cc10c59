//! Spreading a projection's slices over the instances that run it.
//!
//! Each instance that runs a projection in slices has one slice actor per slice, and one
//! [`Allotment`] they share. The allotment's task tells the store every [`BEAT`] that the
//! instance is alive and which slices it holds ([`ConsumerStore::heartbeat`]), and learns
//! how many instances run the build. Each instance's share is the slice count divided by
//! that number, rounded up:
//! - below its share, an instance takes free slices (their leases decide who gets one);
//! - above it (an instance joined), it gives up one slice per beat, between two batches:
//!   the slice's actor drops the lease after its last batch has committed, and the next
//!   holder starts from the checkpoint that batch left. The lease's batch fence refuses a
//!   batch of an old holder whose session broke.
//!
//! A member not heard from within [`TTL`] no longer counts, so the slices of an instance
//! killed outright are spread over the others once its leases are gone and its row is
//! stale. An instance that stops cleanly leaves at once.
//!
//! [`ConsumerStore::heartbeat`]: crate::store::ConsumerStore::heartbeat

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::store::{EventStore, Member};
use crate::task::AbortOnDrop;

/// How often an instance tells the store it is alive.
pub(crate) const BEAT: Duration = Duration::from_millis(500);
/// How long a member not heard from still counts.
pub(crate) const TTL: Duration = Duration::from_secs(2);

/// One slice as the allotment sees it: whether this instance holds its lease, and how to
/// wake its actor.
#[derive(Default)]
pub(crate) struct SliceSeat {
    pub(crate) holding: AtomicBool,
    /// Woken to look at the lease now (take it, or give it up).
    pub(crate) poke: Notify,
    /// Set with the poke: the actor's lease retry delay does not apply.
    pub(crate) poked: AtomicBool,
}

/// What the slice actors of one projection in this instance share.
pub(crate) struct Allotment {
    pub(crate) instance: Uuid,
    pub(crate) label: String,
    pub(crate) seats: Vec<Arc<SliceSeat>>,
    /// How many slices this instance should hold.
    share: AtomicU16,
    /// The one slice asked to move elsewhere, if any.
    shed: Mutex<Option<u16>>,
    /// The build's consumer name, once a slice has taken it up.
    build: Mutex<Option<String>>,
    /// The members last heard of.
    members: Mutex<Vec<Member>>,
    /// Slices trying to take their lease now: they count against the share, so that
    /// slices trying at once never take more than it.
    taking: Mutex<u16>,
    /// Bounds the batches this instance applies at once across the slices.
    pub(crate) running: Semaphore,
    /// Serializes registering and preparing the build among the slices here.
    pub(crate) preparing: tokio::sync::Mutex<()>,
}

impl Allotment {
    pub(crate) fn new(count: u16, concurrency: usize, label: String) -> Self {
        Allotment {
            instance: Uuid::new_v4(),
            label,
            seats: (0..count).map(|_| Arc::new(SliceSeat::default())).collect(),
            share: AtomicU16::new(0),
            shed: Mutex::new(None),
            build: Mutex::new(None),
            members: Mutex::new(Vec::new()),
            taking: Mutex::new(0),
            running: Semaphore::new(concurrency.max(1)),
            preparing: tokio::sync::Mutex::new(()),
        }
    }

    fn held(&self) -> Vec<u16> {
        (0..self.seats.len() as u16)
            .filter(|&i| self.seats[usize::from(i)].holding.load(Ordering::Acquire))
            .collect()
    }

    /// Whether slice `index` may take its lease now.
    pub(crate) fn may_take(&self, index: u16) -> bool {
        let shed = *self.shed.lock().unwrap_or_else(|p| p.into_inner());
        shed != Some(index) && (self.held().len() as u16) < self.share.load(Ordering::Acquire)
    }

    /// A place in the share for slice `index` while it tries to take its lease, if there
    /// is one: held until dropped (after the lease is taken, or not).
    pub(crate) fn reserve(self: &Arc<Self>, index: u16) -> Option<Reservation> {
        let shed = *self.shed.lock().unwrap_or_else(|p| p.into_inner());
        let mut taking = self.taking.lock().unwrap_or_else(|p| p.into_inner());
        let used = self.held().len() as u16 + *taking;
        if shed == Some(index) || used >= self.share.load(Ordering::Acquire) {
            return None;
        }
        *taking += 1;
        Some(Reservation(self.clone()))
    }

    /// Whether slice `index`, held here, should be given up.
    pub(crate) fn should_release(&self, index: u16) -> bool {
        *self.shed.lock().unwrap_or_else(|p| p.into_inner()) == Some(index)
    }

    /// A slice took up `build` (its consumer name): the one the members gather under.
    pub(crate) fn following(&self, build: &str) {
        *self.build.lock().unwrap_or_else(|p| p.into_inner()) = Some(build.to_owned());
    }

    /// The label of the member that holds slice `index`, as last heard.
    pub(crate) fn holder(&self, index: u16) -> Option<String> {
        if self.seats.get(usize::from(index)).is_some_and(|s| s.holding.load(Ordering::Acquire)) {
            return Some(self.label.clone());
        }
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members.iter().find(|m| m.holds.contains(&index)).map(|m| m.label.clone())
    }

    /// One beat: tell the store, learn the members, set the share, and choose what moves.
    async fn beat(&self, store: &dyn EventStore) {
        let Some(build) = self.build.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return };
        let held = self.held();
        let me = Member::new(self.instance, self.label.clone(), held.clone());
        let members = match store.heartbeat(&build, &me, TTL).await {
            Ok(members) => members,
            Err(e) => {
                // Until the store answers, this instance takes no more slices (it keeps
                // those it holds).
                tracing::warn!(build, error = %e, "slice heartbeat failed; no more slices are taken until it succeeds");
                return;
            }
        };
        let n = members.len().max(1) as u16;
        let count = self.seats.len() as u16;
        let share = count.div_ceil(n);
        self.share.store(share, Ordering::Release);
        tracing::debug!(build, share, members = n, held = held.len(), "slice heartbeat");
        *self.members.lock().unwrap_or_else(|p| p.into_inner()) = members;
        let shed = (held.len() as u16 > share).then(|| held[held.len() - 1]);
        let before = std::mem::replace(&mut *self.shed.lock().unwrap_or_else(|p| p.into_inner()), shed);
        if let Some(index) = shed.filter(|&i| before != Some(i)) {
            tracing::info!(build, slice = index, share, members = n, "moving a slice to another instance");
        }
        // Wake the slices whose lease should change hands here.
        for (i, seat) in self.seats.iter().enumerate() {
            let holding = seat.holding.load(Ordering::Acquire);
            if (!holding && (held.len() as u16) < share) || (holding && shed == Some(i as u16)) {
                seat.poked.store(true, Ordering::Release);
                seat.poke.notify_one();
            }
        }
    }

    /// Beats until dropped.
    pub(crate) fn start(self: &Arc<Self>, store: Arc<dyn EventStore>) -> AbortOnDrop<()> {
        let me = Arc::downgrade(self);
        AbortOnDrop::new(tokio::spawn(async move {
            loop {
                let Some(allot) = me.upgrade() else { return };
                allot.beat(store.as_ref()).await;
                drop(allot);
                tokio::time::sleep(BEAT).await;
            }
        }))
    }

    /// This instance stops: the others take its slices over at once.
    pub(crate) async fn leave(&self, store: &dyn EventStore) {
        let build = self.build.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(build) = build {
            if let Err(e) = store.leave(&build, self.instance).await {
                tracing::debug!(build, error = %e, "could not leave the slices' members");
            }
        }
    }
}

/// A slice's place in the share while it tries to take its lease ([`Allotment::reserve`]).
pub(crate) struct Reservation(Arc<Allotment>);

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut taking = self.0.taking.lock().unwrap_or_else(|p| p.into_inner());
        *taking = taking.saturating_sub(1);
    }
}

/// What an instance is known by among a build's members: host and process id.
pub(crate) fn default_label() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}
