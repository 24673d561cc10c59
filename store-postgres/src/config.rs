//! Connection, pool and schema settings.

use std::time::Duration;

use factum::store::Limits;
use sqlx::postgres::PgConnectOptions;

pub(crate) use crate::names::check_identifier;
pub use crate::names::SchemaNames;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Neither `DATABASE_URL` nor `DATABASE_HOST`/`DATABASE_NAME` is set.
    #[error("set DATABASE_URL, or DATABASE_HOST and DATABASE_NAME (with DATABASE_USER, DATABASE_PASSWORD, DATABASE_PORT)")]
    MissingUrl,
    /// The URL or a variable could not be parsed.
    #[error("invalid connection setting {name}: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A schema, table or channel name is not a plain lowercase SQL identifier.
    #[error("invalid identifier {value:?} for {what}: use 1 to 40 lowercase ASCII letters, digits or '_', not starting with a digit")]
    InvalidIdentifier {
        /// Which name.
        what: &'static str,
        /// The name given.
        value: String,
    },
}

/// Pool settings, with the usual defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolSettings {
    /// Most connections (default 10).
    pub max_connections: u32,
    /// Close connections idle this long (default 30 s).
    pub idle_timeout: Duration,
    /// Give up acquiring a connection after this long (default 5 s).
    pub connect_timeout: Duration,
    /// Give up an operation of the [`EventStore`](factum::EventStore) (or, for a
    /// stream of rows, the wait for its next row) after this long (default 10 s), with
    /// [`StoreError::Timeout`](factum::StoreError::Timeout): a stalled server or a lock
    /// held elsewhere never hangs a caller longer.
    pub operation_timeout: Duration,
    /// How long an append whose connection was lost after it was sent may take to find
    /// out whether it committed (default 10 s): it waits for a server that accepts
    /// writes (during a failover, the promoted standby) and is resolved by its event ids;
    /// after this long it fails with
    /// [`StoreError::OutcomeUnknown`](factum::StoreError::OutcomeUnknown).
    pub outcome_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 10,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
            outcome_timeout: Duration::from_secs(10),
        }
    }
}

impl PoolSettings {
    /// Sets the most connections.
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets the idle timeout.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the operation timeout.
    #[must_use]
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets how long an append of unknown outcome may take to be resolved.
    #[must_use]
    pub fn outcome_timeout(mut self, timeout: Duration) -> Self {
        self.outcome_timeout = timeout;
        self
    }

    /// Sets the connect (acquire) timeout.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// Everything [`PostgresStore::connect`](crate::PostgresStore::connect) needs.
///
/// ```
/// # use factum_postgres::{PostgresConfig, SchemaNames};
/// let config = PostgresConfig::from_url("postgres://postgres@127.0.0.1:5432/eventstore")?
///     .with_schema(SchemaNames::in_schema("orders"))
///     .with_notify_channel(Some("orders_events".into()));
/// assert_eq!(config.pool.max_connections, 10);
/// # Ok::<(), factum_postgres::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// How to reach the server: the user, database, TLS and other settings of every
    /// connection. With [`hosts`](Self::hosts), its host and port are those of the
    /// current primary.
    pub connect: PgConnectOptions,
    /// The servers of a replicated cluster (a primary and its standbys), in order; empty
    /// for one server, the one `connect` names. With several, the store connects to the
    /// one that accepts writes (`pg_is_in_recovery()` is false) and, when a connection
    /// breaks or a write meets a read-only server, asks them all again and follows the
    /// new primary; while none accepts writes, operations fail at once with
    /// [`StoreError::Unavailable`](factum::StoreError::Unavailable). See
    /// `docs/operations.md` (Running on a replicated PostgreSQL).
    pub hosts: Vec<(String, u16)>,
    /// Pool settings.
    pub pool: PoolSettings,
    /// Schema and table names.
    pub names: SchemaNames,
    /// The channel appends `NOTIFY` on commit (default `factum_events`); `None` turns
    /// notifications off and subscribers rely on polling.
    pub notify_channel: Option<String>,
    /// Input limits.
    pub limits: Limits,
    /// How appends share transactions (coalescing on by default).
    pub coalescing: crate::Coalescing,
}

