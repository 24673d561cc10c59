//! The login form's sessions: signed cookies, so that every instance of a service behind
//! a load balancer accepts the session another one opened, and a restart logs nobody
//! out. The key is derived from the configured tokens: changing a token ends every
//! session.
//!
//! A cookie is `<access>.<expires>.<nonce>.<mac>`: `o` (operator) or `r` (read-only), the
//! expiry in Unix seconds, 128 random bits, and an HMAC-SHA-256 of the rest. The session's
//! CSRF token is another HMAC of its nonce. A logout revokes the nonce in the instance
//! that serves it (and the browser forgets the cookie); elsewhere the cookie lapses at
//! its expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::auth::Access;
use crate::config::ConsoleConfig;

type HmacSha256 = Hmac<Sha256>;

/// The most revoked sessions remembered; the ones that lapsed first go first.
const MAX_REVOKED: usize = 10_000;

/// An open session, as its cookie says.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) access: Access,
    pub(crate) nonce: String,
    pub(crate) csrf: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("access", &self.access).field("nonce", &&self.nonce[..8]).finish()
    }
}

/// Opens and checks sessions.
pub(crate) struct Sessions {
    key: [u8; 32],
    ttl: Duration,
    revoked: DashMap<String, u64>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Sessions {
    pub(crate) fn new(config: &ConsoleConfig) -> Self {
        let mut digest = Sha256::new();
        digest.update(b"factum-console session key\0");
        for part in [&config.operator_token, &config.readonly_token] {
            digest.update(part.as_deref().unwrap_or("").as_bytes());
            digest.update(b"\0");
        }
        digest.update(config.path.as_bytes());
        Sessions { key: digest.finalize().into(), ttl: config.session_ttl, revoked: DashMap::new() }
    }

    fn mac(&self, label: &str, body: &str) -> HmacSha256 {
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(label.as_bytes());
        mac.update(b"|");
        mac.update(body.as_bytes());
        mac
    }

    fn csrf(&self, nonce: &str) -> String {
        hex(&self.mac("csrf", nonce).finalize().into_bytes())
    }

    /// A new session's cookie value.
    pub(crate) fn open(&self, access: Access) -> String {
        let letter = match access {
            Access::Operator => 'o',
            Access::ReadOnly => 'r',
        };
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let body = format!("{letter}.{}.{nonce}", now() + self.ttl.as_secs());
        let mac = hex(&self.mac("session", &body).finalize().into_bytes());
        format!("{body}.{mac}")
    }

    /// The session of a cookie value, if it is one of ours, unexpired and not revoked.
    pub(crate) fn check(&self, value: &str) -> Option<Session> {
        let (body, mac) = value.rsplit_once('.')?;
        let mac = unhex(mac)?;
        self.mac("session", body).verify_slice(&mac).ok()?;
        let mut parts = body.split('.');
        let access = match parts.next()? {
            "o" => Access::Operator,
            "r" => Access::ReadOnly,
            _ => return None,
        };
        let expires: u64 = parts.next()?.parse().ok()?;
        let nonce = parts.next()?.to_owned();
        if parts.next().is_some() || expires <= now() || self.revoked.contains_key(&nonce) {
            return None;
        }
        Some(Session { access, csrf: self.csrf(&nonce), nonce })
    }

    /// Ends a session in this instance.
    pub(crate) fn revoke(&self, session: &Session) {
        let now = now();
        self.revoked.retain(|_, expires| *expires > now);
        if self.revoked.len() >= MAX_REVOKED {
            let first = self.revoked.iter().min_by_key(|r| *r.value()).map(|r| r.key().clone());
            if let Some(nonce) = first {
                self.revoked.remove(&nonce);
            }
        }
        self.revoked.insert(session.nonce.clone(), now + self.ttl.as_secs());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(token: &str) -> Sessions {
        Sessions::new(&ConsoleConfig::new().operator_token(token))
    }

    #[test]
    fn a_session_opened_by_one_instance_is_good_in_another() {
        let (a, b) = (sessions("operator-token-0123456789"), sessions("operator-token-0123456789"));
        let cookie = a.open(Access::Operator);
        let session = b.check(&cookie).expect("the same key");
        assert_eq!(session.access, Access::Operator);
        assert_eq!(session, a.check(&cookie).unwrap(), "the same CSRF token too");
        assert_eq!(session.csrf.len(), 64);
        assert!(sessions("another-token-0123456789").check(&cookie).is_none(), "a new token ends it");
    }

    #[test]
    fn a_forged_or_changed_cookie_is_refused() {
        let s = sessions("operator-token-0123456789");
        let cookie = s.open(Access::ReadOnly);
        let promoted = cookie.replacen("r.", "o.", 1);
        assert!(s.check(&promoted).is_none(), "read-only cannot make itself operator");
        let (body, _) = cookie.rsplit_once('.').unwrap();
        let later = body.replacen('.', ".9", 1);
        assert!(s.check(&format!("{later}.00")).is_none());
        for nonsense in ["", ".", "o.1.2.3", "o.99999999999.x.zz", "\u{202e}"] {
            assert!(s.check(nonsense).is_none(), "{nonsense:?}");
        }
        let session = s.check(&cookie).unwrap();
        s.revoke(&session);
        assert!(s.check(&cookie).is_none(), "logged out");
    }

    #[test]
    fn an_expired_session_is_refused() {
        let mut config = ConsoleConfig::new().operator_token("operator-token-0123456789");
        config.session_ttl = Duration::ZERO;
        let s = Sessions::new(&config);
        assert!(s.check(&s.open(Access::Operator)).is_none());
    }
}
