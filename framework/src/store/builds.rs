//! The registry of projection builds: each version of a projection, and each rebuild of
//! a version, is a build with its own checkpoint, lease and fence; one build per
//! projection is live, the one readers read.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::op::{Builds, CutOver, Execute, RegisterBuild, ReopenBuild, RetireBuild};
use super::{Checkpoint, Slice, StoreError};

/// Where a build is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BuildState {
    /// Replaying the log beside the live build; readers do not see it yet.
    Building,
    /// The build readers read. A projection has at most one.
    Live,
    /// Was live; a newer build took over. It stays, frozen where it was (it takes no
    /// more batches), until retired, and can be opened again and made live again.
    Replaced,
    /// Given up: its read model is gone and nothing writes to it again.
    Retired,
}

impl BuildState {
    /// The state's name, as the store records it.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Building => "building",
            BuildState::Live => "live",
            BuildState::Replaced => "replaced",
            BuildState::Retired => "retired",
        }
    }

    /// The state a name stands for (see [`as_str`](Self::as_str)).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "building" => BuildState::Building,
            "live" => BuildState::Live,
            "replaced" => BuildState::Replaced,
            "retired" => BuildState::Retired,
            _ => return None,
        })
    }
}

impl fmt::Display for BuildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One build of a projection: its declared version, and which build of that version
/// (a rebuild makes a new one).
///
/// A build's checkpoint, lease, batch fence, recorded failures and operators' requests
/// hang on its [`consumer`](Self::consumer) name:
///
/// | build | consumer name |
/// | --- | --- |
/// | version 1, build 1 | `order_summary` (the projection's own name, as before versions) |
/// | version 2, build 1 | `order_summary@v2` |
/// | version 2, build 3 | `order_summary@v2.3` |
///
/// ```
/// use factum::store::BuildId;
///
/// assert_eq!(BuildId::new("order_summary", 1, 1).consumer(), "order_summary");
/// assert_eq!(BuildId::new("order_summary", 2, 1).consumer(), "order_summary@v2");
/// assert_eq!(BuildId::new("order_summary", 2, 3).consumer(), "order_summary@v2.3");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BuildId {
    /// The projection's name.
    pub projection: String,
    /// The version its code declares ([`Projection::version`](crate::Projection::version)).
    pub version: u32,
    /// Which build of that version, from 1.
    pub build: u32,
}

impl BuildId {
    /// Names a build.
    pub fn new(projection: impl Into<String>, version: u32, build: u32) -> Self {
        BuildId { projection: projection.into(), version, build }
    }

    /// The name the build's checkpoint, lease and fence hang on.
    pub fn consumer(&self) -> String {
        match (self.version, self.build) {
            (1, 1) => self.projection.clone(),
            (v, 1) => format!("{}@v{v}", self.projection),
            (v, b) => format!("{}@v{v}.{b}", self.projection),
        }
    }
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} version {} build {}", self.projection, self.version, self.build)
    }
}

/// A build as the registry records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProjectionBuild {
    /// Which build.
    pub id: BuildId,
    /// Its state.
    pub state: BuildState,
    /// Where the backend keeps its read model, if it keeps each build apart (PostgreSQL:
    /// the schema of its tables).
    pub location: Option<String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last became live.
    pub live_at: Option<DateTime<Utc>>,
    /// When it was retired.
    pub retired_at: Option<DateTime<Utc>>,
    /// How many slices it runs in ([`Slice`]); 1 for a projection not in slices.
    pub slices: u16,
}

impl ProjectionBuild {
    /// A build just registered, for backends.
    pub fn new(id: BuildId, state: BuildState, location: Option<String>) -> Self {
        let now = Utc::now();
        ProjectionBuild {
            id,
            state,
            location,
            created_at: now,
            live_at: (state == BuildState::Live).then_some(now),
            retired_at: None,
            slices: 1,
        }
    }

    /// The consumer names its checkpoints, leases and fences hang on: the build's own
    /// ([`BuildId::consumer`]) when it has one slice, else one per slice
    /// ([`Slice::consumer`]).
    pub fn consumers(&self) -> Vec<String> {
        let build = self.id.consumer();
        match Slice::all(self.slices) {
            Ok(slices) => slices.map(|s| s.consumer(&build)).collect(),
            Err(_) => vec![build],
        }
    }
}

