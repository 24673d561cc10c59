//! Retention's operations: see [`RetentionStore`](crate::store::RetentionStore).

use chrono::{DateTime, Utc};

use crate::store::error::InvalidInput;
use crate::store::{validate, RetentionGuard};

use super::Operation;

/// [`RetentionStore::delete_before`](crate::store::RetentionStore::delete_before).
#[derive(Debug)]
pub struct DeleteBefore {
    cutoff: DateTime<Utc>,
}

impl DeleteBefore {
    /// Events recorded before `cutoff`.
    pub fn new(cutoff: DateTime<Utc>) -> Self {
        DeleteBefore { cutoff }
    }

    /// The cutoff (exclusive).
    pub fn cutoff(&self) -> DateTime<Utc> {
        self.cutoff
    }
}

impl Operation for DeleteBefore {
    const NAME: &'static str = "delete_before";
    type Output = u64;
}

/// [`RetentionStore::delete_before_guarded`](crate::store::RetentionStore::delete_before_guarded).
#[derive(Debug)]
pub struct DeleteBeforeGuarded {
    cutoff: DateTime<Utc>,
    guard: RetentionGuard,
}

impl DeleteBeforeGuarded {
    /// Checks the guard's projection names.
    pub fn new(cutoff: DateTime<Utc>, guard: RetentionGuard) -> Result<Self, InvalidInput> {
        validate::retention_guard(&guard)?;
        Ok(DeleteBeforeGuarded { cutoff, guard })
    }

    /// The cutoff (exclusive).
    pub fn cutoff(&self) -> DateTime<Utc> {
        self.cutoff
    }

    /// What must be kept.
    pub fn guard(&self) -> &RetentionGuard {
        &self.guard
    }
}

impl Operation for DeleteBeforeGuarded {
    const NAME: &'static str = "delete_before_guarded";
    type Output = u64;
}

/// [`RetentionStore::storage_bytes`](crate::store::RetentionStore::storage_bytes).
#[derive(Debug, Default)]
pub struct StorageBytes;

impl Operation for StorageBytes {
    const NAME: &'static str = "storage_bytes";
    type Output = Option<u64>;
}
