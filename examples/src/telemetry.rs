//! Logs to standard error, and traces to an OpenTelemetry collector when one is named.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set. The exporter honours the standard variables: `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`http/protobuf`, the default, or `http/json`), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_RESOURCE_ATTRIBUTES` and
//! `OTEL_SERVICE_NAME` (default `factum-example`). Which spans are exported comes from
//! `FACTUM_EXAMPLE_TRACE_FILTER`, in `RUST_LOG`'s syntax (default: factum's spans from
//! `debug`, everything else from `info`); the logs keep `RUST_LOG`.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The spans exported when `FACTUM_EXAMPLE_TRACE_FILTER` is not set.
const DEFAULT_TRACE_FILTER: &str = "info,factum=debug,sqlx=warn";

/// What [`init`] installed; [`Telemetry::shutdown`] sends the spans not exported yet.
#[must_use = "shut it down before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: traces not all exported: {e}");
            }
        }
    }
}

/// Whether an OTLP endpoint is configured.
fn endpoint_set() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// Installs the global subscriber: logs (text, or JSON lines with `json`) filtered by
/// `RUST_LOG`, and the OpenTelemetry layer when an endpoint is configured. A bad exporter
/// configuration is reported and export stays off: the service still runs.
pub fn init(json: bool) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed()
    };
    let (provider, problem) = match endpoint_set().then(exporter).transpose() {
        Ok(provider) => (provider, None),
        Err(e) => (None, Some(e)),
    };
    let traces = provider.as_ref().map(|p| {
        let filter = EnvFilter::try_from_env("FACTUM_EXAMPLE_TRACE_FILTER")
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_TRACE_FILTER));
        tracing_opentelemetry::layer().with_tracer(p.tracer("factum-example")).with_filter(filter)
    });
    tracing_subscriber::registry().with(logs).with(traces).init();
    if let Some(e) = problem {
        tracing::error!(error = %e, "cannot export traces; export is off");
    }
    Telemetry { provider }
}

fn exporter() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    // The builder reads the endpoint, protocol, headers and timeout from the standard
    // variables (a signal's own variable first).
    let exporter = SpanExporter::builder().with_http().build()?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("factum-example");
    }
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
}