impl PostgresConfig {
    /// Settings for the server at `url`, with defaults for the rest.
    ///
    /// `url` may name several servers, in libpq's multi-host form: the store then
    /// follows whichever of them is the primary (see [`hosts`](Self::hosts)).
    /// `target_session_attrs` may be given as `read-write` or `primary`; the store
    /// always needs the read-write server.
    ///
    /// ```
    /// # use factum_postgres::PostgresConfig;
    /// let config = PostgresConfig::from_url(
    ///     "postgresql://app@db1:5432,db2:5432,db3:5432/shop?target_session_attrs=read-write",
    /// )?;
    /// assert_eq!(config.hosts.len(), 3);
    /// assert_eq!(config.connect.get_database(), Some("shop"));
    /// // A malformed list names the part at fault.
    /// let refused = PostgresConfig::from_url("postgresql://app@db1:5432,db2:54x2/shop");
    /// assert!(refused.unwrap_err().to_string().contains("host 2 of 2"));
    /// # Ok::<(), factum_postgres::ConfigError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let split = crate::hosts::split_url(url)?;
        let connect = split
            .url
            .parse::<PgConnectOptions>()
            .map_err(|e| ConfigError::InvalidSetting { name: "DATABASE_URL", reason: e.to_string() })?;
        Ok(Self::from_options(connect).with_hosts(split.hosts))
    }

    /// Settings from connect options, with defaults for the rest.
    pub fn from_options(connect: PgConnectOptions) -> Self {
        PostgresConfig {
            connect,
            hosts: Vec::new(),
            pool: PoolSettings::default(),
            names: SchemaNames::default(),
            notify_channel: Some("factum_events".into()),
            limits: Limits::default(),
            coalescing: crate::Coalescing::default(),
        }
    }

    /// Settings from the environment: `DATABASE_URL`, else `DATABASE_HOST`,
    /// `DATABASE_NAME`, `DATABASE_USER`, `DATABASE_PASSWORD` and `DATABASE_PORT`.
    /// `DATABASE_HOST` may list several servers (`db1,db2,db3`), and `DATABASE_PORT`
    /// one port for all or one per host, as libpq takes them.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        if let Some(url) = get("DATABASE_URL") {
            return Self::from_url(&url);
        }
        let (Some(host), Some(name)) = (get("DATABASE_HOST"), get("DATABASE_NAME")) else {
            return Err(ConfigError::MissingUrl);
        };
        let names: Vec<&str> = host.split(',').map(str::trim).collect();
        if let Some(at) = names.iter().position(|h| h.is_empty()) {
            return Err(ConfigError::InvalidSetting {
                name: "DATABASE_HOST",
                reason: format!("host {} of {} is empty", at + 1, names.len()),
            });
        }
        let ports = match get("DATABASE_PORT") {
            None => vec![5432; names.len()],
            Some(ports) => {
                let each = ports
                    .split(',')
                    .enumerate()
                    .map(|(i, p)| {
                        p.trim().parse::<u16>().map_err(|e| ConfigError::InvalidSetting {
                            name: "DATABASE_PORT",
                            reason: format!("port {} ({p:?}): {e}", i + 1),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                match each.len() {
                    1 => vec![each[0]; names.len()],
                    n if n == names.len() => each,
                    n => {
                        return Err(ConfigError::InvalidSetting {
                            name: "DATABASE_PORT",
                            reason: format!("{n} ports for {} hosts: give one, or one per host", names.len()),
                        })
                    }
                }
            }
        };
        let mut options =
            PgConnectOptions::new_without_pgpass().host(names[0]).port(ports[0]).database(&name);
        if let Some(user) = get("DATABASE_USER") {
            options = options.username(&user);
        }
        if let Some(password) = get("DATABASE_PASSWORD") {
            options = options.password(&password);
        }
        let hosts = if names.len() > 1 {
            names.iter().map(|h| h.to_string()).zip(ports).collect()
        } else {
            Vec::new()
        };
        Ok(Self::from_options(options).with_hosts(hosts))
    }

    /// Uses the servers of a replicated cluster, in order, as `host:port` pairs: see
    /// [`hosts`](Self::hosts). One pair or none means one server.
    ///
    /// ```
    /// # use factum_postgres::PostgresConfig;
    /// let config = PostgresConfig::from_url("postgres://app@db1/shop")?
    ///     .with_hosts([("db1", 5432), ("db2", 5432)]);
    /// assert_eq!(config.hosts[1], ("db2".to_owned(), 5432));
    /// # Ok::<(), factum_postgres::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_hosts<H: Into<String>>(mut self, hosts: impl IntoIterator<Item = (H, u16)>) -> Self {
        let hosts: Vec<(String, u16)> = hosts.into_iter().map(|(h, p)| (h.into(), p)).collect();
        if let [(host, port)] = hosts.as_slice() {
            self.connect = self.connect.host(host).port(*port);
            self.hosts = Vec::new();
        } else {
            self.hosts = hosts;
        }
        self
    }

    /// The connect options of each server to try: one per host, or `connect` alone.
    pub(crate) fn targets(&self) -> Vec<PgConnectOptions> {
        if self.hosts.is_empty() {
            vec![self.connect.clone()]
        } else {
            crate::hosts::targets(&self.connect, &self.hosts)
        }
    }

    /// Uses other schema and table names.
    #[must_use]
    pub fn with_schema(mut self, names: SchemaNames) -> Self {
        self.names = names;
        self
    }

    /// Uses another notification channel, or none.
    #[must_use]
    pub fn with_notify_channel(mut self, channel: Option<String>) -> Self {
        self.notify_channel = channel;
        self
    }

    /// Uses other pool settings.
    #[must_use]
    pub fn with_pool(mut self, pool: PoolSettings) -> Self {
        self.pool = pool;
        self
    }

    /// Uses other input limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Uses other coalescing settings, or [`Coalescing::off`](crate::Coalescing::off).
    #[must_use]
    pub fn with_coalescing(mut self, coalescing: crate::Coalescing) -> Self {
        self.coalescing = coalescing;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(check_identifier("x", "events").is_ok());
        assert!(check_identifier("x", "_e2").is_ok());
        for bad in ["", "Events", "2e", "e-v", "e v", "e;drop", "\"e\"", &"e".repeat(41)] {
            assert!(check_identifier("x", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert!(matches!(PostgresConfig::from_lookup(vars(&[])), Err(ConfigError::MissingUrl)));
        let c = PostgresConfig::from_lookup(vars(&[
            ("DATABASE_HOST", "db"),
            ("DATABASE_NAME", "eventstore"),
            ("DATABASE_USER", "actor_user"),
            ("DATABASE_PORT", "55432"),
        ]))
        .unwrap();
        assert_eq!(c.connect.get_host(), "db");
        assert_eq!(c.connect.get_port(), 55432);
        assert_eq!(c.connect.get_database(), Some("eventstore"));
        let c = PostgresConfig::from_lookup(vars(&[
            ("DATABASE_HOST", "db1, db2,db3"),
            ("DATABASE_NAME", "eventstore"),
            ("DATABASE_PORT", "5432,5433,5434"),
        ]))
        .unwrap();
        assert_eq!(c.hosts[2], ("db3".to_owned(), 5434));
        assert_eq!((c.connect.get_host(), c.connect.get_port()), ("db1", 5432));
        for (hosts, ports) in [("a,,b", "1"), ("a,b", "1,2,3"), ("a,b", "1,x")] {
            assert!(PostgresConfig::from_lookup(vars(Box::leak(Box::new([
                ("DATABASE_HOST", hosts),
                ("DATABASE_NAME", "n"),
                ("DATABASE_PORT", ports),
            ]))))
            .is_err());
        }
        assert!(matches!(
            PostgresConfig::from_lookup(vars(&[
                ("DATABASE_HOST", "h"),
                ("DATABASE_NAME", "n"),
                ("DATABASE_PORT", "x")
            ])),
            Err(ConfigError::InvalidSetting { name: "DATABASE_PORT", .. })
        ));
    }
}
