//! The out-of-order history checker: what a consumer of the global log received, checked
//! against what the writers committed and rolled back. Works with any
//! [`EventStore`](factum::EventStore) backend.
//!
//! ```
//! use factum_tests::history::History;
//! # use factum::prelude::*;
//! # use factum::{ExpectedVersion, NewEvent, StreamId, InMemoryStore};
//! # use factum::store::Checkpoint;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = InMemoryStore::new();
//! let mut history = History::default();
//! let stream = StreamId::new("Order", "o-1").unwrap();
//! let events = vec![NewEvent::new("Placed", serde_json::json!({}))];
//! let written = store.append(&stream, ExpectedVersion::NoStream, events.clone()).await.unwrap();
//! history.committed(&stream, &events, written.from_version);
//! let received = store.read_all(Checkpoint::START, 100).await.unwrap();
//! let verdict = history.check(&received);
//! assert!(verdict.is_clean(), "{verdict}");
//! # });
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;

use factum::{NewEvent, RecordedEvent, StreamId, Version};
use uuid::Uuid;

/// What the writers did: each committed event's stream and version, and the ids of the
/// events whose transactions rolled back.
#[derive(Debug, Default, Clone)]
pub struct History {
    committed: HashMap<Uuid, (StreamId, Version)>,
    rolled_back: HashSet<Uuid>,
}

impl History {
    /// Records an append that committed, its first event at version `from`.
    pub fn committed(&mut self, stream: &StreamId, events: &[NewEvent], from: Version) {
        for (i, e) in events.iter().enumerate() {
            self.committed.insert(e.event_id, (stream.clone(), Version(from.0 + i as u64)));
        }
    }

    /// Records an append whose transaction rolled back.
    pub fn rolled_back(&mut self, events: &[NewEvent]) {
        self.rolled_back.extend(events.iter().map(|e| e.event_id));
    }

    /// How many events committed.
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    /// Checks what one consumer received, in the order it received it.
    pub fn check(&self, received: &[RecordedEvent]) -> Verdict {
        let mut seen = HashSet::new();
        let mut last_version: HashMap<&StreamId, Version> = HashMap::new();
        let mut verdict = Verdict { received: received.len(), ..Verdict::default() };
        for e in received {
            if !seen.insert(e.event_id) {
                verdict.duplicated += 1;
            }
            if self.rolled_back.contains(&e.event_id) {
                verdict.rolled_back_delivered += 1;
            }
            if let Some(last) = last_version.insert(&e.stream, e.version) {
                if e.version <= last {
                    verdict.out_of_order += 1;
                }
            }
        }
        verdict.lost = self.committed.keys().filter(|id| !seen.contains(id)).count();
        verdict
    }
}

/// The outcome of [`History::check`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Events received.
    pub received: usize,
    /// Committed events never received.
    pub lost: usize,
    /// Events received more than once.
    pub duplicated: usize,
    /// Events of rolled-back transactions that were received.
    pub rolled_back_delivered: usize,
    /// Events received before an earlier version of their stream (or again after a later).
    pub out_of_order: usize,
}

impl Verdict {
    /// Nothing lost, duplicated, invented or reordered.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.rolled_back_delivered == 0 && self.out_of_order == 0
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received {}, lost {}, duplicated {}, rolled back but delivered {}, out of stream order {}",
            self.received, self.lost, self.duplicated, self.rolled_back_delivered, self.out_of_order
        )
    }
}

/// The conformance case for any backend: six writers append concurrently to shared
/// streams while two consumers follow the global log, each storing its checkpoint after
/// every page and restarting from the stored one every few pages. Both receive every
/// committed event once, in stream order.
pub async fn concurrent_history(store: std::sync::Arc<dyn factum::EventStore>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use factum::store::Checkpoint;
    use factum::ExpectedVersion;

    let history = Arc::new(Mutex::new(History::default()));
    let done = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = [("history_a", 5usize), ("history_b", 64)]
        .into_iter()
        .map(|(name, page)| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let mut received = Vec::new();
                let (mut checkpoint, mut pages, mut idle) = (Checkpoint::START, 0u32, 0u32);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    let events = store.read_all(checkpoint, page).await.expect("read_all");
                    if let Some(last) = events.last() {
                        checkpoint = last.checkpoint();
                        store.save_checkpoint(name, checkpoint).await.expect("save checkpoint");
                        received.extend(events);
                        pages += 1;
                        if pages.is_multiple_of(4) {
                            checkpoint =
                                store.load_checkpoint(name).await.expect("load").unwrap_or(Checkpoint::START);
                        }
                        continue;
                    }
                    if done.load(Ordering::Acquire) {
                        idle += 1;
                        if idle > 100 {
                            return received;
                        }
                    }
                    assert!(tokio::time::Instant::now() < deadline, "{name} did not finish reading");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..6u64)
        .map(|w| {
            let (store, history) = (store.clone(), history.clone());
            tokio::spawn(async move {
                for k in 0..40u64 {
                    let stream = StreamId::new("History", format!("h-{}", (w + k) % 4)).expect("stream");
                    let events: Vec<NewEvent> = (0..1 + (w + k) % 3)
                        .map(|i| NewEvent::new("Happened", serde_json::json!({ "w": w, "k": k, "i": i })))
                        .collect();
                    let r =
                        store.append(&stream, ExpectedVersion::Any, events.clone()).await.expect("append");
                    history.lock().unwrap_or_else(|p| p.into_inner()).committed(
                        &stream,
                        &events,
                        r.from_version,
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    done.store(true, Ordering::Release);
    let history = history.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for c in consumers {
        let received = c.await.expect("consumer");
        let verdict = history.check(&received);
        assert!(verdict.is_clean(), "{verdict}");
    }
}
