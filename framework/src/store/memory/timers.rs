//! Durable timers, in memory.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::store::op::{CancelTimers, Execute, RemoveTimer, SetTimer, Timers};
use crate::store::{StoreError, Timer};

#[async_trait]
impl Execute<SetTimer> for InMemoryStore {
    async fn execute(&self, op: SetTimer) -> Result<(), StoreError> {
        let timer = op.timer().clone();
        let mut state = self.lock();
        let key = (timer.stream.clone(), timer.name.clone());
        if state.timers.get(&key).is_none_or(|set| set.version <= timer.version) {
            state.timers.insert(key, timer);
        }
        Ok(())
    }
}

#[async_trait]
impl Execute<CancelTimers> for InMemoryStore {
    async fn execute(&self, op: CancelTimers) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let before = state.timers.len();
        state.timers.retain(|(stream, name), timer| {
            stream != op.stream()
                || op.name().is_some_and(|wanted| wanted != name)
                || op.except() == Some(timer.id)
                || timer.version > op.version()
        });
        Ok((before - state.timers.len()) as u64)
    }
}

#[async_trait]
impl Execute<Timers> for InMemoryStore {
    async fn execute(&self, op: Timers) -> Result<Vec<Timer>, StoreError> {
        let state = self.lock();
        let mut timers: Vec<Timer> = state
            .timers
            .values()
            .filter(|t| t.stream.aggregate_type() == op.category())
            .filter(|t| op.due_before().is_none_or(|due| t.deadline < due))
            .cloned()
            .collect();
        timers.sort_by(|a, b| (a.deadline, &a.stream, &a.name).cmp(&(b.deadline, &b.stream, &b.name)));
        timers.truncate(op.limit());
        Ok(timers)
    }
}

#[async_trait]
impl Execute<RemoveTimer> for InMemoryStore {
    async fn execute(&self, op: RemoveTimer) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let key = state
            .timers
            .iter()
            .find(|(_, t)| &t.stream == op.stream() && t.id == op.id())
            .map(|(k, _)| k.clone());
        Ok(key.is_some_and(|k| state.timers.remove(&k).is_some()))
    }
}
