//! `factum-example`: serve the order and customer API, or run a simulation.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use factum::store::{InvalidInput, MAX_SLICES};
use factum::supervisor::SupervisorError;
use factum_example::simulate::{simulate, SimulateOptions};
use factum_example::{http, App, Bus, StartError};
use factum_postgres::PostgresConfig;

/// The order and customer domains on factum, as an HTTP service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The PostgreSQL database holding the events and the read models.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Publish the order events to this RabbitMQ broker (amqp://user:password@host:port/vhost)
    /// and consume them from a queue bound with `order.#`.
    #[arg(long, env = "FACTUM_EXAMPLE_RABBITMQ_URL", hide_env_values = true)]
    rabbitmq_url: Option<String>,
    /// The topic exchange the order events are published to.
    #[arg(long, env = "FACTUM_EXAMPLE_RABBITMQ_EXCHANGE", default_value = "factum.events")]
    rabbitmq_exchange: String,
    /// The queue the service consumes them from.
    #[arg(long, env = "FACTUM_EXAMPLE_RABBITMQ_QUEUE", default_value = "factum-example.orders")]
    rabbitmq_queue: String,
    /// Log as JSON lines instead of text (the level comes from RUST_LOG, default info).
    #[arg(long, env = "FACTUM_EXAMPLE_LOG_JSON")]
    log_json: bool,
    /// Run the order and customer read models in this many slices each (1 to 1024), which
    /// spread over the instances sharing the database. The count is fixed per database:
    /// to try another one, use a fresh database.
    #[arg(
        long,
        env = "FACTUM_EXAMPLE_SLICES",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_SLICES))
    )]
    slices: u16,
    /// Cancel a confirmed order not shipped within this many seconds (the
    /// `ship_deadline` process; its timers are kept in the database).
    #[arg(long, env = "FACTUM_EXAMPLE_SHIP_DEADLINE", default_value_t = 86_400)]
    ship_deadline: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve(Serve),
    /// Drive customers and orders concurrently, print figures, check the read models.
    Simulate(Simulation),
    /// Set the database up, connected as the owner role: apply the migrations, and grant
    /// the runtime role what the service needs (CREATE on the database included: the
    /// service keeps each read model's build in a schema of its own).
    Setup(Setup),
}

#[derive(Debug, Args)]
struct Setup {
    /// The role the service connects as (it owns nothing; see docs/operations.md).
    #[arg(long, value_name = "ROLE")]
    grant_to: Option<String>,
}

#[derive(Debug, Args)]
struct Serve {
    /// Where to listen; port 0 picks a free one (the address is printed).
    #[arg(long, env = "FACTUM_EXAMPLE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Run a short simulation before serving, to show the framework working.
    #[arg(long)]
    simulate_first: bool,
    #[command(flatten)]
    simulation: Simulation,
}

