//! W7: resident memory per idle live aggregate actor.

use super::*;

pub(super) const W7_ACTORS: usize = 100_000;

pub(super) fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

pub(super) async fn spawn_actors(factum: &Factum, from: usize, to: usize) {
    let mut tasks = Vec::new();
    let workers = 64;
    for w in 0..workers {
        let factum = factum.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = from + w;
            while i < to {
                factum.load::<Account>(&format!("idle-{i}")).await.expect("load");
                i += workers;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The same measurement for bare `ractor` actors with no state and no framework around
/// them: the floor under W7 that the framework cannot go below.
pub(super) async fn w7_bare_child() -> f64 {
    struct Bare;
    #[ractor::async_trait]
    impl ractor::Actor for Bare {
        type Msg = ();
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> {
            Ok(())
        }
    }
    let mut actors = Vec::with_capacity(W7_ACTORS + 1_000);
    for _ in 0..1_000 {
        actors.push(ractor::Actor::spawn(None, Bare, ()).await.unwrap().0);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes();
    for _ in 0..W7_ACTORS {
        actors.push(ractor::Actor::spawn(None, Bare, ()).await.unwrap().0);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes();
    (after.saturating_sub(before)) as f64 / W7_ACTORS as f64 / 1024.0
}

pub(super) fn w7_bare() -> f64 {
    let exe = std::env::current_exe().expect("own executable");
    let out = std::process::Command::new(exe).env("FACTUM_BENCH_W7_CHILD", "bare").output().expect("run W7");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("W7 bare output")
}

/// Runs W7 in a child process of its own: freed memory stays with the allocator, so a
/// second measurement in the same process would reuse the first one's pages.
pub(super) fn w7() -> Rep {
    let exe = std::env::current_exe().expect("own executable");
    let out = std::process::Command::new(exe).env("FACTUM_BENCH_W7_CHILD", "1").output().expect("run W7");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().expect("W7 child output"));
    let (per, spawn_us) = (fields.next().expect("W7 figure"), fields.next().expect("W7 figure"));
    Rep { value: per, latencies: vec![Duration::from_secs_f64(spawn_us / 1e6)], cpu: None }
}

pub(super) async fn w7_child() -> (f64, f64) {
    // The store does not matter for an idle actor's memory; the in-memory one keeps
    // the 100,000 loads fast and holds nothing for streams without events.
    let factum = Factum::with_config(
        Arc::new(InMemoryStore::new()),
        FactumConfig::default().max_live_actors(200_000),
        Arc::new(Metrics::new()),
    );
    // Warm the allocator and the runtime with a first thousand.
    spawn_actors(&factum, 0, 1_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes();
    let began = Instant::now();
    spawn_actors(&factum, 1_000, 1_000 + W7_ACTORS).await;
    let took = began.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes();
    assert!(factum.live_aggregates() >= W7_ACTORS);
    factum.shutdown();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per = (after.saturating_sub(before)) as f64 / W7_ACTORS as f64 / 1024.0;
    (per, took.as_secs_f64() * 1e6 / W7_ACTORS as f64)
}
