//! W1 (appends, 16 tasks over 200 streams) and W2 (commands through warm aggregate actors).

use super::*;

pub(super) const W1_APPENDS: usize = 20_000;

/// Runs `per_task(task, streams)` on CONCURRENCY tasks, where task `t` owns the streams
/// `t, t + 16, …` and appends to them round robin; returns appends/s and latencies.
pub(super) async fn concurrent<F, Fut>(total: usize, op: F) -> Rep
where
    F: Fn(usize, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    concurrent_n(CONCURRENCY, STREAMS, total, op).await
}

/// `concurrent` with `callers` tasks over `streams` streams: task `t` owns the streams
/// `t, t + callers, …` below `streams`.
pub(super) async fn concurrent_n<F, Fut>(callers: usize, streams: usize, total: usize, op: F) -> Rep
where
    F: Fn(usize, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let cpu = cpu_ticks();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..callers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mine: Vec<usize> = (t..streams).step_by(callers).collect();
            let mut versions = vec![0u64; mine.len()];
            let count = total / callers;
            let mut lat = Vec::with_capacity(count);
            for i in 0..count {
                let k = i % mine.len();
                let began = Instant::now();
                op(t, mine[k], versions[k]).await;
                lat.push(began.elapsed());
                versions[k] += 1;
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let took = started.elapsed().as_secs_f64();
    let cpu = cpu_per_op(cpu, latencies.len());
    Rep { value: latencies.len() as f64 / took, latencies, cpu }
}

/// The raw baseline: each task sends its `INSERT`s on a connection of its own, the least
/// a client can do per append (a pooled connection costs two more round trips: sqlx tests
/// it when it is taken and when it is given back).
pub(super) async fn w1_raw(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w1raw").await;
    drop(store);
    let mut conns = Vec::new();
    for _ in 0..CONCURRENCY {
        conns.push(tokio::sync::Mutex::new(PgConnection::connect(&b.url).await.expect("raw connection")));
    }
    let conns = Arc::new(conns);
    let sql: &'static str = Box::leak(raw_insert_sql(&schema).into_boxed_str());
    b.settle().await;
    let rep = concurrent(W1_APPENDS, move |t, stream, version| {
        let conns = conns.clone();
        async move {
            let id = format!("acc-{stream}");
            let e = new_event(&id, 1);
            // Only task `t` uses connection `t`: the lock is never contended.
            let mut conn = conns[t].lock().await;
            raw_insert(&mut conn, sql, &e, &id, version).await;
        }
    })
    .await;
    b.drop_schema(&schema).await;
    rep
}

pub(super) async fn w1_framework(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w1fw").await;
    b.settle().await;
    let rep = concurrent(W1_APPENDS, move |_, stream, version| {
        let store = store.clone();
        async move {
            let id = format!("acc-{stream}");
            let s = StreamId::new("Account", id.as_str()).unwrap();
            store
                .append(&s, ExpectedVersion::Exact(Version(version)), vec![new_event(&id, 1)])
                .await
                .expect("append");
        }
    })
    .await;
    b.drop_schema(&schema).await;
    rep
}

pub(super) const W2_COMMANDS: usize = 20_000;

pub(super) fn factum_on(store: &PostgresStore, cap: usize) -> Factum {
    factum_with(store, FactumConfig::default().max_live_actors(cap))
}

pub(super) fn factum_with(store: &PostgresStore, config: FactumConfig) -> Factum {
    Factum::with_config(Arc::new(store.clone()), config, Arc::new(Metrics::new()))
}

pub(super) async fn warm(factum: &Factum) {
    for s in 0..STREAMS {
        factum.load::<Account>(&format!("acc-{s}")).await.expect("warm");
    }
}

pub(super) async fn w2_framework(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w2fw").await;
    let factum = factum_on(&store, 10_000);
    warm(&factum).await;
    b.settle().await;
    let f = factum.clone();
    let rep = concurrent(W2_COMMANDS, move |_, stream, _| {
        let f = f.clone();
        async move {
            f.execute(AccountCommand::Deposit { id: format!("acc-{stream}"), amount: 1 })
                .await
                .expect("command");
        }
    })
    .await;
    factum.shutdown();
    b.drop_schema(&schema).await;
    rep
}
