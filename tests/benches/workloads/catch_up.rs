//! W4 (catch-up of a new projection over 200,000 stored events) and W5 (bulk appends of 1,000 events).

use super::*;

pub(super) const W4_EVENTS: usize = 200_000;
pub(super) const W4_BATCH: usize = 1_000;

/// Stores `total` events over STREAMS streams in appends of 1,000; returns the latencies.
pub(super) async fn bulk(store: &PostgresStore, total: usize, tag: &str) -> Vec<Duration> {
    let mut lat = Vec::new();
    let per_stream = total.div_ceil(STREAMS).max(1);
    let mut versions = vec![0u64; STREAMS];
    let mut done = 0;
    let mut s = 0;
    while done < total {
        let k = (total - done).min(1_000);
        let id = format!("{tag}-{s}");
        let stream = StreamId::new("Account", id.as_str()).unwrap();
        let batch: Vec<NewEvent> = (0..k).map(|_| new_event(&id, 1)).collect();
        let began = Instant::now();
        let r =
            store.append(&stream, ExpectedVersion::Exact(Version(versions[s])), batch).await.expect("bulk");
        lat.push(began.elapsed());
        versions[s] = r.to_version.0;
        done += k;
        if versions[s] as usize >= per_stream {
            s = (s + 1) % STREAMS;
        }
    }
    lat
}

/// The counter read model: events per aggregate id.
pub(super) struct Counts {
    pub(super) one: SqlStr,
    pub(super) many: SqlStr,
}

impl Counts {
    pub(super) async fn create(pool: &PgPool, schema: &str) -> Counts {
        let table = format!("{schema}.account_counts");
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE {table} (aggregate_id TEXT PRIMARY KEY, n BIGINT NOT NULL)"
        )))
        .execute(pool)
        .await
        .unwrap();
        Counts {
            one: statement(format!(
                "INSERT INTO {table} (aggregate_id, n) VALUES ($1, 1) \
                 ON CONFLICT (aggregate_id) DO UPDATE SET n = account_counts.n + 1"
            )),
            many: statement(format!(
                "INSERT INTO {table} (aggregate_id, n) SELECT * FROM unnest($1::text[], $2::bigint[]) \
                 ON CONFLICT (aggregate_id) DO UPDATE SET n = account_counts.n + EXCLUDED.n"
            )),
        }
    }
}

#[async_trait]
impl PgProjection for Counts {
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
        sqlx::query(self.one.clone()).bind(event.stream.aggregate_id()).execute(tx).await?;
        Ok(())
    }

    async fn handle_batch(
        &mut self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for e in events {
            *counts.entry(e.stream.aggregate_id()).or_default() += 1;
        }
        let (ids, ns): (Vec<&str>, Vec<i64>) = counts.into_iter().unzip();
        sqlx::query(self.many.clone()).bind(ids).bind(ns).execute(tx).await?;
        Ok(())
    }
}

/// Wraps a sink to time its batches and note when each event's batch committed.
pub(super) struct Timed<S> {
    pub(super) inner: S,
    pub(super) batches: Arc<Mutex<Vec<Duration>>>,
    pub(super) handled: Arc<AtomicU64>,
    pub(super) committed: Option<Arc<Mutex<HashMap<Uuid, Instant>>>>,
}

#[async_trait]
impl<S: ProjectionSink> ProjectionSink for Timed<S> {
    async fn apply(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        let began = Instant::now();
        let events = batch.events;
        let r = self.inner.apply(batch).await;
        if r.is_ok() {
            let now = Instant::now();
            self.batches.lock().unwrap().push(now - began);
            self.handled.fetch_add(events.len() as u64, Ordering::Release);
            if let Some(c) = &self.committed {
                let mut c = c.lock().unwrap();
                for e in events {
                    if let Some(id) = e.metadata.correlation_id {
                        c.insert(id, now);
                    }
                }
            }
        }
        r
    }

    async fn skip(&mut self, failure: &ProjectionFailure, from: Checkpoint) -> Result<(), SinkError> {
        self.inner.skip(failure, from).await
    }

    async fn retry_failed(&mut self, projection: &str, event: &RecordedEvent) -> Result<(), SinkError> {
        self.inner.retry_failed(projection, event).await
    }

    async fn reset(&mut self, projection: &str, to: Checkpoint, clear: bool) -> Result<(), SinkError> {
        self.inner.reset(projection, to, clear).await
    }
}

