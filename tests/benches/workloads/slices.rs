//! W9: a projection in slices whose handler waits 2 ms per event (simulated I/O: a mail,
//! an HTTP call): events/s with 1, 4 and 16 slices in one instance, and with 16 slices
//! over 2 instances, against 1 slice's rate times the slices (linear).

use super::*;

/// The events W9 applies, over W9_STREAMS streams.
pub(super) const W9_EVENTS: usize = 8_000;
const W9_STREAMS: usize = 400;
/// What the handler waits per event.
const W9_WAIT: Duration = Duration::from_millis(2);
/// The layouts W9 runs: (slices, instances).
pub(super) const W9_LAYOUTS: [(u16, usize); 4] = [(1, 1), (4, 1), (16, 1), (16, 2)];

struct Slow(Arc<AtomicU64>);

#[async_trait]
impl factum::EventHandler for Slow {
    async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), HandlerError> {
        tokio::time::sleep(W9_WAIT).await;
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// W9 for `slices` slices over `instances` instances (supervisors on stores of their own,
/// in this process), on a fresh store holding W9_EVENTS events: the rate between 5% and
/// 95% of the events handled (the start, with its lease taking and the spreading of the
/// slices, and the tail left out), with the CPU per event over the whole run.
pub(super) async fn w9_at(b: &Bench, slices: u16, instances: usize) -> Rep {
    let (store, schema) = b.fresh_store("w9").await;
    for s in 0..W9_STREAMS {
        let id = format!("w9-{s}");
        let stream = StreamId::new("Account", id.as_str()).unwrap();
        let batch: Vec<NewEvent> = (0..W9_EVENTS / W9_STREAMS).map(|_| new_event(&id, 1)).collect();
        store.append(&stream, ExpectedVersion::NoStream, batch).await.expect("append");
    }
    b.settle().await;
    let handled = Arc::new(AtomicU64::new(0));
    let before = cpu_ticks();
    let mut supervisors = Vec::new();
    for _ in 0..instances {
        let config = PostgresConfig::from_url(&b.url)
            .expect("bench url")
            .with_schema(SchemaNames::in_schema(schema.clone()))
            .with_pool(PoolSettings::default().max_connections(POOL));
        let store = PostgresStore::connect(config).await.expect("connect");
        let h = handled.clone();
        let projection = if slices == 1 {
            Projection::with_handler("slow", Slow(h))
        } else {
            Projection::sliced_handler("slow", slices, move |_| Slow(h.clone()))
        };
        let config = SupervisorConfig::default()
            .projection(projection.batch_size(100))
            .lease_retry(Duration::from_millis(100));
        supervisors.push(Supervisor::start(Arc::new(store), config).await.expect("supervisor"));
    }
    let (low, high) = (W9_EVENTS as u64 / 20, W9_EVENTS as u64 * 19 / 20);
    let mut from = None;
    let began = Instant::now();
    let until = loop {
        let n = handled.load(Ordering::Relaxed);
        if from.is_none() && n >= low {
            from = Some((Instant::now(), n));
        }
        if n >= high {
            break (Instant::now(), n);
        }
        assert!(began.elapsed() < Duration::from_secs(300), "W9 did not finish: {n} handled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let (from, n0) = from.expect("passed 5% before 95%");
    let rate = (until.1 - n0) as f64 / (until.0 - from).as_secs_f64();
    while handled.load(Ordering::Relaxed) < W9_EVENTS as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu = cpu_per_op(before, W9_EVENTS);
    for s in supervisors {
        s.shutdown().await.unwrap();
    }
    store.pool().close().await;
    b.drop_schema(&schema).await;
    Rep { value: rate, latencies: Vec::new(), cpu }
}
