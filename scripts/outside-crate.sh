#!/usr/bin/env bash
# scripts/outside-crate.sh — a new user's crate, outside the workspace, built on the
# crates as `cargo package` makes them (what crates.io would serve), not on paths.
#
#  1. `cargo package --no-verify` the six publishable crates (factum, factum-derive,
#     factum-postgres, factum-rabbitmq, factum-cli, factum-console) into $CARGO_TARGET_DIR/package.
#  2. Unpack factum, factum-derive and factum-postgres from their .crate files into a
#     temporary directory.
#  3. Create a crate `shop` in that directory (its own workspace, outside this one) that
#     depends on them by version, `factum = "0.1.0"`, with `[patch.crates-io]` pointing
#     at the unpacked packages: their manifests are the normalized ones of the .crate
#     files, whose dependencies on each other are by version only.
#  4. Build it and run its programs:
#     - src/main.rs: an aggregate with the derive macros, commands against the in-memory
#       store, checked with assertions; it prints what it found;
#     - src/bin/readme.rs: the README's dozen-line aggregate ("Your own aggregate in a
#       dozen lines"), taken from README.md as written;
#     - src/bin/guide_postgres.rs: the PostgreSQL program of docs/getting-started.md
#       ("On PostgreSQL", with the cart of "Your first aggregate"), taken from the guide.
#       It runs only when FACTUM_OUTSIDE_DATABASE_URL names a database that the program
#       may create tables in and that has no cart-7 yet (scripts/test.sh creates one);
#       otherwise it is built, and its run is reported SKIPPED;
#     - src/bin/factum_readme.rs and src/bin/postgres_readme.rs: the programs of the
#       READMEs that the factum and factum-postgres packages ship (the second runs on
#       the same database as the guide's, or is SKIPPED with it).
#
# Exits non-zero when any step fails. The dependencies are compiled once into
# ${FACTUM_OUTSIDE_TARGET_DIR:-$CARGO_TARGET_DIR/outside-crate} and reused on later runs.
# The crate starts from the workspace's Cargo.lock, so it gets the dependency versions
# the workspace is tested with (and needs no index fetch when they are cached);
# FACTUM_OUTSIDE_FRESH_LOCK=1 resolves afresh instead, as a new user's first build would.
# FACTUM_OUTSIDE_KEEP=1 keeps the temporary directory. Honours $CARGO.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

