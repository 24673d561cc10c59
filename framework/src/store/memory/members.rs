//! The instances that run a build's slices, in memory.

use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;

use super::InMemoryStore;
use crate::store::op::{Execute, Heartbeat, Leave};
use crate::store::{Member, StoreError};

#[async_trait]
impl Execute<Heartbeat> for InMemoryStore {
    async fn execute(&self, op: Heartbeat) -> Result<Vec<Member>, StoreError> {
        let now = Instant::now();
        let mut me = op.member().clone();
        me.seen_at = Utc::now();
        let mut state = self.lock();
        let members = state.members.entry(op.consumer().to_owned()).or_default();
        members.insert(me.instance, (me, now));
        members.retain(|_, (_, seen)| now.duration_since(*seen) <= op.ttl() * 100);
        let mut alive: Vec<Member> = members
            .values()
            .filter(|(_, seen)| now.duration_since(*seen) <= op.ttl())
            .map(|(m, _)| m.clone())
            .collect();
        alive.sort_by_key(|m| m.instance);
        Ok(alive)
    }
}

#[async_trait]
impl Execute<Leave> for InMemoryStore {
    async fn execute(&self, op: Leave) -> Result<(), StoreError> {
        if let Some(members) = self.lock().members.get_mut(op.consumer()) {
            members.remove(&op.instance());
        }
        Ok(())
    }
}
