//! Blue/green rebuilds of the example's read models: a rebuild fills a fresh copy while
//! the live one keeps serving, and readers switch over in one step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factum::prelude::*;
use factum::store::{BuildId, BuildState, StreamAppend};
use factum::{DomainEvent, ExpectedVersion, NewEvent, StreamId, Supervisor, SupervisorConfig};
use factum_example::order::OrderEvent;
use factum_example::read_models::Tables;
use factum_postgres::PostgresStore;
use factum_tests::TestDb;

/// Orders in the log: four events each (placed, two items, confirmed). 40,000 events by
/// default, about 30 s in a debug build; `FACTUM_BLUE_GREEN_EVENTS=200000` for the full
/// size (about 2.5 minutes).
fn orders() -> usize {
    std::env::var("FACTUM_BLUE_GREEN_EVENTS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(40_000) / 4
}

fn event(e: &OrderEvent) -> NewEvent {
    NewEvent::new(e.event_type(), e.to_payload().expect("an order event encodes"))
}

/// Appends `n` orders of four events each, a few hundred streams per statement.
async fn seed(store: &PostgresStore, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let appends = chunk
            .iter()
            .map(|i| {
                let events = [
                    OrderEvent::Placed { customer_id: format!("c-{}", i % 97) },
                    OrderEvent::ItemAdded { sku: "a".into(), quantity: 1, unit_price: 100 },
                    OrderEvent::ItemAdded { sku: "b".into(), quantity: 2, unit_price: 50 },
                    OrderEvent::Confirmed { total: 200 },
                ];
                let stream = StreamId::new("Order", format!("o-{i}")).unwrap();
                StreamAppend::new(stream, ExpectedVersion::NoStream, events.iter().map(event).collect())
            })
            .collect();
        store.append_many(appends).await.expect("seed");
    }
}

/// What the readers saw.
#[derive(Default)]
struct Seen {
    reads: AtomicU64,
    missing: AtomicU64,
    regressed: AtomicU64,
}

/// Reads orders that exist the whole time, round and round, until told to stop: each
/// must be there, and its version must never go back from one read to the next.
async fn reader(tables: Tables, ids: Vec<String>, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let id = &ids[i % ids.len()];
        i += 7;
        // About a read per millisecond per reader: busy, without starving the rebuild of
        // the machine's two cores.
        tokio::time::sleep(Duration::from_millis(1)).await;
        seen.reads.fetch_add(1, Ordering::Relaxed);
        match tables.order(id).await.expect("a read") {
            None => {
                seen.missing.fetch_add(1, Ordering::Relaxed);
            }
            Some(view) => {
                let before = last.insert(id.clone(), view.version).unwrap_or(0);
                if view.version < before {
                    seen.regressed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_fills_a_fresh_copy_while_readers_read_the_live_one() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let n = orders();
    let seeded = Instant::now();
    seed(&store, n).await;
    println!("seeded {} events in {:.1} s", n * 4, seeded.elapsed().as_secs_f64());

    let tables = Tables::new(&store);
    let projection = tables.projections(&store, 1).into_iter().find(|p| p.name() == "order_summary").unwrap();
    let config = SupervisorConfig::default().projection(projection.batch_size(1_000));
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    let end = store.latest_position().await.unwrap().unwrap();
    supervisor.wait_for(end, &["order_summary"], Duration::from_secs(600)).await.expect("caught up");

    // Readers on orders that exist the whole time, and a writer adding items meanwhile.
    let ids: Vec<String> = (0..n).step_by((n / 2_000).max(1)).map(|i| format!("o-{i}")).collect();
    let (seen, stop) = (Arc::new(Seen::default()), Arc::new(AtomicBool::new(false)));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let mut ids = ids.clone();
            let quarter = r * ids.len() / 4;
            ids.rotate_left(quarter);
            tokio::spawn(reader(tables.clone(), ids, seen.clone(), stop.clone()))
        })
        .collect();
    let writer = {
        let (store, ids, stop) = (store.clone(), ids.clone(), stop.clone());
        tokio::spawn(async move {
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = &ids[written as usize % ids.len()];
                let add = OrderEvent::ItemAdded { sku: format!("w{written}"), quantity: 1, unit_price: 1 };
                let stream = StreamId::new("Order", id.as_str()).unwrap();
                store.append(&stream, ExpectedVersion::Any, vec![event(&add)]).await.expect("a live write");
                written += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            written
        })
    };

    let report = supervisor.rebuild("order_summary").await.expect("the rebuild");
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let written = writer.await.unwrap();
    let events_per_s = report.replayed as f64 / report.duration.as_secs_f64();
    println!(
        "rebuilt order_summary: {} events in {:.1} s ({events_per_s:.0} events/s); {} reads during it, \
         {} missing, {} regressed; {written} live writes meanwhile",
        report.replayed,
        report.duration.as_secs_f64(),
        seen.reads.load(Ordering::Relaxed),
        seen.missing.load(Ordering::Relaxed),
        seen.regressed.load(Ordering::Relaxed),
    );
    assert_eq!(report.build, Some(BuildId::new("order_summary", 1, 2)), "a fresh build went live");
    assert!(report.replayed >= (n * 4) as u64, "the copy replayed the whole log");
    assert!(seen.reads.load(Ordering::Relaxed) > 100, "the readers read during the rebuild");
    assert_eq!(seen.missing.load(Ordering::Relaxed), 0, "no reader missed a row");
    assert_eq!(seen.regressed.load(Ordering::Relaxed), 0, "no row went back to an older version");

    // The new build is live and followed; the old one stays, replaced.
    let builds = supervisor.builds("order_summary").await.unwrap();
    let states: Vec<_> = builds.iter().map(|b| (b.id.build, b.state)).collect();
    assert_eq!(states, [(1, BuildState::Replaced), (2, BuildState::Live)]);
    assert_eq!(supervisor.status("order_summary").unwrap().build.unwrap().id.build, 2);
    let end = store.latest_position().await.unwrap().unwrap();
    supervisor.wait_for(end, &["order_summary"], Duration::from_secs(60)).await.expect("the copy follows");
    for id in ids.iter().take(50) {
        let stream = StreamId::new("Order", id.as_str()).unwrap();
        let version = store.stream_version(&stream).await.unwrap();
        let view = tables.order(id).await.unwrap().expect("there");
        assert_eq!(view.version, version.0, "order {id} is current in the new build");
    }

    // Retiring the replaced build drops its schema; the live one cannot be retired.
    let old = BuildId::new("order_summary", 1, 1);
    supervisor.retire("order_summary", &old).await.expect("retire the replaced build");
    let schema = factum_postgres::build_schema(&store.names().schema, &old);
    let left: Option<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = $1")
            .bind(&schema)
            .fetch_optional(store.pool())
            .await
            .unwrap();
    assert_eq!(left, None, "the retired build's schema is gone");
    let live = BuildId::new("order_summary", 1, 2);
    assert!(matches!(
        supervisor.retire("order_summary", &live).await,
        Err(factum::supervisor::SupervisorError::BuildInUse(_))
    ));
    supervisor.shutdown().await.unwrap();
}

/// The example service as a child process on `port`.
fn spawn(database_url: &str, port: u16) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_factum-example"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the service");
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {});
    child
}

