//! The console against a real PostgreSQL, called through its router: who gets in, what a
//! read-only caller and a form without its CSRF token are refused, that an action goes
//! through the operator's requests and into the audit trail, and that stored markup
//! renders as text. The same in a real browser: `scripts/console-e2e.sh`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, ORIGIN, SET_COOKIE};
use axum::http::{Request, StatusCode};
use axum::Router;
use factum::prelude::*;
use factum::{
    EventHandler, ExpectedVersion, HandlerError, NewEvent, Projection, RecordedEvent, StreamId, Supervisor,
};
use factum_console::{Console, ConsoleConfig};
use factum_postgres::PostgresStore;
use factum_tests::{eventually, TestDb};
use serde_json::json;
use tower::ServiceExt;

const OPERATOR: &str = "operator-token-0123456789";
const READONLY: &str = "readonly-token-0123456789";

struct Tally;

#[async_trait::async_trait]
impl EventHandler for Tally {
    async fn handle(&mut self, _: &RecordedEvent) -> Result<(), HandlerError> {
        Ok(())
    }
}

async fn console(store: &PostgresStore) -> (Supervisor, Router) {
    let (supervisor, console) = console_of(store).await;
    (supervisor, console.router())
}

async fn console_of(store: &PostgresStore) -> (Supervisor, Console) {
    let config = factum::SupervisorConfig::default().projection(Projection::with_handler("tally", Tally));
    let supervisor = Supervisor::start(Arc::new(store.clone()), config).await.unwrap();
    let console = Console::new(
        store.clone(),
        supervisor.clone(),
        ConsoleConfig::new().operator_token(OPERATOR).readonly_token(READONLY),
    )
    .unwrap();
    // A projection is known to the store once it has a checkpoint: after its first event.
    let seed = StreamId::new("Seed", "s-1").unwrap();
    store.append(&seed, ExpectedVersion::NoStream, vec![NewEvent::new("Seeded", json!({}))]).await.unwrap();
    eventually(Duration::from_secs(30), "tally's first checkpoint", || async {
        let consumers = factum::store::operator::live_consumers(store, "tally").await.ok()?;
        store.load_checkpoint(&consumers[0]).await.ok().flatten()
    })
    .await;
    (supervisor, console)
}

