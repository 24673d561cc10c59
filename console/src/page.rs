//! The page around every view, the refusals, the security headers, and the small pieces
//! the views share: sparklines, durations, numbers.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::auth::{Access, Principal};
use crate::Shared;

/// No inline script or style, nothing from elsewhere: a payload that smuggled markup past
/// the escaping still could not run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response of the console.
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: under it browsers send `Origin: null` with the console's own forms.
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A page of the console: navigation, the caller's access, and `body`.
pub(crate) fn layout(
    shared: &Shared,
    principal: Option<&Principal>,
    title: &str,
    body: Markup,
) -> Html<String> {
    let base = &shared.config.path;
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · factum console" }
                link rel="stylesheet" href={ (base) "/assets/console.css" };
            }
            body {
                header {
                    span.brand { "factum" }
                    @if let Some(principal) = principal {
                        nav {
                            a href={ (base) "/" } { "Overview" }
                            a href={ (base) "/streams" } { "Streams" }
                            a href={ (base) "/tail" } { "Live tail" }
                            a href={ (base) "/projections" } { "Projections" }
                            a href={ (base) "/processes" } { "Processes" }
                        }
                        span.who {
                            @match principal.access {
                                Access::Operator => "operator",
                                Access::ReadOnly => "read-only",
                            }
                        }
                        @if let Some(csrf) = principal.csrf() {
                            form #logout method="post" action={ (base) "/logout" } {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                (body)
            }
        }
    };
    Html(markup.into_string())
}

/// The login form, with an error above it.
pub(crate) fn login(shared: &Shared, error: Option<&str>) -> Html<String> {
    let body = html! {
        main #login-page {
            h1 { "Log in" }
            @if let Some(error) = error { p.error { (error) } }
            form #login method="post" action={ (shared.config.path) "/login" } {
                label { "Token " input type="password" name="token" autocomplete="current-password" autofocus; }
                button type="submit" { "Log in" }
            }
            p.hint { "The console's operator or read-only token, as the service was configured with." }
        }
    };
    layout(shared, None, "Log in", body)
}

/// A refusal or an error, as a page with `status`.
pub(crate) fn refusal(shared: &Shared, status: StatusCode, why: &str) -> Response {
    let body = html! {
        main #refused {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error { (why) }
            p { a href={ (shared.config.path) "/" } { "Back to the overview" } }
        }
    };
    (status, layout(shared, None, "Refused", body)).into_response()
}

/// A hidden CSRF field for a form of `principal`'s.
pub(crate) fn csrf_field(principal: &Principal) -> Markup {
    html! { input type="hidden" name="csrf" value=(principal.csrf().unwrap_or("")); }
}

/// A sparkline of `values` (oldest first) as inline SVG: drawn by the browser from
/// attributes, no script or style.
pub(crate) fn sparkline(values: &[f64], label: &str) -> Markup {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let points: String = match values.len() {
        0 | 1 => String::new(),
        n => values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let x = W * i as f64 / (n - 1) as f64;
                let y = if max > 0.0 { H - 1.0 - (H - 2.0) * v / max } else { H - 1.0 };
                format!("{x:.1},{y:.1} ")
            })
            .collect(),
    };
    html! {
        svg.sparkline width="120" height="24" viewBox="0 0 120 24" role="img" aria-label=(label) {
            title { (label) }
            polyline points=(points.trim_end()) fill="none" stroke="currentColor" stroke-width="1.5" {}
        }
    }
}

/// `n` with thousands separated.
pub(crate) fn number(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds, as a person reads them.
pub(crate) fn seconds(s: f64) -> String {
    match s {
        s if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        s if s < 120.0 => format!("{s:.1} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

/// Bytes, as a person reads them.
pub(crate) fn bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

/// A state as a badge, coloured by the stylesheet.
pub(crate) fn state_badge(state: &str) -> Markup {
    let class = match state {
        "live" => "ok",
        "failed" | "stopped" => "bad",
        "catching_up" | "rebuilding" | "retrying" | "waiting_for_store" | "starting" => "busy",
        _ => "idle",
    };
    html! { span class={ "badge " (class) } { (state) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_figures() {
        assert_eq!(number(0), "0");
        assert_eq!(number(1_234_567), "1,234,567");
        assert_eq!(number(999), "999");
        assert_eq!(seconds(0.25), "250 ms");
        assert_eq!(seconds(90.0), "90.0 s");
        assert_eq!(bytes(2048), "2.0 KiB");
    }

    #[test]
    fn a_sparkline_is_attributes_only() {
        let svg = sparkline(&[0.0, 2.0, 1.0], "lag <of> \"x\"").into_string();
        assert!(svg.contains("points=\"0.0,23.0 60.0,1.0 120.0,12.0\""), "{svg}");
        assert!(svg.contains("lag &lt;of&gt; &quot;x&quot;"), "escaped: {svg}");
        assert!(!svg.contains("style"));
    }
}
