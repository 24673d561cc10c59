//! Test support: the broker's URL, names of their own per test (deleted after), a
//! collecting subscriber, a private broker that tests may stop, and event writers.
#![allow(dead_code, unreachable_pub)]

pub mod broker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use factum::{EventStore, ExpectedVersion, HandlerError, NewEvent, StreamId};
use factum_rabbitmq::{BusEvent, MessageHandler, Subscriber, SubscriberConfig, SubscriberHandle};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use uuid::Uuid;

/// The shared broker's URL: `FACTUM_TEST_AMQP_URL` (set by scripts/test.sh), else the
/// local default.
pub fn amqp_url() -> String {
    std::env::var("FACTUM_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Exchange and queue names of one test, deleted from the broker when dropped.
pub struct Names {
    pub url: String,
    pub prefix: String,
    exchanges: Mutex<Vec<String>>,
    queues: Mutex<Vec<String>>,
}

impl Names {
    pub fn new(url: &str, test: &str) -> Names {
        let prefix = format!("factum-test.{test}.{}", &Uuid::new_v4().simple().to_string()[..8]);
        Names { url: url.to_owned(), prefix, exchanges: Mutex::default(), queues: Mutex::default() }
    }

    pub fn exchange(&self, name: &str) -> String {
        let full = format!("{}.{name}", self.prefix);
        self.exchanges.lock().unwrap().push(full.clone());
        full
    }

    /// A queue name; its dead-letter exchange and queue are cleaned up too.
    pub fn queue(&self, name: &str) -> String {
        let full = format!("{}.{name}", self.prefix);
        self.queues.lock().unwrap().push(full.clone());
        self.queues.lock().unwrap().push(format!("{full}.dead-letter"));
        self.exchanges.lock().unwrap().push(format!("{full}.dead-letter"));
        full
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        let url = self.url.clone();
        let exchanges = std::mem::take(&mut *self.exchanges.lock().unwrap());
        let queues = std::mem::take(&mut *self.queues.lock().unwrap());
        let cleaner = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let connect = Connection::connect(&url, ConnectionProperties::default());
                let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await else {
                    return;
                };
                for q in queues {
                    if let Ok(ch) = conn.create_channel().await {
                        let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
                    }
                }
                for e in exchanges {
                    if let Ok(ch) = conn.create_channel().await {
                        let _ = ch.exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default()).await;
                    }
                }
                let _ = conn.close(200, "test done".into()).await;
            });
        });
        let _ = cleaner.join();
    }
}

/// One received message.
#[derive(Clone, Debug)]
pub struct Received {
    pub event: BusEvent,
    pub at: std::time::Instant,
}

/// A handler that keeps what it receives.
#[derive(Clone, Default)]
pub struct Collector(pub Arc<Mutex<Vec<Received>>>);

#[async_trait::async_trait]
impl MessageHandler for Collector {
    async fn handle(&mut self, event: &BusEvent) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(Received { event: event.clone(), at: std::time::Instant::now() });
        Ok(())
    }
}

impl Collector {
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn ids(&self) -> Vec<Uuid> {
        self.0.lock().unwrap().iter().map(|r| r.event.event_id).collect()
    }

    /// Messages received per event id.
    pub fn counts(&self) -> HashMap<Uuid, usize> {
        let mut counts = HashMap::new();
        for id in self.ids() {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    /// Waits until `n` distinct event ids came, or panics after `timeout`.
    pub async fn until_distinct(&self, n: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let have = self.counts().len();
            if have >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out: {have} of {n} distinct events received"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Starts a collecting subscriber on `queue` bound with `patterns` to `exchange`.
pub async fn collect(
    url: &str,
    exchange: &str,
    queue: &str,
    patterns: &[&str],
) -> (Collector, SubscriberHandle) {
    let collector = Collector::default();
    let config = SubscriberConfig::new(url, queue)
        .exchange(exchange)
        .bind(patterns.iter().copied())
        .prefetch(500)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500));
    let handle = Subscriber::start(config, collector.clone()).await.expect("subscriber starts");
    (collector, handle)
}

/// Appends `per_stream` events to each of `streams` streams of `kind`, in batches, with
/// topics from `topic(i)`; returns the ids with their topics.
pub async fn append_events(
    store: &dyn EventStore,
    kind: &str,
    streams: usize,
    per_stream: usize,
    topic: impl Fn(usize) -> String,
) -> Vec<(Uuid, String)> {
    let mut out = Vec::new();
    for s in 0..streams {
        let stream = StreamId::new(kind, format!("{kind}-{s}")).unwrap();
        let mut i = 0;
        while i < per_stream {
            let n = (per_stream - i).min(500);
            let batch: Vec<NewEvent> = (i..i + n)
                .map(|k| {
                    let t = topic(s * per_stream + k);
                    NewEvent::new("Happened", serde_json::json!({ "n": k })).with_topic(t)
                })
                .collect();
            out.extend(batch.iter().map(|e| (e.event_id, e.topic.clone().unwrap_or_default())));
            store.append(&stream, ExpectedVersion::Any, batch).await.unwrap();
            i += n;
        }
    }
    out
}