#[derive(Debug, Args)]
struct Simulation {
    /// Customers to register.
    #[arg(long, default_value_t = 50)]
    customers: usize,
    /// Orders to drive through their life.
    #[arg(long, default_value_t = 500)]
    orders: usize,
    /// Concurrent workers.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl Simulation {
    fn options(&self) -> SimulateOptions {
        SimulateOptions {
            customers: self.customers,
            orders: self.orders,
            concurrency: self.concurrency,
            seed: self.seed,
            progress: true,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; stdout carries the simulation's report and the listening address.
    let telemetry = factum_example::telemetry::init(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = PostgresConfig::from_url(&cli.database_url)?;
    // Name the connections, so that `factum status` and pg_stat_activity show which
    // instance holds a projection's lease (unless the URL names them already).
    if config.connect.get_application_name().is_none() {
        config.connect =
            config.connect.application_name(&format!("factum-example pid {}", std::process::id()));
    }
    if let Some(Command::Setup(setup)) = &cli.command {
        App::setup(config, setup.grant_to.as_deref()).await?;
        println!(
            "database set up{}",
            setup.grant_to.as_ref().map(|r| format!("; {r} granted")).unwrap_or_default()
        );
        return Ok(());
    }
    let bus = cli.rabbitmq_url.as_ref().map(|url| Bus {
        url: url.clone(),
        exchange: cli.rabbitmq_exchange.clone(),
        queue: cli.rabbitmq_queue.clone(),
    });
    factum_example::processes::set_ship_deadline(std::time::Duration::from_secs(cli.ship_deadline));
    let app =
        App::start_with(config, bus.as_ref(), cli.slices).await.map_err(|e| start_error(e, cli.slices))?;
    let result = match cli.command.unwrap_or(Command::Serve(Serve::parse_default())) {
        Command::Simulate(simulation) => run_simulation(&app, &simulation).await,
        Command::Setup(_) => Ok(()),
        Command::Serve(serve) => {
            // Bind first: a second copy on the same port says so at once, not after its
            // simulation.
            let listener = bind(serve.listen).await;
            match listener {
                Ok(listener) => {
                    let simulated = match serve.simulate_first {
                        true => run_simulation(&app, &serve.simulation).await,
                        false => Ok(()),
                    };
                    match simulated {
                        Ok(()) => serve_http(&app, listener).await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
    };
    app.shutdown().await;
    tracing::info!("stopped");
    result
}

/// Why the service could not start, saying what to do when the database's read models
/// run in another number of slices than asked for.
fn start_error(e: StartError, slices: u16) -> Box<dyn std::error::Error> {
    match e {
        StartError::Supervisor(SupervisorError::InvalidProjection {
            source: InvalidInput::OutOfRange { field: "slices", .. },
            ..
        }) => format!(
            "{e}\n(this database's read models run in another number of slices than {slices}, the \
             count asked for with --slices or FACTUM_EXAMPLE_SLICES: start with their count, or use \
             another database, e.g. FACTUM_EXAMPLE_DB=<name> with scripts/example.sh)"
        )
        .into(),
        e => e.into(),
    }
}

async fn run_simulation(app: &App, simulation: &Simulation) -> Result<(), Box<dyn std::error::Error>> {
    use factum::projection::{ProjectionState, ProjectionStatus};
    // The simulation checks the read models, which only the holder of the projections'
    // leases keeps: if another instance holds them, say so now rather than time out. The
    // slices of a projection in slices stand by until the instances' first heartbeats have
    // shared them out (a second or so): those are waited for until the deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let statuses = app.supervisor.statuses();
        let timed_out = std::time::Instant::now() > deadline;
        let standby = |s: &ProjectionStatus| s.state == ProjectionState::Standby;
        let mut elsewhere = Vec::new();
        let mut waiting = false;
        for status in &statuses {
            if status.slices.is_empty() {
                if standby(status) {
                    elsewhere.push(status.name.clone());
                }
                waiting |= status.state == ProjectionState::Starting;
                continue;
            }
            let away: Vec<String> = status
                .slices
                .iter()
                .filter(|s| standby(s))
                .map(|s| s.slice.map_or_else(String::new, |slice| slice.index().to_string()))
                .collect();
            if !away.is_empty() && timed_out {
                elsewhere.push(format!("{} (slices {})", status.name, away.join(", ")));
            }
            waiting |= !away.is_empty() || status.slices.iter().any(|s| s.state == ProjectionState::Starting);
        }
        if !elsewhere.is_empty() {
            return Err(format!(
                "another instance holds the projections {} (is a second copy of the service running on this \
                 database?); the simulation needs them here: stop the other copy, or run `serve` without \
                 --simulate-first",
                elsewhere.join(", ")
            )
            .into());
        }
        if !waiting || timed_out {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let report = simulate(app, &simulation.options()).await?;
    println!("{report}");
    if !report.consistent() {
        return Err("the read models do not match the event log".into());
    }
    Ok(())
}

async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, Box<dyn std::error::Error>> {
    Ok(tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        format!("cannot listen on {listen}: {e} (is another copy running? choose another address with --listen or FACTUM_EXAMPLE_LISTEN)")
    })?)
}

async fn serve_http(app: &App, listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
    let address = listener.local_addr()?;
    println!("listening on http://{address}");
    tracing::info!(%address, "serving; stop with Ctrl-C or SIGTERM");
    let mut router = http::router(app.clone());
    let console = console(app)?;
    if let Some(console) = &console {
        println!("console at http://{address}/console/");
        router = router.merge(console.router());
    }
    // The peer's address reaches the handlers (the console's audit lines name it).
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = async move {
        shutdown_signal().await;
        // The console's live tails never end by themselves: end them, or the graceful
        // shutdown waits for every browser that has one open.
        if let Some(console) = console {
            console.close();
        }
    };
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await?;
    tracing::info!("no longer accepting; in-flight requests finished");
    Ok(())
}

/// The operator console at `/console`, with the tokens of `FACTUM_CONSOLE_TOKEN` (may act)
/// and `FACTUM_CONSOLE_READONLY_TOKEN` (may look); off when neither is set.
fn console(app: &App) -> Result<Option<factum_console::Console>, Box<dyn std::error::Error>> {
    use factum::process::Process;
    use factum_console::{Console, ConsoleConfig, ConsoleError};
    use factum_example::processes::{CustomerOrders, ShipDeadline};
    let config = ConsoleConfig::from_env().processes([CustomerOrders::NAME, ShipDeadline::NAME]);
    match Console::new(app.store.clone(), app.supervisor.clone(), config) {
        Ok(console) => Ok(Some(console)),
        Err(ConsoleError::NoCredentials) => {
            tracing::info!("console off: set FACTUM_CONSOLE_TOKEN (and FACTUM_CONSOLE_READONLY_TOKEN) to serve it at /console");
            Ok(None)
        }
        Err(e) => Err(format!("console: {e}").into()),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        tracing::info!("interrupted: shutting down");
    }
}

impl Serve {
    /// `serve` with its defaults (the command when none is given).
    fn parse_default() -> Serve {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: Serve,
        }
        Only::parse_from(["factum-example"]).serve
    }
}