CARGO=${CARGO:-cargo}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
OUT_TARGET=${FACTUM_OUTSIDE_TARGET_DIR:-$TARGET/outside-crate}
[[ $OUT_TARGET == /* ]] || OUT_TARGET=$ROOT/$OUT_TARGET

log() { printf '== outside-crate: %s\n' "$*" >&2; }
die() {
    printf 'outside-crate.sh: error: %s\n' "$*" >&2
    exit 1
}

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ -n $VERSION ]] || die "no workspace version in Cargo.toml"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/factum-outside.XXXXXX")
cleanup() {
    if [[ ${FACTUM_OUTSIDE_KEEP:-0} == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# 1. Package. --allow-dirty: this checks the working tree as it is, committed or not.
log "packaging the crates ($VERSION) into $TARGET/package"
CARGO_TARGET_DIR=$TARGET "$CARGO" package --no-verify --allow-dirty \
    -p factum -p factum-derive -p factum-postgres -p factum-rabbitmq -p factum-cli -p factum-console

# 2. Unpack what the user's crate needs.
mkdir -p "$WORK/crates"
for crate in factum factum-derive factum-postgres; do
    file=$TARGET/package/$crate-$VERSION.crate
    [[ -f $file ]] || die "$file was not made"
    tar -xzf "$file" -C "$WORK/crates"
    manifest=$WORK/crates/$crate-$VERSION/Cargo.toml
    # The packaged manifest names its dependencies by version only: no path may be left
    # in a dependency table, or this would be a build on paths after all.
    if awk '/^\[/ { dep = ($0 ~ /^\[(dev-|build-)?dependencies/) } dep && /^path *=/' "$manifest" | grep -q .; then
        die "the packaged manifest of $crate has a dependency by path"
    fi
    for f in LICENSE-MIT LICENSE-APACHE README.md; do
        [[ -s $WORK/crates/$crate-$VERSION/$f ]] || die "the package of $crate does not ship $f"
    done
done

# 3. The user's crate.
SHOP=$WORK/shop
mkdir -p "$SHOP/src/bin"
cat >"$SHOP/Cargo.toml" <<EOF
[package]
name = "shop"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
# By version, as from crates.io; the patch below supplies the packaged crates.
# (factum has no features: the derive macros always come with it.)
factum = "$VERSION"
factum-postgres = "$VERSION"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
thiserror = "2"
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }
async-trait = "0.1"

[patch.crates-io]
factum = { path = "$WORK/crates/factum-$VERSION" }
factum-derive = { path = "$WORK/crates/factum-derive-$VERSION" }
factum-postgres = { path = "$WORK/crates/factum-postgres-$VERSION" }

[profile.dev]
debug = 0

# A workspace of its own: nothing around it is one.
[workspace]
EOF
if [[ ${FACTUM_OUTSIDE_FRESH_LOCK:-0} != 1 ]]; then
    cp Cargo.lock "$SHOP/Cargo.lock"
fi

cat >"$SHOP/src/main.rs" <<'EOF'
//! A lamp that can be switched on and off: an aggregate with the derive macros, run
//! against the in-memory store.

use std::sync::Arc;

use factum::prelude::*;
use factum::store::VersionRange;
use factum::{Aggregate, Command, DomainEvent, Factum, InMemoryStore, StreamId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "Lamp", command = LampCommand, event = LampEvent, error = LampError)]
struct Lamp {
    on: bool,
    switches: u32,
}

#[derive(Debug, Command)]
#[command(id = lamp)]
enum LampCommand {
    SwitchOn { lamp: String },
    SwitchOff { lamp: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum LampEvent {
    #[event(topic = "lamp.switch.on")]
    SwitchedOn,
    #[event(topic = "lamp.switch.off")]
    SwitchedOff,
}

#[derive(Debug, thiserror::Error)]
enum LampError {
    #[error("the lamp is on already")]
    AlreadyOn,
    #[error("the lamp is off already")]
    AlreadyOff,
}

impl Lamp {
    fn handle(&self, command: &LampCommand) -> Result<Vec<LampEvent>, LampError> {
        match command {
            LampCommand::SwitchOn { .. } if self.on => Err(LampError::AlreadyOn),
            LampCommand::SwitchOn { .. } => Ok(vec![LampEvent::SwitchedOn]),
            LampCommand::SwitchOff { .. } if !self.on => Err(LampError::AlreadyOff),
            LampCommand::SwitchOff { .. } => Ok(vec![LampEvent::SwitchedOff]),
        }
    }

    fn apply(&mut self, event: &LampEvent) {
        self.on = matches!(event, LampEvent::SwitchedOn);
        self.switches += 1;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(InMemoryStore::new());
    let factum = Factum::new(store.clone());

    factum.execute(LampCommand::SwitchOn { lamp: "hall".into() }).await?;
    factum.execute(LampCommand::SwitchOff { lamp: "hall".into() }).await?;
    factum.execute(LampCommand::SwitchOn { lamp: "hall".into() }).await?;
    let refused = factum.execute(LampCommand::SwitchOn { lamp: "hall".into() }).await;
    assert!(matches!(refused.unwrap_err().domain(), Some(LampError::AlreadyOn)));

    let (lamp, version) = factum.load::<Lamp>("hall").await?;
    assert_eq!((lamp.on, lamp.switches, version.0), (true, 3, 3));

    let events = store.read_stream(&StreamId::new("Lamp", "hall")?, VersionRange::ALL).await?;
    let topics: Vec<_> = events.iter().map(|e| e.topic.as_deref().unwrap_or("-")).collect();
    assert_eq!(topics, ["lamp.switch.on", "lamp.switch.off", "lamp.switch.on"]);

    println!(
        "lamp hall: on={} switches={} version={}; stream Lamp/hall: {}",
        lamp.on,
        lamp.switches,
        version.0,
        events.iter().map(|e| format!("{} {} ({})", e.version.0, e.event_type, topics[e.version.0 as usize - 1])).collect::<Vec<_>>().join(", ")
    );
    factum.shutdown();
    Ok(())
}
EOF

# The README's aggregate: the first ```rust block after its heading, with the lines that
# rustdoc hides ("# ...") shown.
awk '/^## Your own aggregate in a dozen lines/ { s = 1; next }
     s == 1 && /^```rust/ { s = 2; next }
     s == 2 && /^```/ { exit }
     s == 2 { if ($0 == "#") print ""; else if (substr($0, 1, 2) == "# ") print substr($0, 3); else print }' \
    README.md >"$SHOP/src/bin/readme.rs"
grep -q 'derive(.*Aggregate' "$SHOP/src/bin/readme.rs" || die "no aggregate found in README.md"

# The guide's PostgreSQL program: its block, plus the cart's types and `impl Cart` from
# "Your first aggregate" (the block's lines from the first #[derive to its `main`).
GUIDE=docs/getting-started.md
awk '/^<!-- tests\/tests\/guide_postgres.rs -->/ { s = 1; next }
     s == 1 && /^```rust/ { s = 2; next }
     s == 2 && /^```/ { exit }
     s == 2' "$GUIDE" >"$SHOP/src/bin/guide_postgres.rs"
awk '/^## Your first aggregate/ { s = 1; next }
     s == 1 && /^```rust/ { s = 2; next }
     s >= 2 && /^#\[tokio::main\]/ { exit }
     s == 2 && /^#\[derive/ { s = 3 }
     s == 3' "$GUIDE" >>"$SHOP/src/bin/guide_postgres.rs"
grep -q 'PostgresStore::connect' "$SHOP/src/bin/guide_postgres.rs" || die "no PostgreSQL program found in $GUIDE"
grep -q '^impl Cart' "$SHOP/src/bin/guide_postgres.rs" || die "no cart found in $GUIDE"

# The packaged READMEs' programs (what crates.io shows): factum's aggregate, and
# factum-postgres's append.
first_rust_block() {
    awk '/^```rust/ { s = 1; next } s && /^```/ { exit } s' "$1"
}
first_rust_block "$WORK/crates/factum-$VERSION/README.md" >"$SHOP/src/bin/factum_readme.rs"
first_rust_block "$WORK/crates/factum-postgres-$VERSION/README.md" >"$SHOP/src/bin/postgres_readme.rs"
grep -q 'fn main' "$SHOP/src/bin/factum_readme.rs" || die "no program in factum's README.md"
grep -q 'fn main' "$SHOP/src/bin/postgres_readme.rs" || die "no program in factum-postgres's README.md"

# 4. Build and run.
log "building $SHOP (target dir $OUT_TARGET)"
(cd "$SHOP" && CARGO_TARGET_DIR=$OUT_TARGET "$CARGO" build --bins)
BIN=$OUT_TARGET/debug

log "running src/main.rs (in-memory store)"
"$BIN/shop"

log "running the README's aggregate (in-memory store)"
"$BIN/readme"
echo "readme: ok (its assertions held)"

log "running the packaged factum README's aggregate (in-memory store)"
"$BIN/factum_readme"
echo "factum_readme: ok (its assertions held)"

if [[ -n ${FACTUM_OUTSIDE_DATABASE_URL:-} ]]; then
    log "running the guide's PostgreSQL program"
    DATABASE_URL=$FACTUM_OUTSIDE_DATABASE_URL "$BIN/guide_postgres"
    echo "guide_postgres: ok (cart-7 read back from cart_items: 5 items, checked out)"
    log "running the packaged factum-postgres README's program"
    DATABASE_URL=$FACTUM_OUTSIDE_DATABASE_URL "$BIN/postgres_readme"
    echo "postgres_readme: ok (migrated, appended Order/ord-123)"
else
    echo "guide_postgres, postgres_readme: built; runs SKIPPED (set FACTUM_OUTSIDE_DATABASE_URL to a fresh database)"
fi

log "passed: a crate outside the workspace builds and runs on the packaged crates"
