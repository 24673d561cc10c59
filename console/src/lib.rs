//! # factum-console
//!
//! A browser console for a [`factum`] service on PostgreSQL, mounted in the service's own
//! `axum` router: the store at a glance, a stream browser, a live tail of the log,
//! projections with their builds, slices and recorded failures (and the operators'
//! actions on them), and the process managers' timers.
//!
//! The pages are rendered on the server; the only script is the live tail's, served by
//! the console itself (no CDN, no inline script: the pages send a Content-Security-Policy
//! that forbids it). Every value from the store is escaped, so a payload holding
//! `<script>` renders as text.
//!
//! ```no_run
//! use factum_console::{Console, ConsoleConfig};
//! # async fn run(store: factum_postgres::PostgresStore, supervisor: factum::Supervisor) -> Result<(), Box<dyn std::error::Error>> {
//! // FACTUM_CONSOLE_TOKEN may act; FACTUM_CONSOLE_READONLY_TOKEN may only look.
//! let console = Console::new(store, supervisor, ConsoleConfig::from_env())?;
//! let app: axum::Router = axum::Router::new().merge(console.router()); // under /console
//! // Serve `app` as usual; with `into_make_service_with_connect_info::<SocketAddr>()` the
//! // audit lines name each caller's address.
//! # let _ = app;
//! # Ok(()) }
//! ```
//!
//! ## Security
//!
//! The console shows the whole event log, so nothing is served without credentials:
//! [`ConsoleConfig::operator_token`] (may act) and [`ConsoleConfig::readonly_token`] (may
//! look), each sent as `Authorization: Bearer …` or typed once into the login form,
//! which sets a session cookie (`HttpOnly`, `SameSite=Strict`). There is no default
//! token: [`Console::new`] refuses a configuration without one, unless it is explicitly
//! [read-only on localhost](ConsoleConfig::read_only_on_localhost). Actions are `POST`s
//! that carry the session's CSRF token, and each is written to the service's log (target
//! `factum_console::audit`) and, as an event, to the store's own log (the audit trail).
//! Serve the console behind TLS when it is reached over a network.

mod actions;
mod assets;
mod auth;
mod config;
mod overview;
mod page;
mod processes;
mod projections;
mod sampler;
mod session;
mod streams;
mod tail;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use factum::Supervisor;
use factum_postgres::PostgresStore;

pub use auth::Access;
pub use config::{ConsoleConfig, ConsoleError, MIN_TOKEN_LEN};

/// The console: build it once at start-up, then mount [`Console::router`].
#[derive(Clone)]
pub struct Console {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("path", &self.shared.config.path).finish_non_exhaustive()
    }
}

/// What every handler reads.
pub(crate) struct Shared {
    pub(crate) store: PostgresStore,
    pub(crate) supervisor: Supervisor,
    pub(crate) config: ConsoleConfig,
    pub(crate) sessions: session::Sessions,
    pub(crate) samples: sampler::Samples,
    pub(crate) tails: Arc<tokio::sync::Semaphore>,
    /// The live tails each caller holds.
    pub(crate) tail_holders: dashmap::DashMap<String, usize>,
    /// Set by [`Console::close`]: the live tails end.
    pub(crate) closed: tokio::sync::watch::Sender<bool>,
}

impl Console {
    /// A console over `store` and `supervisor`. Starts a task that samples the store
    /// and the projections (for the overview's rates and sparklines) while someone looks
    /// at the console, and pauses after ten minutes without a view.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns the sampler).
    ///
    /// # Errors
    ///
    /// [`ConsoleError`] when the configuration has no credentials (and is not read-only
    /// on localhost), a token is too short or both are the same, or the path is not one.
    pub fn new(
        store: PostgresStore,
        supervisor: Supervisor,
        config: ConsoleConfig,
    ) -> Result<Self, ConsoleError> {
        config.check()?;
        let shared = Arc::new(Shared {
            store,
            supervisor,
            sessions: session::Sessions::new(&config),
            samples: sampler::Samples::default(),
            tails: Arc::new(tokio::sync::Semaphore::new(config.max_tails)),
            tail_holders: dashmap::DashMap::new(),
            closed: tokio::sync::watch::Sender::new(false),
            config,
        });
        sampler::start(&shared);
        Ok(Console { shared })
    }

    /// Ends the live tails (their streams of server-sent events never end by themselves):
    /// call it when the service starts shutting down, or a graceful shutdown waits for the
    /// browsers that have a tail open. The console serves on; a browser that reconnects
    /// gets a tail that ends at once.
    pub fn close(&self) {
        self.shared.closed.send_replace(true);
    }

    /// The console's routes, all under its [path](ConsoleConfig::path): merge them into
    /// the application's router, whatever its state. Mount them with `merge`, not `nest`:
    /// the pages link to the path they were configured with.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let base = self.shared.config.path.clone();
        let at = |p: &str| format!("{base}{p}");
        let pages = Router::new()
            .route(&at("/"), get(overview::page))
            .route(&at("/streams"), get(streams::browse))
            .route(&at("/events/{id}"), get(streams::event))
            .route(&at("/tail"), get(tail::page))
            .route(&at("/tail/events"), get(tail::events))
            .route(&at("/projections"), get(projections::list))
            .route(&at("/projections/{name}"), get(projections::detail))
            .route(&at("/projections/{name}/{action}"), post(actions::projection))
            .route(&at("/projections/{name}/failures/{event_id}/skip"), post(actions::skip))
            .route(&at("/processes"), get(processes::page))
            .route(&at("/logout"), post(auth::logout))
            .route_layer(axum::middleware::from_fn_with_state(self.shared.clone(), auth::require));
        let open = Router::new()
            .route(&at("/login"), get(auth::login_page).post(auth::login))
            .route(&at("/assets/{file}"), get(assets::serve));
        let mut router = pages.merge(open);
        if !base.is_empty() {
            // `/console` itself: to the overview.
            let overview = at("/");
            router = router.route(&base, get(move || async move { axum::response::Redirect::to(&overview) }));
        }
        // Route layers: the application's own fallback is left alone.
        router
            .route_layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
            .route_layer(axum::middleware::map_response(page::security_headers))
            .with_state(self.shared.clone())
    }
}

/// Compiles the Rust snippets of `docs/console.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/console.md")]
struct ConsoleGuideDoctests;
