//! Several servers, one primary: libpq's multi-host URLs, and finding which server of a
//! replicated cluster accepts writes now.
//!
//! sqlx connects to one host. A store given several ([`PostgresConfig::hosts`]) asks
//! each of them `pg_is_in_recovery()` and points its pool at the one that answers
//! `false`; the availability probe asks again whenever a connection breaks or a write
//! meets a read-only server, so that after a failover the pool follows the promoted
//! standby (see `availability.rs`).
//!
//! [`PostgresConfig::hosts`]: crate::PostgresConfig::hosts

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::availability::describe;
use crate::config::ConfigError;

/// A URL split into a single-host URL sqlx can parse (the first host) and every host
/// of its list, in order.
pub(crate) struct Split {
    pub(crate) url: String,
    pub(crate) hosts: Vec<(String, u16)>,
}

/// Splits `postgres://user@h1:5432,h2:5433/db?target_session_attrs=read-write` into the
/// URL of its first host and its host list (empty for a one-host URL, which passes
/// through unchanged). `target_session_attrs` is checked and taken out: the store always
/// writes, so it follows the read-write server whatever the URL says, and only
/// `read-write` or `primary` (libpq's names for that) are accepted.
pub(crate) fn split_url(url: &str) -> Result<Split, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidSetting { name: "DATABASE_URL", reason };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(Split { url: url.to_owned(), hosts: Vec::new() });
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostlist) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("target_session_attrs", value)) => match value {
                "read-write" | "primary" => {}
                other => {
                    return Err(invalid(format!(
                        "target_session_attrs={other}: the store writes, so it needs the read-write \
                         server (`read-write` or `primary`)"
                    )))
                }
            },
            _ => params.push(pair),
        }
    }
    let query = if params.is_empty() { String::new() } else { format!("?{}", params.join("&")) };
    if !hostlist.contains(',') {
        return Ok(Split { url: format!("{scheme}://{authority}{path}{query}"), hosts: Vec::new() });
    }
    let count = hostlist.split(',').count();
    let mut hosts = Vec::with_capacity(count);
    for (index, item) in hostlist.split(',').enumerate() {
        let host = parse_host(item)
            .map_err(|why| invalid(format!("host {} of {count} ({item:?}): {why}", index + 1)))?;
        hosts.push(host);
    }
    let (first, port) = &hosts[0];
    let first = if first.contains(':') { format!("[{first}]") } else { first.clone() };
    Ok(Split { url: format!("{scheme}://{userinfo}{first}:{port}{path}{query}"), hosts })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to 5432.
fn parse_host(item: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = item.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("an IPv6 address without its closing ']'")?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or("expected ':' and a port after ']'")?)),
        }
    } else {
        match item.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (item, None),
        }
    };
    if host.is_empty() {
        return Err("the host name is empty".into());
    }
    let port = match port {
        None => 5432,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("invalid port number {p:?}")),
        },
    };
    Ok((host.to_owned(), port))
}

/// The connect options of each host: `base` (user, database, TLS and the rest) pointed
/// at it.
pub(crate) fn targets(base: &PgConnectOptions, hosts: &[(String, u16)]) -> Vec<PgConnectOptions> {
    hosts.iter().map(|(host, port)| base.clone().host(host).port(*port)).collect()
}

/// `host:port` of connect options, for logs and errors.
pub(crate) fn address(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

/// What one server said when asked whether it is the primary.
enum Answer {
    Primary,
    Standby,
    Unreachable(String),
}

async fn ask(options: &PgConnectOptions, timeout: Duration) -> Answer {
    let attempt = async {
        let mut conn = options.connect().await?;
        let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut conn).await?;
        conn.close().await.ok();
        Ok::<_, sqlx::Error>(recovering)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(false)) => Answer::Primary,
        Ok(Ok(true)) => Answer::Standby,
        Ok(Err(e)) => Answer::Unreachable(describe(&e)),
        Err(_) => Answer::Unreachable(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// The index of the server among `targets` that accepts writes now, asking all of them
/// at once; else why none does, server by server.
pub(crate) async fn find_primary(targets: &[PgConnectOptions], timeout: Duration) -> Result<usize, String> {
    let answers = futures_util::future::join_all(targets.iter().map(|t| ask(t, timeout))).await;
    if let Some(index) = answers.iter().position(|a| matches!(a, Answer::Primary)) {
        return Ok(index);
    }
    let each: Vec<String> = targets
        .iter()
        .zip(&answers)
        .map(|(t, a)| match a {
            Answer::Primary => unreachable!("no primary was found"),
            Answer::Standby => format!("{} is a standby", address(t)),
            Answer::Unreachable(why) => format!("{}: {why}", address(t)),
        })
        .collect();
    Err(format!("no server accepts writes ({})", each.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_urls_pass_through() {
        let s = split_url("postgres://u:p@db:5433/app?sslmode=disable").unwrap();
        assert_eq!(s.url, "postgres://u:p@db:5433/app?sslmode=disable");
        assert!(s.hosts.is_empty());
        let s = split_url("postgres://u@db/app?target_session_attrs=read-write&application_name=x").unwrap();
        assert_eq!(s.url, "postgres://u@db/app?application_name=x");
    }

    #[test]
    fn host_lists_are_split() {
        let s = split_url(
            "postgresql://user@10.0.0.1:5432,db2:5433,[::1]:5434,db4/shop?target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(s.url, "postgresql://user@10.0.0.1:5432/shop");
        assert_eq!(
            s.hosts,
            vec![
                ("10.0.0.1".to_owned(), 5432),
                ("db2".to_owned(), 5433),
                ("::1".to_owned(), 5434),
                ("db4".to_owned(), 5432)
            ]
        );
        let options: PgConnectOptions = s.url.parse().unwrap();
        let all = targets(&options, &s.hosts);
        assert_eq!(address(&all[1]), "db2:5433");
        assert_eq!(all[1].get_database(), Some("shop"));
        assert_eq!(all[1].get_username(), "user");
    }

    #[test]
    fn the_part_at_fault_is_named() {
        let err = |url: &str| split_url(url).err().map(|e| e.to_string()).unwrap_or_default();
        let e = err("postgres://u@h1:5432,h2:x/db");
        assert!(e.contains("host 2 of 2 (\"h2:x\")") && e.contains("invalid port number \"x\""), "{e}");
        let e = err("postgres://u@h1,,h3/db");
        assert!(e.contains("host 2 of 3") && e.contains("empty"), "{e}");
        let e = err("postgres://u@h1:0,h2/db");
        assert!(e.contains("host 1 of 2"), "{e}");
        let e = err("postgres://u@[::1,h2/db");
        assert!(e.contains("closing ']'"), "{e}");
        let e = err("postgres://u@h1,h2/db?target_session_attrs=standby");
        assert!(e.contains("target_session_attrs=standby"), "{e}");
    }
}
