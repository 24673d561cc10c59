//! The bridge to OpenTelemetry, through the `tracing-opentelemetry` layer the
//! application installs.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId};
use opentelemetry::Context;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{TraceParent, TraceState};

fn span_context(parent: &TraceParent, state: Option<&TraceState>) -> SpanContext {
    let state = state.and_then(|s| s.as_str().parse().ok()).unwrap_or_default();
    SpanContext::new(
        TraceId::from_bytes(parent.trace_id()),
        SpanId::from_bytes(parent.parent_id()),
        TraceFlags::new(parent.flags()),
        true,
        state,
    )
}

pub(super) fn of(span: &tracing::Span) -> Option<(TraceParent, Option<TraceState>)> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    if !sc.is_valid() {
        return None;
    }
    let parent =
        TraceParent::new(sc.trace_id().to_bytes(), sc.span_id().to_bytes(), sc.trace_flags().to_u8())?;
    let header = sc.trace_state().header();
    let state = if header.is_empty() { None } else { header.parse::<TraceState>().ok() };
    Some((parent, state))
}

pub(super) fn set_parent(span: &tracing::Span, parent: &TraceParent, state: Option<&TraceState>) {
    // Refused only when the span started already or no layer records it: then the span
    // keeps the parent it has.
    let _ = span.set_parent(Context::new().with_remote_span_context(span_context(parent, state)));
}

pub(super) fn link(span: &tracing::Span, parent: &TraceParent, state: Option<&TraceState>) {
    span.add_link(span_context(parent, state));
}
