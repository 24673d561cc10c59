//! The log's operations for reading one's writes: where an event lies in log order, and
//! whether a reader has yet to read up to a position. See
//! [`EventLog::unread`](crate::store::EventLog::unread) and
//! [`EventLog::checkpoint_of`](crate::store::EventLog::checkpoint_of).

use crate::store::error::InvalidInput;
use crate::store::{validate, Checkpoint, GlobalPosition};

use super::Operation;

/// [`EventLog::unread`](crate::store::EventLog::unread).
#[derive(Debug)]
pub struct Unread {
    after: Checkpoint,
    up_to: GlobalPosition,
    category: Option<String>,
}

impl Unread {
    /// Checks the checkpoint and the category's name, if there is one.
    pub fn new(
        after: Checkpoint,
        up_to: GlobalPosition,
        category: Option<String>,
    ) -> Result<Self, InvalidInput> {
        validate::checkpoint(after)?;
        category.iter().try_for_each(|c| validate::category(c))?;
        if up_to.0 > i64::MAX as u64 {
            return Err(InvalidInput::OutOfRange {
                field: "position",
                reason: "must fit in a signed 64-bit integer",
            });
        }
        Ok(Unread { after, up_to, category })
    }

    /// Where the reader stands.
    pub fn after(&self) -> Checkpoint {
        self.after
    }

    /// The highest position that counts.
    pub fn up_to(&self) -> GlobalPosition {
        self.up_to
    }

    /// The category the reader reads; the whole log when `None`.
    pub fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }
}

impl Operation for Unread {
    const NAME: &'static str = "unread";
    type Output = bool;
}

/// [`EventLog::checkpoint_of`](crate::store::EventLog::checkpoint_of).
#[derive(Debug)]
pub struct CheckpointOf {
    position: GlobalPosition,
}

impl CheckpointOf {
    /// Checks that the position fits the store.
    pub fn new(position: GlobalPosition) -> Result<Self, InvalidInput> {
        if position.0 > i64::MAX as u64 {
            return Err(InvalidInput::OutOfRange {
                field: "position",
                reason: "must fit in a signed 64-bit integer",
            });
        }
        Ok(CheckpointOf { position })
    }

    /// The position.
    pub fn position(&self) -> GlobalPosition {
        self.position
    }
}

impl Operation for CheckpointOf {
    const NAME: &'static str = "checkpoint_of";
    type Output = Option<Checkpoint>;
}
