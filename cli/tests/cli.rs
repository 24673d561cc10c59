//! The `factum` binary against a real PostgreSQL: every command, its output, its exit
//! codes and its errors.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use factum::prelude::*;
use factum::projection::FailurePolicy;
use factum::{
    ExpectedVersion, HandlerError, Metadata, NewEvent, Projection, RecordedEvent, StreamId, Supervisor,
    SupervisorConfig,
};
use factum_postgres::sqlx::{self, AssertSqlSafe, Connection};
use factum_postgres::{ExactlyOnce, PostgresStore};
use factum_tests::recorder::{Recorded, Recorder};
use factum_tests::{eventually, TestDb};
use serde_json::{json, Value};
use support::{factum, run};

const WAIT: Duration = Duration::from_secs(30);

/// 3 orders of 4 events (placed, 2 items added, confirmed) and 2 customers of 1.
async fn seed(store: &PostgresStore) {
    for o in 1..=3 {
        let stream = StreamId::new("Order", format!("o-{o}")).unwrap();
        let tenant = if o == 1 { "acme" } else { "globex" };
        let metadata = Metadata { tenant_id: Some(tenant.into()), ..Metadata::default() };
        let events = vec![
            NewEvent::new("OrderPlaced", json!({ "n": o })).with_topic("order.lifecycle.placed"),
            NewEvent::new("ItemAdded", json!({ "sku": "a" })).with_topic("order.items.added"),
            NewEvent::new("ItemAdded", json!({ "sku": "b" })).with_topic("order.items.added"),
            NewEvent::new("OrderConfirmed", json!({})).with_topic("order.lifecycle.confirmed"),
        ]
        .into_iter()
        .map(|e| e.with_metadata(metadata.clone()))
        .collect();
        store.append(&stream, ExpectedVersion::NoStream, events).await.unwrap();
    }
    for c in 1..=2 {
        let stream = StreamId::new("Customer", format!("c-{c}")).unwrap();
        let e = NewEvent::new("CustomerRegistered", json!({})).with_topic("customer.profile.registered");
        store.append(&stream, ExpectedVersion::NoStream, vec![e]).await.unwrap();
    }
}

async fn seeded() -> (TestDb, PostgresStore, String) {
    let db = TestDb::new().await;
    let store = db.store().await;
    seed(&store).await;
    let url = db.url();
    (db, store, url)
}

