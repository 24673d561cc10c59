//! One shared `LISTEN` connection per store, turning notifications into wake-ups: of
//! every reader of the log, and of the readers of the notified category.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;

/// The wake-up senders a store's listener serves.
#[derive(Default)]
pub(crate) struct Wakes {
    /// Every append.
    pub(crate) all: watch::Sender<u64>,
    /// Appends to one category, for the categories someone asked about.
    pub(crate) categories: Mutex<HashMap<String, watch::Sender<u64>>>,
}

fn bump(wake: &watch::Sender<u64>) {
    wake.send_modify(|n| *n = n.wrapping_add(1));
}

impl Wakes {
    pub(crate) fn category(&self, category: &str) -> watch::Receiver<u64> {
        let mut map = self.categories.lock().unwrap_or_else(|p| p.into_inner());
        // Forget categories nobody listens to any more.
        map.retain(|_, s| s.receiver_count() > 0);
        map.entry(category.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Wakes the readers of the log and those of `category`; all of them if `None` (the
    /// notification did not say, or some may have been missed).
    pub(crate) fn wake(&self, category: Option<&str>) {
        bump(&self.all);
        let map = self.categories.lock().unwrap_or_else(|p| p.into_inner());
        match category {
            Some(c) => map.get(c).into_iter().for_each(bump),
            None => map.values().for_each(bump),
        }
    }
}

/// Listens on `channel` for as long as the store lives (the store aborts it when dropped),
/// reconnecting after failures. After every (re)connection it wakes everyone, since
/// notifications may have been missed while it was away.
pub(crate) async fn run(pool: PgPool, channel: String, wakes: Arc<Wakes>) {
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match connected.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, channel, "cannot LISTEN; readers poll until it can");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        wakes.wake(None);
        loop {
            match listener.recv().await {
                // An empty payload comes from a schema older than category payloads.
                Ok(n) => wakes.wake(Some(n.payload()).filter(|p| !p.is_empty())),
                Err(e) => {
                    tracing::warn!(error = %e, channel, "LISTEN connection failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Notifications of committed appends, sent after the commit by one task per store.
///
/// A `NOTIFY` inside the appending transaction makes PostgreSQL take its database-wide
/// notification lock at commit and hold it until the commit is durable, so that every
/// appender waits for the previous one's WAL flush: committers go single file and group
/// commit is lost (a third of the raw `INSERT` rate in the W1 benchmark). Instead,
/// [`EventStore::append`](factum::store::EventLog::append) commits without notifying, wakes
/// this process's readers at once, and hands the category to this queue; its task sends
/// the `NOTIFY`s for other processes in short transactions of their own that write no
/// WAL, several categories in one statement, and at most one every [`NOTIFY_GAP`]: under
/// a steady stream of appends, a `NOTIFY` per append would cost the server nearly as many
/// transactions again as the appends themselves.
#[derive(Default)]
pub(crate) struct Notifier {
    pending: Mutex<Vec<String>>,
    signal: tokio::sync::Notify,
}

impl Notifier {
    /// Queues a notification for `category` (sent once however often it is queued
    /// before the task runs).
    pub(crate) fn push(&self, category: &str) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if !pending.iter().any(|c| c == category) {
                pending.push(category.to_owned());
            }
        }
        self.signal.notify_one();
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The shortest time between two `NOTIFY`s of one store: what it adds at most to a wake-up
/// in another process (this process's readers are woken at once).
pub(crate) const NOTIFY_GAP: Duration = Duration::from_millis(5);

/// Sends the queued notifications on `channel` for as long as the store lives (the store
/// aborts it when dropped). A failed `NOTIFY` is logged; readers elsewhere then find the
/// events by polling.
pub(crate) async fn notify(pool: PgPool, channel: String, queue: Arc<Notifier>) {
    let mut last = tokio::time::Instant::now() - NOTIFY_GAP;
    loop {
        queue.signal.notified().await;
        // Appends that come in meanwhile are queued and go out with this one.
        tokio::time::sleep_until(last + NOTIFY_GAP).await;
        last = tokio::time::Instant::now();
        let categories = queue.take();
        if categories.is_empty() {
            continue;
        }
        let sent = sqlx::query("SELECT pg_notify($1, c) FROM unnest($2::text[]) AS c")
            .bind(&channel)
            .bind(&categories)
            .execute(&pool)
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, channel, "NOTIFY after an append failed; other processes' readers poll");
        }
    }
}
