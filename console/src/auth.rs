//! Who may use the console: bearer tokens, the login form's session cookie, the CSRF
//! token every action carries, the origin of a form, and the refusals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use crate::page;
use crate::session::Session;
use crate::Shared;

/// The session cookie's name.
const COOKIE_NAME: &str = "factum_console";
/// How long a refused token waits before it is answered.
const REFUSAL_DELAY: Duration = Duration::from_millis(300);

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Look at every page; no action.
    ReadOnly,
    /// Look, and act on projections.
    Operator,
}

/// The caller of a request that passed [`require`].
#[derive(Clone)]
pub(crate) struct Principal {
    pub(crate) access: Access,
    /// Who it is, for the audit: `session <first 8 of its nonce>`, `bearer` or `localhost`.
    pub(crate) who: String,
    /// The peer's address, when the server passes it on.
    pub(crate) peer: Option<SocketAddr>,
    /// The login form's session; `None` for a bearer token or an anonymous caller.
    pub(crate) session: Option<Session>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the CSRF token.
        f.debug_struct("Principal")
            .field("access", &self.access)
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

impl Principal {
    pub(crate) fn may_act(&self) -> bool {
        self.access == Access::Operator
    }

    /// The session's CSRF token; `None` for a bearer token (which a browser never sends
    /// by itself, so it needs none) or an anonymous read-only caller.
    pub(crate) fn csrf(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.csrf.as_str())
    }
}

/// Compares in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn access_of(shared: &Shared, token: &str) -> Option<Access> {
    let config = &shared.config;
    // Both compared, whichever matches: no early exit that times the first.
    let operator = config.operator_token.as_deref().is_some_and(|t| same(t.as_bytes(), token.as_bytes()));
    let readonly = config.readonly_token.as_deref().is_some_and(|t| same(t.as_bytes(), token.as_bytes()));
    match (operator, readonly) {
        (true, _) => Some(Access::Operator),
        (_, true) => Some(Access::ReadOnly),
        _ => None,
    }
}

/// Every value of the cookie `name` (a site may plant others beside ours).
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// The host a request was sent to: its `Host` header, or the URI's authority (HTTP/2).
fn host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> &'a str {
    headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// Whether a request's `Origin`, when it sends one, is the host it was sent to or one the
/// configuration allows (the public address in front of a proxy): a form posted from
/// another site is refused before its CSRF token is even looked at.
fn same_origin(shared: &Shared, headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    if shared.config.allowed_origins.iter().any(|o| o == origin) {
        return true;
    }
    origin.split_once("://").is_some_and(|(_, authority)| authority == host(headers, uri))
}

/// Whether a request may have the anonymous read-only access of
/// [`ConsoleConfig::read_only_on_localhost`](crate::ConsoleConfig::read_only_on_localhost):
/// from the loopback interface, to a loopback name (not a name that a rebinding DNS made
/// point here), and not relayed by a proxy (to which every caller is local).
fn localhost(headers: &HeaderMap, uri: &Uri, peer: Option<SocketAddr>) -> bool {
    let relayed = ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|h| headers.contains_key(*h));
    let name = host(headers, uri);
    let name = match name.rsplit_once(':') {
        Some((n, port)) if !n.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => name,
    };
    let loopback_name = matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    peer.is_some_and(|p| p.ip().is_loopback()) && loopback_name && !relayed
}

