//! `simulate`: many customers and orders driven concurrently through the framework, with
//! a progress bar, throughput and latency figures, and a check of the read models against
//! the event log.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factum::prelude::*;
use factum::store::Checkpoint;
use factum::{Aggregate, CommandError, DomainEvent, EventFilter, Metadata};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::app::{App, AppError};
use crate::customer::CustomerCommand;
use crate::order::{Order, OrderCommand, OrderError, OrderEvent};
use crate::read_models::PROJECTIONS;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimulateOptions {
    /// Customers to register first.
    pub customers: usize,
    /// Orders to drive through their life.
    pub orders: usize,
    /// Concurrent workers.
    pub concurrency: usize,
    /// The random seed (the same seed gives the same commands).
    pub seed: u64,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        SimulateOptions { customers: 50, orders: 500, concurrency: 16, seed: 42, progress: true }
    }
}

/// Why the simulation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// A command failed in a way the script did not expect.
    #[error("unexpected command failure: {0}")]
    Command(#[from] AppError),
    /// The store failed while checking.
    #[error("store: {0}")]
    Store(#[from] factum::StoreError),
    /// A read-model query failed.
    #[error("read model: {0}")]
    ReadModel(#[from] sqlx::Error),
    /// The supervisor failed while waiting for the projections.
    #[error("supervisor: {0}")]
    Supervisor(#[from] factum::supervisor::SupervisorError),
    /// The projections did not catch up in time.
    #[error("projection {0} still lags after 60 s")]
    Lagging(String),
    /// The options make no sense.
    #[error("invalid options: {0}")]
    Options(&'static str),
}

/// Orders and their total, in cents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// How many orders.
    pub orders: i64,
    /// The sum of their totals, in cents.
    pub cents: i64,
}

/// One status's totals in the read model beside the same folded from the event log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compared {
    /// What the `order_summary` read model says.
    pub read_model: Totals,
    /// What the event log says.
    pub log: Totals,
}

/// What the simulation did and found.
#[derive(Clone, Debug)]
pub struct SimulationReport {
    /// Customers registered.
    pub customers: usize,
    /// Orders driven.
    pub orders: usize,
    /// Commands that committed.
    pub commands: usize,
    /// Commands the domain refused, as the script meant it to (shipping before confirming).
    pub refused_as_expected: usize,
    /// Wall time of the command phase.
    pub elapsed: Duration,
    /// Command latencies: p50, p90, p99, max.
    pub latency: [Duration; 4],
    /// How long the projections took to catch up after the last command.
    pub catch_up: Duration,
    /// Per order status: orders and their total in the read model and in the event log.
    pub totals: BTreeMap<String, Compared>,
    /// Audit-log rows and events in the store.
    pub audit: (i64, u64),
}

impl SimulationReport {
    /// Whether every read model matches the event log.
    pub fn consistent(&self) -> bool {
        self.totals.values().all(|c| c.read_model == c.log) && self.audit.0 as u64 == self.audit.1
    }

    /// Commands per second.
    pub fn throughput(&self) -> f64 {
        (self.commands + self.refused_as_expected) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for SimulationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulated {} customers and {} orders: {} commands committed, {} refused as expected, in {:.2} s",
            self.customers,
            self.orders,
            self.commands,
            self.refused_as_expected,
            self.elapsed.as_secs_f64()
        )?;
        let [p50, p90, p99, max] = self.latency;
        writeln!(
            f,
            "throughput {:.0} commands/s; latency p50 {}, p90 {}, p99 {}, max {}",
            self.throughput(),
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max)
        )?;
        writeln!(f, "projections caught up {} after the last command", ms(self.catch_up))?;
        writeln!(
            f,
            "{:<10} {:>8} {:>14}   {:>8} {:>14}",
            "status", "orders", "total (cents)", "log says", ""
        )?;
        for (status, c) in &self.totals {
            let mark = if c.read_model == c.log { "ok" } else { "MISMATCH" };
            let (read, log) = (c.read_model, c.log);
            writeln!(
                f,
                "{status:<10} {:>8} {:>14}   {:>8} {:>14}  {mark}",
                read.orders, read.cents, log.orders, log.cents
            )?;
        }
        let mark = if self.audit.0 as u64 == self.audit.1 { "ok" } else { "MISMATCH" };
        writeln!(f, "audit log: {} rows for {} stored events  {mark}", self.audit.0, self.audit.1)?;
        write!(
            f,
            "read models {}",
            if self.consistent() { "match the event log" } else { "DO NOT match the event log" }
        )
    }
}

const SKUS: [(&str, i64); 8] = [
    ("tea-green", 450),
    ("tea-black", 390),
    ("mug", 1200),
    ("kettle", 4999),
    ("honey", 750),
    ("biscuits", 299),
    ("teapot", 3500),
    ("strainer", 199),
];

fn metadata(run: &str) -> Metadata {
    let mut m = Metadata { user_id: Some("simulator".into()), ..Metadata::default() };
    m.custom.insert("run".into(), run.into());
    m
}

