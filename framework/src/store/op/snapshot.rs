//! The snapshots' operations: see [`SnapshotStore`](crate::store::SnapshotStore).

use crate::store::error::InvalidInput;
use crate::store::{validate, Snapshot, StreamId};

use super::Operation;

/// [`SnapshotStore::save_snapshot`](crate::store::SnapshotStore::save_snapshot).
#[derive(Debug)]
pub struct SaveSnapshot {
    snapshot: Snapshot,
}

impl SaveSnapshot {
    /// Checks the snapshot: a version of at least 1, a state the store can hold.
    pub fn new(snapshot: Snapshot) -> Result<Self, InvalidInput> {
        validate::snapshot(&snapshot)?;
        Ok(SaveSnapshot { snapshot })
    }

    /// The snapshot saved.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The snapshot.
    pub fn into_snapshot(self) -> Snapshot {
        self.snapshot
    }
}

impl Operation for SaveSnapshot {
    const NAME: &'static str = "save_snapshot";
    type Output = ();
}

/// [`SnapshotStore::load_snapshot`](crate::store::SnapshotStore::load_snapshot).
#[derive(Debug)]
pub struct LoadSnapshot {
    stream: StreamId,
}

impl LoadSnapshot {
    /// The snapshot of `stream`.
    pub fn new(stream: StreamId) -> Self {
        LoadSnapshot { stream }
    }

    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }
}

impl Operation for LoadSnapshot {
    const NAME: &'static str = "load_snapshot";
    type Output = Option<Snapshot>;
}

/// [`SnapshotStore::delete_snapshot`](crate::store::SnapshotStore::delete_snapshot).
#[derive(Debug)]
pub struct DeleteSnapshot {
    stream: StreamId,
}

impl DeleteSnapshot {
    /// The snapshot of `stream`.
    pub fn new(stream: StreamId) -> Self {
        DeleteSnapshot { stream }
    }

    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }
}

impl Operation for DeleteSnapshot {
    const NAME: &'static str = "delete_snapshot";
    type Output = bool;
}
