//! Durable timers: deadlines kept in the store for the streams that set them (a process
//! manager's instances), served by whoever holds the timers' lease.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::op::{CancelTimers, Execute, RemoveTimer, SetTimer, Timers};
use super::{StoreError, StreamId, Version};

/// A deadline kept in the store for a stream: at most one per stream and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// The stream that set it (a process instance's).
    pub stream: StreamId,
    /// Its name, unique within the stream.
    pub name: String,
    /// The id it was set with: setting the name again gives it a new one, so that
    /// removing a timer once it has fired never removes a later one of the same name.
    pub id: Uuid,
    /// When it is due.
    pub deadline: DateTime<Utc>,
    /// The stream's version that set it: a write of the timer from an older version never
    /// replaces it, so two writers that race leave the newer one's.
    pub version: Version,
}

/// Durable timers, kept beside the log.
#[async_trait]
pub trait TimerStore:
    Execute<SetTimer> + Execute<CancelTimers> + Execute<Timers> + Execute<RemoveTimer>
{
    /// Sets a timer, replacing the stream's timer of the same name (and id) unless that one
    /// was set at a newer version.
    async fn set_timer(&self, timer: &Timer) -> Result<(), StoreError> {
        self.execute(SetTimer::new(timer.clone())?).await
    }

    /// Cancels the stream's timer called `name`, or all its timers, that were set at
    /// `version` or before, except the one with the id `except` (a timer firing, whose row
    /// goes only once its step is done); returns how many went.
    async fn cancel_timers(
        &self,
        stream: &StreamId,
        name: Option<&str>,
        except: Option<Uuid>,
        version: Version,
    ) -> Result<u64, StoreError> {
        self.execute(CancelTimers::new(stream.clone(), name.map(str::to_owned), except, version)?).await
    }

    /// The timers of a category's streams, earliest deadline first, only those due before
    /// `due_before` if it is given, at most `limit` (1 to 10,000).
    async fn timers(
        &self,
        category: &str,
        due_before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError> {
        self.execute(Timers::new(category, due_before, limit)?).await
    }

    /// Removes the stream's timer if it still has the id `id` (it fired); `true` if it did.
    async fn remove_timer(&self, stream: &StreamId, id: Uuid) -> Result<bool, StoreError> {
        self.execute(RemoveTimer::new(stream.clone(), id)).await
    }
}

impl<T> TimerStore for T where
    T: Execute<SetTimer> + Execute<CancelTimers> + Execute<Timers> + Execute<RemoveTimer>
{
}