/// Runs the simulation on `app`, then waits for the projections and checks them.
pub async fn simulate(app: &App, options: &SimulateOptions) -> Result<SimulationReport, SimulateError> {
    if options.customers == 0 || options.concurrency == 0 {
        return Err(SimulateError::Options("customers and concurrency must be at least 1"));
    }
    let run = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    let bar = if options.progress { ProgressBar::new(options.orders as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} orders, {per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let customers: Arc<Vec<String>> =
        Arc::new((0..options.customers).map(|i| format!("sim-{run}-c{i}")).collect());
    let started = Instant::now();

    // Register the customers, then drive the orders, each worker taking the next.
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency {
        let (app, customers, next, run) = (app.clone(), customers.clone(), next.clone(), run.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let meta = metadata(&run);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = customers.get(i) else { break };
                let t = Instant::now();
                let command = CustomerCommand::Register {
                    customer_id: id.clone(),
                    name: format!("Customer {i}"),
                    email: format!("customer{i}.{run}@example.com"),
                };
                app.customer(command, meta.clone()).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, AppError>((latencies, 0usize))
        });
    }
    let mut latencies = Vec::new();
    let mut refused = 0;
    while let Some(done) = workers.join_next().await {
        let (l, _) = done.map_err(|_| SimulateError::Options("a worker panicked"))??;
        latencies.extend(l);
    }

    let next = Arc::new(AtomicUsize::new(0));
    for w in 0..options.concurrency {
        let (app, customers, next, run, bar) =
            (app.clone(), customers.clone(), next.clone(), run.clone(), bar.clone());
        let (orders, seed) = (options.orders, options.seed);
        workers.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(w as u64));
            let mut latencies = Vec::new();
            let mut refused = 0;
            let meta = metadata(&run);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= orders {
                    break;
                }
                let order_id = format!("sim-{run}-o{i}");
                let customer_id = customers[rng.gen_range(0..customers.len())].clone();
                let mut script = vec![OrderCommand::Place { order_id: order_id.clone(), customer_id }];
                let mut skus: Vec<_> = SKUS.iter().collect();
                for _ in 0..rng.gen_range(1..=4) {
                    let (sku, price) = skus.swap_remove(rng.gen_range(0..skus.len()));
                    script.push(OrderCommand::AddItem {
                        order_id: order_id.clone(),
                        sku: (*sku).into(),
                        quantity: rng.gen_range(1..=5),
                        unit_price: *price,
                    });
                }
                if rng.gen_bool(0.2) && script.len() > 2 {
                    if let OrderCommand::AddItem { sku, .. } = &script[1] {
                        let sku = sku.clone();
                        script.push(OrderCommand::RemoveItem { order_id: order_id.clone(), sku });
                    }
                }
                let fate = rng.gen_range(0..10);
                let ship_early = rng.gen_bool(0.1);
                if ship_early {
                    script.push(OrderCommand::Ship { order_id: order_id.clone() });
                    // refused: not confirmed
                }
                match fate {
                    0..=6 => {
                        script.push(OrderCommand::Confirm { order_id: order_id.clone() });
                        if fate <= 3 {
                            script.push(OrderCommand::Ship { order_id: order_id.clone() });
                        }
                    }
                    7 => script.push(OrderCommand::Cancel {
                        order_id: order_id.clone(),
                        reason: "changed mind".into(),
                    }),
                    _ => {}
                }
                for command in script {
                    let t = Instant::now();
                    match app.order(command, meta.clone()).await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(AppError::Order(CommandError::Domain(OrderError::NotConfirmed(_))))
                            if ship_early =>
                        {
                            latencies.push(t.elapsed());
                            refused += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
                bar.inc(1);
            }
            Ok((latencies, refused))
        });
    }
    while let Some(done) = workers.join_next().await {
        let (l, r) = done.map_err(|_| SimulateError::Options("a worker panicked"))??;
        latencies.extend(l);
        refused += r;
    }
    let elapsed = started.elapsed();
    bar.finish_with_message("done");

    // Wait for every projection to reach the end of the log, again while the process
    // managers record their reactions to the last commands (the log must stand still).
    let caught_up = Instant::now();
    loop {
        let before = app.store.latest_position().await?;
        for name in PROJECTIONS {
            let deadline = Instant::now() + Duration::from_secs(60);
            while app.supervisor.lag(name).await? > 0 {
                if Instant::now() > deadline {
                    return Err(SimulateError::Lagging(name.to_owned()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if app.store.latest_position().await? == before {
            break;
        }
    }
    let catch_up = caught_up.elapsed();

    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let latency = [pct(0.50), pct(0.90), pct(0.99), latencies.last().copied().unwrap_or_default()];

    let totals = check_orders(app).await?;
    let audit = (app.tables.audit_count().await?, app.store.count(&EventFilter::new()).await?);
    Ok(SimulationReport {
        customers: options.customers,
        orders: options.orders,
        commands: latencies.len() - refused,
        refused_as_expected: refused,
        elapsed,
        latency,
        catch_up,
        totals,
        audit,
    })
}

/// Per status: (orders, total) in the order-summary read model and folded from the log.
async fn check_orders(app: &App) -> Result<BTreeMap<String, Compared>, SimulateError> {
    let mut orders: BTreeMap<String, Order> = BTreeMap::new();
    let mut after = Checkpoint::START;
    loop {
        let batch = app.store.read_category("Order", after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = last.checkpoint();
        for event in batch {
            let decoded = OrderEvent::from_stored(&event.event_type, event.schema_version, event.payload)
                .map_err(|e| factum::StoreError::Corrupt(e.to_string()))?;
            Aggregate::apply(orders.entry(event.stream.aggregate_id().to_owned()).or_default(), &decoded);
        }
    }
    let mut totals: BTreeMap<String, Compared> = BTreeMap::new();
    for order in orders.values() {
        let entry = totals.entry(order.status.as_str().to_owned()).or_default();
        entry.log.orders += 1;
        entry.log.cents += order.total();
    }
    for (status, orders, cents) in app.tables.order_totals().await? {
        totals.entry(status).or_default().read_model = Totals { orders, cents };
    }
    Ok(totals)
}
