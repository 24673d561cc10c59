#!/usr/bin/env bash
# scripts/test.sh — run factum's whole test-suite against a real PostgreSQL.
#
# Gets a superuser URL from scripts/pg.sh, creates a fresh database
# factum_run_<unix-time>_<random> for this run and exports
#   DATABASE_URL           the run database (same server/user/options)
#   FACTUM_TEST_ADMIN_URL  the superuser URL from scripts/pg.sh
#   FACTUM_TEST_AMQP_URL   a RabbitMQ broker from scripts/rabbitmq.sh
# Tests may create their own databases named "<run db>_t<suffix>"; on exit
# (success, failure or interrupt) the run database and all of those are
# dropped WITH (FORCE).
#
# Runs `cargo nextest run --workspace --no-fail-fast` plus
# `cargo test --workspace --doc` when cargo-nextest is installed, otherwise
# `cargo test --workspace --no-fail-fast`. Extra arguments are passed to
# the test command(s), e.g. `scripts/test.sh -p factum-postgres append`;
# with -p/--package, --workspace is left out; with a target selection such as
# --test NAME, the doctests are left out. On whole-suite runs (no arguments)
# it then runs scripts/schemathesis.sh, scripts/console-e2e.sh (the console in a
# headless browser) and scripts/outside-crate.sh (a crate
# outside the workspace, on the packaged crates). Honours $CARGO.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO=${CARGO:-cargo}
export RUST_BACKTRACE=1
unset RUST_LOG
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}

log() { printf '== %s\n' "$*" >&2; }
die() {
    printf 'test.sh: error: %s\n' "$*" >&2
    exit 1
}

# psql from $PATH, or from the newest Debian server install.
PSQL=$(command -v psql || true)
if [[ -z $PSQL ]]; then
    PSQL=$(printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
    [[ -x $PSQL ]] || PSQL=""
fi

# Split a URL scheme://authority[/db][?query][#frag] so the database can be
# swapped. The authority ends at the first '/', '?' or '#', which cannot
# appear unencoded in user, password or host.
url_with_db() {
    local url=$1 db=$2 scheme rest authority tail path query
    [[ $url == *://* ]] || die "not a URL: $(redact "$url")"
    scheme=${url%%://*}
    rest=${url#*://}
    authority=${rest%%[/?#]*}
    tail=${rest:${#authority}}
    path=${tail%%[?#]*}
    query=${tail:${#path}}
    # A dbname= query parameter would override the path; rewrite it too.
    query=$(sed -E "s/([?&])dbname=[^&#]*/\\1dbname=$db/" <<<"$query")
    printf '%s://%s/%s%s\n' "$scheme" "$authority" "$db" "$query"
}

# The URL with any password (user:pass@ or password=...) masked.
redact() {
    sed -E -e 's|^([^:/?]+://[^:/?#@]*):[^/?#@]*@|\1:***@|' \
        -e 's/([?&]password=)[^&#]*/\1***/' <<<"$1"
}

sql() { "$PSQL" "$ADMIN_URL" -XqAt -v ON_ERROR_STOP=1 "$@" </dev/null; }

ADMIN_URL=$(bash scripts/pg.sh) || die "scripts/pg.sh could not provide a PostgreSQL server"
[[ -n $ADMIN_URL ]] || die "scripts/pg.sh printed an empty URL"
[[ -n $PSQL ]] || die "psql not found (install the postgresql-client package)"

RUN_DB="factum_run_$(date +%s)_$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
RUN_URL=$(url_with_db "$ADMIN_URL" "$RUN_DB")

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    log "dropping $RUN_DB and ${RUN_DB}_t* databases"
    # left() rather than LIKE: '_' is a LIKE wildcard. \gexec runs each
    # DROP on its own, outside a transaction block.
    "$PSQL" "$ADMIN_URL" -XqAt >/dev/null <<SQL ||
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname)
  FROM pg_database
 WHERE datname = '$RUN_DB' OR left(datname, ${#RUN_DB} + 2) = '${RUN_DB}_t'
\gexec
SQL
        printf 'test.sh: warning: cleanup of %s failed\n' "$RUN_DB" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

sql -c "CREATE DATABASE \"$RUN_DB\"" >/dev/null || die "could not create database $RUN_DB"

export DATABASE_URL=$RUN_URL
export FACTUM_TEST_ADMIN_URL=$ADMIN_URL
# The bus tests' RabbitMQ (started, or installed and started, when none answers).
FACTUM_TEST_AMQP_URL=$(bash scripts/rabbitmq.sh) || die "scripts/rabbitmq.sh could not provide a RabbitMQ broker"
export FACTUM_TEST_AMQP_URL

log "PostgreSQL: $(redact "$ADMIN_URL")"
log "run database: $RUN_DB"

# -p/--package narrows the run; cargo would ignore it next to --workspace.
scope=(--workspace)
for arg in "$@"; do
    [[ $arg == -- ]] && break
    case $arg in -p | -p* | --package | --package=*) scope=() ;; esac
done

# Run one test command, logging it; remember failure but keep going.
failed=0
run() {
    log "$*"
    "$@" || failed=1
}

# Target selections (--test x, --lib, ...) cannot be mixed with --doc: then the
# doctests are left out.
doc=1
for arg in "$@"; do
    [[ $arg == -- ]] && break
    case $arg in --test | --test=* | --tests | --lib | --bin | --bin=* | --bins | --bench | --bench=* | --benches | --example | --example=* | --examples) doc=0 ;; esac
done

if "$CARGO" nextest --version >/dev/null 2>&1; then
    run "$CARGO" nextest run "${scope[@]}" --no-fail-fast "$@"
    if ((doc)); then
        run "$CARGO" test "${scope[@]}" --doc "$@"
    fi
else
    log "cargo-nextest not installed; using cargo test"
    run "$CARGO" test "${scope[@]}" --no-fail-fast "$@"
fi

# The example's HTTP contract against its own /openapi.json, on whole-suite runs: a
# bounded schemathesis run (exit 77: it could not be installed and says SKIPPED).
if (($# == 0)); then
    log "scripts/schemathesis.sh"
    st=0
    bash scripts/schemathesis.sh || st=$?
    ((st == 0 || st == 77)) || failed=1
    ((st != 77)) || skipped=" (schemathesis SKIPPED, not run)"
fi

# The operator console in a real browser (headless Chromium through playwright-core), on
# whole-suite runs (exit 77: Chromium or the npm packages could not be installed, and it
# says SKIPPED: never a pass).
if (($# == 0)); then
    log "scripts/console-e2e.sh"
    st=0
    bash scripts/console-e2e.sh || st=$?
    ((st == 0 || st == 77)) || failed=1
    ((st != 77)) || skipped="${skipped:-} (console browser tests SKIPPED, not run)"
fi

# A new user's crate outside the workspace, on the crates as packaged (not on paths), on
# whole-suite runs: its own aggregate and the README's on the in-memory store, and the
# guide's PostgreSQL program on a database of its own (dropped with the run's).
if (($# == 0)); then
    log "scripts/outside-crate.sh"
    outside_db="${RUN_DB}_toutside"
    if sql -c "CREATE DATABASE \"$outside_db\"" >/dev/null; then
        FACTUM_OUTSIDE_DATABASE_URL=$(url_with_db "$ADMIN_URL" "$outside_db") bash scripts/outside-crate.sh ||
            failed=1
    else
        log "could not create database $outside_db"
        failed=1
    fi
fi

if ((failed)); then
    log "tests FAILED"
    exit 1
fi
log "tests passed${skipped:-}"
