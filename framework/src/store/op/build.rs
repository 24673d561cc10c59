//! The operations of the projection builds' registry: see
//! [`BuildStore`](crate::store::BuildStore) for each one's contract.

use crate::store::builds::{BuildId, BuildState, ProjectionBuild, Retired, Switch};
use crate::store::error::InvalidInput;
use crate::store::validate;

use super::Operation;

/// Checks a build's names: the projection's name, and the version and build number
/// from 1, so that every consumer name it makes is a valid one too.
fn check(id: &BuildId) -> Result<(), InvalidInput> {
    validate::consumer_name(&id.projection)?;
    if id.projection.contains(['@', '#']) {
        return Err(InvalidInput::OutOfRange {
            field: "projection name",
            reason: "must not contain '@' or '#', which separate a build's version and slice in its consumer names",
        });
    }
    // Room for the longest version, build and slice suffix ("@v4294967295.4294967295#1023/1024").
    validate::consumer_name(&format!("{}@v{}.{}#1023/1024", id.projection, u32::MAX, u32::MAX))?;
    if id.version == 0 || id.build == 0 || id.version > i32::MAX as u32 || id.build > i32::MAX as u32 {
        return Err(InvalidInput::OutOfRange {
            field: "projection version",
            reason: "the version and the build must be between 1 and 2^31 - 1",
        });
    }
    Ok(())
}

/// [`BuildStore::register_build`](crate::store::BuildStore::register_build).
#[derive(Debug)]
pub struct RegisterBuild {
    projection: String,
    version: u32,
    fresh: bool,
    slices: u16,
}

impl RegisterBuild {
    /// Checks the name and the version.
    pub fn new(projection: impl Into<String>, version: u32, fresh: bool) -> Result<Self, InvalidInput> {
        let projection = projection.into();
        check(&BuildId::new(projection.clone(), version, 1))?;
        Ok(RegisterBuild { projection, version, fresh, slices: 1 })
    }

    /// The number of slices the build runs in (default 1), checked.
    pub fn slices(mut self, slices: u16) -> Result<Self, InvalidInput> {
        self.slices = validate::slice_count(slices)?;
        Ok(self)
    }

    /// The number of slices the build runs in.
    pub fn slice_count(&self) -> u16 {
        self.slices
    }

    /// The refusal when a build of the version not retired has `found` slices, not this
    /// operation's number: two layouts never mix in one version.
    pub fn check_layout(&self, builds: &[ProjectionBuild]) -> Result<(), InvalidInput> {
        let mixed = builds.iter().any(|b| {
            b.id.version == self.version && b.state != BuildState::Retired && b.slices != self.slices
        });
        if mixed {
            return Err(InvalidInput::OutOfRange {
                field: "slices",
                reason: "a build of this version runs in another number of slices: declare a new version to change it",
            });
        }
        Ok(())
    }

    /// The projection's name.
    pub fn projection(&self) -> &str {
        &self.projection
    }

    /// The version its code declares.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether a new build is wanted even if one of the version exists (a rebuild).
    pub fn fresh(&self) -> bool {
        self.fresh
    }
}

impl Operation for RegisterBuild {
    const NAME: &'static str = "register_build";
    type Output = ProjectionBuild;
}

/// [`BuildStore::builds`](crate::store::BuildStore::builds).
#[derive(Debug)]
pub struct Builds {
    projection: String,
}

impl Builds {
    /// Checks the name.
    pub fn new(projection: impl Into<String>) -> Result<Self, InvalidInput> {
        let projection = projection.into();
        validate::consumer_name(&projection)?;
        Ok(Builds { projection })
    }

    /// The projection's name.
    pub fn projection(&self) -> &str {
        &self.projection
    }
}

impl Operation for Builds {
    const NAME: &'static str = "builds";
    type Output = Vec<ProjectionBuild>;
}

macro_rules! by_build {
    ($(#[$doc:meta])* $op:ident, $name:literal, $output:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $op {
            build: BuildId,
        }

        impl $op {
            /// Checks the build's names.
            pub fn new(build: BuildId) -> Result<Self, InvalidInput> {
                check(&build)?;
                Ok($op { build })
            }

            /// The build.
            pub fn build(&self) -> &BuildId {
                &self.build
            }
        }

        impl Operation for $op {
            const NAME: &'static str = $name;
            type Output = $output;
        }
    };
}

by_build!(
    /// [`BuildStore::cut_over`](crate::store::BuildStore::cut_over).
    CutOver, "cut_over", Switch
);
by_build!(
    /// [`BuildStore::retire_build`](crate::store::BuildStore::retire_build).
    RetireBuild, "retire_build", Retired
);
by_build!(
    /// [`BuildStore::reopen_build`](crate::store::BuildStore::reopen_build).
    ReopenBuild, "reopen_build", bool
);
