//! The example's process managers on PostgreSQL: a refused command reaches its process; a
//! timer due while the service was down fires at start-up, once; and the service killed
//! with SIGKILL 20 times while customers are deactivated and deadlines pass cancels every
//! order it should exactly once, and no other.
//!
//! `FACTUM_FAULT_KILLS` sets the number of kills (default 20).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factum::process::{Process, ProcessInstance};
use factum_example::customer::CustomerCommand;
use factum_example::order::OrderCommand;
use factum_example::processes::{
    set_ship_deadline, CustomerOrders, ShipDeadline, CUSTOMER_DEACTIVATED, NOT_SHIPPED_IN_TIME,
};
use factum_example::App;
use factum_postgres::PostgresStore;
use factum_tests::{eventually, TestDb};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

/// The ship deadline in these tests.
const DEADLINE: Duration = Duration::from_secs(2);

fn place(order: &str, customer: &str) -> OrderCommand {
    OrderCommand::Place { order_id: order.into(), customer_id: customer.into() }
}

fn item(order: &str) -> OrderCommand {
    OrderCommand::AddItem { order_id: order.into(), sku: "sku-1".into(), quantity: 1, unit_price: 100 }
}

async fn register(app: &App, customer: &str) {
    let command = CustomerCommand::Register {
        customer_id: customer.into(),
        name: "Ada".into(),
        email: format!("{customer}@example.com"),
    };
    app.customer(command, Default::default()).await.unwrap();
}

/// The events of one order: (event type, payload).
async fn order_events(store: &PostgresStore, order: &str) -> Vec<(String, Value)> {
    sqlx::query_as(
        "SELECT event_type, event_data FROM events WHERE aggregate_type = 'Order' AND aggregate_id = $1 ORDER BY version",
    )
    .bind(order)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_reaches_its_process() {
    set_ship_deadline(Duration::from_secs(3600));
    let db = TestDb::new().await;
    let app = App::start(db.config()).await.unwrap();
    register(&app, "c-1").await;
    for order in ["o-shipped", "o-open"] {
        app.order(place(order, "c-1"), Default::default()).await.unwrap();
        app.order(item(order), Default::default()).await.unwrap();
    }
    app.order(OrderCommand::Confirm { order_id: "o-shipped".into() }, Default::default()).await.unwrap();
    // The process has both orders as open ...
    eventually(Duration::from_secs(30), "the process to see both orders", || async {
        let (instance, _) = app.factum.load::<ProcessInstance<CustomerOrders>>("c-1").await.ok()?;
        (instance.state.open.len() == 2).then_some(())
    })
    .await;
    // ... and one ships before the customer is deactivated: its cancellation is refused.
    app.order(OrderCommand::Ship { order_id: "o-shipped".into() }, Default::default()).await.unwrap();
    app.customer(CustomerCommand::Deactivate { customer_id: "c-1".into() }, Default::default())
        .await
        .unwrap();

    let instance = eventually(Duration::from_secs(30), "the refusal to reach the process", || async {
        let (instance, _) = app.factum.load::<ProcessInstance<CustomerOrders>>("c-1").await.ok()?;
        (instance.state.refused == 1).then_some(instance)
    })
    .await;
    assert!(instance.state.deactivated && instance.state.open.is_empty());
    let shipped = order_events(&app.store, "o-shipped").await;
    assert_eq!(shipped.last().unwrap().0, "OrderShipped", "a shipped order is not cancelled");
    let open = order_events(&app.store, "o-open").await;
    let cancels: Vec<_> = open.iter().filter(|(t, _)| t == "OrderCancelled").collect();
    assert_eq!(cancels.len(), 1, "{open:?}");
    assert_eq!(cancels[0].1["reason"], CUSTOMER_DEACTIVATED);

    // The refusal is a step of the process's stream, with the reason.
    let steps: Vec<(String, Value)> = sqlx::query_as(
        "SELECT event_type, event_data FROM events WHERE aggregate_type = $1 AND aggregate_id = 'c-1' ORDER BY version",
    )
    .bind(CustomerOrders::NAME)
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    let types: Vec<&str> = steps.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["EventReceived", "EventReceived", "EventReceived", "CommandRefused"]);
    let refused = &steps[3].1["input"];
    assert_eq!(refused["aggregate_id"], "o-shipped");
    assert!(refused["reason"].as_str().unwrap().contains("shipped"), "{refused}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_due_while_the_service_was_down_fires_at_start_once() {
    set_ship_deadline(DEADLINE);
    let db = TestDb::new().await;
    let app = App::start(db.config()).await.unwrap();
    register(&app, "c-1").await;
    app.order(place("o-1", "c-1"), Default::default()).await.unwrap();
    app.order(item("o-1"), Default::default()).await.unwrap();
    app.order(OrderCommand::Confirm { order_id: "o-1".into() }, Default::default()).await.unwrap();
    eventually(Duration::from_secs(30), "the timer to be set", || async {
        let timers =
            factum::store::TimerStore::timers(&app.store, ShipDeadline::NAME, None, 10).await.ok()?;
        (timers.len() == 1).then_some(())
    })
    .await;
    app.shutdown().await;
    drop(app);

    // Down past the deadline.
    tokio::time::sleep(DEADLINE + Duration::from_millis(500)).await;
    assert_eq!(order_events(&db.store().await, "o-1").await.last().unwrap().0, "OrderConfirmed");

    let app = App::start(db.config()).await.unwrap();
    let events = eventually(Duration::from_secs(30), "the overdue order to be cancelled", || async {
        let events = order_events(&app.store, "o-1").await;
        (events.last()?.0 == "OrderCancelled").then_some(events)
    })
    .await;
    assert_eq!(events.last().unwrap().1["reason"], NOT_SHIPPED_IN_TIME);
    // Fired once: one step, the timer gone, the process ended.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fired: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = $1 AND event_type = 'TimerFired'",
    )
    .bind(ShipDeadline::NAME)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(fired, 1);
    let timers = factum::store::TimerStore::timers(&app.store, ShipDeadline::NAME, None, 10).await.unwrap();
    assert!(timers.is_empty(), "{timers:?}");
    let (instance, _) = app.factum.load::<ProcessInstance<ShipDeadline>>("o-1").await.unwrap();
    assert!(instance.ended && instance.state.overdue);
    assert_eq!(
        order_events(&app.store, "o-1").await.iter().filter(|(t, _)| t == "OrderCancelled").count(),
        1
    );
    app.shutdown().await;
}

