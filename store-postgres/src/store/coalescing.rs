//! The coalescing writer's settings ([`Coalescing`]) and its figures ([`FlushStats`],
//! and the histograms behind the metrics).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// How appends share transactions. On by default; [`Coalescing::off`] gives every append
/// a transaction of its own.
///
/// ```
/// use factum_postgres::{Coalescing, PostgresConfig};
/// let config = PostgresConfig::from_url("postgres://postgres@127.0.0.1/app")?
///     .with_coalescing(Coalescing::default().max_appends(64));
/// assert!(config.coalescing.enabled);
/// let direct = config.with_coalescing(Coalescing::off());
/// assert!(!direct.coalescing.enabled);
/// # Ok::<(), factum_postgres::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Coalescing {
    /// Whether appends at a known version (`Exact`, `NoStream`) are coalesced (default
    /// on). Appends of mode any or stream-exists always run alone.
    pub enabled: bool,
    /// The most appends in one flush (default 256).
    pub max_appends: usize,
    /// The most payload bytes in one flush (default 4 MiB); an append larger than this
    /// is flushed alone.
    pub max_bytes: usize,
    /// How many flushes may run at once (default 1), each on a connection of its own.
    pub max_in_flight: usize,
}

impl Default for Coalescing {
    fn default() -> Self {
        Coalescing { enabled: true, max_appends: 256, max_bytes: 4 << 20, max_in_flight: 1 }
    }
}

impl Coalescing {
    /// No coalescing: each append in a transaction of its own.
    pub fn off() -> Self {
        Coalescing { enabled: false, ..Coalescing::default() }
    }

    /// Sets the most appends in one flush (at least 1).
    #[must_use]
    pub fn max_appends(mut self, n: usize) -> Self {
        self.max_appends = n.max(1);
        self
    }

    /// Sets the most payload bytes in one flush.
    #[must_use]
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets how many flushes may run at once (at least 1).
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }
}

/// Figures of the coalescing writer since the store was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushStats {
    /// Flushes run.
    pub flushes: u64,
    /// Appends they carried.
    pub appends: u64,
    /// The most appends in one flush.
    pub largest: u64,
    /// Appends tried alone after their flush did not store them.
    pub retried_alone: u64,
    /// Time appends spent queued before their flush started, in all.
    pub waited: Duration,
}

pub(crate) struct Counters {
    flushes: AtomicU64,
    appends: AtomicU64,
    largest: AtomicU64,
    retried_alone: AtomicU64,
    waited_ns: AtomicU64,
    /// Appends per flush.
    sizes: Histogram,
    /// Seconds each append waited for its flush to start.
    waits: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            flushes: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            largest: AtomicU64::new(0),
            retried_alone: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
            sizes: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            waits: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
        }
    }
}

impl Counters {
    /// Counts an append tried alone after its flush did not store it.
    pub(crate) fn retried(&self) {
        self.retried_alone.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a flush of appends that waited `waits` for it.
    pub(crate) fn flushed(&self, waits: impl Iterator<Item = Duration>) {
        let (mut n, mut waited) = (0u64, 0u64);
        for wait in waits {
            self.waits.observe(wait.as_secs_f64());
            waited += wait.as_nanos() as u64;
            n += 1;
        }
        self.sizes.observe(n as f64);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.appends.fetch_add(n, Ordering::Relaxed);
        self.largest.fetch_max(n, Ordering::Relaxed);
        self.waited_ns.fetch_add(waited, Ordering::Relaxed);
    }

    /// Registers the flush sizes and waits as `append_flush_size` and
    /// `append_flush_wait_seconds` (`factum_…` in the framework's registry).
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "append_flush_size",
            "Appends per flush of the coalescing writer",
            self.sizes.clone(),
        );
        registry.register(
            "append_flush_wait_seconds",
            "Time an append waited for its flush to start",
            self.waits.clone(),
        );
    }

    pub(crate) fn snapshot(&self) -> FlushStats {
        FlushStats {
            flushes: self.flushes.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
            retried_alone: self.retried_alone.load(Ordering::Relaxed),
            waited: Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed)),
        }
    }
}
