//! The console's configuration: its credentials, where it is mounted, what it samples.

use std::time::Duration;

/// The shortest token accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why [`Console::new`](crate::Console::new) refused its configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsoleError {
    /// Neither token is set and the console is not read-only on localhost: it would show
    /// the event log to anyone who reaches it.
    #[error(
        "the console has no credentials: set an operator token (FACTUM_CONSOLE_TOKEN) or a read-only one \
         (FACTUM_CONSOLE_READONLY_TOKEN), or make it read-only on localhost"
    )]
    NoCredentials,
    /// A token shorter than [`MIN_TOKEN_LEN`] characters.
    #[error("a console token must be at least {MIN_TOKEN_LEN} characters long")]
    WeakToken,
    /// A token starts or ends with whitespace, which a login form's value never does.
    #[error("a console token must not start or end with whitespace")]
    PaddedToken,
    /// The operator and read-only tokens are the same: the second level would mean nothing.
    #[error("the operator and read-only console tokens must differ")]
    SameTokens,
    /// The path is not `/` followed by plain segments (or empty: the root).
    #[error("the console path must be empty or start with '/' and hold only letters, digits, '-', '_' and '/', not {0:?}")]
    BadPath(String),
}

/// How the console is reached and who may use it.
#[derive(Clone)]
pub struct ConsoleConfig {
    pub(crate) path: String,
    pub(crate) operator_token: Option<String>,
    pub(crate) readonly_token: Option<String>,
    pub(crate) localhost_read_only: bool,
    pub(crate) processes: Vec<String>,
    pub(crate) sample_every: Duration,
    pub(crate) audit_in_log: bool,
    pub(crate) max_tails: usize,
    pub(crate) session_ttl: Duration,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) secure_cookie: bool,
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("ConsoleConfig")
            .field("path", &self.path)
            .field("operator_token", &self.operator_token.as_ref().map(|_| "<set>"))
            .field("readonly_token", &self.readonly_token.as_ref().map(|_| "<set>"))
            .field("localhost_read_only", &self.localhost_read_only)
            .field("processes", &self.processes)
            .finish_non_exhaustive()
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            path: "/console".to_owned(),
            operator_token: None,
            readonly_token: None,
            localhost_read_only: false,
            processes: Vec::new(),
            sample_every: Duration::from_secs(2),
            audit_in_log: true,
            max_tails: 16,
            session_ttl: Duration::from_secs(8 * 3600),
            allowed_origins: Vec::new(),
            secure_cookie: false,
        }
    }
}

impl ConsoleConfig {
    /// No credentials yet (so [`Console::new`](crate::Console::new) refuses it until one
    /// is set), mounted at `/console`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tokens from `FACTUM_CONSOLE_TOKEN` (may act) and `FACTUM_CONSOLE_READONLY_TOKEN`
    /// (may look), without surrounding whitespace; an unset or empty variable sets nothing.
    pub fn from_env() -> Self {
        let var =
            |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        ConsoleConfig {
            operator_token: var("FACTUM_CONSOLE_TOKEN"),
            readonly_token: var("FACTUM_CONSOLE_READONLY_TOKEN"),
            ..Self::default()
        }
    }

