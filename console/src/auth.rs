//! Who may use the console: bearer tokens, the login form's session cookie, the CSRF
//! token every action carries, and the refusals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use dashmap::DashMap;
use serde::Deserialize;

use crate::page;
use crate::Shared;

/// The session cookie's name.
const COOKIE_NAME: &str = "factum_console";
/// How long a refused login waits before it answers.
const FAILED_LOGIN_DELAY: std::time::Duration = std::time::Duration::from_millis(300);
/// The most sessions kept; the oldest go first beyond it.
const MAX_SESSIONS: usize = 10_000;

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Access {
    /// Look at every page; no action.
    ReadOnly,
    /// Look, and act on projections.
    Operator,
}

/// The caller of a request that passed [`require`].
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub(crate) access: Access,
    /// The session's CSRF token; `None` for a bearer token (which a browser never sends
    /// by itself, so it needs none) or an anonymous read-only caller.
    pub(crate) csrf: Option<String>,
    /// Who it is, for the audit: `session <first 8 of its id>`, `bearer` or `localhost`.
    pub(crate) who: String,
    /// The peer's address, when the server passes it on.
    pub(crate) peer: Option<SocketAddr>,
}

struct Session {
    access: Access,
    csrf: String,
    expires: Instant,
}

/// The login form's sessions, by cookie value.
#[derive(Default)]
pub(crate) struct Sessions(DashMap<String, Session>);

impl Sessions {
    fn open(&self, access: Access, ttl: std::time::Duration) -> String {
        let now = Instant::now();
        self.0.retain(|_, s| s.expires > now);
        if self.0.len() >= MAX_SESSIONS {
            let oldest = self.0.iter().min_by_key(|s| s.expires).map(|s| s.key().clone());
            if let Some(key) = oldest {
                self.0.remove(&key);
            }
        }
        let id = random_token();
        self.0.insert(id.clone(), Session { access, csrf: random_token(), expires: now + ttl });
        id
    }

    fn find(&self, id: &str) -> Option<(Access, String)> {
        let session = self.0.get(id)?;
        (session.expires > Instant::now()).then(|| (session.access, session.csrf.clone()))
    }
}

/// 256 random bits, as hex (UUID v4 takes its bits from the operating system's generator).
fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
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

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Whether a request's `Origin`, when it sends one, is the host it was sent to: a form
/// posted from another site is refused before its CSRF token is even looked at.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    origin.split_once("://").is_some_and(|(_, authority)| authority == host)
}

/// Lets a request through with its [`Principal`], or answers 401 (the login form).
pub(crate) async fn require(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    if request.method() == Method::POST && !same_origin(headers) {
        return page::refusal(&shared, StatusCode::FORBIDDEN, "This form was posted from another site.");
    }
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let principal = if let Some(token) = bearer {
        match access_of(&shared, token) {
            Some(access) => Some(Principal { access, csrf: None, who: "bearer".into(), peer }),
            None => {
                return page::refusal(&shared, StatusCode::UNAUTHORIZED, "That bearer token is not valid.")
            }
        }
    } else if let Some((access, csrf)) = cookie(headers, COOKIE_NAME).and_then(|id| shared.sessions.find(id))
    {
        let id = cookie(headers, COOKIE_NAME).unwrap_or_default();
        Some(Principal { access, csrf: Some(csrf), who: format!("session {}", &id[..8.min(id.len())]), peer })
    } else if shared.config.localhost_read_only && peer.is_some_and(|p| p.ip().is_loopback()) {
        Some(Principal { access: Access::ReadOnly, csrf: None, who: "localhost".into(), peer })
    } else {
        None
    };
    let Some(principal) = principal else {
        let mut response = page::login(&shared, None).into_response();
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    };
    // Read-only callers post nothing but their logout: refused before any form is read.
    if request.method() == Method::POST
        && principal.access < Access::Operator
        && !request.uri().path().ends_with("/logout")
    {
        tracing::info!(target: "factum_console::audit", who = %principal.who, path = request.uri().path(), "console action refused: read-only");
        return page::refusal(
            &shared,
            StatusCode::FORBIDDEN,
            "These credentials are read-only: actions need the operator token.",
        );
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The CSRF token of a form.
#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

/// Refuses an action by a read-only caller, or a session's form without its CSRF token.
pub(crate) fn may_act(shared: &Shared, principal: &Principal, csrf: &str) -> Result<(), Box<Response>> {
    if let Some(expected) = &principal.csrf {
        if !same(expected.as_bytes(), csrf.as_bytes()) {
            return Err(Box::new(page::refusal(
                shared,
                StatusCode::FORBIDDEN,
                "This form's CSRF token is missing or stale: reload the page and try again.",
            )));
        }
    }
    if principal.access < Access::Operator {
        return Err(Box::new(page::refusal(
            shared,
            StatusCode::FORBIDDEN,
            "These credentials are read-only: actions need the operator token.",
        )));
    }
    Ok(())
}

/// The login form.
pub(crate) async fn login_page(State(shared): State<Arc<Shared>>) -> Response {
    page::login(&shared, None).into_response()
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// Checks the token and opens a session.
pub(crate) async fn login(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return page::refusal(&shared, StatusCode::FORBIDDEN, "This form was posted from another site.");
    }
    let Some(access) = access_of(&shared, form.token.trim()) else {
        tracing::warn!(target: "factum_console::audit", "console login refused: unknown token");
        // Guessing costs time (the tokens are long and random: this only slows a script).
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        let mut response =
            page::login(&shared, Some("That token is not one of the console's.")).into_response();
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    };
    let id = shared.sessions.open(access, shared.config.session_ttl);
    tracing::info!(target: "factum_console::audit", access = ?access, session = &id[..8], "console login");
    let path = cookie_path(&shared);
    let cookie = format!("{COOKIE_NAME}={id}; Path={path}; HttpOnly; SameSite=Strict");
    (StatusCode::SEE_OTHER, [(SET_COOKIE, cookie), (LOCATION, format!("{}/", shared.config.path))])
        .into_response()
}

fn cookie_path(shared: &Shared) -> &str {
    match shared.config.path.as_str() {
        "" => "/",
        path => path,
    }
}

/// Closes the session.
pub(crate) async fn logout(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or(CsrfForm { csrf: String::new() });
    if let Some(expected) = &principal.csrf {
        if !same(expected.as_bytes(), form.csrf.as_bytes()) {
            return page::refusal(
                &shared,
                StatusCode::FORBIDDEN,
                "This form's CSRF token is missing or stale.",
            );
        }
    }
    if let Some(id) = cookie(&headers, COOKIE_NAME) {
        shared.sessions.0.remove(id);
    }
    let clear =
        format!("{COOKIE_NAME}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0", cookie_path(&shared));
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
    fn finds_the_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; factum_console=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE_NAME), Some("xyz"));
        headers.insert(COOKIE, "factum_console_other=1".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE_NAME), None);
    }

    #[test]
    fn refuses_a_form_from_another_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers), "no Origin: a same-origin navigation or a tool");
        headers.insert(ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&headers));
    }
}
