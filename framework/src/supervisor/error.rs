//! Why a supervisor operation failed.

use crate::projection::{ProjectionError, SinkError};
use crate::store::{InvalidInput, StoreError};

/// Why a supervisor operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// No projection has this name.
    #[error("no projection named {0:?}")]
    UnknownProjection(String),
    /// Two projections have the same name.
    #[error("projection {0:?} is defined twice")]
    DuplicateProjection(String),
    /// A projection's definition was refused.
    #[error("projection {name:?}: {source}")]
    InvalidProjection {
        /// The projection.
        name: String,
        /// What is wrong.
        #[source]
        source: InvalidInput,
    },
    /// Another instance holds the projection's lease; this one stands by.
    #[error("projection {0:?} runs in another instance; this one stands by")]
    NotOwner(String),
    /// The projection's sink (its handler, or its checkpoint's fence) failed during the
    /// operation.
    #[error("projection sink failed: {0}")]
    Handler(#[source] SinkError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The child that does this is being restarted after a failure; try again.
    #[error("{0} is restarting after a failure; try again")]
    Unavailable(String),
    /// The supervisor is shut down.
    #[error("the supervisor is not running")]
    Stopped,
    /// A child did not start.
    #[error("could not start {what}: {reason}")]
    Spawn {
        /// The child.
        what: String,
        /// Why.
        reason: String,
    },
}

impl From<ProjectionError> for SupervisorError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::NotOwner(name) => SupervisorError::NotOwner(name),
            ProjectionError::Sink(e) => SupervisorError::Handler(e),
            ProjectionError::Store(e) => SupervisorError::Store(e),
        }
    }
}