/// Lets a request through with its [`Principal`], or answers 401 (the login form).
pub(crate) async fn require(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    if request.method() == Method::POST && !same_origin(&shared, headers, request.uri()) {
        return page::refusal(&shared, StatusCode::FORBIDDEN, "This form was posted from another site.");
    }
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let session = cookies(headers, COOKIE_NAME).find_map(|value| shared.sessions.check(value));
    let principal = if let Some(token) = bearer {
        let Some(access) = access_of(&shared, token) else {
            tokio::time::sleep(REFUSAL_DELAY).await;
            return page::refusal(&shared, StatusCode::UNAUTHORIZED, "That bearer token is not valid.");
        };
        let who = match access {
            Access::Operator => "bearer operator",
            Access::ReadOnly => "bearer read-only",
        };
        Principal { access, who: who.into(), peer, session: None }
    } else if let Some(session) = session {
        let who = format!("session {}", &session.nonce[..8]);
        Principal { access: session.access, who, peer, session: Some(session) }
    } else if shared.config.localhost_read_only && localhost(headers, request.uri(), peer) {
        Principal { access: Access::ReadOnly, who: "localhost".into(), peer, session: None }
    } else {
        let mut response = page::login(&shared, None).into_response();
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    };
    // Read-only callers post nothing but their logout: refused before any form is read.
    let logout = request.uri().path() == format!("{}/logout", shared.config.path);
    if request.method() == Method::POST && !principal.may_act() && !logout {
        tracing::info!(target: "factum_console::audit", who = %principal.who, path = request.uri().path(), "console action refused: read-only");
        return page::refusal(
            &shared,
            StatusCode::FORBIDDEN,
            "These credentials are read-only: actions need the operator token.",
        );
    }
    shared.samples.viewed();
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The CSRF token of a form.
#[derive(Default, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

fn csrf_ok(principal: &Principal, csrf: &str) -> bool {
    principal.csrf().is_none_or(|expected| same(expected.as_bytes(), csrf.as_bytes()))
}

/// Refuses an action by a read-only caller, or a session's form without its CSRF token.
pub(crate) fn may_act(shared: &Shared, principal: &Principal, csrf: &str) -> Result<(), Box<Response>> {
    if !csrf_ok(principal, csrf) {
        let why = "This form's CSRF token is missing or stale: reload the page and try again.";
        return Err(Box::new(page::refusal(shared, StatusCode::FORBIDDEN, why)));
    }
    if !principal.may_act() {
        let why = "These credentials are read-only: actions need the operator token.";
        return Err(Box::new(page::refusal(shared, StatusCode::FORBIDDEN, why)));
    }
    Ok(())
}

/// The login form.
pub(crate) async fn login_page(State(shared): State<Arc<Shared>>) -> Response {
    page::login(&shared, None).into_response()
}

#[derive(Default, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// Checks the token and opens a session.
pub(crate) async fn login(
    State(shared): State<Arc<Shared>>,
    request_headers: HeaderMap,
    uri: Uri,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if !same_origin(&shared, &request_headers, &uri) {
        return page::refusal(&shared, StatusCode::FORBIDDEN, "This form was posted from another site.");
    }
    let form = form.map(|f| f.0).unwrap_or_default();
    let Some(access) = access_of(&shared, form.token.trim()) else {
        tracing::warn!(target: "factum_console::audit", "console login refused: unknown token");
        // Guessing costs time (the tokens are long and random: this only slows a script).
        tokio::time::sleep(REFUSAL_DELAY).await;
        let mut response =
            page::login(&shared, Some("That token is not one of the console's.")).into_response();
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    };
    let value = shared.sessions.open(access);
    tracing::info!(target: "factum_console::audit", access = ?access, "console login");
    let cookie = format!("{COOKIE_NAME}={value}; {}", cookie_attributes(&shared));
    (StatusCode::SEE_OTHER, [(SET_COOKIE, cookie), (LOCATION, format!("{}/", shared.config.path))])
        .into_response()
}

fn cookie_attributes(shared: &Shared) -> String {
    let path = match shared.config.path.as_str() {
        "" => "/",
        path => path,
    };
    let secure = if shared.config.secure_cookie { "; Secure" } else { "" };
    format!("Path={path}; HttpOnly; SameSite=Strict{secure}")
}

/// Closes the session.
pub(crate) async fn logout(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if !csrf_ok(&principal, &form.csrf) {
        return page::refusal(&shared, StatusCode::FORBIDDEN, "This form's CSRF token is missing or stale.");
    }
    if let Some(session) = &principal.session {
        shared.sessions.revoke(session);
    }
    let clear = format!("{COOKIE_NAME}=; Max-Age=0; {}", cookie_attributes(&shared));
    (StatusCode::SEE_OTHER, [(SET_COOKIE, clear), (LOCATION, format!("{}/login", shared.config.path))])
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_tokens() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn finds_every_cookie_of_the_name() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; factum_console=xyz; factum_console=abc; b=2".parse().unwrap());
        assert_eq!(cookies(&headers, COOKIE_NAME).collect::<Vec<_>>(), ["xyz", "abc"]);
        headers.insert(COOKIE, "factum_console_other=1".parse().unwrap());
        assert_eq!(cookies(&headers, COOKIE_NAME).count(), 0);
    }

    #[test]
    fn localhost_means_a_loopback_peer_and_name_without_a_proxy() {
        let peer: Option<SocketAddr> = Some("127.0.0.1:5000".parse().unwrap());
        let uri = Uri::from_static("/console/");
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(localhost(&with(&[("host", "127.0.0.1:8080")]), &uri, peer));
        assert!(localhost(&with(&[("host", "localhost")]), &uri, peer));
        assert!(localhost(&with(&[("host", "[::1]:8080")]), &uri, peer));
        assert!(!localhost(&with(&[("host", "rebind.evil:8080")]), &uri, peer), "DNS rebinding");
        let proxied = with(&[("host", "127.0.0.1:8080"), ("x-forwarded-for", "203.0.113.9")]);
        assert!(!localhost(&proxied, &uri, peer), "behind a proxy everyone is local");
        let remote: Option<SocketAddr> = Some("203.0.113.9:5000".parse().unwrap());
        assert!(!localhost(&with(&[("host", "127.0.0.1:8080")]), &uri, remote));
        assert!(!localhost(&with(&[("host", "127.0.0.1:8080")]), &uri, None), "no peer known");
    }
}
