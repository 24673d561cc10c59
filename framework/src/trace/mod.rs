//! W3C trace context carried with events, so that one trace runs from the request that
//! sent a command to every projection and bus subscriber that handled its events.
//!
//! Each appended event can hold the `traceparent` and `tracestate` of the span that
//! decided it ([`Metadata::traceparent`], [`Metadata::tracestate`]). With the crate's
//! `opentelemetry` feature on, and a [`tracing-opentelemetry`] layer installed by the
//! application, factum fills them in and continues them:
//!
//! | span | relation to the event's context |
//! | --- | --- |
//! | `factum.command` | child of the span that sent the command (the events' context) |
//! | `factum.append` | child of `factum.command` |
//! | `factum.projection.batch` | links to every event of the batch |
//! | `factum.projection.event` | child of its event's context (one per event handled by the framework's loop) |
//! | `factum.rabbitmq.publish` | links to every event of the batch |
//! | `factum.rabbitmq.send` | child of its event's context; its own context goes out as the AMQP `traceparent` header |
//! | `factum.rabbitmq.receive` | child of the `traceparent` header it came with |
//!
//! Without the feature, nothing is recorded and every function here is a no-op that
//! costs nothing; a `traceparent` an application sets by hand is still stored and still
//! travels on the bus. With the feature on but no OpenTelemetry layer installed, the
//! cost is one look-up of the current span per command.
//!
//! The feature builds against `opentelemetry` 0.33 and `tracing-opentelemetry` 0.34:
//! the application's layer must come from the same versions.
//!
//! [`tracing-opentelemetry`]: https://docs.rs/tracing-opentelemetry
//! [`Metadata::traceparent`]: crate::Metadata::traceparent
//! [`Metadata::tracestate`]: crate::Metadata::tracestate

mod context;
#[cfg(feature = "opentelemetry")]
mod otel;

pub use context::{InvalidTraceContext, TraceParent, TraceState};

use crate::store::{Metadata, NewEvent, RecordedEvent};

/// The trace context of `span`, when an OpenTelemetry layer records it (always `None`
/// without the `opentelemetry` feature).
pub fn of(span: &tracing::Span) -> Option<(TraceParent, Option<TraceState>)> {
    #[cfg(feature = "opentelemetry")]
    {
        otel::of(span)
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        let _ = span;
        None
    }
}

/// The span of one event's handling inside a batch: `factum.projection.event`, a child of
/// the event's trace context and linked to the current span (the batch's). `Span::none()`
/// for an event that carries no trace context, so that untraced events cost nothing.
///
/// The framework's own loops use it; a projection that handles a batch in one go
/// (overriding `handle_batch`) can wrap each event's work in it too.
pub fn handling_span(event: &RecordedEvent) -> tracing::Span {
    if event.metadata.traceparent.is_none() {
        return tracing::Span::none();
    }
    let batch = of(&tracing::Span::current());
    let span = tracing::info_span!(
        "factum.projection.event",
        stream = %event.stream,
        event_type = %event.event_type,
        position = event.position.0,
    );
    continue_from(&span, &event.metadata);
    if let Some((parent, state)) = batch {
        link(&span, &parent, state.as_ref());
    }
    span
}

/// Gives the current span's trace context to each of `events` that has none.
pub(crate) fn stamp_events<'a>(events: impl Iterator<Item = &'a mut NewEvent>) {
    #[cfg(feature = "opentelemetry")]
    if let Some((parent, state)) = of(&tracing::Span::current()) {
        for e in events.filter(|e| e.metadata.traceparent.is_none()) {
            e.metadata.traceparent = Some(parent);
            e.metadata.tracestate = state.clone();
        }
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = events;
}

/// Makes `span` a child of the trace context `metadata` holds, continuing its trace.
/// Call it before the span is first entered; it does nothing when `metadata` holds no
/// context, when the span is disabled, or without the `opentelemetry` feature.
pub fn continue_from(span: &tracing::Span, metadata: &Metadata) {
    continue_trace(span, metadata.traceparent.as_ref(), metadata.tracestate.as_ref());
}

/// Makes `span` a child of `parent` (see [`continue_from`]).
pub fn continue_trace(span: &tracing::Span, parent: Option<&TraceParent>, state: Option<&TraceState>) {
    #[cfg(feature = "opentelemetry")]
    if let Some(parent) = parent {
        if !span.is_disabled() {
            otel::set_parent(span, parent, state);
        }
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, parent, state);
}

/// Links `span` to `parent` (a no-op without the `opentelemetry` feature).
pub fn link(span: &tracing::Span, parent: &TraceParent, state: Option<&TraceState>) {
    #[cfg(feature = "opentelemetry")]
    if !span.is_disabled() {
        otel::link(span, parent, state);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, parent, state);
}

/// Links `span` to the trace context of each of `metadata`, once per distinct context,
/// up to 128 links (OpenTelemetry's default limit per span).
pub fn link_all<'a>(span: &tracing::Span, metadata: impl IntoIterator<Item = &'a Metadata>) {
    #[cfg(feature = "opentelemetry")]
    if !span.is_disabled() {
        let mut seen: Vec<&TraceParent> = Vec::new();
        for m in metadata {
            let Some(parent) = m.traceparent.as_ref() else { continue };
            if seen.len() >= MAX_LINKS {
                break;
            }
            if !seen.contains(&parent) {
                seen.push(parent);
                link(span, parent, m.tracestate.as_ref());
            }
        }
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        let _ = span;
        let _ = metadata.into_iter();
    }
}

/// The most links [`link_all`] adds to one span.
#[cfg(feature = "opentelemetry")]
const MAX_LINKS: usize = 128;