/// The service as a child process on a fixed port, with a short ship deadline.
fn spawn(database_url: &str, port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_factum-example"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", database_url)
        .env("FACTUM_EXAMPLE_SHIP_DEADLINE", DEADLINE.as_secs().to_string())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the service");
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {});
    child
}

/// One worker: registers customers, places orders with an item, confirms most, ships
/// some at once and some later (after their deadline, or racing it), and deactivates
/// about half of the customers. Requests fail while the service is down; the checks
/// read the log, not the answers.
async fn drive(base: String, worker: u64, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let http = reqwest::Client::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(worker);
    let mut later: Vec<String> = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let customer = format!("c{worker}-{n}");
        let post = |path: String, body: Value| {
            let request = http.post(format!("{base}{path}")).json(&body).timeout(Duration::from_secs(5));
            async move {
                let ok = request.send().await.is_ok_and(|r| r.status().is_success());
                if !ok {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                ok
            }
        };
        post(
            "/customers".into(),
            json!({ "id": customer, "name": "Ada", "email": format!("{customer}@example.com") }),
        )
        .await;
        for j in 0..3 {
            let order = format!("{customer}-o{j}");
            post("/orders".into(), json!({ "id": order, "customer_id": customer })).await;
            post(
                format!("/orders/{order}/items"),
                json!({ "sku": "sku-1", "quantity": 1, "unit_price": 100 }),
            )
            .await;
            match rng.gen_range(0..6) {
                0 => {}
                1 | 2 => {
                    post(format!("/orders/{order}/confirm"), json!({})).await;
                    post(format!("/orders/{order}/ship"), json!({})).await;
                }
                3 => {
                    post(format!("/orders/{order}/confirm"), json!({})).await;
                    later.push(order);
                }
                _ => {
                    post(format!("/orders/{order}/confirm"), json!({})).await;
                }
            }
            sent.fetch_add(1, Ordering::Relaxed);
        }
        if rng.gen_bool(0.5) {
            post(format!("/customers/{customer}/deactivate"), json!({})).await;
        }
        // Ship an order confirmed a while ago: before, around or after its deadline.
        if later.len() > 8 {
            let order = later.remove(rng.gen_range(0..later.len()));
            post(format!("/orders/{order}/ship"), json!({})).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..40))).await;
    }
}

