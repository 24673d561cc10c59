//! The checkpoints of this store's recent appends, by the position of their last event:
//! a read-your-writes wait on a position that this process wrote learns the event's
//! checkpoint without a round trip.

use std::sync::Mutex;

use factum::store::{AppendResult, Checkpoint, GlobalPosition};

/// How many appends are remembered (a slot per position modulo this).
const SLOTS: usize = 4096;

/// A fixed ring of `(position, transaction)` slots.
pub(crate) struct Recent(Mutex<Vec<(u64, u64)>>);

impl Default for Recent {
    fn default() -> Self {
        Recent(Mutex::new(vec![(0, 0); SLOTS]))
    }
}

impl Recent {
    /// Remembers where `result`'s last event landed.
    pub(crate) fn remember(&self, result: &AppendResult) {
        let Some(c) = result.checkpoint() else { return };
        let mut slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slots[(c.position.0 % SLOTS as u64) as usize] = (c.position.0, c.transaction);
    }

    /// The checkpoint of the event at `position`, if this store appended it lately.
    pub(crate) fn get(&self, position: GlobalPosition) -> Option<Checkpoint> {
        let slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (at, transaction) = slots[(position.0 % SLOTS as u64) as usize];
        (at == position.0 && at != 0).then_some(Checkpoint { transaction, position })
    }
}
