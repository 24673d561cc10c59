//! One trace from an HTTP request to every consumer of its event, exported over OTLP.
//!
//! The test runs a real OTLP/HTTP receiver (protobuf, decoded with the
//! `opentelemetry-proto` types), starts the example service with the standard
//! `OTEL_EXPORTER_OTLP_*` variables pointing at it and the RabbitMQ bus on, sends a
//! command with a `traceparent` of its own, and checks that the trace holds the request,
//! the command, the append, each projection's handling of the event, and the bus's send
//! and receipt, each the child of the right span, and that the batches link to it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use factum_tests::{eventually, TestDb};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use uuid::Uuid;

/// A span as the receiver got it: ids as hex.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
    /// (trace, span) of each link.
    links: Vec<(String, String)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the OTLP/HTTP receiver; returns its base URL and what it received.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let keep = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let keep = keep.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
                let mut spans = keep.lock().unwrap();
                for rs in request.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                        spans.push(Received {
                            service: service.clone(),
                            name: span.name,
                            trace: hex(&span.trace_id),
                            id: hex(&span.span_id),
                            parent: hex(&span.parent_span_id),
                            links: span.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
                        });
                    }
                }
                (
                    [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

/// The service, its exchange and queue deleted from the broker when dropped.
struct Service {
    child: Child,
    amqp: String,
    exchange: String,
    queue: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (url, exchange, queue) = (self.amqp.clone(), self.exchange.clone(), self.queue.clone());
        let cleaner = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let connect = Connection::connect(&url, ConnectionProperties::default());
                let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await else {
                    return;
                };
                if let Ok(ch) = conn.create_channel().await {
                    for q in [queue.clone(), format!("{queue}.dead-letter")] {
                        let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
                    }
                    for e in [exchange.clone(), format!("{queue}.dead-letter")] {
                        let _ = ch.exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default()).await;
                    }
                }
                let _ = conn.close(200, "test done".into()).await;
            });
        });
        let _ = cleaner.join();
    }
}

fn spawn(database_url: &str, port: u16, otlp: &str) -> Service {
    let amqp = std::env::var("FACTUM_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let prefix = format!("factum-test.traces.{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (exchange, queue) = (format!("{prefix}.events"), format!("{prefix}.orders"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_factum-example"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", database_url)
        .env("FACTUM_EXAMPLE_RABBITMQ_URL", &amqp)
        .env("FACTUM_EXAMPLE_RABBITMQ_EXCHANGE", &exchange)
        .env("FACTUM_EXAMPLE_RABBITMQ_QUEUE", &queue)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_SERVICE_NAME", "factum-trace-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the service");
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {});
    Service { child, amqp, exchange, queue }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_request_to_every_consumer_of_its_event() {
    let (otlp, spans) = receiver().await;
    let db = TestDb::new().await;
    let port = free_port();
    let _service = spawn(&db.url(), port, &otlp);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let customer = serde_json::json!({"id": "ada", "name": "Ada Lovelace", "email": "ada@example.com"});
    eventually(Duration::from_secs(60), "the service to register a customer", || {
        let (http, base, customer) = (http.clone(), base.clone(), customer.clone());
        async move {
            let r = http.post(format!("{base}/customers")).json(&customer).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;

    // The caller's own trace: the service continues it.
    let trace = Uuid::new_v4().simple().to_string();
    let caller = &Uuid::new_v4().simple().to_string()[..16];
    let traceparent = format!("00-{trace}-{caller}-01");
    let placed = http
        .post(format!("{base}/orders"))
        .header("traceparent", &traceparent)
        .json(&serde_json::json!({"id": "o-1", "customer_id": "ada"}))
        .send()
        .await
        .unwrap();
    assert!(placed.status().is_success(), "placing the order: {}", placed.status());

    // Wait for the whole picture: the subscriber's span, the read models' handling spans and
    // the batch span each links to, and the publisher's batch. Batch spans end after the
    // spans they contain, so they are exported later.
    let complete = |all: &[Received]| -> bool {
        let ours: Vec<&Received> = all.iter().filter(|s| s.trace == trace).collect();
        let named = |n: &str| ours.iter().filter(|s| s.name == n).count();
        let handled: Vec<&&Received> = ours.iter().filter(|s| s.name == "factum.projection.event").collect();
        let batch_exported = |h: &Received| {
            h.links
                .iter()
                .any(|(_, id)| all.iter().any(|b| b.id == *id && b.name == "factum.projection.batch"))
        };
        let publish_linked = all
            .iter()
            .any(|s| s.name == "factum.rabbitmq.publish" && s.links.iter().any(|(t, _)| *t == trace));
        named("factum.rabbitmq.receive") >= 1
            && handled.len() >= 2
            && handled.iter().all(|h| batch_exported(h))
            && publish_linked
    };
    let all: Vec<Received> = eventually(Duration::from_secs(60), "the trace's spans to be exported", || {
        let spans = spans.clone();
        async move {
            let spans = spans.lock().unwrap().clone();
            complete(&spans).then_some(spans)
        }
    })
    .await;
    let ours: Vec<&Received> = all.iter().filter(|s| s.trace == trace).collect();
    let by_id: HashMap<&str, &Received> = ours.iter().map(|s| (s.id.as_str(), *s)).collect();
    let one = |name: &str| -> &Received {
        let found: Vec<&&Received> = ours.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span in the trace: {ours:#?}");
        found[0]
    };
    let parent_name = |s: &Received| by_id.get(s.parent.as_str()).map(|p| p.name.clone());

    let request = one("request");
    assert_eq!(request.parent, caller, "the request continues the caller's traceparent");
    assert!(
        request.service.contains("factum-trace-test"),
        "service name from OTEL_SERVICE_NAME: {}",
        request.service
    );
    let command = one("factum.command");
    assert_eq!(command.parent, request.id, "the command is the request's child");
    let append = one("factum.append");
    assert_eq!(append.parent, command.id, "the append is the command's child");

    // The event carries the command's context: its consumers are the command's children.
    let handled: Vec<&&Received> = ours.iter().filter(|s| s.name == "factum.projection.event").collect();
    assert!(handled.len() >= 2, "the order's read models handled the event: {ours:#?}");
    for h in &handled {
        assert_eq!(h.parent, command.id, "a projection's handling continues the event's context");
        assert!(!h.links.is_empty(), "a handling span links to its batch");
    }
    let send = one("factum.rabbitmq.send");
    assert_eq!(send.parent, command.id, "the bus send continues the event's context");
    let receive = one("factum.rabbitmq.receive");
    assert_eq!(
        receive.parent,
        send.id,
        "the subscriber continues the traceparent header: {:?}",
        parent_name(receive)
    );

    // Batches are spans of their own, linked to every event's context.
    let linked = |name: &str| {
        all.iter().any(|s| s.name == name && s.links.iter().any(|(t, id)| *t == trace && *id == command.id))
    };
    assert!(linked("factum.projection.batch"), "a projection batch links to the event's context");
    assert!(linked("factum.rabbitmq.publish"), "the publisher's batch links to the event's context");
    for h in &handled {
        let batch = h.links.iter().find_map(|(_, id)| all.iter().find(|s| s.id == *id));
        assert!(
            batch.is_some_and(|b| b.name == "factum.projection.batch"),
            "a handling span links to a projection batch"
        );
    }
}
