//! W3: cold load of a 10,000-event aggregate.

use super::*;

pub(super) const W3_EVENTS: u64 = 10_000;
pub(super) const W3_LOADS: usize = 5;
/// The snapshot variant's interval, set at run time whatever `Account` declares.
pub(super) const W3_SNAPSHOT_EVERY: u64 = 100;

/// Stores `n` events on `id` in batches of 1,000; returns the folded state.
pub(super) async fn fill_stream(store: &PostgresStore, id: &str, n: u64) -> Account {
    let stream = StreamId::new("Account", id).unwrap();
    let mut state = Account::default();
    let mut done = 0;
    while done < n {
        let k = (n - done).min(1_000);
        let batch: Vec<NewEvent> = (0..k).map(|_| new_event(id, 1)).collect();
        store.append(&stream, ExpectedVersion::Exact(Version(done)), batch).await.expect("fill");
        for _ in 0..k {
            state.apply(&AccountEvent::Deposited { amount: 1, customer: id.to_owned() });
        }
        done += k;
    }
    state
}

pub(super) struct W3 {
    pub(super) raw: Rep,
    pub(super) full: Rep,
    pub(super) snap: Rep,
}

pub(super) async fn w3(b: &Bench) -> W3 {
    let (store, schema) = b.fresh_store("w3").await;
    fill_stream(&store, "cold-full", W3_EVENTS).await;
    // The snapshot variant: a snapshot every W3_SNAPSHOT_EVERY events, the worst case
    // being a whole interval of tail after the last one. The framework writes that
    // snapshot itself: the command that takes the stream to the last multiple runs
    // under the policy.
    let last = W3_EVENTS - W3_SNAPSHOT_EVERY;
    let stream = StreamId::new("Account", "cold-snap").unwrap();
    let mut expected = fill_stream(&store, "cold-snap", last - 1).await;
    let policy = SnapshotPolicy::every(W3_SNAPSHOT_EVERY).expect("a positive interval");
    let writer = factum_with(&store, FactumConfig::default().snapshot_policy::<Account>(policy));
    writer.execute(AccountCommand::Deposit { id: "cold-snap".into(), amount: 1 }).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.load_snapshot(&stream).await.unwrap().map(|s| s.version) != Some(Version(last)) {
        assert!(Instant::now() < deadline, "no snapshot at {last}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.shutdown();
    let tail: Vec<NewEvent> = (0..W3_SNAPSHOT_EVERY).map(|_| new_event("cold-snap", 1)).collect();
    store.append(&stream, ExpectedVersion::Exact(Version(last)), tail).await.unwrap();
    for _ in 0..=W3_SNAPSHOT_EVERY {
        expected.apply(&AccountEvent::Deposited { amount: 1, customer: "cold-snap".into() });
    }
    b.settle().await;

    let pool = b.raw_pool().await;
    let sql = statement(format!(
        "SELECT version, event_type, event_data FROM {schema}.events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY version"
    ));
    let mut raw = Vec::new();
    let mut full = Vec::new();
    let mut snap = Vec::new();
    for _ in 0..W3_LOADS {
        let began = Instant::now();
        let rows = sqlx::query(sql.clone()).bind("Account").bind("cold-full").fetch_all(&pool).await.unwrap();
        let mut decoded = Vec::with_capacity(rows.len());
        for row in &rows {
            let v: i64 = row.get(0);
            let t: String = row.get(1);
            let data: Value = row.get(2);
            decoded.push((v, t, data));
        }
        assert_eq!(decoded.len() as u64, W3_EVENTS);
        raw.push(began.elapsed());

        let factum = factum_on(&store, 10);
        let began = Instant::now();
        let (state, version) = factum.load::<Account>("cold-full").await.unwrap();
        full.push(began.elapsed());
        assert_eq!((state.deposits, version), (W3_EVENTS, Version(W3_EVENTS)));
        factum.shutdown();

        let factum = factum_on(&store, 10);
        let began = Instant::now();
        let (state, version) = factum.load::<Account>("cold-snap").await.unwrap();
        snap.push(began.elapsed());
        assert_eq!((&state, version), (&expected, Version(W3_EVENTS)));
        factum.shutdown();
    }
    b.drop_schema(&schema).await;
    let rep = |l: Vec<Duration>| {
        let mut ms: Vec<f64> = l.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Rep { value: median(&mut ms), latencies: l, cpu: None }
    };
    W3 { raw: rep(raw), full: rep(full), snap: rep(snap) }
}
