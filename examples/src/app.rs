//! The application: the framework wired up once at start-up, and the use cases the HTTP
//! API and the simulation call.

use std::sync::Arc;

use factum::aggregate::Executed;
use factum::process::ProcessManager;
use factum::supervisor::{RetentionConfig, SupervisorError};
use factum::{CommandError, Factum, FactumConfig, Metadata, Metrics, Supervisor, SupervisorConfig};
use factum_postgres::{PostgresConfig, PostgresStore};
use factum_rabbitmq::{
    BusError, BusMetrics, Publisher, PublisherConfig, Subscriber, SubscriberConfig, SubscriberHandle,
};

use crate::customer::{Customer, CustomerCommand, CustomerError};
use crate::order::{Order, OrderCommand, OrderError};
use crate::processes::{CustomerOrders, ShipDeadline};
use crate::read_models::Tables;

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not connect or migrate.
    #[error("event store: {0}")]
    Store(#[from] factum::StoreError),
    /// The read-model tables could not be created.
    #[error("read models: {0}")]
    ReadModels(#[from] sqlx::Error),
    /// The supervisor refused its configuration.
    #[error("supervisor: {0}")]
    Supervisor(#[from] SupervisorError),
    /// The RabbitMQ event bus could not start.
    #[error("event bus: {0}")]
    Bus(#[from] BusError),
    /// A process manager refused its declaration.
    #[error("process: {0}")]
    Process(#[from] factum::process::ProcessConfigError),
}

/// Why a use case failed: the customer's or the order's command error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A customer command failed, or placing an order found the customer unable to.
    #[error(transparent)]
    Customer(#[from] CommandError<CustomerError>),
    /// An order command failed.
    #[error(transparent)]
    Order(#[from] CommandError<OrderError>),
}

/// The running application: command side, supervisor, store and read models.
#[derive(Clone)]
pub struct App {
    /// The command side.
    pub factum: Factum,
    /// Projections, replay and retention.
    pub supervisor: Supervisor,
    /// The PostgreSQL event store.
    pub store: PostgresStore,
    /// The read-model tables.
    pub tables: Tables,
    /// The one registry every metric goes to.
    pub metrics: Arc<Metrics>,
    /// How long a read given `x-factum-min-position` waits for its read model (5 s by
    /// default) before it answers 503.
    pub read_wait: std::time::Duration,
    /// The event bus's subscriber to the order events, when the bus is on.
    bus: Arc<tokio::sync::Mutex<Option<SubscriberHandle>>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("tables", &self.tables).finish_non_exhaustive()
    }
}

impl App {
    /// Connects, migrates the store, creates the read-model tables, and starts the
    /// command side and the supervisor with its three projections and two processes
    /// ([`crate::processes`]).
    pub async fn start(config: PostgresConfig) -> Result<App, StartError> {
        Self::start_with_bus(config, None).await
    }

    /// As [`start`](Self::start); with a bus, also publishes the order events to its
    /// exchange (a projection of its own), and consumes them from its queue, bound with
    /// `order.#`, logging each one.
    pub async fn start_with_bus(config: PostgresConfig, bus: Option<&Bus>) -> Result<App, StartError> {
        Self::start_with(config, bus, 1).await
    }

    /// As [`start_with_bus`](Self::start_with_bus), with the order and customer read
    /// models in `slices` slices each (see [`Tables::projections`]; the service's
    /// `FACTUM_EXAMPLE_SLICES`). The count is fixed per database: the supervisor refuses
    /// another one than the read models were built with ([`StartError::Supervisor`]).
    pub async fn start_with(
        config: PostgresConfig,
        bus: Option<&Bus>,
        slices: u16,
    ) -> Result<App, StartError> {
        let store = PostgresStore::connect(config).await?;
        store.migrate().await?;
        let tables = Tables::new(&store);
        // One registry: the store's metrics join it when the framework instruments the
        // store, the bus's are taken from it.
        let metrics = Arc::new(Metrics::new());
        let bus_metrics = BusMetrics::of(&metrics);
        let factum = Factum::with_config(Arc::new(store.clone()), FactumConfig::default(), metrics.clone());
        let mut supervisor =
            SupervisorConfig::default().metrics(metrics.clone()).retention(RetentionConfig::default());
        for projection in tables.projections(&store, slices) {
            supervisor = supervisor.projection(projection);
        }
        supervisor = supervisor
            .projection(
                ProcessManager::<CustomerOrders>::new(&factum)?.sends::<OrderCommand>().into_projection(),
            )
            .projection(
                ProcessManager::<ShipDeadline>::new(&factum)?.sends::<OrderCommand>().into_projection(),
            );
        let mut subscriber = None;
        if let Some(bus) = bus {
            // The queue first: the publisher's messages are mandatory, so each needs a route.
            let queue = SubscriberConfig::new(&bus.url, &bus.queue).exchange(&bus.exchange).bind(["order.#"]);
            subscriber = Some(Subscriber::start(queue.metrics(bus_metrics.clone()), LogOrderEvents).await?);
            let config = PublisherConfig::new(&bus.url)
                .exchange(&bus.exchange)
                .topics(["order.#"])
                .metrics(bus_metrics);
            supervisor = supervisor
                .projection(Publisher::connect(Arc::new(store.clone()), config).await?.into_projection());
        }
        let supervisor = Supervisor::start(Arc::new(store.clone()), supervisor).await?;
        // The read models' schemas exist once each projection has taken its build up (a
        // first start creates them): serve after that, or after 10 s in any case.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while supervisor.statuses().iter().any(|s| s.build.is_none()) && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let bus = Arc::new(tokio::sync::Mutex::new(subscriber));
        Ok(App { factum, supervisor, store, tables, metrics, read_wait: crate::http::READ_WAIT, bus })
    }

    /// Sets the database up as the owner role: applies the migrations and, given the
    /// runtime role, grants it what the service needs, including `CREATE` on the
    /// database for the read models' schemas (see `docs/operations.md`). Running it again
    /// changes nothing.
    pub async fn setup(config: PostgresConfig, runtime: Option<&str>) -> Result<(), StartError> {
        let store = PostgresStore::connect(config).await?;
        store.migrate().await?;
        let tables = Tables::new(&store);
        if let Some(role) = runtime {
            store.grant_runtime(role).await?;
            tables.grant(store.pool(), role).await?;
        }
        Ok(())
    }

    /// Runs a customer command.
    pub async fn customer(
        &self,
        command: CustomerCommand,
        metadata: Metadata,
    ) -> Result<Executed<Customer>, AppError> {
        self.customer_once(command, metadata, None).await
    }

    /// Runs a customer command, at most once under `command_id` when there is one (an
    /// idempotency key: see [`Factum::execute_once`]).
    pub async fn customer_once(
        &self,
        command: CustomerCommand,
        metadata: Metadata,
        command_id: Option<uuid::Uuid>,
    ) -> Result<Executed<Customer>, AppError> {
        Ok(self.run(command, metadata, command_id).await?)
    }

    /// Runs a command, at most once under `command_id` when there is one.
    async fn run<C: factum::aggregate::AggregateCommand>(
        &self,
        command: C,
        metadata: Metadata,
        command_id: Option<uuid::Uuid>,
    ) -> Result<Executed<C::Aggregate>, CommandError<<C::Aggregate as factum::Aggregate>::Error>> {
        match command_id {
            Some(id) => self.factum.execute_once(command, id, metadata).await,
            None => self.factum.execute_with(command, metadata).await,
        }
    }

    /// Runs an order command. Placing an order first checks that the customer is
    /// registered and active; the check reads the customer's live state, so a
    /// deactivation that commits after it does not stop an order placed at the same time.
    pub async fn order(
        &self,
        command: OrderCommand,
        metadata: Metadata,
    ) -> Result<Executed<Order>, AppError> {
        self.order_once(command, metadata, None).await
    }

    /// Runs an order command, at most once under `command_id` when there is one (see
    /// [`order`](Self::order) and [`Factum::execute_once`]).
    pub async fn order_once(
        &self,
        command: OrderCommand,
        metadata: Metadata,
        command_id: Option<uuid::Uuid>,
    ) -> Result<Executed<Order>, AppError> {
        if let OrderCommand::Place { customer_id, .. } = &command {
            let (customer, _) = self.factum.load::<Customer>(customer_id).await?;
            customer.require_active(customer_id).map_err(CommandError::Domain)?;
        }
        Ok(self.run(command, metadata, command_id).await?)
    }

    /// Stops the supervisor (each projection commits its batch in flight) and passivates
    /// every aggregate actor.
    pub async fn shutdown(&self) {
        if let Err(e) = self.supervisor.shutdown().await {
            tracing::warn!(error = %e, "supervisor shutdown");
        }
        self.factum.shutdown();
        if let Some(subscriber) = self.bus.lock().await.take() {
            subscriber.stop().await;
        }
    }
}

/// Where the example publishes its order events, and the queue it consumes them from.
#[derive(Clone, Debug)]
pub struct Bus {
    /// The broker, `amqp://user:password@host:port/vhost`.
    pub url: String,
    /// The topic exchange (default `factum.events`).
    pub exchange: String,
    /// The queue, bound with `order.#` (default `factum-example.orders`).
    pub queue: String,
}

impl Bus {
    /// The broker at `url`, with the default exchange and queue.
    pub fn new(url: impl Into<String>) -> Bus {
        Bus { url: url.into(), exchange: "factum.events".into(), queue: "factum-example.orders".into() }
    }
}

/// The example's subscriber: logs each order event the bus delivers.
struct LogOrderEvents;

#[async_trait::async_trait]
impl factum_rabbitmq::MessageHandler for LogOrderEvents {
    async fn handle(&mut self, event: &factum_rabbitmq::BusEvent) -> Result<(), factum::HandlerError> {
        tracing::info!(
            routing_key = %event.routing_key,
            stream = %event.stream,
            version = %event.version,
            event_id = %event.event_id,
            "bus: order event received"
        );
        Ok(())
    }
}
