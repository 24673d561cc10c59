#!/usr/bin/env bash
# scripts/schemathesis.sh — fuzz the example service from its own /openapi.json.
#
# Installs schemathesis (PyPI) into a virtualenv under ${CARGO_TARGET_DIR:-target},
# builds and starts the example service on a free port, runs schemathesis with every
# check and every phase (examples, coverage, fuzzing, stateful) against it, stops the
# service, and prints the figures: test cases, checks run, failures.
#
# Usage: scripts/schemathesis.sh            the short run (about a minute; test.sh runs it)
#        scripts/schemathesis.sh --long     the long run whose figures docs/http-api.md gives
#        scripts/schemathesis.sh [--long] [schemathesis run options...]
#
# Makes a fresh database on the server of $DATABASE_URL (test.sh's run database: named
# "<run db>_tschemathesis") or else of scripts/pg.sh, dropped afterwards; sets up the
# least-privilege roles there as scripts/example.sh does, and serves as factum_app.
# Exit status: 0 no failures, 1 failures (or the service would not start),
# 77 skipped: schemathesis could not be installed (never reported as a pass).
# Honours $CARGO, $CARGO_TARGET_DIR, $SCHEMATHESIS_VERSION and $SCHEMATHESIS_SEED.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

CARGO=${CARGO:-cargo}
TARGET=${CARGO_TARGET_DIR:-target}
VERSION=${SCHEMATHESIS_VERSION:-4.32.5}
SEED=${SCHEMATHESIS_SEED:-1}
mkdir -p "$TARGET/schemathesis"
# Absolute: schemathesis runs from $WORK, where it keeps its cache (.schemathesis/).
WORK=$(cd "$TARGET/schemathesis" && pwd)
VENV=$(cd "$TARGET" && pwd)/schemathesis-venv
EXAMPLES=50
if [[ ${1:-} == --long ]]; then
    EXAMPLES=500
    shift
fi

log() { printf '== schemathesis: %s\n' "$*" >&2; }
skip() {
    printf '== schemathesis: SKIPPED, NOT RUN: %s\n' "$*" >&2
    exit 77
}

# schemathesis, in a virtualenv of its own.
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$VERSION"; then
    log "installing schemathesis $VERSION into $VENV"
    python3 -m venv "$VENV" >/dev/null 2>&1 || skip "python3 -m venv failed (install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2 ||
        skip "pip could not install schemathesis==$VERSION"
fi

# shellcheck source=scripts/service-lib.sh
source scripts/service-lib.sh
trap service_cleanup EXIT
service_database schemathesis
# shellcheck disable=SC2119 # no variables of its own
service_start
log "service at $BASE as $(with_user factum_app | sed -E 's|^[^:/?]+://([^:@/?#]*).*|\1|') on $OWN_DB; $EXAMPLES examples per operation, seed $SEED"

rm -rf "$WORK/report"
rc=0
(cd "$WORK" && "$VENV/bin/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" run "$BASE/openapi.json" \
    --checks all --phases examples,coverage,fuzzing,stateful \
    --max-examples "$EXAMPLES" --seed "$SEED" --generation-database none \
    --no-color --report ndjson --report-dir "$WORK/report" "$@") >"$WORK/output.txt" 2>&1 || rc=$?

# The figures, from the run's own event log: cases, checks, and failures by check.
"$VENV/bin/python" - "$WORK"/report/*.ndjson <<'PY' || rc=1
import collections, json, sys
cases = 0
checks = collections.Counter()
failed = collections.Counter()
for line in open(sys.argv[1]):
    event = json.loads(line)
    recorder = event.get("ScenarioFinished", {}).get("recorder", {})
    cases += len(recorder.get("cases", {}))
    for results in recorder.get("checks", {}).values():
        for check in results:
            checks[check["name"]] += 1
            if check["status"] != "success":
                failed[check["name"]] += 1
print(f"== schemathesis: {cases} cases, {sum(checks.values())} checks, {sum(failed.values())} failures")
for name in sorted(checks):
    print(f"==   {name}: {checks[name]} checks, {failed[name]} failed")
PY
if ((rc)); then
    cat "$WORK/output.txt" >&2
    log "FAILED (exit $rc); the output is in $WORK/output.txt"
    exit 1
fi
grep -E '^  [0-9]+ generated' "$WORK/output.txt" >&2 || true
log "passed"