#[tokio::test]
async fn migrate_applies_reports_and_writes_sql_that_factum_accepts() {
    let db = TestDb::new().await;
    let url = db.url();
    let url = Some(url.as_str());

    let status = run(url, &["migrate", "--status", "--json"]).await.json_lines();
    assert_eq!(status.len(), 14);
    assert!(status.iter().all(|m| m["applied_at"].is_null()), "all pending: {status:?}");
    // Commands that need the store say what to do.
    run(url, &["status"]).await.fails(3, "run `factum migrate`");

    // Written out as SQL (no database needed), applied by another tool (here sqlx):
    // factum then finds everything applied.
    let dir = std::env::temp_dir().join(format!("factum-cli-{}", db.name()));
    let wrote = run(None, &["migrate", "--out", dir.to_str().unwrap()]).await;
    assert!(wrote.ok().starts_with("wrote 14 file(s)"), "{}", wrote.stdout);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files[0].file_name().unwrap(), "0001_init.sql");
    let mut conn = sqlx::PgConnection::connect_with(&db.options()).await.unwrap();
    for file in &files {
        sqlx::raw_sql(AssertSqlSafe(std::fs::read_to_string(file).unwrap()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(run(url, &["migrate"]).await.ok(), "nothing to apply: the schema is at version 14\n");
    let status = run(url, &["migrate", "--status"]).await;
    assert!(!status.ok().contains("pending"), "{}", status.stdout);

    // --print-sql fills in the configured names.
    let printed = run(None, &["migrate", "--print-sql", "--schema", "shop", "--events-table", "log"]).await;
    assert!(printed.ok().contains("CREATE TABLE shop.log ("), "{}", &printed.stdout[..400]);
    assert!(printed.stdout.contains("INSERT INTO shop.factum_migrations (version, description) VALUES (12,"));
    run(None, &["migrate", "--print-sql", "--schema", "Bad-Name"]).await.fails(2, "invalid identifier");
    // The lean schema leaves the query indexes out.
    let default = run(None, &["migrate", "--print-sql"]).await;
    let lean = run(None, &["migrate", "--print-sql", "--lean-schema"]).await;
    assert!(default.ok().contains("USING BRIN"), "the default schema has its query indexes");
    assert!(!lean.ok().contains("USING BRIN"), "the lean one has none");
}

#[tokio::test]
async fn migrate_applies_once_and_sets_up_the_roles() {
    let db = TestDb::new().await;
    let url = db.url();
    let url = Some(url.as_str());
    let first = run(url, &["migrate", "--json"]).await.json_lines();
    assert_eq!(first[0]["applied"], json!([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]));
    let again = run(url, &["migrate"]).await;
    assert_eq!(again.ok(), "nothing to apply: the schema is at version 14\n");

    let role = format!("cli_app_{}", &db.name()[db.name().len() - 6..]);
    let out = run(url, &["migrate", "--create-roles", &format!("cli_owner_x,{role}")]).await;
    assert!(out.ok().contains(&format!("granted the runtime privileges to {role}")), "{}", out.stdout);
    let store = db.store().await;
    let can_insert: bool = sqlx::query_scalar("SELECT has_table_privilege($1, 'public.events', 'INSERT')")
        .bind(&role)
        .fetch_one(store.pool())
        .await
        .unwrap();
    let can_delete: bool = sqlx::query_scalar("SELECT has_table_privilege($1, 'public.events', 'DELETE')")
        .bind(&role)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(can_insert && !can_delete);
    run(url, &["migrate", "--create-roles", "justone"]).await.fails(2, "OWNER,RUNTIME");
    for r in [role.as_str(), "cli_owner_x"] {
        sqlx::query(AssertSqlSafe(format!("DROP OWNED BY {r}; DROP ROLE {r}")))
            .execute(store.pool())
            .await
            .ok();
    }
}

#[tokio::test]
async fn events_query_count_and_stream_with_every_filter() {
    let (_db, _store, url) = seeded().await;
    let url = Some(url.as_str());
    let count = |args: &'static [&'static str]| {
        let mut all = vec!["events", "count"];
        all.extend_from_slice(args);
        async move { run(url, &all).await.ok().trim().parse::<u64>().unwrap() }
    };
    assert_eq!(count(&[]).await, 14);
    assert_eq!(count(&["--type", "ItemAdded"]).await, 6);
    assert_eq!(count(&["--type", "ItemAdded", "--type", "OrderPlaced"]).await, 9);
    assert_eq!(count(&["--topic", "order.lifecycle.*"]).await, 6);
    assert_eq!(count(&["--topic", "customer.#"]).await, 2);
    assert_eq!(count(&["--aggregate-type", "Customer"]).await, 2);
    assert_eq!(count(&["--aggregate-id", "o-2"]).await, 4);
    assert_eq!(count(&["--metadata", r#"{"tenant_id":"acme"}"#]).await, 4);
    assert_eq!(count(&["--from", "1h"]).await, 14);
    assert_eq!(count(&["--to", "1h"]).await, 0);
    assert_eq!(count(&["--from", "2000-01-01", "--to", "2100-01-01T00:00:00Z"]).await, 14);

    let page = run(
        url,
        &["events", "query", "--json", "--order", "position", "--asc", "--limit", "5", "--offset", "2"],
    )
    .await
    .json_lines();
    let positions: Vec<u64> = page.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions.len(), 5);
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(page[0]["aggregate_id"], "o-1");
    assert_eq!(page[0]["version"], 3);
    assert_eq!(page[0]["payload"], json!({ "sku": "b" }));
    assert_eq!(page[0]["metadata"]["tenant_id"], "acme");

    let table = run(url, &["events", "query", "--type", "CustomerRegistered"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows: {}", table.stdout);
    assert!(lines[0].starts_with("POSITION") && lines[0].contains("EVENT ID"));
    assert!(lines[1].contains("Customer/c-2"), "newest first: {}", lines[1]);

    let history = run(url, &["events", "stream", "Order/o-3", "--json"]).await.json_lines();
    let types: Vec<&str> = history.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["OrderPlaced", "ItemAdded", "ItemAdded", "OrderConfirmed"]);
    assert_eq!(
        run(url, &["events", "stream", "Order/o-3", "--after", "3", "--json"]).await.json_lines().len(),
        1
    );

    // Bad input: typed, one line, nothing changed.
    run(url, &["events", "count", "--topic", "order..x"]).await.fails(2, "topic");
    run(url, &["events", "count", "--metadata", "[1"]).await.fails(2, "--metadata is not JSON");
    run(url, &["events", "count", "--from", "yesterday"]).await.fails(2, "neither a timestamp");
    run(url, &["events", "query", "--limit", "0"]).await.fails(2, "limit");
    run(url, &["events", "stream", "o-3"]).await.fails(2, "AGGREGATE_TYPE/AGGREGATE_ID");
    run(url, &["events", "stream", "Order/o-404"]).await.fails(3, "no events in stream Order/o-404");
    assert_eq!(count(&[]).await, 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tail_follows_the_log_filtered() {
    let (_db, store, url) = seeded().await;
    let mut child = factum()
        .env("DATABASE_URL", &url)
        .args(["events", "tail", "--json", "--type", "Pinged", "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines =
        std::thread::spawn(move || BufReader::new(stdout).lines().map(Result::unwrap).collect::<Vec<_>>());
    // Whatever the tail saw of the seed, it only shows Pinged events from now on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stream = StreamId::new("Probe", "p-1").unwrap();
    for i in 0..5u64 {
        let events =
            vec![NewEvent::new("Noise", json!({ "i": i })), NewEvent::new("Pinged", json!({ "i": i }))];
        store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
    }
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success());
    let lines = lines.join().unwrap();
    let seen: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let is: Vec<u64> = seen.iter().map(|e| e["payload"]["i"].as_u64().unwrap()).collect();
    assert_eq!(is, [0, 1, 2], "the first three Pinged events, in log order: {lines:?}");
    assert!(seen.iter().all(|e| e["event_type"] == "Pinged"));
}

fn failing_on_poison(broken: Arc<std::sync::atomic::AtomicBool>) -> factum_tests::recorder::Hook {
    Arc::new(move |e: &RecordedEvent| -> Result<(), HandlerError> {
        if e.event_type == "OrderConfirmed"
            && e.stream.aggregate_id() == "o-2"
            && broken.load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(HandlerError::msg("cannot digest\nthis"));
        }
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_projections_against_a_running_service() {
    let (db, store, url) = seeded().await;
    let urls = Some(url.as_str());
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let recorder =
        Recorder::create(store.pool(), "rm_cli").await.with_hook(failing_on_poison(broken.clone()));
    let policy = FailurePolicy::retry_then_skip(1);
    let config = SupervisorConfig::default().projection(
        Projection::new("cli_orders", ExactlyOnce::new(store.clone(), recorder)).on_failure(policy),
    );
    let service = PostgresStore::connect(db.config_with_app("cli-test-service")).await.unwrap();
    let supervisor = Supervisor::start(Arc::new(service), config).await.unwrap();
    eventually(WAIT, "13 events applied", || async {
        (Recorded::read(store.pool(), "rm_cli").await.rows == 13).then_some(())
    })
    .await;

    let status = run(urls, &["status", "--json"]).await.json_lines().remove(0);
    let p = &status["projections"][0];
    assert_eq!(p["name"], "cli_orders");
    assert_eq!(p["behind_events"], 0);
    assert_eq!(p["failures"], 1);
    assert_eq!(p["lease"]["application_name"], "cli-test-service", "{p}");
    assert_eq!(status["store"]["events"], 14);
    assert_eq!(status["store"]["streams"], 5);
    assert_eq!(
        status["store"]["events_by_aggregate_type"][0],
        json!({ "aggregate_type": "Order", "events": 12 })
    );
    assert_eq!(status["store"]["largest_aggregates"][0]["events"], 4);
    let text = run(urls, &["status"]).await;
    assert!(text.ok().contains("cli-test-service"), "{}", text.stdout);
    assert!(text.stdout.contains("gap-safe horizon: transaction"));
    run(urls, &["status", "--projection", "nope"]).await.fails(3, "no projection named \"nope\"");

    // A long transaction elsewhere holds the horizon back: status names it.
    let mut blocker =
        sqlx::PgConnection::connect_with(&db.options().application_name("cli-test-blocker")).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut blocker).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let held = run(urls, &["status", "--brief", "--json"]).await.json_lines().remove(0);
    assert_eq!(held["horizon"]["held_back_by"]["application_name"], "cli-test-blocker", "{held}");
    assert!(held["store"].is_null(), "--brief skips the store");
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();

    // Failures: listed, retried by the running service once fixed.
    let failures = run(urls, &["projections", "failures", "cli_orders", "--json"]).await.json_lines();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["aggregate_id"], "o-2");
    let table = run(urls, &["projections", "failures", "cli_orders"]).await;
    assert!(table.ok().contains("cannot digest this"), "one line per failure: {}", table.stdout);
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let retried = run(urls, &["projections", "retry", "cli_orders", "--wait", "20"]).await;
    assert!(retried.ok().contains("carried out by the running service"), "{}", retried.stdout);
    assert!(store.failures("cli_orders").await.unwrap().is_empty());
    assert_eq!(Recorded::read(store.pool(), "rm_cli").await.rows, 14);

    // A rebuild: the service clears the read model and applies every event again.
    sqlx::query("INSERT INTO rm_cli (event_id, stream, version, event_type) VALUES (gen_random_uuid(), 'x', 1, 'Stale')")
        .execute(store.pool())
        .await
        .unwrap();
    let rebuilt = run(urls, &["projections", "reset", "cli_orders", "--wait"]).await;
    assert!(rebuilt.ok().contains("rebuild from the start carried out"), "{}", rebuilt.stdout);
    let ids: HashSet<_> = store
        .query(&factum::EventFilter::new().limit(100))
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_id)
        .collect();
    eventually(WAIT, "rebuilt", || async {
        let r = Recorded::read(store.pool(), "rm_cli").await;
        (r.ids == ids && r.rows == 14).then_some(())
    })
    .await;

    // Reset to a position: the events after it come again.
    let third = store
        .query(&factum::EventFilter::new().order_by(factum::store::OrderBy::GlobalPosition, true).limit(3))
        .await
        .unwrap();
    let to = third[2].position.0.to_string();
    run(urls, &["projections", "reset", "cli_orders", "--to", &to, "--wait"]).await.ok();
    eventually(WAIT, "11 events applied again", || async {
        (Recorded::read(store.pool(), "rm_cli").await.rows == 25).then_some(())
    })
    .await;

    run(urls, &["projections", "reset", "nope"]).await.fails(3, "no projection named \"nope\"");
    run(urls, &["projections", "reset", "cli_orders", "--to", "999999"])
        .await
        .fails(3, "no event at position 999999");
    run(urls, &["projections", "resolve", "cli_orders", "00000000-0000-0000-0000-000000000000"])
        .await
        .fails(3, "no recorded failure");
    // clap's own usage errors: exit 2, the first line says what is wrong.
    let usage = run(urls, &["projections", "resolve", "cli_orders", "not-a-uuid"]).await;
    assert_eq!(usage.code, 2);
    assert!(
        usage.stderr.starts_with("error: invalid value 'not-a-uuid' for '<EVENT_ID>'"),
        "{}",
        usage.stderr
    );
    supervisor.shutdown().await.unwrap();

    // With no instance running, a request waits; --wait says so.
    run(urls, &["projections", "retry", "cli_orders", "--wait", "1"])
        .await
        .fails(1, "is an instance of the service running it?");
}

/// A projection its failure policy stopped: `status` says where and why, while its lease
/// is still held; `projections resume` lets it try the event again once fixed, and then
/// the stop is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_a_projection_its_failure_policy_stopped() {
    let (db, store, url) = seeded().await;
    let urls = Some(url.as_str());
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let recorder =
        Recorder::create(store.pool(), "rm_stop").await.with_hook(failing_on_poison(broken.clone()));
    let policy =
        FailurePolicy::retry_then_stop(2).backoff(Duration::from_millis(10), Duration::from_millis(20));
    let config = SupervisorConfig::default().projection(
        Projection::new("cli_stops", ExactlyOnce::new(store.clone(), recorder)).on_failure(policy),
    );
    let service = PostgresStore::connect(db.config_with_app("cli-test-service")).await.unwrap();
    let supervisor = Supervisor::start(Arc::new(service), config).await.unwrap();
    let status = eventually(WAIT, "the stop in status", || async {
        let status = run(urls, &["status", "--brief", "--json"]).await.json_lines().remove(0);
        (!status["projections"][0]["stopped"].is_null()).then_some(status)
    })
    .await;
    let p = &status["projections"][0];
    let stopped = &p["stopped"];
    assert_eq!(
        (stopped["aggregate_type"].as_str(), stopped["aggregate_id"].as_str()),
        (Some("Order"), Some("o-2"))
    );
    assert_eq!(stopped["event_type"], "OrderConfirmed");
    assert_eq!(stopped["attempts"], 2);
    assert_eq!(stopped["error"], "cannot digest\nthis");
    assert_eq!(p["failures"], 0, "a stop is not a recorded failure");
    assert_eq!(p["lease"]["application_name"], "cli-test-service", "still running, stopped: {p}");
    let text = run(urls, &["status", "--brief"]).await;
    let line = text.ok().lines().find(|l| l.starts_with("cli_stops stopped by its failure policy at event"));
    let line = line.unwrap_or_else(|| panic!("a line says why: {}", text.stdout));
    assert!(line.contains("(Order/o-2 version") && line.contains("after 2 attempt(s)"), "{line}");
    assert!(line.ends_with(": cannot digest this"), "the error on the same line: {line}");
    let position = p["checkpoint"]["position"].as_i64().unwrap();
    assert!(text.stdout.contains(&format!("at {}/", stopped["global_position"])), "{}", text.stdout);

    // Fixed, and resumed: it tries the event again, gets past it, and the stop is gone.
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let resumed = run(urls, &["projections", "resume", "cli_stops", "--wait"]).await;
    assert!(resumed.ok().starts_with("cli_stops: resume at event"), "{}", resumed.stdout);
    eventually(WAIT, "every event applied", || async {
        (Recorded::read(store.pool(), "rm_stop").await.rows == 14).then_some(())
    })
    .await;
    let after = run(urls, &["status", "--brief", "--json"]).await.json_lines().remove(0);
    assert!(after["projections"][0]["stopped"].is_null(), "{after}");
    assert!(after["projections"][0]["checkpoint"]["position"].as_i64().unwrap() > position, "{after}");
    run(urls, &["projections", "resume", "cli_stops"]).await.fails(3, "is not stopped by its failure policy");
    supervisor.shutdown().await.unwrap();
}

#[tokio::test]
async fn retention_dry_run_counts_what_the_run_deletes() {
    let (_db, store, url) = seeded().await;
    let url = Some(url.as_str());
    store.save_checkpoint("behind", factum::store::Checkpoint::START).await.unwrap();
    let dry = |safe: bool| {
        let mut args = vec!["retention", "run", "--before", "2100-01-01", "--dry-run", "--json"];
        if safe {
            args.push("--safe");
        }
        async move { run(url, &args).await.json_lines().remove(0)["would_delete"].as_u64().unwrap() }
    };
    // Each stream keeps its newest event: 3 orders x 3 older events.
    assert_eq!(dry(false).await, 9);
    assert_eq!(dry(true).await, 0, "a projection at the start keeps everything in safe mode");
    assert_eq!(run(url, &["events", "count"]).await.ok(), "14\n", "a dry run deletes nothing");
    let deleted = run(url, &["retention", "run", "--before", "2100-01-01"]).await;
    assert!(
        deleted.ok().starts_with("deleted 9 event(s) recorded before 2100-01-01T00:00:00+00:00"),
        "{}",
        deleted.stdout
    );
    assert_eq!(run(url, &["events", "count"]).await.ok(), "5\n");
    run(url, &["retention", "run", "--before", "soon"]).await.fails(2, "neither a timestamp");
}

#[tokio::test]
async fn replay_dry_run_tallies_by_type() {
    let (_db, _store, url) = seeded().await;
    let url = Some(url.as_str());
    let tally =
        run(url, &["replay", "--dry-run", "--topic", "order.#", "--json"]).await.json_lines().remove(0);
    assert_eq!(tally["events"], 12);
    assert_eq!(tally["by_type"], json!({ "ItemAdded": 6, "OrderConfirmed": 3, "OrderPlaced": 3 }));
    let text = run(url, &["replay", "--dry-run", "--aggregate-type", "Customer"]).await;
    assert!(text.ok().contains("CustomerRegistered  2"), "{}", text.stdout);
    assert!(text.stdout.ends_with("a replay with this filter would feed 2 event(s)\n"));
    run(url, &["replay", "--type", "OrderPlaced"]).await.fails(2, "--dry-run");
}

#[tokio::test]
async fn connection_errors_are_one_clear_line() {
    run(None, &["status"]).await.fails(2, "set DATABASE_URL");
    run(Some("not a url"), &["status"]).await.fails(2, "invalid connection setting DATABASE_URL");
    run(Some("postgres://postgres@127.0.0.1:1/postgres"), &["status"]).await.fails(1, "connection refused");
    let db = TestDb::new().await;
    let missing = db.url().replace(db.name(), "factum_no_such_database");
    run(Some(&missing), &["status"]).await.fails(1, "does not exist");
    let url = db.url();
    run(Some(&url), &["status", "--schema", "9lives"]).await.fails(2, "invalid identifier");
    let usage = run(Some(&url), &["frobnicate"]).await;
    assert_eq!(usage.code, 2, "clap's usage error");
}

/// A projection in slices: `status` lists each slice with its build's state, and
/// operators' requests go to every slice; a rebuild in place is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_every_slice_of_a_projection_in_slices() {
    let (_db, store, url) = seeded().await;
    let urls = Some(url.as_str());
    let build = store.register_build("sliced", 1, 3, false).await.unwrap();
    let consumers = build.consumers();
    assert_eq!(consumers, ["sliced#0/3", "sliced#1/3", "sliced#2/3"]);
    for c in &consumers {
        store.save_checkpoint(c, factum::store::Checkpoint::START).await.unwrap();
    }

    let status = run(urls, &["status", "--json"]).await.json_lines().remove(0);
    let names: Vec<&str> =
        status["projections"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["sliced#0/3", "sliced#1/3", "sliced#2/3"], "{status}");
    assert!(status["projections"].as_array().unwrap().iter().all(|p| p["build"] == "live"), "{status}");

    run(urls, &["projections", "retry", "sliced"]).await.ok();
    for c in &consumers {
        let pending = store.pending_request(c).await.unwrap();
        assert_eq!(pending.map(|p| p.request), Some(factum::store::ConsumerRequest::RetryFailures), "{c}");
    }
    run(urls, &["projections", "reset", "sliced"]).await.fails(2, "runs in 3 slices");
    run(urls, &["projections", "reset", "sliced", "--to", "0"]).await.ok();
    for c in &consumers {
        let pending = store.pending_request(c).await.unwrap().unwrap();
        assert!(matches!(pending.request, factum::store::ConsumerRequest::Reset { clear: false, .. }), "{c}");
    }
    run(urls, &["projections", "resume", "sliced"]).await.fails(3, "not stopped");

    // A switch to another version is asked of every slice's holder.
    let v2 = store.register_build("sliced", 2, 2, false).await.unwrap();
    run(urls, &["projections", "switch", "sliced", "2"]).await.ok();
    for c in &consumers {
        let pending = store.pending_request(c).await.unwrap().unwrap();
        assert_eq!(pending.request, factum::store::ConsumerRequest::Switch { version: 2, build: 1 }, "{c}");
    }
    // A build one of whose slices is followed is not retired.
    let followed = store.try_lease(&v2.consumers()[1]).await.unwrap().expect("the slice's lease");
    run(urls, &["projections", "retire", "sliced", "2"]).await.fails(2, "followed by a running instance");
    drop(followed);
    let builds = run(urls, &["projections", "builds", "sliced", "--json"]).await.json_lines();
    assert_eq!(builds.len(), 2, "{builds:?}");
}
