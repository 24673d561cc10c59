//! Failing fast while the database is down: a circuit that a probe opens when it finds
//! the server unreachable, and closes as soon as it finds it back.
//!
//! Without it, every operation during an outage waits for the pool's acquire timeout
//! (5 s by default), because the pool keeps retrying a refused connection until then; a
//! load balancer's health check gives up first. With it:
//! - an operation whose connection breaks, or whose wait for a connection is slow while
//!   the pool is not at its limit (so it is connecting, not queueing), makes the store
//!   *suspect* an outage and start one probe: a connection of its own with a short
//!   timeout, outside the pool;
//! - a failed probe opens the circuit: every operation then fails at once with
//!   [`StoreError::Unavailable`], without sending anything, and so do those already
//!   waiting for a connection;
//! - while open, the probe runs again every [`PROBE_EVERY`]; the first one that connects
//!   closes the circuit, and operations go through again.
//!
//! With several servers (a replicated cluster, [`PostgresConfig::hosts`]), the probe asks
//! them all which one accepts writes, and points the pool at it: a failover opens the
//! circuit until a standby is promoted, and closes it on the new primary. Connections
//! made before the move are not handed out again, and a new connection that lands on a
//! standby is refused, so no operation runs on a server that has stopped being the
//! primary for longer than one failed statement (which makes the store probe again).
//!
//! [`PostgresConfig::hosts`]: crate::PostgresConfig::hosts

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::stream::BoxStream;
use futures_util::Stream;

use factum::StoreError;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::sync::watch;

use crate::classify::is_refusal;
pub(crate) use crate::classify::{describe, is_connection_error, is_login_refusal, outcome_unknown};

/// How long a probe may take to connect and answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(750);
/// How often the probe runs while the circuit is open.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// A wait for a connection longer than this, while the pool is below its limit, makes
/// the store suspect an outage.
const SLOW_ACQUIRE: Duration = Duration::from_millis(250);

pub(crate) struct Availability {
    /// `Some(reason)` while the circuit is open.
    down: watch::Sender<Option<Arc<str>>>,
    probing: AtomicBool,
    /// The server, or the servers of a replicated cluster.
    targets: Vec<PgConnectOptions>,
    /// The pool the probe points at the primary, with several servers.
    pool: OnceLock<PgPool>,
    /// When the pool was last pointed at another server.
    moved_at: Mutex<Option<Instant>>,
}

impl Availability {
    pub(crate) fn new(targets: Vec<PgConnectOptions>) -> Arc<Self> {
        assert!(!targets.is_empty(), "a store has at least one server");
        Arc::new(Availability {
            down: watch::Sender::new(None),
            probing: AtomicBool::new(false),
            targets,
            pool: OnceLock::new(),
            moved_at: Mutex::new(None),
        })
    }

    /// Whether the store follows the primary among several servers.
    pub(crate) fn follows(&self) -> bool {
        self.targets.len() > 1
    }

    /// Gives the probe the pool to point at the primary.
    pub(crate) fn attach(&self, pool: &PgPool) {
        let _ = self.pool.set(pool.clone());
    }

    /// Whether a connection `age` old was made before the pool last moved to another
    /// server: it may be on the old primary, and is closed rather than handed out.
    pub(crate) fn predates_move(&self, age: Duration) -> bool {
        let moved = *self.moved_at.lock().unwrap_or_else(|p| p.into_inner());
        moved.is_some_and(|at| Instant::now().checked_sub(age).is_none_or(|born| born < at))
    }

