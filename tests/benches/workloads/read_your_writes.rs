//! W8: read-your-writes, from a command's acknowledgment to a read of the read model
//! that waited for the command's checkpoint (`Supervisor::wait_for`), beside W6's live
//! latency at the same rate.

use super::*;

/// The connections of the read path's own pool.
const READ_POOL: u32 = 8;

/// The rates W8 runs at, commands/s.
pub(super) const W8_RATES: [u64; 2] = [500, 2_000];

/// W8 at `rate` commands/s for W6_SECONDS, on a fresh store: the latency from each
/// command's acknowledgment to the end of a read of its account's row after the wait.
pub(super) async fn w8_at(b: &Bench, rate: u64) -> (Rep, f64) {
    let (store, schema) = b.fresh_store("w8").await;
    let factum = factum_on(&store, 10_000);
    warm(&factum).await;
    let counts = Counts::create(store.pool(), &schema).await;
    let supervisor = Supervisor::start(
        Arc::new(store.clone()),
        SupervisorConfig::default()
            .projection(Projection::new("live", ExactlyOnce::new(store.clone(), counts))),
    )
    .await
    .unwrap();
    // Reads go through connections of their own, as a service's read path would: on the
    // store's pool they would queue behind the commands and the projection. They are kept
    // out of sqlx's pool, as the store keeps its own: the pool adds a round trip (`Sync`,
    // then `ReadyForQuery`) when it takes a connection back, and by default another when
    // it hands one out. A read is then one round trip, its statement.
    let reads = Arc::new(ReadConnections::connect(&b.url, READ_POOL).await);
    b.settle().await;
    let read = Arc::new(format!("SELECT n FROM {schema}.account_counts WHERE aggregate_id = $1"));

    let total = (rate * W6_SECONDS) as usize;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let at = started + Duration::from_micros(i as u64 * 1_000_000 / rate);
        tokio::time::sleep_until(at.into()).await;
        let (factum, supervisor, pool, read) =
            (factum.clone(), supervisor.clone(), reads.clone(), read.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("acc-{}", i % STREAMS);
            let executed =
                factum.execute(AccountCommand::Deposit { id: id.clone(), amount: 1 }).await.expect("command");
            let ack = Instant::now();
            let checkpoint = executed.checkpoint.expect("a deposit records an event");
            supervisor.wait_for(checkpoint, &["live"], Duration::from_secs(30)).await.expect("the wait");
            let n: i64 = pool.read(&read, &id).await;
            assert!(n > 0, "the deposit is in the read model");
            ack.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    supervisor.shutdown().await.unwrap();
    factum.shutdown();
    b.drop_schema(&schema).await;
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let p99 = ms[((ms.len() - 1) as f64 * 0.99).round() as usize];
    (Rep { value: p99, latencies, cpu: None }, achieved)
}

/// A fixed set of connections, each lent to one read at a time, never tested in between.
struct ReadConnections {
    free: std::sync::Mutex<Vec<sqlx::PgConnection>>,
    permits: tokio::sync::Semaphore,
}

impl ReadConnections {
    async fn connect(url: &str, n: u32) -> Self {
        use sqlx::Connection;
        let mut free = Vec::new();
        for _ in 0..n {
            free.push(sqlx::PgConnection::connect(url).await.expect("a read connection"));
        }
        ReadConnections {
            free: std::sync::Mutex::new(free),
            permits: tokio::sync::Semaphore::new(n as usize),
        }
    }

    /// `sql`'s one `bigint` for `id`, on a free connection.
    async fn read(&self, sql: &str, id: &str) -> i64 {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let mut conn = self.free.lock().unwrap().pop().expect("a permit means a free connection");
        let n = sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .expect("the read");
        self.free.lock().unwrap().push(conn);
        n
    }
}
