//! W6: latency from a command's acknowledgment to its event committed by a live projection.

use super::*;

pub(super) const W6_RATE: u64 = 2_000;
pub(super) const W6_SECONDS: u64 = 5;

pub(super) async fn w6(b: &Bench) -> (Rep, f64) {
    let (store, schema) = b.fresh_store("w6").await;
    w6_at(b, store, &schema, W6_RATE).await
}

/// W6 on `store` (in `schema`, dropped afterwards) at `rate` commands/s for W6_SECONDS.
pub(super) async fn w6_at(b: &Bench, store: PostgresStore, schema: &str, rate: u64) -> (Rep, f64) {
    let factum = factum_on(&store, 10_000);
    warm(&factum).await;
    let counts = Counts::create(store.pool(), schema).await;
    let committed = Arc::new(Mutex::new(HashMap::new()));
    let sink = Timed {
        inner: ExactlyOnce::new(store.clone(), counts),
        batches: Arc::new(Mutex::new(Vec::new())),
        handled: Arc::new(AtomicU64::new(0)),
        committed: Some(committed.clone()),
    };
    let supervisor = Supervisor::start(
        Arc::new(store.clone()),
        SupervisorConfig::default().projection(Projection::new("live", sink)),
    )
    .await
    .unwrap();
    b.settle().await;

    let total = (rate * W6_SECONDS) as usize;
    let acks = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let at = started + Duration::from_micros(i as u64 * 1_000_000 / rate);
        tokio::time::sleep_until(at.into()).await;
        let factum = factum.clone();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let correlation = Uuid::now_v7();
            let metadata = Metadata { correlation_id: Some(correlation), ..Metadata::default() };
            let command = AccountCommand::Deposit { id: format!("acc-{}", i % STREAMS), amount: 1 };
            factum.execute_with(command, metadata).await.expect("command");
            acks.lock().unwrap().push((correlation, Instant::now()));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = {
            let c = committed.lock().unwrap();
            acks.lock().unwrap().iter().all(|(id, _)| c.contains_key(id))
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    supervisor.shutdown().await.unwrap();
    factum.shutdown();
    let lat: Vec<Duration> = {
        let c = committed.lock().unwrap();
        let acks = acks.lock().unwrap();
        // An event never seen committed counts as the 30 s waited for it.
        acks.iter()
            .map(|(id, ack)| {
                c.get(id).map_or(Duration::from_secs(30), |at| at.saturating_duration_since(*ack))
            })
            .collect()
    };
    b.drop_schema(schema).await;
    let mut ms: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let p99 = ms[((ms.len() - 1) as f64 * 0.99).round() as usize];
    (Rep { value: p99, latencies: lat, cpu: None }, achieved)
}