    /// Checks that a new connection is on a server that accepts writes, when following
    /// a primary: one on a standby is refused with a connection-level error, which makes
    /// the store look for the primary again.
    pub(crate) async fn check_new(&self, conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        if !self.follows() {
            return Ok(());
        }
        let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut *conn).await?;
        if recovering {
            return Err(sqlx::Error::Io(std::io::Error::other(
                "connected to a standby (in recovery), not the primary",
            )));
        }
        Ok(())
    }

    /// `Err(Unavailable)` while the circuit is open.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        match &*self.down.borrow() {
            Some(reason) => Err(unavailable(reason)),
            None => Ok(()),
        }
    }

    /// Wraps a stream of rows read straight from the pool: it fails with
    /// [`StoreError::Unavailable`] at once if the circuit is open, or as soon as it opens,
    /// instead of waiting for the pool's acquire timeout. A slow first row starts a probe.
    ///
    /// A row that does not come within `timeout` of the one before (or of the start) ends
    /// the stream with [`StoreError::Timeout`] for `operation`.
    pub(crate) fn guard<'a, T: Send + 'a>(
        self: &Arc<Self>,
        operation: &'static str,
        timeout: Duration,
        rows: BoxStream<'a, Result<T, StoreError>>,
    ) -> BoxStream<'a, Result<T, StoreError>> {
        if let Err(e) = self.check() {
            return Box::pin(futures_util::stream::iter([Err(e)]));
        }
        let mut down = self.down.subscribe();
        let this = self.clone();
        let opened = async move {
            let slow = tokio::time::sleep(SLOW_ACQUIRE);
            tokio::pin!(slow);
            let mut suspected = false;
            loop {
                if let Some(reason) = &*down.borrow_and_update() {
                    return unavailable(reason);
                }
                tokio::select! {
                    changed = down.changed() => if changed.is_err() {
                        std::future::pending::<()>().await;
                    },
                    () = &mut slow, if !suspected => {
                        suspected = true;
                        this.start_probe();
                    }
                }
            }
        };
        let idle = Box::pin(tokio::time::sleep(timeout));
        Box::pin(UntilDown {
            rows,
            opened: Some(Box::pin(opened)),
            idle,
            timeout,
            operation,
            avail: self.clone(),
        })
    }

    /// Gets a connection (or a transaction) from `pool` through `acquire`, failing at
    /// once while the circuit is open or as soon as it opens. Nothing has been sent when
    /// this fails, so every failure is [`StoreError::Unavailable`] (but for a closed pool).
    pub(crate) async fn acquire<T>(
        self: &Arc<Self>,
        pool: &PgPool,
        acquire: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        self.check()?;
        let mut down = self.down.subscribe();
        tokio::pin!(acquire);
        let slow = tokio::time::sleep(SLOW_ACQUIRE);
        tokio::pin!(slow);
        let mut suspected = false;
        loop {
            tokio::select! {
                got = &mut acquire => {
                    return got.map_err(|e| {
                        self.suspect(&e);
                        match e {
                            sqlx::Error::PoolClosed => StoreError::backend(e),
                            e => StoreError::Unavailable { reason: describe(&e) },
                        }
                    });
                }
                () = &mut slow, if !suspected => {
                    suspected = true;
                    if pool.size() < pool.options().get_max_connections() {
                        self.start_probe();
                    }
                }
                changed = down.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    if let Some(reason) = &*down.borrow_and_update() {
                        return Err(unavailable(reason));
                    }
                }
            }
        }
    }

    /// An operation failed with `error`: if it was a connection-level failure, probe the
    /// server.
    pub(crate) fn suspect(self: &Arc<Self>, error: &sqlx::Error) {
        if is_connection_error(error) {
            self.start_probe();
        }
    }

    /// Like [`suspect`](Self::suspect), for an error already wrapped in a store error.
    pub(crate) fn suspect_store_error(self: &Arc<Self>, error: &StoreError) {
        if let StoreError::Backend(e) = error {
            if let Some(e) = e.downcast_ref::<sqlx::Error>() {
                self.suspect(e);
            }
        }
    }

    /// An operation got no answer in time: the server may be stalled; probe it.
    pub(crate) fn suspect_stall(self: &Arc<Self>) {
        self.start_probe();
    }

    fn start_probe(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.probing.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(self.clone().probe_until_up());
    }

    /// Probes once; while that fails, keeps the circuit open and probes again.
    async fn probe_until_up(self: Arc<Self>) {
        loop {
            match self.probe().await {
                Ok(()) => {
                    let was_down = self.down.send_replace(None).is_some();
                    if was_down {
                        tracing::info!("database reachable again; store operations resume");
                    }
                    self.probing.store(false, Ordering::Release);
                    return;
                }
                Err(reason) => {
                    let was_up = self.down.send_replace(Some(reason.clone().into())).is_none();
                    if was_up {
                        tracing::warn!(%reason, "database unreachable; store operations fail fast until it answers");
                    }
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    async fn probe(&self) -> Result<(), String> {
        if self.follows() {
            return self.follow().await;
        }
        let attempt = async {
            let mut conn = self.targets[0].connect().await?;
            conn.ping().await?;
            conn.close().await
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(Ok(())) => Ok(()),
            // The server answered, if only to refuse this login (too many connections,
            // authentication): it is up, and the pool's own connections may be working.
            Ok(Err(e)) if !is_connection_error(&e) || is_refusal(&e) => Ok(()),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer from the database within {} ms", PROBE_TIMEOUT.as_millis())),
        }
    }
}

impl Availability {
    /// Finds the primary among the servers and points the pool at it.
    async fn follow(&self) -> Result<(), String> {
        let index = crate::hosts::find_primary(&self.targets, PROBE_TIMEOUT).await?;
        let Some(pool) = self.pool.get() else { return Ok(()) };
        let target = &self.targets[index];
        let current = pool.connect_options();
        if (current.get_host(), current.get_port()) != (target.get_host(), target.get_port()) {
            pool.set_connect_options(target.clone());
            *self.moved_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            tracing::warn!(
                from = %crate::hosts::address(&current),
                to = %crate::hosts::address(target),
                "the primary moved; the store follows it"
            );
        }
        Ok(())
    }
}

/// A stream that ends with an error when the circuit opens (see [`Availability::guard`]).
struct UntilDown<'a, T> {
    rows: BoxStream<'a, Result<T, StoreError>>,
    /// Resolves when the circuit opens; `None` once the stream has ended.
    opened: Option<Pin<Box<dyn Future<Output = StoreError> + Send + 'a>>>,
    /// Fires when the next row is overdue.
    idle: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    operation: &'static str,
    avail: Arc<Availability>,
}

impl<T> Stream for UntilDown<'_, T> {
    // Every field is Unpin (the futures are boxed).
    type Item = Result<T, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(opened) = self.opened.as_mut() else { return Poll::Ready(None) };
        if let Poll::Ready(e) = opened.as_mut().poll(cx) {
            self.opened = None;
            return Poll::Ready(Some(Err(e)));
        }
        let next = self.rows.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(None) => self.opened = None,
            Poll::Ready(Some(_)) => {
                let deadline = tokio::time::Instant::now() + self.timeout;
                self.idle.as_mut().reset(deadline);
            }
            Poll::Pending => {
                if self.idle.as_mut().poll(cx).is_ready() {
                    self.opened = None;
                    self.avail.suspect_stall();
                    return Poll::Ready(Some(Err(StoreError::Timeout {
                        operation: self.operation,
                        after: self.timeout,
                    })));
                }
            }
        }
        next
    }
}

fn unavailable(reason: &str) -> StoreError {
    StoreError::Unavailable { reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_probe_opens_the_circuit_and_operations_fail_at_once() {
        // Nothing listens on port 1: the probe is refused.
        let options: PgConnectOptions = "postgres://postgres@127.0.0.1:1/postgres".parse().unwrap();
        let avail = Availability::new(vec![options]);
        assert!(avail.check().is_ok());
        avail.suspect(&sqlx::Error::PoolTimedOut);
        let mut down = avail.down.subscribe();
        tokio::time::timeout(Duration::from_secs(5), down.wait_for(Option::is_some)).await.unwrap().unwrap();
        match avail.check() {
            Err(StoreError::Unavailable { reason }) => assert!(reason.contains("refused"), "{reason}"),
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
}
