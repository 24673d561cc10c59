//! Connections kept out of the pool between the store's one-statement operations.
//!
//! sqlx's pool tests a connection with a round trip (`Sync`, then `ReadyForQuery`) each
//! time it takes one back, and by default each time it hands one out. For an append of
//! one event that triples the round trips and more than doubles the work of both sides:
//! measured in `scripts/bench.sh w1`, a raw `INSERT` per pooled connection used 40 µs of
//! client and 100 µs of server CPU, and 18 µs and 72 µs on a connection of its own.
//!
//! So the hot operations borrow from here: a connection that finished its statement
//! cleanly goes back on a short stack instead of into the pool, and the next operation
//! takes it without a test. The stack never starves the pool's other users:
//! - a connection is returned to the pool instead of stacked when the pool is at its
//!   size limit with no idle connection, since someone may be waiting for one;
//! - a connection stacked for longer than [`IDLE`] is returned to the pool by a reaper,
//!   so a quiet store holds none.
//!
//! A connection whose operation was cancelled, or ended in a connection-level error, is
//! never stacked: dropping it returns it to the pool, whose test drains or closes it.
//! After a connection-level error the whole stack goes back to the pool too: when the
//! server restarted, every stacked connection is dead.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use factum::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::task::JoinHandle;

use crate::availability::Availability;

/// How long a connection may wait on the stack before it goes back to the pool.
const IDLE: Duration = Duration::from_millis(100);

pub(crate) struct Connections {
    pool: PgPool,
    avail: Arc<Availability>,
    stack: Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
    reaper: OnceLock<JoinHandle<()>>,
}

impl Connections {
    pub(crate) fn new(pool: PgPool, avail: Arc<Availability>) -> Self {
        Connections { pool, avail, stack: Mutex::new(Vec::new()), reaper: OnceLock::new() }
    }

    /// A connection: the most recently stacked one, else one from the pool. Fails at
    /// once while the database is known to be down.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Lent<'_>, StoreError> {
        self.avail.check()?;
        let stacked = self.lock().pop();
        let conn = match stacked {
            Some((conn, _)) => conn,
            None => self.avail.acquire(&self.pool, self.pool.acquire()).await?,
        };
        Ok(Lent { from: self, conn: Some(conn) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PoolConnection<Postgres>, Instant)>> {
        // The lock is never held across an await or user code: a poisoned stack is intact.
        self.stack.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(self: &Arc<Self>, conn: PoolConnection<Postgres>) {
        let exhausted =
            self.pool.num_idle() == 0 && self.pool.size() >= self.pool.options().get_max_connections();
        if exhausted || self.pool.is_closed() {
            // Someone may be waiting for a connection: let the pool have it.
            return;
        }
        self.lock().push((conn, Instant::now()));
        if self.reaper.get().is_none() {
            self.start_reaper();
        }
    }

    fn start_reaper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let weak = Arc::downgrade(self);
        let _ = self.reaper.set(runtime.spawn(reap(weak)));
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        if let Some(reaper) = self.reaper.get() {
            reaper.abort();
        }
    }
}

/// Returns connections stacked for longer than [`IDLE`] to the pool, until the store
/// is dropped.
async fn reap(connections: Weak<Connections>) {
    let mut tick = tokio::time::interval(IDLE / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(connections) = connections.upgrade() else { return };
        let stale: Vec<_> = {
            let mut stack = connections.lock();
            // The stack's bottom holds the longest idle.
            let keep = stack.iter().position(|(_, at)| at.elapsed() < IDLE).unwrap_or(stack.len());
            stack.drain(..keep).collect()
        };
        drop(stale);
    }
}

/// A borrowed connection. [`release`](Self::release) it when its operation is over;
/// dropped without that (the operation was cancelled), it goes back to the pool.
pub(crate) struct Lent<'a> {
    from: &'a Arc<Connections>,
    conn: Option<PoolConnection<Postgres>>,
}

impl Lent<'_> {
    /// Ends the operation: on a clean outcome the connection is stacked for the next
    /// one; after a connection-level or unexpected error it goes back to the pool.
    pub(crate) fn release<T>(mut self, outcome: &Result<T, StoreError>) {
        let clean = match outcome {
            Ok(_) => true,
            Err(e) => matches!(
                e,
                StoreError::InvalidInput(_)
                    | StoreError::Conflict { .. }
                    | StoreError::DuplicateEvent { .. }
                    | StoreError::RetryTransaction { .. }
            ),
        };
        // Not stacked, the connection goes back to the pool when `self` is dropped.
        let conn = self.conn.take();
        if clean {
            if let Some(conn) = conn {
                self.from.put(conn);
            }
        } else if let Err(e @ StoreError::Backend(_)) = outcome {
            self.from.avail.suspect_store_error(e);
            // The connection may have died with the server: so may every stacked one.
            // The pool tests each as it takes them back and closes the dead ones, so a
            // restart fails one operation here, not one per stacked connection.
            drop(conn);
            drop(std::mem::take(&mut *self.from.lock()));
        }
    }
}

impl Deref for Lent<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_deref().expect("a lent connection is only taken when released")
    }
}

impl DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_deref_mut().expect("a lent connection is only taken when released")
    }
}