/// What a [cut-over](BuildStore::cut_over) came to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Switch {
    /// The build is live now (or already was); `replaced` is the build it took over from.
    Switched {
        /// The build that was live before, now [`BuildState::Replaced`].
        replaced: Option<BuildId>,
    },
    /// Nothing changed: the build has not yet processed everything the live one has.
    Behind {
        /// The live build's checkpoint.
        live: Checkpoint,
        /// The build's own.
        build: Checkpoint,
    },
    /// Nothing changed: no such build, or it was retired.
    Unknown,
}

/// What [retiring](BuildStore::retire_build) a build came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retired {
    /// Retired now, its read model dropped (or it already was).
    Retired,
    /// Refused: the build is live; make another one live first.
    Live,
    /// No such build.
    Unknown,
}

/// The registry of projection builds (see [`BuildId`]).
#[async_trait]
pub trait BuildStore:
    Execute<RegisterBuild> + Execute<Builds> + Execute<CutOver> + Execute<RetireBuild> + Execute<ReopenBuild>
{
    /// The build of `projection`'s `version` to run: the live build if it is of that
    /// version, else the newest build of that version not retired, or a new one when
    /// there is none or `fresh` is asked for (a rebuild). Every build of a version not
    /// retired has the same number of `slices`: asking for another number is
    /// [`InvalidInput::OutOfRange`](crate::store::InvalidInput::OutOfRange), and
    /// registers nothing.
    /// A new build is live at once if the projection has no live build (its first),
    /// else building. A backend that keeps builds apart chooses its location.
    async fn register_build(
        &self,
        projection: &str,
        version: u32,
        slices: u16,
        fresh: bool,
    ) -> Result<ProjectionBuild, StoreError> {
        self.execute(RegisterBuild::new(projection, version, fresh)?.slices(slices)?).await
    }

    /// Every build of `projection`, by version and build number.
    async fn builds(&self, projection: &str) -> Result<Vec<ProjectionBuild>, StoreError> {
        self.execute(Builds::new(projection)?).await
    }

    /// Makes `build` the live build of its projection, in one step that readers see
    /// whole: only if it has processed at least everything the live build has, checked
    /// inside the live build's batch fence, so that no reader ever sees a row older than
    /// one it could see before. For builds in slices: the new build's slowest slice must
    /// have reached the live build's fastest one. The build that was live becomes
    /// [`Replaced`](BuildState::Replaced).
    async fn cut_over(&self, build: &BuildId) -> Result<Switch, StoreError> {
        self.execute(CutOver::new(build.clone())?).await
    }

    /// Opens a [replaced](BuildState::Replaced) build again, as
    /// [building](BuildState::Building), so that it takes batches again and can be
    /// brought up to date and switched back to; `false` if it was not replaced.
    async fn reopen_build(&self, build: &BuildId) -> Result<bool, StoreError> {
        self.execute(ReopenBuild::new(build.clone())?).await
    }

    /// Retires a build that is not live: it is marked retired and its read model dropped
    /// (PostgreSQL: its schema), inside its batch fence. The caller makes sure that no
    /// one follows it any more (by holding its lease).
    async fn retire_build(&self, build: &BuildId) -> Result<Retired, StoreError> {
        self.execute(RetireBuild::new(build.clone())?).await
    }
}

impl<T> BuildStore for T where
    T: Execute<RegisterBuild>
        + Execute<Builds>
        + Execute<CutOver>
        + Execute<RetireBuild>
        + Execute<ReopenBuild>
{
}

/// Takes the lease of every consumer of `build` (each slice's): all of them, held until
/// dropped, or `None` (and none) when an instance follows any of them.
pub async fn lease_build(
    store: &(impl super::ConsumerStore + ?Sized),
    build: &ProjectionBuild,
) -> Result<Option<Vec<super::Lease>>, StoreError> {
    let mut leases = Vec::new();
    for consumer in build.consumers() {
        match store.try_lease(&consumer).await? {
            Some(lease) => leases.push(lease),
            None => return Ok(None),
        }
    }
    Ok(Some(leases))
}

/// Among `builds` (one projection's), the one an instance running `version` follows:
/// the live build if it is of that version, else the newest of that version not retired.
pub fn build_to_run(builds: &[ProjectionBuild], version: u32) -> Option<&ProjectionBuild> {
    let mut of_version = builds.iter().filter(|b| b.id.version == version);
    of_version
        .clone()
        .find(|b| b.state == BuildState::Live)
        .or_else(|| of_version.rfind(|b| b.state != BuildState::Retired))
}
