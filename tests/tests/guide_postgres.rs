//! The PostgreSQL program of `docs/getting-started.md` ("On PostgreSQL"), run against a
//! fresh database.
//!
//! The guide cannot include a file, so the two are kept equal by a test instead:
//! `the_guide_shows_this_program` fails unless the code between the `guide:postgres`
//! markers below is, character for character, the guide's block under the comment naming
//! this file, and the code between the `guide:cart` markers appears verbatim in the
//! guide's first aggregate. Edit either, and the test says which line differs.

// The cart's imports are the program's, further down.
// guide:cart
#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "Cart", command = CartCommand, event = CartEvent, error = CartError)]
struct Cart {
    items: u32,
    checked_out: bool,
}

#[derive(Debug, Command)]
#[command(id = cart_id)]
enum CartCommand {
    Add { cart_id: String, quantity: u32 },
    CheckOut { cart_id: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum CartEvent {
    #[event(name = "CartItemAdded", topic = "cart.items.added")]
    Added { quantity: u32 },
    #[event(name = "CartCheckedOut", topic = "cart.lifecycle.checked_out")]
    CheckedOut,
}

#[derive(Debug, thiserror::Error)]
enum CartError {
    #[error("the cart is checked out")]
    CheckedOut,
    #[error("an empty cart cannot be checked out")]
    Empty,
}

impl Cart {
    fn handle(&self, command: &CartCommand) -> Result<Vec<CartEvent>, CartError> {
        match command {
            _ if self.checked_out => Err(CartError::CheckedOut),
            CartCommand::Add { quantity, .. } => Ok(vec![CartEvent::Added { quantity: *quantity }]),
            CartCommand::CheckOut { .. } if self.items == 0 => Err(CartError::Empty),
            CartCommand::CheckOut { .. } => Ok(vec![CartEvent::CheckedOut]),
        }
    }

    fn apply(&mut self, event: &CartEvent) {
        match event {
            CartEvent::Added { quantity } => self.items += quantity,
            CartEvent::CheckedOut => self.checked_out = true,
        }
    }
}
// guide:cart end

// guide:postgres
use std::sync::Arc;
use std::time::Duration;

use factum::{
    Aggregate, Command, DomainEvent, Factum, FactumConfig, HandlerError, Metrics, Projection, RecordedEvent,
    Supervisor, SupervisorConfig,
};
use factum_postgres::sqlx::{self, PgConnection};
use factum_postgres::{ExactlyOnce, PgProjection, PostgresConfig, PostgresStore};
use serde::{Deserialize, Serialize};

// `Cart`, `CartCommand`, `CartEvent`, `CartError` and `impl Cart`: as in "Your first aggregate".

/// The read model: one row per cart.
const CREATE_CART_ITEMS: &str = "CREATE TABLE IF NOT EXISTS cart_items (
    cart_id     text PRIMARY KEY,
    items       bigint NOT NULL,
    checked_out boolean NOT NULL DEFAULT false
)";

/// Keeps `cart_items` current from the `Cart` events.
struct CartItems;

#[async_trait::async_trait]
impl PgProjection for CartItems {
    /// Runs in the batch's transaction, which also moves the projection's checkpoint.
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), HandlerError> {
        let cart_id = event.stream.aggregate_id();
        match CartEvent::from_stored(&event.event_type, event.schema_version, event.payload.clone())? {
            CartEvent::Added { quantity } => {
                sqlx::query(
                    "INSERT INTO cart_items (cart_id, items) VALUES ($1, $2)
                     ON CONFLICT (cart_id) DO UPDATE SET items = cart_items.items + $2",
                )
                .bind(cart_id)
                .bind(i64::from(quantity))
                .execute(tx)
                .await?;
            }
            CartEvent::CheckedOut => {
                sqlx::query("UPDATE cart_items SET checked_out = true WHERE cart_id = $1")
                    .bind(cart_id)
                    .execute(tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// A rebuild empties the table in the transaction that resets the checkpoint.
    async fn clear(&mut self, tx: &mut PgConnection) -> Result<(), HandlerError> {
        sqlx::query("TRUNCATE cart_items").execute(tx).await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = PostgresStore::connect(PostgresConfig::from_env()?).await?; // DATABASE_URL
    store.migrate().await?; // idempotent, safe from every instance
    sqlx::query(CREATE_CART_ITEMS).execute(store.pool()).await?;

    let metrics = Arc::new(Metrics::new()); // one registry for everything; serve metrics.encode()
    let factum = Factum::with_config(Arc::new(store.clone()), FactumConfig::default(), metrics.clone());
    let cart_items =
        Projection::new("cart_items", ExactlyOnce::new(store.clone(), CartItems)).aggregate_types(["Cart"]);
    let config = SupervisorConfig::default().metrics(metrics.clone()).projection(cart_items);
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await?;

    factum.execute(CartCommand::Add { cart_id: "cart-7".into(), quantity: 2 }).await?;
    factum.execute(CartCommand::Add { cart_id: "cart-7".into(), quantity: 3 }).await?;
    factum.execute(CartCommand::CheckOut { cart_id: "cart-7".into() }).await?;

    // The read model follows the log: wait until the projection has caught up.
    while supervisor.lag("cart_items").await? > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (items, checked_out): (i64, bool) =
        sqlx::query_as("SELECT items, checked_out FROM cart_items WHERE cart_id = $1")
            .bind("cart-7")
            .fetch_one(store.pool())
            .await?;
    assert_eq!((items, checked_out), (5, true));

    supervisor.shutdown().await?; // each projection commits its batch in flight
    factum.shutdown();
    Ok(())
}
// guide:postgres end

/// The code between `// guide:NAME` and `// guide:NAME end` in `text`.
fn region<'a>(text: &'a str, name: &str) -> &'a str {
    let start = format!("// guide:{name}\n");
    let end = format!("// guide:{name} end\n");
    let from = text.find(&start).unwrap_or_else(|| panic!("no {start:?} marker")) + start.len();
    let to = from + text[from..].find(&end).unwrap_or_else(|| panic!("no {end:?} marker"));
    &text[from..to]
}

/// The first fenced code block after `marker` in a Markdown text.
fn block_after<'a>(markdown: &'a str, marker: &str) -> &'a str {
    let at = markdown.find(marker).unwrap_or_else(|| panic!("the guide has no {marker:?}"));
    let rest = &markdown[at..];
    let open = rest.find("\n```rust").expect("a code block after the marker");
    let body = &rest[open + 1..];
    let body = &body[body.find('\n').expect("a fence line") + 1..];
    &body[..body.find("\n```\n").expect("the block's closing fence") + 1]
}

/// Panics at the first line where `guide` and `file` differ.
fn assert_same(guide: &str, file: &str, what: &str) {
    if guide == file {
        return;
    }
    let (g, f): (Vec<&str>, Vec<&str>) = (guide.lines().collect(), file.lines().collect());
    let line = g.iter().zip(&f).position(|(a, b)| a != b).unwrap_or(g.len().min(f.len()));
    panic!(
        "{what}: docs/getting-started.md and tests/tests/guide_postgres.rs differ at line {} of the block\n\
         guide: {:?}\n file: {:?}",
        line + 1,
        g.get(line),
        f.get(line)
    );
}

const GUIDE: &str = include_str!("../../docs/getting-started.md");
const THIS_FILE: &str = include_str!("guide_postgres.rs");

#[test]
fn the_guide_shows_this_program() {
    let shown = block_after(GUIDE, "<!-- tests/tests/guide_postgres.rs -->");
    assert_same(shown, region(THIS_FILE, "postgres"), "the PostgreSQL program");
    let cart = region(THIS_FILE, "cart");
    let first = block_after(GUIDE, "## Your first aggregate");
    assert!(first.contains(cart), "the guide's first aggregate is not this file's `guide:cart` region");
}

/// Runs the guide's `main` on a database of its own. `main` reads `DATABASE_URL`, as the
/// guide's program does; nextest runs each test in a process of its own.
#[test]
fn the_guide_runs_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(factum_tests::TestDb::new());
    drop(runtime);
    std::env::set_var("DATABASE_URL", db.url());
    main().expect("the guide's program");
}
