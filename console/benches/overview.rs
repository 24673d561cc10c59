//! How fast the overview answers on a store of 1,000,000 events, while a projection
//! catches up on them: the first view (nothing sampled yet), then 100 views once the
//! sampler has measured everything, plus what the sampler's own queries cost.
//!
//! ```text
//! DATABASE_URL=$(bash scripts/pg.sh) cargo bench -p factum-console --bench overview
//! ```
//!
//! `DATABASE_URL` is a superuser's: the bench makes a database of its own on that server
//! and drops it afterwards. `FACTUM_BENCH_EVENTS` changes the store's size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use factum::{EventHandler, HandlerError, Projection, RecordedEvent, Supervisor, SupervisorConfig};
use factum_console::{Console, ConsoleConfig};
use factum_postgres::{sqlx, PostgresConfig, PostgresStore};
use tower::ServiceExt;

const TOKEN: &str = "bench-token-0123456789";

struct Count;

#[async_trait::async_trait]
impl EventHandler for Count {
    async fn handle(&mut self, _: &RecordedEvent) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn with_db(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
    if query.is_empty() {
        format!("{root}/{db}")
    } else {
        format!("{root}/{db}?{query}")
    }
}

async fn view(router: &axum::Router) -> (Duration, usize) {
    let request = Request::get("/console/")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("a request");
    let started = Instant::now();
    let response = router.clone().oneshot(request).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body");
    (started.elapsed(), body.len())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let admin = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL to a superuser's URL")?;
    let events: u64 =
        std::env::var("FACTUM_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let db = format!("factum_console_bench_{}", std::process::id());
    let admin_pool = sqlx::PgPool::connect(&admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&admin_pool).await?;
    let result = run(&with_db(&admin, &db), events).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)"))).execute(&admin_pool).await?;
    result
}

async fn run(url: &str, events: u64) -> Result<(), Box<dyn std::error::Error>> {
    let store = PostgresStore::connect(PostgresConfig::from_url(url)?).await?;
    store.migrate().await?;
    let fill = Instant::now();
    // Ten events per stream, two aggregate types: written in one statement, as a bulk load.
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, event_data, occurred_at)
         SELECT gen_random_uuid(), CASE WHEN g % 3 = 0 THEN 'Customer' ELSE 'Order' END, 'a-' || (g / 10),
                (g % 10) + 1, 'Happened', '{\"n\": 1}', now()
         FROM generate_series(0, $1 - 1) AS g",
    )
    .bind(events as i64)
    .execute(store.pool())
    .await?;
    sqlx::query("ANALYZE events").execute(store.pool()).await?;
    println!("store: {events} events written in {:.1} s", fill.elapsed().as_secs_f64());

    let started = Instant::now();
    let report = store.store_report().await?;
    println!(
        "whole-table store report (the sampler's, every 5 min, in the background): {}",
        ms(started.elapsed())
    );
    assert_eq!(report.events, events);
    let started = Instant::now();
    store.projection_reports(None).await?;
    store.horizon().await?;
    store.estimate().await?;
    println!("a sample's statements (reports, horizon, estimate): {}", ms(started.elapsed()));

    let config = SupervisorConfig::default().projection(Projection::with_handler("catching_up", Count));
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await?;
    let console = Console::new(
        store.clone(),
        supervisor.clone(),
        ConsoleConfig::new().operator_token(TOKEN).sample_every(Duration::from_millis(500)),
    )?;
    let router = console.router();
    let started = Instant::now();
    let (first, size) = view(&router).await;
    println!("first view, before any sample: {} ({size} bytes)", ms(first));
    // Until the sampler has measured the store once (its whole-table count included).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let request = Request::get("/console/")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())?;
        let body =
            axum::body::to_bytes(router.clone().oneshot(request).await?.into_body(), usize::MAX).await?;
        if String::from_utf8_lossy(&body).contains("recounted every five minutes") {
            println!("the sampler had measured everything after {:.1} s", started.elapsed().as_secs_f64());
            break;
        }
        if Instant::now() > deadline {
            return Err("the sampler did not measure the store within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..100 {
        let (took, bytes) = view(&router).await;
        times.push(took);
        size = bytes;
    }
    times.sort();
    println!(
        "overview on {events} events, 100 views while a projection catches up: p50 {}, p99 {}, max {} ({size} bytes; goal: under 200 ms)",
        ms(times[49]),
        ms(times[98]),
        ms(times[99])
    );
    drop(console);
    supervisor.shutdown().await?;
    Ok(())
}
