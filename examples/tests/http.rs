//! The example service end to end: the real binary on a free port against a fresh
//! database, driven over HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use factum::prelude::*;
use factum::store::{Checkpoint, VersionRange};
use factum::{Aggregate, DomainEvent, EventFilter, StreamId};
use factum_example::customer::Customer;
use factum_example::order::Order;
use factum_postgres::PostgresStore;
use factum_tests::{eventually, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The service as a child process.
struct Service {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Service {
    /// Starts the binary on port 0 and waits for the address it prints.
    fn start(db: &TestDb) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_factum-example"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", db.url())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the service");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("listening on ") {
                    let _ = tx.send(address.to_owned());
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(60)).expect("the service did not start listening");
        Service { child, base, http: reqwest::Client::new() }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    /// A command, and the position its reply gives in `x-factum-position`.
    async fn command(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value, u64) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request");
        let position =
            response.headers().get("x-factum-position").map(|v| v.to_str().unwrap().parse().unwrap());
        let (status, body) = read(response).await;
        if status.is_success() {
            return (status, body, position.expect("a command reply carries x-factum-position"));
        }
        (status, body, 0)
    }

    /// A read that asks for `min_position` in `x-factum-min-position`.
    async fn read_at(&self, path: &str, min_position: &str) -> (StatusCode, Value) {
        let request =
            self.http.get(format!("{}{path}", self.base)).header("x-factum-min-position", min_position);
        read(request.send().await.expect("request")).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    /// Sends SIGTERM and waits for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(killed.success());
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the service did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status and body of a response. Every JSON body (an answer or an error) is checked
/// to end with exactly one newline.
async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let is_json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let text = response.text().await.expect("body");
    if is_json {
        assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{status}: no final newline: {text:?}");
        let value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
        return (status, value);
    }
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Asserts a refusal: the status, a JSON body with this error code and a message.
#[track_caller]
fn refused((status, body): (StatusCode, Value), expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[track_caller]
fn accepted((status, body): (StatusCode, Value), expected: StatusCode) -> Value {
    assert_eq!(status, expected, "{body}");
    body
}

/// Folds a stream's stored events into its aggregate, as the truth to check views against.
async fn fold<A: Aggregate>(store: &PostgresStore, id: &str) -> (A, u64) {
    let stream = StreamId::new(A::TYPE, id).expect("id");
    let mut state = A::default();
    let events = store.read_stream(&stream, VersionRange::ALL).await.expect("read");
    for e in &events {
        let event =
            A::Event::from_stored(&e.event_type, e.schema_version, e.payload.clone()).expect("decode");
        state.apply(&event);
    }
    (state, events.len() as u64)
}

/// The value of the sample `name{labels…}` in the text format, 0 if absent.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).expect("a value"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_over_http() {
    let db = TestDb::new().await;
    let service = Service::start(&db);
    let store = PostgresStore::connect(db.config()).await.expect("store");
    let (mut order_ok, mut order_rejected) = (0, 0);

    // Customers.
    let correlation = uuid::Uuid::now_v7();
    let response = service
        .http
        .post(format!("{}/customers", service.base))
        .header("x-correlation-id", correlation.to_string())
        .header("x-user-id", "clerk-7")
        .json(&json!({"id": "alice", "name": "Alice", "email": "alice@example.com"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-correlation-id"], correlation.to_string().as_str());
    let body = accepted(read(response).await, StatusCode::CREATED);
    assert_eq!((body["id"].as_str(), body["version"].as_u64()), (Some("alice"), Some(1)));
    assert_eq!(body["correlation_id"], correlation.to_string());
    accepted(
        service.post("/customers", json!({"id": "bob", "name": "Bob", "email": "bob@example.com"})).await,
        StatusCode::CREATED,
    );
    let generated = accepted(
        service.post("/customers", json!({"name": "Carol", "email": "c@example.org"})).await,
        StatusCode::CREATED,
    );
    assert!(generated["id"].as_str().is_some_and(|id| id.starts_with("cus-")), "{generated}");

    // Every customer rule.
    refused(
        service.post("/customers", json!({"id": "alice", "name": "A", "email": "a@example.com"})).await,
        StatusCode::CONFLICT,
        "customer_exists",
    );
    refused(
        service.post("/customers", json!({"name": "Eve", "email": "eve-at-example.com"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_email",
    );
    refused(
        service.post("/customers", json!({"name": "   ", "email": "e@example.com"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_name",
    );
    refused(
        service.send(Method::PUT, "/customers/nobody/email", Some(json!({"email": "n@example.com"}))).await,
        StatusCode::NOT_FOUND,
        "customer_not_found",
    );
    accepted(
        service
            .send(Method::PUT, "/customers/alice/email", Some(json!({"email": "alice@example.net"})))
            .await,
        StatusCode::OK,
    );

    // Orders: every rule's rejection on the way.
    let o = |path: &str| format!("/orders/o1{path}");
    accepted(service.post("/orders", json!({"id": "o1", "customer_id": "alice"})).await, StatusCode::CREATED);
    order_ok += 1;
    refused(
        service.post("/orders", json!({"id": "o1", "customer_id": "alice"})).await,
        StatusCode::CONFLICT,
        "order_exists",
    );
    order_rejected += 1;
    refused(
        service.post("/orders", json!({"id": "o9", "customer_id": "nobody"})).await,
        StatusCode::NOT_FOUND,
        "customer_not_found",
    );
    for (sku, quantity, price) in [("tea", 2, 150), ("mug", 1, 1000), ("tea", 1, 150), ("spoon", 3, 75)] {
        accepted(
            service.post(&o("/items"), json!({"sku": sku, "quantity": quantity, "unit_price": price})).await,
            StatusCode::OK,
        );
        order_ok += 1;
    }
    for (body, status, code) in [
        (json!({"sku": "tea", "quantity": 1, "unit_price": 99}), StatusCode::CONFLICT, "price_mismatch"),
        (
            json!({"sku": "tea", "quantity": 0, "unit_price": 150}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            json!({"sku": "tea", "quantity": 1, "unit_price": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_price",
        ),
        (
            json!({"sku": "tea", "quantity": 10_000, "unit_price": 150}),
            StatusCode::CONFLICT,
            "too_many_items",
        ),
        (
            json!({"sku": "no/slash", "quantity": 1, "unit_price": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_sku",
        ),
    ] {
        refused(service.post(&o("/items"), body).await, status, code);
        order_rejected += 1;
    }
    refused(
        service.send(Method::DELETE, &o("/items/kettle"), None).await,
        StatusCode::NOT_FOUND,
        "item_not_found",
    );
    order_rejected += 1;
    accepted(service.send(Method::DELETE, &o("/items/spoon"), None).await, StatusCode::OK);
    order_ok += 1;
    refused(service.post(&o("/ship"), json!(null)).await, StatusCode::CONFLICT, "order_not_confirmed");
    order_rejected += 1;
    accepted(service.post(&o("/confirm"), json!(null)).await, StatusCode::OK);
    let again = accepted(service.post(&o("/confirm"), json!(null)).await, StatusCode::OK);
    assert_eq!(again["events"], json!([]), "confirming twice records nothing");
    order_ok += 2;
    refused(
        service.post(&o("/items"), json!({"sku": "x", "quantity": 1, "unit_price": 1})).await,
        StatusCode::CONFLICT,
        "order_locked",
    );
    refused(service.send(Method::DELETE, &o("/items/tea"), None).await, StatusCode::CONFLICT, "order_locked");
    order_rejected += 2;
    accepted(service.post(&o("/ship"), json!(null)).await, StatusCode::OK);
    order_ok += 1;
    refused(
        service.post(&o("/cancel"), json!({"reason": "too late"})).await,
        StatusCode::CONFLICT,
        "order_closed",
    );
    refused(service.post(&o("/ship"), json!(null)).await, StatusCode::CONFLICT, "order_closed");
    order_rejected += 2;

    accepted(service.post("/orders", json!({"id": "o2", "customer_id": "alice"})).await, StatusCode::CREATED);
    refused(service.post("/orders/o2/confirm", json!(null)).await, StatusCode::CONFLICT, "order_empty");
    refused(
        service.post("/orders/o2/cancel", json!({"reason": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_reason",
    );
    accepted(service.post("/orders/o2/cancel", json!({"reason": "changed mind"})).await, StatusCode::OK);
    refused(
        service.post("/orders/o2/items", json!({"sku": "tea", "quantity": 1, "unit_price": 150})).await,
        StatusCode::CONFLICT,
        "order_closed",
    );
    refused(
        service.post("/orders/o404/confirm", json!(null)).await,
        StatusCode::NOT_FOUND,
        "order_not_found",
    );
    order_ok += 2;
    order_rejected += 4;

    // Concurrent commands on one order: the actor serializes them; none is lost.
    accepted(service.post("/orders", json!({"id": "o3", "customer_id": "bob"})).await, StatusCode::CREATED);
    order_ok += 1;
    let adds = (0..20).map(|i| {
        service.post(
            "/orders/o3/items",
            json!({"sku": format!("sku-{i}"), "quantity": 1, "unit_price": 100 + i}),
        )
    });
    for response in futures_util::future::join_all(adds).await {
        accepted(response, StatusCode::OK);
        order_ok += 1;
    }

    // An inactive customer cannot place orders or change their email.
    accepted(service.post("/customers/bob/deactivate", json!(null)).await, StatusCode::OK);
    refused(
        service.post("/orders", json!({"id": "o4", "customer_id": "bob"})).await,
        StatusCode::CONFLICT,
        "customer_inactive",
    );
    refused(
        service.send(Method::PUT, "/customers/bob/email", Some(json!({"email": "b@example.com"}))).await,
        StatusCode::CONFLICT,
        "customer_inactive",
    );

    // The read models catch up and match the events.
    for id in ["o1", "o2", "o3"] {
        // The fold is read again each time: a process manager may still be acting on the
        // stream (bob's open order is cancelled by his deactivation).
        let (order, view) = eventually(Duration::from_secs(20), "the order summary catches up", || async {
            let (order, version): (Order, u64) = fold(&store, id).await;
            let (status, view) = service.get(&format!("/orders/{id}")).await;
            (status == StatusCode::OK && view["version"].as_u64() == Some(version)).then_some((order, view))
        })
        .await;
        assert_eq!(view["status"], order.status.as_str(), "{view}");
        assert_eq!(view["customer_id"], order.customer_id.as_str());
        assert_eq!(view["total"].as_i64(), Some(order.total()));
        assert_eq!(view["lines"], serde_json::to_value(&order.lines).expect("lines"), "{view}");
    }
    let (o1, _): (Order, u64) = fold(&store, "o1").await;
    assert_eq!(o1.total(), 3 * 150 + 1000, "tea merged, spoon removed");
    for id in ["alice", "bob"] {
        let (customer, version): (Customer, u64) = fold(&store, id).await;
        let view = eventually(Duration::from_secs(20), "the customer history catches up", || async {
            let (status, view) = service.get(&format!("/customers/{id}")).await;
            let orders = view["orders"].as_array().map_or(0, Vec::len);
            let expected = if id == "alice" { 2 } else { 1 };
            (status == StatusCode::OK && view["version"].as_u64() == Some(version) && orders == expected)
                .then_some(view)
        })
        .await;
        assert_eq!(
            (view["email"].as_str(), view["active"].as_bool()),
            (Some(customer.email.as_str()), Some(customer.active))
        );
    }
    let (_, alice) = service.get("/customers/alice").await;
    assert_eq!(
        alice["totals"],
        json!({"orders": 2, "open": 0, "confirmed": 0, "shipped": 1, "cancelled": 1, "spent": 1450}),
        "{alice}"
    );
    eventually(Duration::from_secs(20), "bob's order total", || async {
        let (_, bob) = service.get("/customers/bob").await;
        (bob["orders"][0]["total"].as_i64() == Some((0..20).map(|i| 100 + i).sum())).then_some(())
    })
    .await;
    // Bob's deactivation cancelled his open order (the customer_orders process).
    let bob = eventually(Duration::from_secs(20), "bob's open order cancelled", || async {
        let (_, bob) = service.get("/customers/bob").await;
        (bob["totals"]["cancelled"] == 1).then_some(bob)
    })
    .await;
    assert_eq!(
        (bob["totals"]["open"].as_i64(), bob["orders"][0]["status"].as_str()),
        (Some(0), Some("cancelled"))
    );
    order_ok += 1; // the process's cancellation, an Order command too

    // The audit log has every event with its metadata.
    let (total_events, audit) = eventually(Duration::from_secs(20), "the audit log catches up", || async {
        let total_events = store.count(&EventFilter::new()).await.expect("count");
        let (_, entries) = service.get("/audit?limit=1000").await;
        (entries.as_array().map(Vec::len) == Some(total_events as usize)).then_some((total_events, entries))
    })
    .await;
    let all = store.read_all(Checkpoint::START, 1000).await.expect("read");
    for (entry, event) in audit.as_array().expect("array").iter().zip(&all) {
        assert_eq!(entry["event_id"], event.event_id.to_string());
        assert_eq!(entry["payload"], event.payload);
        assert_eq!(entry["topic"].as_str(), event.topic.as_deref());
    }
    let (_, mine) = service.get(&format!("/audit?correlation_id={correlation}")).await;
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(mine[0]["event_type"], "CustomerRegistered");
    assert_eq!(mine[0]["topic"], "customer.lifecycle.registered");
    assert_eq!(mine[0]["metadata"]["user_id"], "clerk-7");
    assert!(mine[0]["causation_id"].is_string());

    // Operations.
    let (_, statuses) = service.get("/ops/projections").await;
    // The three read models and the two processes.
    assert_eq!(statuses.as_array().map(Vec::len), Some(5), "{statuses}");
    let (_, processes) = service.get("/ops/processes").await;
    let names: Vec<&str> = processes.as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["customer_orders", "ship_deadline"], "{processes}");
    let status = accepted(service.get("/ops/projections/order_summary").await, StatusCode::OK);
    assert_eq!((status["state"].as_str(), status["lag"].as_u64()), (Some("live"), Some(0)), "{status}");
    let order_events = store.count(&EventFilter::new().aggregate_type("Order")).await.expect("count");
    let rebuilt =
        accepted(service.post("/ops/projections/order_summary/rebuild", json!(null)).await, StatusCode::OK);
    assert_eq!(rebuilt["replayed"].as_u64(), Some(order_events), "{rebuilt}");
    let (_, after) = service.get("/orders/o1").await;
    assert_eq!(after["total"].as_i64(), Some(o1.total()), "the rebuilt view is the same");
    let replay =
        accepted(service.post("/ops/replay", json!({"topics": ["order.lifecycle.#"]})).await, StatusCode::OK);
    let lifecycle = store.count(&EventFilter::new().topics(["order.lifecycle.#"])).await.expect("count");
    assert_eq!(replay["replayed"].as_u64(), Some(lifecycle), "{replay}");
    assert_eq!(replay["by_type"]["OrderPlaced"], 3, "{replay}");
    let cleanup = accepted(service.post("/ops/retention/cleanup", json!(null)).await, StatusCode::OK);
    assert_eq!((cleanup["deleted"].as_u64(), cleanup["mode"].as_str()), (Some(0), Some("safe")), "{cleanup}");
    assert_eq!(store.count(&EventFilter::new()).await.expect("count"), total_events, "nothing was deleted");

    // Health, the OpenAPI document and the metrics.
    let health = accepted(service.get("/health").await, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    let metrics = service.http.get(format!("{}/metrics", service.base)).send().await.expect("scrape");
    assert_eq!(metrics.status(), StatusCode::OK);
    let content_type = metrics.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert!(content_type.is_some_and(|t| t.starts_with("application/openmetrics-text")));
    let metrics = metrics.text().await.expect("text");
    assert_eq!(
        sample(&metrics, "factum_commands_total", &["aggregate_type=\"Order\"", "outcome=\"ok\""]),
        order_ok as f64
    );
    assert_eq!(
        sample(&metrics, "factum_commands_total", &["aggregate_type=\"Order\"", "outcome=\"rejected\""]),
        order_rejected as f64
    );
    assert_eq!(sample(&metrics, "factum_events_appended_total", &[]), total_events as f64);
    assert_eq!(sample(&metrics, "eventstore_events_replayed_total", &[]), (order_events + lifecycle) as f64);
    assert_eq!(sample(&metrics, "eventstore_replay_runs_total", &[]), 2.0, "the rebuild and the replay");
    assert_eq!(sample(&metrics, "eventstore_retention_cleanup_runs_total", &[]), 1.0);
    assert!(
        sample(
            &metrics,
            "factum_projection_events_total",
            &["projection=\"audit_log\"", "outcome=\"handled\""]
        ) >= total_events as f64
    );
    assert!(metrics.ends_with("# EOF\n"));

    // Every documented operation is routed: none meets the fallback (404 `not_found`) or
    // the wrong-method answer (405).
    // (After the metrics: this sends a replay and a clean-up too.)
    let openapi = accepted(service.get("/openapi.json").await, StatusCode::OK);
    assert_eq!(&openapi, factum_example::openapi::document());
    let text = service.http.get(format!("{}/openapi.json", service.base)).send().await.expect("openapi");
    let text = text.text().await.expect("text");
    assert_eq!(text, format!("{}\n", factum_example::openapi::document()), "compact JSON and one newline");
    let mut operations = 0;
    for (path, item) in openapi["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            let method: Method = method.to_uppercase().parse().expect("a method");
            let concrete = path.replace("{id}", "nobody").replace("{sku}", "a").replace("{name}", "nothing");
            let (status, body) = service.send(method.clone(), &concrete, Some(json!({}))).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is routed: {body}");
            assert!(
                status != StatusCode::NOT_FOUND
                    || body["error"] != "not_found"
                    || path.starts_with("/ops/projections/"),
                "{method} {path} is routed: {body}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 22);

    // Graceful shutdown with commands in flight: every acknowledged command is stored,
    // and each read model is exactly its checkpoint's prefix of the log.
    let burst: Vec<_> = (0..40)
        .map(|i| {
            let (http, base) = (service.http.clone(), service.base.clone());
            tokio::spawn(async move {
                let body = json!({"id": format!("late-{i}"), "customer_id": "alice"});
                http.post(format!("{base}/orders")).json(&body).send().await.map(|r| r.status())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let exit = tokio::task::spawn_blocking(move || service.terminate()).await.expect("terminate");
    assert!(exit.success(), "exit status {exit:?}");
    let mut acknowledged = 0;
    for (i, handle) in burst.into_iter().enumerate() {
        if let Ok(Ok(StatusCode::CREATED)) = handle.await {
            acknowledged += 1;
            let stream = StreamId::new("Order", format!("late-{i}")).expect("id");
            assert_eq!(
                store.stream_version(&stream).await.expect("version").0,
                1,
                "late-{i} was acknowledged"
            );
        }
    }
    for (projection, table) in [("audit_log", "audit_log"), ("order_summary", "order_summary")] {
        // The live build's checkpoint (a rebuild above made a fresh copy live).
        let builds = store.builds(projection).await.expect("builds");
        let live = builds.iter().find(|b| b.state == factum::store::BuildState::Live).expect("a live build");
        let checkpoint = store
            .load_checkpoint(&live.id.consumer())
            .await
            .expect("checkpoint")
            .unwrap_or(Checkpoint::START);
        let covered = store
            .read_all(Checkpoint::START, 1000)
            .await
            .expect("read")
            .into_iter()
            .filter(|e| e.checkpoint() <= checkpoint)
            .filter(|e| projection == "audit_log" || e.event_type == "OrderPlaced")
            .count() as i64;
        let mut read = store.read_models(&[projection]).await.expect("read models");
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut *read)
            .await
            .expect("count");
        assert_eq!(rows, covered, "{projection} holds exactly what its checkpoint covers");
    }
    eprintln!("graceful shutdown: {acknowledged} of 40 in-flight orders acknowledged and stored");
}

/// Every endpoint refuses bad input with a 4xx and a JSON body saying what was wrong,
/// and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_and_write_nothing() {
    let db = TestDb::new().await;
    let service = Service::start(&db);
    let store = PostgresStore::connect(db.config()).await.expect("store");
    accepted(
        service.post("/customers", json!({"id": "c1", "name": "Ann", "email": "ann@example.com"})).await,
        StatusCode::CREATED,
    );
    accepted(service.post("/orders", json!({"id": "o1", "customer_id": "c1"})).await, StatusCode::CREATED);
    // The customer_orders process records the order's placement in a stream of its own.
    let placement = EventFilter::new().aggregate_type("customer_orders");
    eventually(Duration::from_secs(20), "the process to record the order", || async {
        (store.count(&placement).await.ok()? == 1).then_some(())
    })
    .await;
    let before = store.count(&EventFilter::new()).await.expect("count");

    let raw = |method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut request = service.http.request(method, format!("{}{path}", service.base)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        async move { read(request.send().await.expect("request")).await }
    };
    let json_body = Some("application/json");
    let huge = format!("{{\"name\": \"{}\", \"email\": \"a@example.com\"}}", "x".repeat(20 * 1024));
    let with_body: [(Method, &str, Value); 6] = [
        (Method::POST, "/customers", json!({"name": "N", "email": "n@example.com"})),
        (Method::PUT, "/customers/c1/email", json!({"email": "n@example.com"})),
        (Method::POST, "/orders", json!({"customer_id": "c1"})),
        (Method::POST, "/orders/o1/items", json!({"sku": "a", "quantity": 1, "unit_price": 1})),
        (Method::POST, "/orders/o1/cancel", json!({"reason": "r"})),
        (Method::POST, "/ops/replay", json!({"topics": ["order.#"]})),
    ];
    for (method, path, good) in &with_body {
        // Malformed JSON, a body that is not JSON at all, an empty body.
        for body in ["{", "{,}", "not json", ""] {
            refused(
                raw(method.clone(), path, json_body, body.into()).await,
                StatusCode::BAD_REQUEST,
                "malformed_json",
            );
        }
        // No or the wrong content type.
        refused(
            raw(method.clone(), path, None, good.to_string().into()).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
        refused(
            raw(method.clone(), path, Some("text/plain"), good.to_string().into()).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
        // Oversize.
        refused(
            raw(method.clone(), path, json_body, huge.clone().into()).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        );
        // Unknown fields, wrong types, missing fields, the wrong JSON type altogether.
        let mut unknown = good.clone();
        unknown["admin"] = json!(true);
        refused(
            service.send(method.clone(), path, Some(unknown)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        );
        for (field, _) in good.as_object().expect("object") {
            let mut wrong = good.clone();
            wrong[field] = json!({"nested": [1, 2]});
            refused(
                service.send(method.clone(), path, Some(wrong)).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
            );
            if path != &"/ops/replay" {
                let mut missing = good.clone();
                missing.as_object_mut().expect("object").remove(field);
                refused(
                    service.send(method.clone(), path, Some(missing)).await,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                );
            }
        }
        // Not an object at all: an array of the fields in order (which serde's derived
        // deserializers would take), a string, a number, null.
        let fields: Vec<Value> = good.as_object().expect("object").values().cloned().collect();
        for body in [Value::Array(fields), json!([1, 2]), json!("string"), json!(12), json!(null)] {
            let response = service.send(method.clone(), path, Some(body.clone())).await;
            refused(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
        }
        // A field set to null, where the schema says string, integer or array.
        for (field, _) in good.as_object().expect("object") {
            let mut null = good.clone();
            null[field] = Value::Null;
            refused(
                service.send(method.clone(), path, Some(null)).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
            );
        }
    }

    // Hostile strings in bodies: control characters, NUL, SQL, markup, huge numbers.
    let hostile: [(&str, Value, &str); 11] = [
        ("/customers", json!({"name": "a\u{0}b", "email": "a@example.com"}), "invalid_name"),
        (
            "/customers",
            json!({"name": "Robert'); DROP TABLE events;--", "email": "x\u{0}@example.com"}),
            "invalid_email",
        ),
        ("/customers", json!({"name": "x".repeat(201), "email": "a@example.com"}), "invalid_name"),
        (
            "/customers",
            json!({"id": "../../etc/passwd", "name": "A", "email": "a@example.com"}),
            "invalid_id",
        ),
        ("/customers", json!({"id": "x".repeat(65), "name": "A", "email": "a@example.com"}), "invalid_id"),
        ("/orders", json!({"customer_id": "c1' OR '1'='1"}), "invalid_customer_id"),
        ("/orders", json!({"id": "<script>", "customer_id": "c1"}), "invalid_id"),
        ("/orders/o1/items", json!({"sku": "é", "quantity": 1, "unit_price": 1}), "invalid_sku"),
        ("/orders/o1/items", json!({"sku": "a", "quantity": 1e300, "unit_price": 1}), "invalid_body"),
        (
            "/orders/o1/items",
            json!({"sku": "a", "quantity": 1, "unit_price": 9_223_372_036_854_775_807_i64}),
            "invalid_price",
        ),
        ("/orders/o1/cancel", json!({"reason": "line\nbreak"}), "invalid_reason"),
    ];
    for (path, body, code) in hostile {
        let (status, response) = service.post(path, body.clone()).await;
        assert!(status.is_client_error(), "{path} {body}: {status} {response}");
        assert_eq!(response["error"], code, "{path} {body}: {response}");
    }
    let too_big = raw(
        Method::POST,
        "/orders/o1/items",
        json_body,
        br#"{"sku":"a","quantity":99999999999999999999999,"unit_price":1}"#.to_vec(),
    )
    .await;
    refused(too_big, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");

    // An optional id may be absent, not null; an integer is any number without a fraction.
    refused(
        service.post("/orders", json!({"id": null, "customer_id": "c1"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    refused(
        service.post("/orders/o1/items", json!({"sku": "a", "quantity": 1, "unit_price": 1.5})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    refused(
        service.post("/customers", json!({"name": "Ann", "email": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_email",
    );
    for topics in [json!([""]), json!(["a..b"]), json!(["a.*b"])] {
        refused(
            service.post("/ops/replay", json!({"topics": topics})).await,
            StatusCode::BAD_REQUEST,
            "invalid_filter",
        );
    }
    refused(
        service.post("/ops/replay", json!({"aggregate_type": ""})).await,
        StatusCode::BAD_REQUEST,
        "invalid_filter",
    );

    // Hostile ids in paths, for every endpoint that takes one.
    for id in ["%00", "a%2Fb", "..", "%27%3B%20DROP%20TABLE%20events%3B--", "%E2%80%AE", &"x".repeat(65)] {
        for (method, path) in [
            (Method::GET, format!("/customers/{id}")),
            (Method::PUT, format!("/customers/{id}/email")),
            (Method::POST, format!("/customers/{id}/deactivate")),
            (Method::GET, format!("/orders/{id}")),
            (Method::POST, format!("/orders/{id}/items")),
            (Method::DELETE, format!("/orders/{id}/items/a")),
            (Method::DELETE, format!("/orders/o1/items/{id}")),
            (Method::POST, format!("/orders/{id}/confirm")),
            (Method::POST, format!("/orders/{id}/ship")),
            (Method::POST, format!("/orders/{id}/cancel")),
            (Method::GET, format!("/ops/projections/{id}")),
            (Method::POST, format!("/ops/projections/{id}/rebuild")),
        ] {
            let body =
                json!({"email": "a@example.com", "sku": "a", "quantity": 1, "unit_price": 1, "reason": "r"});
            let (status, response) = service.send(method.clone(), &path, Some(body)).await;
            assert!(status.is_client_error(), "{method} {path}: {status} {response}");
            assert!(
                response["error"].is_string() && response["message"].is_string(),
                "{method} {path}: {response}"
            );
        }
    }
    refused(
        service.post("/ops/projections/nothing/rebuild", json!(null)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(service.get("/ops/projections/nothing").await, StatusCode::NOT_FOUND, "not_found");

    // Bad queries, headers, routes and methods.
    for query in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "after=x",
        "correlation_id=nope",
        "aggregate_id=%27",
        "bogus=1",
        "limit=",
        "aggregate_type=",
        "after=-1",
        "after=9007199254740992",
        "limit=2.5",
    ] {
        let (status, response) = service.get(&format!("/audit?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {response}");
        assert!(response["error"].is_string(), "{query}: {response}");
    }
    refused(
        service.post("/ops/replay", json!({"topics": ["a..b"]})).await,
        StatusCode::BAD_REQUEST,
        "invalid_filter",
    );
    let bad_header = service
        .http
        .get(format!("{}/health", service.base))
        .header("x-correlation-id", "not-a-uuid")
        .send()
        .await
        .expect("request");
    refused(read(bad_header).await, StatusCode::BAD_REQUEST, "invalid_correlation_id");
    let bad_user = service
        .http
        .get(format!("{}/health", service.base))
        .header("x-user-id", "a b")
        .send()
        .await
        .expect("request");
    refused(read(bad_user).await, StatusCode::BAD_REQUEST, "invalid_user_id");
    refused(service.get("/nowhere").await, StatusCode::NOT_FOUND, "not_found");
    refused(
        service.send(Method::DELETE, "/customers", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    // Nothing was written, and the service is still healthy.
    assert_eq!(
        store.count(&EventFilter::new()).await.expect("count"),
        before,
        "refused requests wrote nothing"
    );
    accepted(service.get("/health").await, StatusCode::OK);
    let exit = tokio::task::spawn_blocking(move || service.terminate()).await.expect("terminate");
    assert!(exit.success(), "exit status {exit:?}");
}

/// Two instances on one database: commands for one order through both conflict and are
/// retried (or refused with 409 `concurrency_conflict`, never lost or doubled), and each
/// projection runs in exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database() {
    let db = TestDb::new().await;
    let first = Service::start(&db);
    let second = Service::start(&db);
    let store = PostgresStore::connect(db.config()).await.expect("store");
    accepted(
        first.post("/customers", json!({"id": "c1", "name": "Ann", "email": "ann@example.com"})).await,
        StatusCode::CREATED,
    );
    accepted(second.post("/orders", json!({"id": "o1", "customer_id": "c1"})).await, StatusCode::CREATED);

    let adds = (0..40u32).map(|i| {
        let service = if i.is_multiple_of(2) { &first } else { &second };
        service.post("/orders/o1/items", json!({"sku": format!("sku-{i}"), "quantity": 1, "unit_price": 100}))
    });
    let (mut ok, mut conflicts) = (0, 0);
    for (status, body) in futures_util::future::join_all(adds).await {
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT if body["error"] == "concurrency_conflict" => conflicts += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (order, version): (Order, u64) = fold(&store, "o1").await;
    assert_eq!(
        order.lines.len(),
        ok,
        "every acknowledged item is stored once; {conflicts} refused after retries"
    );
    assert_eq!(version, ok as u64 + 1);
    let view = eventually(Duration::from_secs(20), "the order summary catches up", || async {
        let (_, view) = first.get("/orders/o1").await;
        (view["version"].as_u64() == Some(version)).then_some(view)
    })
    .await;
    assert_eq!(view["total"].as_i64(), Some(order.total()));

    // Each projection is live in one instance and stands by in the other.
    let (_, a) = first.get("/ops/projections").await;
    let (_, b) = second.get("/ops/projections").await;
    for name in ["order_summary", "customer_history", "audit_log"] {
        let state = |statuses: &Value| {
            statuses.as_array().expect("array").iter().find(|s| s["name"] == name).expect("listed")["state"]
                .clone()
        };
        let mut states = [state(&a), state(&b)];
        states.sort_by_key(|s| s.to_string());
        assert_eq!(states, [json!("live"), json!("standby")], "{name}: {a} {b}");
    }
    let mut retried = 0.0;
    for service in [&first, &second] {
        let text = service.http.get(format!("{}/metrics", service.base)).send().await.expect("scrape");
        retried += sample(&text.text().await.expect("text"), "factum_concurrency_conflicts_total", &[]);
    }
    eprintln!("two instances: {ok} items acknowledged, {retried} conflicts retried, {conflicts} refused after retries");
    for service in [first, second] {
        let exit = tokio::task::spawn_blocking(move || service.terminate()).await.expect("terminate");
        assert!(exit.success(), "exit status {exit:?}");
    }
}

/// Read-your-writes over HTTP, on two instances (each projection runs in one and stands by
/// in the other): 1,000 customers registered and 1,000 items added, each read at once
/// from the other instance with the command's position in `x-factum-min-position`: none
/// missing, none stale. Bad headers are refused with 400, and reads without the header
/// answer as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_with_the_write_position_see_the_write() {
    let db = TestDb::new().await;
    let services = [Service::start(&db), Service::start(&db)];
    let (mut missing, mut stale) = (0, 0);
    let started = std::time::Instant::now();
    for i in 0..1_000u32 {
        let (writer, reader) = (&services[(i % 2) as usize], &services[1 - (i % 2) as usize]);
        let id = format!("c{i}");
        let body = json!({"id": id, "name": "Ann", "email": format!("ann{i}@example.com")});
        let (status, _, position) = writer.command(Method::POST, "/customers", body).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, view) = reader.read_at(&format!("/customers/{id}"), &position.to_string()).await;
        match status {
            StatusCode::OK => assert_eq!(view["customer_id"], json!(id), "{view}"),
            StatusCode::NOT_FOUND => missing += 1,
            other => panic!("unexpected {other}: {view}"),
        }
    }
    let (status, _, _) =
        services[0].command(Method::POST, "/orders", json!({"id": "o1", "customer_id": "c0"})).await;
    assert_eq!(status, StatusCode::CREATED);
    for i in 0..1_000u32 {
        let (writer, reader) = (&services[(i % 2) as usize], &services[1 - (i % 2) as usize]);
        let item = json!({"sku": format!("sku-{i}"), "quantity": 1, "unit_price": 100});
        let (status, done, position) = writer.command(Method::POST, "/orders/o1/items", item).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        let (status, view) = reader.read_at("/orders/o1", &position.to_string()).await;
        match status {
            StatusCode::OK if view["version"].as_u64() >= done["version"].as_u64() => {}
            StatusCode::OK => stale += 1,
            StatusCode::NOT_FOUND => missing += 1,
            other => panic!("unexpected {other}: {view}"),
        }
    }
    eprintln!(
        "read-your-writes: 2,000 write-then-read pairs across two instances in {:?}: {missing} missing, {stale} stale",
        started.elapsed()
    );
    assert_eq!((missing, stale), (0, 0));

    // Refused at once: not a number, negative, past the end of the log.
    let (_, _, position) =
        services[0].command(Method::PUT, "/customers/c0/email", json!({"email": "x@example.com"})).await;
    for bad in ["soon", "-1", "1.5", &(position + 1_000).to_string()] {
        refused(
            services[1].read_at("/customers/c0", bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_min_position",
        );
    }
    // Without the header, as before.
    let (status, _) = services[1].get("/customers/c0").await;
    assert_eq!(status, StatusCode::OK);
}