pub(super) async fn w4(b: &Bench) -> (Rep, Rep) {
    w4_on(b, false).await
}

/// W4 on the default schema or the lean one (`lean`): (framework, raw).
pub(super) async fn w4_on(b: &Bench, lean: bool) -> (Rep, Rep) {
    let (store, schema) = b.fresh_store_with("w4", !lean).await;
    bulk(&store, W4_EVENTS, "acc").await;
    sqlx::query(AssertSqlSafe(format!("VACUUM ANALYZE {schema}.events"))).execute(&b.admin).await.unwrap();
    b.settle().await;

    // Raw: keyset pages in the log's order, every column decoded, payload and metadata
    // as JSON.
    let pool = b.raw_pool().await;
    let sql = statement(format!(
        "SELECT global_position, transaction_id, event_id, aggregate_type, aggregate_id, version, \
         event_type, event_version, topic, event_data, metadata, occurred_at, recorded_at \
         FROM {schema}.events WHERE (transaction_id, global_position) > ($1, $2) \
         ORDER BY transaction_id, global_position LIMIT $3"
    ));
    let began = Instant::now();
    let mut after = (0i64, 0i64);
    let mut n = 0;
    let mut pages = Vec::new();
    loop {
        let page_began = Instant::now();
        let rows = sqlx::query(sql.clone())
            .bind(after.0)
            .bind(after.1)
            .bind(W4_BATCH as i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let position: i64 = row.get(0);
            let tx: i64 = row.get(1);
            let _: Uuid = row.get(2);
            let _: String = row.get(3);
            let _: String = row.get(4);
            let _: i64 = row.get(5);
            let _: String = row.get(6);
            let _: i32 = row.get(7);
            let _: Option<String> = row.get(8);
            let _: Value = row.get(9);
            let _: Value = row.get(10);
            let _: DateTime<Utc> = row.get(11);
            let _: DateTime<Utc> = row.get(12);
            after = (tx, position);
            n += 1;
        }
        pages.push(page_began.elapsed());
    }
    assert_eq!(n, W4_EVENTS);
    let raw = Rep { value: n as f64 / began.elapsed().as_secs_f64(), latencies: pages, cpu: None };

    let counts = Counts::create(store.pool(), &schema).await;
    b.settle().await;
    let batches = Arc::new(Mutex::new(Vec::new()));
    let handled = Arc::new(AtomicU64::new(0));
    let sink = Timed {
        inner: ExactlyOnce::new(store.clone(), counts),
        batches: batches.clone(),
        handled: handled.clone(),
        committed: None,
    };
    let began = Instant::now();
    let supervisor = Supervisor::start(
        Arc::new(store.clone()),
        SupervisorConfig::default().projection(Projection::new("counts", sink).batch_size(W4_BATCH)),
    )
    .await
    .unwrap();
    while handled.load(Ordering::Acquire) < W4_EVENTS as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = began.elapsed().as_secs_f64();
    supervisor.shutdown().await.unwrap();
    let total: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT sum(n)::bigint FROM {schema}.account_counts")))
            .fetch_one(&b.admin)
            .await
            .unwrap();
    assert_eq!(total as usize, W4_EVENTS);
    let fw = Rep { value: W4_EVENTS as f64 / took, latencies: batches.lock().unwrap().clone(), cpu: None };
    b.drop_schema(&schema).await;
    (fw, raw)
}

pub(super) const W5_EVENTS: usize = 200_000;

pub(super) async fn w5_framework(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w5fw").await;
    b.settle().await;
    let cpu = cpu_ticks();
    let began = Instant::now();
    let lat = bulk(&store, W5_EVENTS, "bulk").await;
    let value = W5_EVENTS as f64 / began.elapsed().as_secs_f64();
    let rep = Rep { value, latencies: lat, cpu: cpu_per_op(cpu, W5_EVENTS) };
    b.drop_schema(&schema).await;
    rep
}

pub(super) async fn w5_raw(b: &Bench) -> Rep {
    let (store, schema) = b.fresh_store("w5raw").await;
    drop(store);
    let pool = b.raw_pool().await;
    b.settle().await;
    let cpu = cpu_ticks();
    let began = Instant::now();
    let lat = super::physical::raw_bulk(&pool, &schema, W5_EVENTS).await;
    let value = W5_EVENTS as f64 / began.elapsed().as_secs_f64();
    let rep = Rep { value, latencies: lat, cpu: cpu_per_op(cpu, W5_EVENTS) };
    b.drop_schema(&schema).await;
    rep
}
