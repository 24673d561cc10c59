//! A store wrapper that injects faults into a real store: lost append replies, failing
//! snapshot writes, failing reads of the log. One generic impl wraps every operation. It
//! also counts the events the log's reads (`read_log`) returned.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use factum::store::op::{Execute, Operation, StreamEvents};
use factum::store::{EventStream, Limits, LogBackend, LogPage, PayloadStream, WakeSignal};
use factum::{StoreError, StreamId, Version};

/// The error a fault reports.
#[derive(Debug, thiserror::Error)]
#[error("injected fault: {0}")]
pub struct Injected(pub &'static str);

/// Delegates to `inner`, failing where told to.
pub struct Faulty<S> {
    /// The real store.
    pub inner: S,
    /// The next append commits, then reports a connection failure.
    pub lose_next_append_reply: AtomicBool,
    /// Snapshot writes fail.
    pub fail_snapshots: AtomicBool,
    /// The next this-many reads of the log (`read_all`, `read_category`, `read_log`) fail.
    pub fail_reads: AtomicU32,
    /// The next this-many reads of the log panic (a bug in a backend: a crash, not an
    /// outage).
    pub panic_reads: AtomicU32,
    /// Events returned by `read_log` so far (selected ones: what its readers were handed).
    pub events_read: AtomicU64,
}

impl<S> Faulty<S> {
    /// A wrapper with no faults armed.
    pub fn new(inner: S) -> Arc<Self> {
        Arc::new(Faulty {
            inner,
            lose_next_append_reply: AtomicBool::new(false),
            fail_snapshots: AtomicBool::new(false),
            fail_reads: AtomicU32::new(0),
            panic_reads: AtomicU32::new(0),
            events_read: AtomicU64::new(0),
        })
    }

    fn read_fault(&self) -> Result<(), StoreError> {
        if self.panic_reads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            panic!("injected: a read of the log panicked");
        }
        let armed = self.fail_reads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match armed {
            Ok(_) => Err(StoreError::backend(Injected("read of the log failed"))),
            Err(_) => Ok(()),
        }
    }
}

#[async_trait]
impl<S, Op> Execute<Op> for Faulty<S>
where
    S: Execute<Op>,
    Op: Operation,
{
    async fn execute(&self, op: Op) -> Result<Op::Output, StoreError> {
        match Op::NAME {
            "read_all" | "read_category" | "read_log" => self.read_fault()?,
            "save_snapshot" if self.fail_snapshots.load(Ordering::SeqCst) => {
                return Err(StoreError::backend(Injected("snapshot write failed")));
            }
            _ => {}
        }
        let result = self.inner.execute(op).await;
        if let Ok(output) = &result {
            if let Some(Some(page)) = (output as &dyn std::any::Any).downcast_ref::<Option<LogPage>>() {
                self.events_read.fetch_add(page.events.len() as u64, Ordering::SeqCst);
            }
        }
        if Op::NAME == "append" && self.lose_next_append_reply.swap(false, Ordering::SeqCst) {
            return Err(StoreError::backend(Injected("connection lost after commit")));
        }
        result
    }
}

impl<S: LogBackend> LogBackend for Faulty<S> {
    fn limits(&self) -> &Limits {
        self.inner.limits()
    }

    fn read_payloads<'a>(&'a self, stream: &'a StreamId, after: Version) -> PayloadStream<'a> {
        self.inner.read_payloads(stream, after)
    }

    fn stream_events(&self, filter: StreamEvents) -> EventStream {
        self.inner.stream_events(filter)
    }

    fn wake_signal(&self) -> WakeSignal {
        self.inner.wake_signal()
    }

    fn category_wake_signal(&self, category: &str) -> WakeSignal {
        self.inner.category_wake_signal(category)
    }
}