    /// Where the console is mounted: `/console` by default; `""` for the root.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into().trim_end_matches('/').to_owned();
        self
    }

    /// The token that may look and act (at least [`MIN_TOKEN_LEN`] characters).
    #[must_use]
    pub fn operator_token(mut self, token: impl Into<String>) -> Self {
        self.operator_token = Some(token.into());
        self
    }

    /// The token that may look but not act.
    #[must_use]
    pub fn readonly_token(mut self, token: impl Into<String>) -> Self {
        self.readonly_token = Some(token.into());
        self
    }

    /// Serves requests from the loopback interface without credentials, read-only: for a
    /// service on a developer's machine. Only requests from a loopback address, to
    /// `localhost`, `127.0.0.1` or `[::1]` (not to a name a rebinding DNS points here), and
    /// without a proxy's `Forwarded` or `X-Forwarded-For` header (behind a proxy every
    /// caller is local) qualify; the others still need a token. The application must serve
    /// with `into_make_service_with_connect_info::<SocketAddr>()` so the console sees the
    /// peer. Never behind a reverse proxy that strips those headers.
    #[must_use]
    pub fn read_only_on_localhost(mut self) -> Self {
        self.localhost_read_only = true;
        self
    }

    /// The process managers to list on the processes page, by name.
    #[must_use]
    pub fn processes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.processes = names.into_iter().map(Into::into).collect();
        self
    }

    /// How often the overview's figures are sampled (2 s by default; at least 100 ms).
    #[must_use]
    pub fn sample_every(mut self, every: Duration) -> Self {
        self.sample_every = every.max(Duration::from_millis(100));
        self
    }

    /// Whether each action is also appended to the store's log as an event (on by
    /// default): stream `ConsoleAudit/<day>`, event type `OperatorAction`.
    #[must_use]
    pub fn audit_in_log(mut self, on: bool) -> Self {
        self.audit_in_log = on;
        self
    }

    /// An origin the console's forms may also be posted from, such as
    /// `https://ops.example.com` when a proxy in front of the service sends its own `Host`.
    /// Forms from the host a request was sent to are always accepted.
    #[must_use]
    pub fn allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into().trim_end_matches('/').to_owned());
        self
    }

    /// Marks the session cookie `Secure` (off by default, so that the console works on
    /// `http://127.0.0.1`): turn it on wherever the console is reached over TLS.
    #[must_use]
    pub fn secure_cookie(mut self, on: bool) -> Self {
        self.secure_cookie = on;
        self
    }

    /// How long a login lasts (eight hours by default; at least a minute).
    #[must_use]
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl.max(Duration::from_secs(60));
        self
    }

    /// How many live tails may be open at once (16 by default; at least 1).
    #[must_use]
    pub fn max_tails(mut self, n: usize) -> Self {
        self.max_tails = n.max(1);
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConsoleError> {
        let path_ok = self.path.is_empty()
            || (self.path.starts_with('/')
                && self.path[1..].chars().all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c))
                && !self.path.contains("//"));
        if !path_ok {
            return Err(ConsoleError::BadPath(self.path.clone()));
        }
        let tokens = [&self.operator_token, &self.readonly_token];
        if tokens.iter().any(|t| t.as_ref().is_some_and(|t| t.trim().chars().count() < MIN_TOKEN_LEN)) {
            return Err(ConsoleError::WeakToken);
        }
        if tokens.iter().any(|t| t.as_ref().is_some_and(|t| t.trim() != t)) {
            return Err(ConsoleError::PaddedToken);
        }
        if self.operator_token.is_some() && self.operator_token == self.readonly_token {
            return Err(ConsoleError::SameTokens);
        }
        if tokens.iter().all(|t| t.is_none()) && !self.localhost_read_only {
            return Err(ConsoleError::NoCredentials);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_console_anyone_could_read() {
        assert_eq!(ConsoleConfig::new().check(), Err(ConsoleError::NoCredentials));
        assert_eq!(ConsoleConfig::new().read_only_on_localhost().check(), Ok(()));
        assert_eq!(ConsoleConfig::new().operator_token("short").check(), Err(ConsoleError::WeakToken));
        let same = ConsoleConfig::new().operator_token("0123456789abcdef").readonly_token("0123456789abcdef");
        assert_eq!(same.check(), Err(ConsoleError::SameTokens));
        assert_eq!(ConsoleConfig::new().readonly_token("0123456789abcdef").check(), Ok(()));
        let bad = ConsoleConfig::new().operator_token("0123456789abcdef").path("con sole");
        assert!(matches!(bad.check(), Err(ConsoleError::BadPath(_))));
        assert_eq!(ConsoleConfig::new().path("/ops/console/").path, "/ops/console");
        let padded = ConsoleConfig::new().operator_token("0123456789abcdef\n");
        assert_eq!(padded.check(), Err(ConsoleError::PaddedToken));
    }

    #[test]
    fn debug_never_shows_a_token() {
        let config = ConsoleConfig::new().operator_token("secret-secret-secret");
        assert!(!format!("{config:?}").contains("secret"));
    }
}
