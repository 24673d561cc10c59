//! The log's queries by filter: see [`EventLog::query`](crate::store::EventLog::query),
//! [`count`](crate::store::EventLog::count) and [`stream`](crate::store::EventLog::stream).

use crate::store::error::InvalidInput;
use crate::store::filter::{TopicPattern, ValidFilter};
use crate::store::{EventFilter, Limits, RecordedEvent};

use super::Operation;

/// A filter that passed [`EventFilter::validate`], owned: the input of [`Query`],
/// [`Count`] and [`StreamEvents`].
#[derive(Debug)]
struct Checked {
    filter: EventFilter,
    topics: Vec<TopicPattern>,
}

impl Checked {
    fn new(filter: EventFilter, limits: &Limits) -> Result<Self, InvalidInput> {
        let topics = filter.validate(limits)?.topics;
        Ok(Checked { filter, topics })
    }

    fn valid(&self) -> ValidFilter<'_> {
        ValidFilter::from_parts(&self.filter, self.topics.clone())
    }
}

/// [`EventLog::query`](crate::store::EventLog::query).
#[derive(Debug)]
pub struct Query(Checked);

impl Query {
    /// Checks the filter against `limits`.
    pub fn new(filter: EventFilter, limits: &Limits) -> Result<Self, InvalidInput> {
        Checked::new(filter, limits).map(Query)
    }

    /// The filter, with its patterns parsed.
    pub fn filter(&self) -> ValidFilter<'_> {
        self.0.valid()
    }
}

impl Operation for Query {
    const NAME: &'static str = "query";
    type Output = Vec<RecordedEvent>;
}

/// [`EventLog::count`](crate::store::EventLog::count).
#[derive(Debug)]
pub struct Count(Checked);

impl Count {
    /// Checks the filter against `limits`.
    pub fn new(filter: EventFilter, limits: &Limits) -> Result<Self, InvalidInput> {
        Checked::new(filter, limits).map(Count)
    }

    /// The filter, with its patterns parsed.
    pub fn filter(&self) -> ValidFilter<'_> {
        self.0.valid()
    }
}

impl Operation for Count {
    const NAME: &'static str = "count";
    type Output = u64;
}

/// The checked input of [`EventLog::stream`](crate::store::EventLog::stream), which
/// yields a stream rather than one result, and so is no [`Operation`].
#[derive(Debug)]
pub struct StreamEvents(Checked);

impl StreamEvents {
    /// Checks the filter against `limits`.
    pub fn new(filter: EventFilter, limits: &Limits) -> Result<Self, InvalidInput> {
        Checked::new(filter, limits).map(StreamEvents)
    }

    /// The filter, with its patterns parsed.
    pub fn filter(&self) -> ValidFilter<'_> {
        self.0.valid()
    }

    /// The filter.
    pub fn into_filter(self) -> EventFilter {
        self.0.filter
    }
}
