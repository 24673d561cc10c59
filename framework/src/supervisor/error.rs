//! Why a supervisor operation failed.

use crate::projection::{ProjectionError, SinkError};
use crate::store::{BuildId, Checkpoint, InvalidInput, StoreError};

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
    /// No such build of the projection, or it was retired.
    #[error("no build {0} to use")]
    UnknownBuild(BuildId),
    /// The build is in use: another instance follows it (it holds its lease), or it is
    /// the live build, which cannot be retired.
    #[error("build {0} is in use (live, or followed by an instance)")]
    BuildInUse(BuildId),
    /// The build did not catch up with the live one within the time allowed, so readers
    /// were not switched to it; it stays where it is and can be switched later.
    #[error(
        "build {build} did not catch up with the live build within {waited:?} (at {at}, live at {live})"
    )]
    NotCaughtUp {
        /// The build.
        build: BuildId,
        /// Its checkpoint.
        at: Checkpoint,
        /// The live build's.
        live: Checkpoint,
        /// How long it tried.
        waited: std::time::Duration,
    },
    /// The projection runs in slices: rebuild it by declaring a new version, which is
    /// built beside the live one in all its slices.
    #[error("projection {0:?} runs in slices: rebuild it by declaring a new version")]
    InSlices(String),
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
            ProjectionError::InSlices => SupervisorError::InSlices(String::new()),
        }
    }
}