async fn live_build(store: &PostgresStore) -> Option<BuildId> {
    let builds = store.builds("order_summary").await.unwrap();
    builds.into_iter().find(|b| b.state == BuildState::Live).map(|b| b.id)
}

/// Kills the service with SIGKILL at a random point of a rebuild, then starts it again:
/// the unfinished copy is resumed where it stood and made live, and the read model then
/// equals the fold of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_killed_midway_resumes_and_cuts_over() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let n = orders() / 2;
    seed(&store, n).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut service = spawn(&db.url(), port);
    let end = store.latest_position().await.unwrap().unwrap();
    factum_tests::eventually(Duration::from_secs(300), "the live build caught up", || {
        let (store, consumer) = (store.clone(), "order_summary");
        async move { store.load_checkpoint(consumer).await.unwrap().filter(|c| c.position >= end) }
    })
    .await;

    // The rebuild, killed at a random point of its replay.
    let rebuild = http.post(format!("{base}/ops/projections/order_summary/rebuild")).send();
    let killer = async {
        let copy = factum_tests::eventually(Duration::from_secs(60), "the copy registered", || {
            let store = store.clone();
            async move {
                let builds = store.builds("order_summary").await.unwrap();
                builds.into_iter().find(|b| b.id.build == 2)
            }
        })
        .await;
        let nanos = std::time::SystemTime::UNIX_EPOCH.elapsed().map_or(0, |d| d.subsec_nanos());
        let delay = Duration::from_millis(200 + u64::from(nanos) % 1_500);
        tokio::time::sleep(delay).await;
        service.kill().expect("kill -9");
        service.wait().ok();
        (copy, delay)
    };
    let (_, (copy, delay)) = tokio::join!(rebuild, killer);
    let copied = store.load_checkpoint("order_summary@v1.2").await.unwrap().unwrap_or_default();
    let state =
        store.builds("order_summary").await.unwrap().into_iter().find(|b| b.id == copy.id).unwrap().state;
    println!(
        "killed {} ms into the rebuild: the copy at {} of {end}, {state}",
        delay.as_millis(),
        copied.position
    );
    assert_eq!(live_build(&store).await, Some(BuildId::new("order_summary", 1, 1)), "exactly one live build");

    // Started again: the copy is resumed and made live.
    let mut service = spawn(&db.url(), port);
    factum_tests::eventually(Duration::from_secs(300), "the resumed copy is live", || {
        let store = store.clone();
        async move { (live_build(&store).await == Some(BuildId::new("order_summary", 1, 2))).then_some(()) }
    })
    .await;
    let builds = store.builds("order_summary").await.unwrap();
    assert_eq!(builds.iter().filter(|b| b.state == BuildState::Live).count(), 1, "exactly one live build");
    // /ops shows both builds, with their progress.
    let listed: serde_json::Value = factum_tests::eventually(Duration::from_secs(30), "/ops answers", || {
        let request = http.get(format!("{base}/ops/projections/order_summary/builds")).send();
        async move { request.await.ok()?.json().await.ok() }
    })
    .await;
    let states: Vec<_> =
        listed.as_array().unwrap().iter().map(|b| (b["build"].clone(), b["state"].clone())).collect();
    assert_eq!(states, [(1.into(), "replaced".into()), (2.into(), "live".into())], "{listed}");

    // The read model is the fold of the log: every order at its stream's version.
    let mut read = store.read_models(&["order_summary"]).await.unwrap();
    let rows: Vec<(String, i64, i64)> = sqlx::query_as("SELECT order_id, version, total FROM order_summary")
        .fetch_all(&mut *read)
        .await
        .unwrap();
    drop(read);
    assert_eq!(rows.len(), n, "one row per order");
    for (id, version, total) in rows {
        assert_eq!((version, total), (4, 200), "order {id}");
    }
    service.kill().ok();
    service.wait().ok();
}