fn another_instance(store: &PostgresStore, supervisor: &Supervisor) -> Router {
    let config = ConsoleConfig::new().operator_token(OPERATOR).readonly_token(READONLY);
    Console::new(store.clone(), supervisor.clone(), config).unwrap().router()
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

fn get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

fn post(path: &str) -> axum::http::request::Builder {
    Request::post(path).header(CONTENT_TYPE, "application/x-www-form-urlencoded")
}

/// The audit trail's events of today.
async fn audited(store: &PostgresStore) -> Vec<RecordedEvent> {
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let stream = StreamId::new("ConsoleAudit", day).unwrap();
    store.read_stream(&stream, factum::store::VersionRange::ALL).await.unwrap()
}

#[tokio::test]
async fn nothing_without_credentials_and_no_action_read_only() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (supervisor, router) = console(&store).await;

    let anonymous = call(&router, get("/console/", None)).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.body.contains("form id=\"login\""), "the login form: {}", anonymous.body);
    assert!(!anonymous.body.contains("id=\"overview\""));
    assert_eq!(
        call(&router, get("/console/streams", Some("not-a-token-at-all!"))).await.status,
        StatusCode::UNAUTHORIZED
    );
    let posted = call(&router, post("/console/projections/tally/rebuild").body(Body::empty()).unwrap()).await;
    assert_eq!(posted.status, StatusCode::UNAUTHORIZED);

    let readonly = call(&router, get("/console/", Some(READONLY))).await;
    assert_eq!(readonly.status, StatusCode::OK);
    assert!(readonly.body.contains("id=\"overview\""));
    let csp = readonly.headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");

    let refused = call(
        &router,
        post("/console/projections/tally/rebuild")
            .header(AUTHORIZATION, format!("Bearer {READONLY}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("read-only"), "{}", refused.body);
    assert!(audited(&store).await.is_empty(), "nothing was done, nothing audited");

    // The operator's token acts (a bearer token needs no CSRF token: a browser never
    // sends it by itself), through the operator's request, audited in the log.
    let done = call(
        &router,
        post("/console/projections/tally/reset")
            .header(AUTHORIZATION, format!("Bearer {OPERATOR}"))
            .body(Body::from("to=0"))
            .unwrap(),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.headers["location"], "/console/projections/tally?done=reset");
    let audit = audited(&store).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event_type, "OperatorAction");
    assert_eq!(audit[0].payload["action"], "reset");
    assert_eq!(audit[0].payload["outcome"], "done");
    assert_eq!(audit[0].payload["access"], "operator");

    // Unknown projections and nonsense are refused, and say so.
    let unknown = call(
        &router,
        post("/console/projections/nope/rebuild")
            .header(AUTHORIZATION, format!("Bearer {OPERATOR}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    let bad = call(
        &router,
        post("/console/projections/tally/reset")
            .header(AUTHORIZATION, format!("Bearer {OPERATOR}"))
            .body(Body::from("to=%3Cscript%3E"))
            .unwrap(),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("position") && !bad.body.contains("<script>"), "{}", bad.body);
    supervisor.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sessions_form_needs_its_csrf_token() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (supervisor, router) = console(&store).await;

    let wrong =
        call(&router, post("/console/login").body(Body::from("token=guess-guess-guess")).unwrap()).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.headers.contains_key(SET_COOKIE));
    let login =
        call(&router, post("/console/login").body(Body::from(format!("token={OPERATOR}"))).unwrap()).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let cookie = login.headers[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();

    let page = call(
        &router,
        Request::get("/console/projections/tally").header(COOKIE, &session).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(csrf.len(), 64);

    let action = |body: String, origin: Option<&str>| {
        let mut request =
            post("/console/projections/tally/reset").header(COOKIE, &session).header("host", "console.test");
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        request.body(Body::from(body)).unwrap()
    };
    let without = call(&router, action("to=0".into(), None)).await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    assert!(without.body.contains("CSRF"), "{}", without.body);
    let stale = call(&router, action(format!("to=0&csrf={}", "0".repeat(64)), None)).await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    let elsewhere = call(&router, action(format!("to=0&csrf={csrf}"), Some("https://evil.example"))).await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN, "a form posted from another site");
    assert!(audited(&store).await.iter().all(|e| e.payload["outcome"] != "done"), "none of those acted");
    let done = call(&router, action(format!("to=0&csrf={csrf}"), Some("http://console.test"))).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);

    // Logged out, the cookie opens nothing.
    let out = call(
        &router,
        post("/console/logout").header(COOKIE, &session).body(Body::from(format!("csrf={csrf}"))).unwrap(),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after =
        call(&router, Request::get("/console/").header(COOKIE, &session).body(Body::empty()).unwrap()).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    supervisor.shutdown().await.unwrap();
}

#[tokio::test]
async fn stored_markup_renders_as_text() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (supervisor, router) = console(&store).await;
    let hostile = json!({
        "script": "<script>alert(1)</script>",
        "attribute": "\"><img src=x onerror=alert(2)>",
        "bidi": "\u{202E}fdp.exe",
    });
    let metadata = factum::Metadata {
        user_id: Some("mallory".into()),
        custom: serde_json::from_value(json!({ "note": "</pre><script>alert(3)</script>" })).unwrap(),
        ..Default::default()
    };
    let stream = StreamId::new("Hostile", "h-1").unwrap();
    let event = NewEvent::new("Injected", hostile).with_metadata(metadata);
    let id = event.event_id;
    store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap();

    let page = call(&router, get(&format!("/console/events/{id}"), Some(READONLY))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", page.body);
    assert!(page.body.contains("&lt;/pre&gt;&lt;script&gt;alert(3)"), "the metadata too");
    for raw in ["<script>alert", "<img src=x", "</pre><script>"] {
        assert!(!page.body.contains(raw), "{raw} came through unescaped");
    }
    // The only script element of any page is the console's own file (the tail's).
    assert!(!page.body.contains("<script"), "no script element on an event's page");

    let list = eventually(Duration::from_secs(30), "the event in the browser", || async {
        let list =
            call(&router, get("/console/streams?aggregate_type=Hostile&aggregate_id=h-1", Some(READONLY)))
                .await;
        list.body.contains(&id.to_string()).then_some(list)
    })
    .await;
    assert_eq!(list.status, StatusCode::OK);
    let refused = call(&router, get("/console/streams?correlation_id=%3Cscript%3E", Some(READONLY))).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("&lt;script&gt;") && !refused.body.contains("<script>"));
    let missing = call(&router, get("/console/events/not-an-id", Some(READONLY))).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    supervisor.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_login_holds_on_every_instance_and_a_tail_ends_when_the_console_closes() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (supervisor, console) = console_of(&store).await;
    let router: Router = console.router();
    let login =
        call(&router, post("/console/login").body(Body::from(format!("token={READONLY}"))).unwrap()).await;
    let session = login.headers[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    // Behind a load balancer the next request may land on another instance.
    let elsewhere = another_instance(&store, &supervisor);
    let page = call(
        &elsewhere,
        Request::get("/console/streams").header(COOKIE, &session).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("read-only"), "the session's access travels with it");
    // A cookie signed with other tokens opens nothing.
    let other = Console::new(
        store.clone(),
        supervisor.clone(),
        ConsoleConfig::new().operator_token("some-other-operator-token"),
    )
    .unwrap()
    .router::<()>();
    let refused =
        call(&other, Request::get("/console/").header(COOKIE, &session).body(Body::empty()).unwrap()).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    // A live tail's stream never ends by itself; closing the console ends it.
    let response = router.clone().oneshot(get("/console/tail/events", Some(READONLY))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    let body = tokio::spawn(axum::body::to_bytes(response.into_body(), usize::MAX));
    // One caller holds at most a quarter of the tails (4 of 16).
    let mut more = Vec::new();
    for _ in 0..3 {
        let tail = router.clone().oneshot(get("/console/tail/events", Some(READONLY))).await.unwrap();
        assert_eq!(tail.status(), StatusCode::OK);
        more.push(tail);
    }
    let fifth = call(&router, get("/console/tail/events", Some(READONLY))).await;
    assert_eq!(fifth.status, StatusCode::TOO_MANY_REQUESTS);
    drop(more);
    let again = router.clone().oneshot(get("/console/tail/events", Some(READONLY))).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK, "a closed tail gives its share back");
    drop(again);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!body.is_finished(), "a tail follows the log until it is ended");
    console.close();
    tokio::time::timeout(Duration::from_secs(5), body).await.expect("ended by close").unwrap().unwrap();
    supervisor.shutdown().await.unwrap();
}
