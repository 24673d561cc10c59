//! B2's stage stamps: a `tracing` subscriber that records the trace events the publisher
//! (target `factum_rabbitmq::stages`) and the projection actor
//! (`factum::projection::stages`) emit, and the breakdown of each event's latency from
//! its command's acknowledgment to the subscriber's receipt.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::metadata::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// What a stamp marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The projection actor handled a wake-up (`signal`: the log said it grew).
    Wake,
    /// The projection actor read a page (`count` selected events, in `took_us`).
    Read,
    /// The publisher read the log ahead while it waited for confirms.
    ReadAhead,
    /// The publisher was handed the event in a batch.
    Batch,
    /// The event's message was sent.
    Published,
    /// The broker confirmed the event's message (and all before it in its batch).
    Confirmed,
    Other,
}

/// One trace event, as recorded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp {
    pub(crate) at: Instant,
    pub(crate) stage: Stage,
    pub(crate) position: u64,
    pub(crate) count: u64,
    pub(crate) took_us: u64,
    pub(crate) signal: bool,
}

impl Stamp {
    /// When a read began.
    pub(crate) fn started(&self) -> Instant {
        self.at - std::time::Duration::from_micros(self.took_us)
    }
}

/// The recorder (install it once, as the global subscriber; it records while on).
#[derive(Clone, Default)]
pub(crate) struct Stamps {
    on: Arc<AtomicBool>,
    rows: Arc<Mutex<Vec<Stamp>>>,
}

impl Stamps {
    pub(crate) fn install(&self) {
        tracing::subscriber::set_global_default(self.clone()).expect("no other global subscriber");
    }

    /// Starts recording afresh.
    pub(crate) fn start(&self) {
        self.rows.lock().unwrap().clear();
        self.on.store(true, Ordering::Release);
    }

    /// Stops recording and hands over what was recorded.
    pub(crate) fn stop(&self) -> Vec<Stamp> {
        self.on.store(false, Ordering::Release);
        std::mem::take(&mut *self.rows.lock().unwrap())
    }
}

fn wanted(m: &Metadata<'_>) -> bool {
    !m.is_span() && m.target().ends_with("::stages")
}

impl Subscriber for Stamps {
    fn register_callsite(&self, m: &'static Metadata<'static>) -> Interest {
        if wanted(m) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, m: &Metadata<'_>) -> bool {
        wanted(m) && self.on.load(Ordering::Acquire)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut f = Fields {
            stamp: Stamp {
                at: Instant::now(),
                stage: Stage::Other,
                position: 0,
                count: 0,
                took_us: 0,
                signal: false,
            },
        };
        event.record(&mut f);
        self.rows.lock().unwrap().push(f.stamp);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

struct Fields {
    stamp: Stamp,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "stage" {
            self.stamp.stage = match value {
                "wake" => Stage::Wake,
                "read" => Stage::Read,
                "read_ahead" => Stage::ReadAhead,
                "batch" => Stage::Batch,
                "published" => Stage::Published,
                "confirmed" => Stage::Confirmed,
                _ => Stage::Other,
            };
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "position" => self.stamp.position = value,
            "count" => self.stamp.count = value,
            "took_us" => self.stamp.took_us = value,
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "signal" {
            self.stamp.signal = value;
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn Debug) {}
}
