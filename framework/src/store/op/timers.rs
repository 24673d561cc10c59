//! The operations on durable timers: see [`TimerStore`](crate::store::TimerStore).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::error::InvalidInput;
use crate::store::{validate, StreamId, Timer, Version};

use super::Operation;

/// The most timers one listing returns.
const MAX_TIMERS_LISTED: usize = 10_000;

/// [`TimerStore::set_timer`](crate::store::TimerStore::set_timer).
#[derive(Debug)]
pub struct SetTimer {
    timer: Timer,
}

impl SetTimer {
    /// Checks the timer's name (not empty, not too long, no control characters).
    pub fn new(timer: Timer) -> Result<Self, InvalidInput> {
        timer_name(&timer.name)?;
        Ok(SetTimer { timer })
    }

    /// The timer.
    pub fn timer(&self) -> &Timer {
        &self.timer
    }
}

impl Operation for SetTimer {
    const NAME: &'static str = "set_timer";
    type Output = ();
}

/// [`TimerStore::cancel_timers`](crate::store::TimerStore::cancel_timers).
#[derive(Debug)]
pub struct CancelTimers {
    stream: StreamId,
    name: Option<String>,
    except: Option<Uuid>,
    version: Version,
}

impl CancelTimers {
    /// Checks the name, if one is given.
    pub fn new(
        stream: StreamId,
        name: Option<String>,
        except: Option<Uuid>,
        version: Version,
    ) -> Result<Self, InvalidInput> {
        if let Some(name) = &name {
            timer_name(name)?;
        }
        Ok(CancelTimers { stream, name, except, version })
    }

    /// Only timers set at this version of the stream or before.
    pub fn version(&self) -> Version {
        self.version
    }

    /// A timer kept whatever its name: the one firing, removed once its step is done.
    pub fn except(&self) -> Option<Uuid> {
        self.except
    }

    /// The stream whose timers go.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// Only the timer of this name (else all of the stream's).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl Operation for CancelTimers {
    const NAME: &'static str = "cancel_timers";
    type Output = u64;
}

/// [`TimerStore::timers`](crate::store::TimerStore::timers).
#[derive(Debug)]
pub struct Timers {
    category: String,
    due_before: Option<DateTime<Utc>>,
    limit: usize,
}

impl Timers {
    /// Checks the category and the limit (1 to 10,000).
    pub fn new(
        category: impl Into<String>,
        due_before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Self, InvalidInput> {
        let category = category.into();
        validate::category(&category)?;
        if !(1..=MAX_TIMERS_LISTED).contains(&limit) {
            return Err(InvalidInput::OutOfRange { field: "limit", reason: "must be from 1 to 10,000" });
        }
        Ok(Timers { category, due_before, limit })
    }

    /// The category of the streams whose timers are listed.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// Only timers due before this time.
    pub fn due_before(&self) -> Option<DateTime<Utc>> {
        self.due_before
    }

    /// At most this many, earliest deadline first.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Operation for Timers {
    const NAME: &'static str = "timers";
    type Output = Vec<Timer>;
}

/// [`TimerStore::remove_timer`](crate::store::TimerStore::remove_timer).
#[derive(Debug)]
pub struct RemoveTimer {
    stream: StreamId,
    id: Uuid,
}

impl RemoveTimer {
    /// Any stream and id.
    pub fn new(stream: StreamId, id: Uuid) -> Self {
        RemoveTimer { stream, id }
    }

    /// The timer's stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The id the timer was set with.
    pub fn id(&self) -> Uuid {
        self.id
    }
}

impl Operation for RemoveTimer {
    const NAME: &'static str = "remove_timer";
    type Output = bool;
}

fn timer_name(name: &str) -> Result<(), InvalidInput> {
    validate::name("timer name", name)
}
