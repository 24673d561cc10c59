//! Projection leases on PostgreSQL: session-level advisory locks, all held by one
//! dedicated connection per store, so that many projections do not hold a connection
//! each. When that connection breaks, PostgreSQL releases every lock it held, and
//! another instance can take the projections over; this instance sees its leases lapse
//! at its next health check (every 250 ms) or at its next checkpoint write, which is
//! fenced (`advance_checkpoint`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use factum::store::Lease;
use factum::StoreError;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::availability::Availability;
use crate::rows::backend;

/// The first key of the two-key advisory locks: "fact" in ASCII. The second key is a
/// hash of the schema and the projection's name. The two-key form keeps these locks
/// apart from single-key (bigint) locks, such as the appends' per-stream locks.
pub(crate) const LOCK_SPACE: i32 = 0x6661_6374;

const HEALTH_CHECK: Duration = Duration::from_millis(250);

enum Cmd {
    Acquire { name: String, reply: oneshot::Sender<Result<Option<u64>, StoreError>> },
    Release { name: String, generation: u64 },
}

/// The handle a store keeps; the task behind it owns the connection.
pub(crate) struct Leases {
    tx: mpsc::UnboundedSender<Cmd>,
    /// The generation of the connection that holds the locks now (bumped whenever it is
    /// replaced or lost); a lease is held while its generation is the current one.
    live: Arc<AtomicU64>,
}

impl Leases {
    pub(crate) fn start(pool: PgPool, avail: Arc<Availability>, schema: String) -> Leases {
        let (tx, rx) = mpsc::unbounded_channel();
        let live = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(pool, avail, schema, rx, live.clone()));
        Leases { tx, live }
    }

    pub(crate) async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Backend("the lease connection's task has stopped".into());
        self.tx.send(Cmd::Acquire { name: name.to_owned(), reply }).map_err(|_| gone())?;
        let Some(generation) = answer.await.map_err(|_| gone())?? else { return Ok(None) };
        let live = self.live.clone();
        let tx = self.tx.clone();
        let name = name.to_owned();
        Ok(Some(Lease::new(
            move || live.load(Ordering::Acquire) == generation,
            move || {
                tx.send(Cmd::Release { name, generation }).ok();
            },
        )))
    }
}

struct Holder {
    pool: PgPool,
    avail: Arc<Availability>,
    schema: String,
    conn: Option<PgConnection>,
    generation: u64,
    held: HashSet<String>,
    live: Arc<AtomicU64>,
}

impl Holder {
    fn lost(&mut self, e: &sqlx::Error) {
        if self.conn.take().is_some() {
            tracing::warn!(error = %e, leases = self.held.len(), "lease connection lost; its projections stand by");
        }
        self.held.clear();
        self.generation += 1;
        self.live.store(self.generation, Ordering::Release);
    }

    /// Connects the lease connection if there is none; fails fast while the database is
    /// known to be down.
    async fn connect(&mut self) -> Result<(), StoreError> {
        if self.conn.is_none() {
            // A connection of its own, outside the pool: it lives as long as the locks.
            let conn = self.avail.acquire(&self.pool, self.pool.acquire()).await?.detach();
            self.generation += 1;
            self.live.store(self.generation, Ordering::Release);
            self.held.clear();
            self.conn = Some(conn);
        }
        Ok(())
    }

    fn key(&self, name: &str) -> String {
        format!("{}.{}", self.schema, name)
    }

    async fn acquire(&mut self, name: String) -> Result<Option<u64>, StoreError> {
        // Within one process, a name is held once: the session lock would be re-entrant.
        if self.conn.is_some() && self.held.contains(&name) {
            return Ok(None);
        }
        let key = self.key(&name);
        self.connect().await?;
        let Some(conn) = self.conn.as_mut() else { return Ok(None) };
        let got = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(LOCK_SPACE)
            .bind(&key)
            .fetch_one(conn)
            .await;
        match got {
            Ok(true) => {
                self.held.insert(name);
                Ok(Some(self.generation))
            }
            Ok(false) => Ok(None),
            Err(e) => {
                self.lost(&e);
                self.avail.suspect(&e);
                Err(backend(e))
            }
        }
    }

    async fn release(&mut self, name: String, generation: u64) {
        if generation != self.generation || !self.held.remove(&name) {
            return;
        }
        let key = self.key(&name);
        let Some(conn) = self.conn.as_mut() else { return };
        let done = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(LOCK_SPACE)
            .bind(&key)
            .execute(conn)
            .await;
        if let Err(e) = done {
            self.lost(&e);
        }
    }

    async fn check(&mut self) {
        let Some(conn) = self.conn.as_mut() else { return };
        if let Err(e) = conn.ping().await {
            self.lost(&e);
        }
    }
}

async fn run(
    pool: PgPool,
    avail: Arc<Availability>,
    schema: String,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    live: Arc<AtomicU64>,
) {
    let mut holder = Holder { pool, avail, schema, conn: None, generation: 0, held: HashSet::new(), live };
    let mut health = tokio::time::interval(HEALTH_CHECK);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Acquire { name, reply }) => {
                    let result = holder.acquire(name).await;
                    reply.send(result).ok();
                }
                Some(Cmd::Release { name, generation }) => holder.release(name, generation).await,
                // The store and every lease are gone; closing the connection frees the rest.
                None => return,
            },
            _ = health.tick(), if !holder.held.is_empty() => holder.check().await,
        }
    }
}