/// The log, as the checks read it: each order's events, each customer's deactivation,
/// and each process stream's steps.
struct Log {
    /// Order id -> (customer, [(event type, payload)]).
    orders: BTreeMap<String, (String, Vec<(String, Value)>)>,
    deactivated: HashSet<String>,
    /// (process, instance) -> [(event type, payload)].
    steps: BTreeMap<(String, String), Vec<(String, Value)>>,
    /// Causation ids of the events the processes' commands recorded, with their count.
    caused: HashMap<Uuid, usize>,
}

async fn read_log(store: &PostgresStore) -> Log {
    let rows: Vec<(String, String, String, Value, Option<Uuid>)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, event_type, event_data, causation_id FROM events ORDER BY global_position",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut log = Log {
        orders: BTreeMap::new(),
        deactivated: HashSet::new(),
        steps: BTreeMap::new(),
        caused: HashMap::new(),
    };
    for (t, id, event_type, data, causation) in rows {
        match t.as_str() {
            "Order" => {
                let entry = log.orders.entry(id).or_default();
                if event_type == "OrderPlaced" {
                    entry.0 = data["customer_id"].as_str().unwrap_or_default().to_owned();
                }
                if event_type == "OrderCancelled" {
                    *log.caused.entry(causation.unwrap_or_default()).or_default() += 1;
                }
                entry.1.push((event_type, data));
            }
            "Customer" if event_type == "CustomerDeactivated" => {
                log.deactivated.insert(id);
            }
            p if p == CustomerOrders::NAME || p == ShipDeadline::NAME => {
                log.steps.entry((t, id)).or_default().push((event_type, data));
            }
            _ => {}
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_while_customers_are_deactivated_and_deadlines_pass() {
    let kills: usize = std::env::var("FACTUM_FAULT_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    sigkill_run(1, kills).await;
}

/// Two instances share the database; one of them at a time is killed and restarted, so
/// that the process's lease, its timer lease and the instances' steps move between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_of_one_of_two_instances_while_deadlines_pass() {
    sigkill_run(2, 10).await;
}

async fn healthy(http: &reqwest::Client, base: &str) {
    let started = Instant::now();
    loop {
        let ok = http.get(format!("{base}/health")).timeout(Duration::from_secs(1)).send().await;
        if ok.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the service did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sigkill_run(instances: usize, kills: usize) {
    let db = TestDb::new().await;
    let ports: Vec<u16> = (0..instances)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
        })
        .collect();
    let bases: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let http = reqwest::Client::new();
    let mut children = Vec::new();
    for (port, base) in ports.iter().zip(&bases) {
        children.push(spawn(&db.url(), *port));
        healthy(&http, base).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(drive(bases[w as usize % instances].clone(), w, stop.clone(), sent.clone())))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let started = Instant::now();
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
        let i = k % instances;
        children[i].kill().expect("SIGKILL");
        children[i].wait().expect("reaped");
        children[i] = spawn(&db.url(), ports[i]);
        healthy(&http, &bases[i]).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Release);
    for w in workers {
        w.await.unwrap();
    }
    let loaded = started.elapsed();

    // Settle: every deadline passed, the processes caught up, no timer left due.
    let store = db.store().await;
    tokio::time::sleep(DEADLINE + Duration::from_secs(2)).await;
    let settle = Instant::now();
    loop {
        let lags: Vec<u64> = process_lags(&http, &bases).await;
        let due = factum::store::TimerStore::timers(&store, ShipDeadline::NAME, Some(chrono::Utc::now()), 10)
            .await
            .unwrap();
        if lags.iter().all(|l| *l == 0) && due.is_empty() {
            break;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(120),
            "the processes did not settle: lags {lags:?}, due {due:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = read_log(&store).await;
    for base in &bases {
        let (status, ops) = get(&http, base, "/ops/processes").await.expect("/ops/processes");
        assert_eq!(status, 200);
        let states: Vec<&str> = ops.as_array().unwrap().iter().filter_map(|p| p["state"].as_str()).collect();
        assert_eq!(states.len(), 2, "{ops}");
        let fine = ["live", "catching_up", "standby"];
        assert!(states.iter().all(|s| fine.contains(s)), "{ops}");
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }

    let mut expected_cancels = 0;
    let (mut by_deactivation, mut overdue, mut shipped) = (0, 0, 0);
    for (order, (customer, events)) in &log.orders {
        let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
        let cancels: Vec<&Value> =
            events.iter().filter(|(t, _)| t == "OrderCancelled").map(|(_, d)| &d["reason"]).collect();
        let is_shipped = types.contains(&"OrderShipped");
        let confirmed = types.contains(&"OrderConfirmed");
        assert!(cancels.len() <= 1, "{order} cancelled {} times: {types:?}", cancels.len());
        assert!(!is_shipped || cancels.is_empty(), "{order} shipped and cancelled: {types:?}");
        let should_cancel = !is_shipped && (log.deactivated.contains(customer) || confirmed);
        assert_eq!(
            cancels.len(),
            usize::from(should_cancel),
            "{order} of {customer}: {types:?}; its process: {:?}; its customer's: {:?}",
            log.steps.get(&(ShipDeadline::NAME.to_owned(), order.clone())),
            log.steps.get(&(CustomerOrders::NAME.to_owned(), customer.clone())),
        );
        expected_cancels += usize::from(should_cancel);
        match cancels.first().and_then(|r| r.as_str()) {
            Some(CUSTOMER_DEACTIVATED) => by_deactivation += 1,
            Some(NOT_SHIPPED_IN_TIME) => overdue += 1,
            Some(other) => panic!("{order} cancelled for {other:?}"),
            None => shipped += usize::from(is_shipped),
        }
    }
    // Each command a process sent landed once.
    assert!(log.caused.values().all(|n| *n == 1), "a process command recorded twice");

    // No process left mid-way; every timer fired once.
    let mut fired = 0;
    for ((process, instance), steps) in &log.steps {
        let timers: Vec<&Value> =
            steps.iter().filter(|(t, _)| t == "TimerFired").map(|(_, d)| &d["input"]["timer_id"]).collect();
        let distinct: HashSet<&&Value> = timers.iter().collect();
        assert_eq!(distinct.len(), timers.len(), "{process}/{instance}: a timer fired twice");
        fired += timers.len();
        let received: Vec<&Value> = steps
            .iter()
            .filter(|(t, _)| t == "EventReceived")
            .map(|(_, d)| &d["input"]["event_id"])
            .collect();
        let distinct: HashSet<&&Value> = received.iter().collect();
        assert_eq!(distinct.len(), received.len(), "{process}/{instance}: an event handled twice");
        if process == ShipDeadline::NAME {
            let ended = steps.iter().any(|(_, d)| d["decision"]["ended"] == json!(true));
            assert!(ended, "{process}/{instance} left mid-way: {steps:?}");
        }
    }
    for (customer, steps) in log.steps.iter().filter(|((p, _), _)| p == CustomerOrders::NAME) {
        if log.deactivated.contains(&customer.1) {
            let deactivation = steps.iter().any(|(_, d)| d["input"]["event_type"] == "CustomerDeactivated");
            assert!(deactivation, "{customer:?} deactivated but its process never heard");
        }
    }
    println!(
        "processes: {instances} instance(s), {kills} SIGKILLs over {:.1} s; {} orders, {} deactivated customers; \
         {expected_cancels} cancelled exactly once ({by_deactivation} for the deactivation, {overdue} overdue), \
         {shipped} shipped and never cancelled; {fired} timers fired once each; {} process instances, none mid-way",
        loaded.as_secs_f64(),
        log.orders.len(),
        log.deactivated.len(),
        log.steps.len(),
    );
    assert!(by_deactivation > 0 && overdue > 0 && shipped > 0, "the load exercised both processes");
    assert!(sent.load(Ordering::Relaxed) > 0);
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> Option<(u16, Value)> {
    let r = http.get(format!("{base}{path}")).timeout(Duration::from_secs(5)).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

/// Both processes' lag, as the instance running each one measures it (the smallest any
/// instance reports: one standing by may not know the checkpoint yet).
async fn process_lags(http: &reqwest::Client, bases: &[String]) -> Vec<u64> {
    let mut lags = Vec::new();
    for name in [CustomerOrders::NAME, ShipDeadline::NAME] {
        let mut lag = u64::MAX;
        for base in bases {
            let seen = get(http, base, &format!("/ops/projections/{name}"))
                .await
                .and_then(|(_, v)| v["lag"].as_u64());
            lag = lag.min(seen.unwrap_or(u64::MAX));
        }
        lags.push(lag);
    }
    lags
}
