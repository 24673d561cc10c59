#!/usr/bin/env bash
# scripts/console-e2e.sh — the operator console (factum-console) in a real browser.
#
# Installs playwright-core (npm; pinned in console/e2e/package.json and its lock file) into
# console/e2e/node_modules, and Debian's chromium when /usr/bin/chromium is missing (as
# root), builds and starts the example service on a free port with an operator and a
# read-only console token, inserts one hostile event straight into the store (an Order
# that cannot decode, full of markup), runs console/e2e/console.test.mjs with node's test
# runner against the console at /console, stops the service, and prints the figures:
# tests passed and failed. Screenshots go to ${CARGO_TARGET_DIR:-target}/console-e2e/screenshots.
#
# Usage: scripts/console-e2e.sh                       every test
#        scripts/console-e2e.sh [node --test options...], e.g. --test-name-pattern=hostile
#
# Makes a fresh database on the server of $DATABASE_URL (test.sh's run database: named
# "<run db>_tconsole") or else of scripts/pg.sh, dropped afterwards; sets up the
# least-privilege roles there as scripts/example.sh does, and serves as factum_app.
# Exit status: 0 all passed, 1 failures (or the service would not start), 77 skipped:
# node, playwright-core or chromium could not be installed (never reported as a pass).
# Honours $CARGO, $CARGO_TARGET_DIR and $CHROMIUM (the browser, default /usr/bin/chromium);
# FACTUM_CONSOLE_E2E_SIMULATE=1 runs the example's short simulation first, so that the
# screenshots show a store with data (how the ones under docs/console/ were taken).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

CARGO=${CARGO:-cargo}
TARGET=${CARGO_TARGET_DIR:-target}
E2E=$ROOT/console/e2e
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
mkdir -p "$TARGET/console-e2e"
WORK=$(cd "$TARGET/console-e2e" && pwd)
SHOTS=$WORK/screenshots

log() { printf '== console-e2e: %s\n' "$*" >&2; }
skip() {
    printf '== console-e2e: SKIPPED, NOT RUN: %s\n' "$*" >&2
    exit 77
}
random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# node 20 or newer, and playwright-core at the pinned version.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing Debian's nodejs and npm"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; } >&2 </dev/null ||
            skip "apt-get could not install nodejs and npm"
    fi
fi
command -v node >/dev/null || skip "node not found (install nodejs, version 20 or newer)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
    skip "node $(node --version) is too old: playwright-core needs 20 or newer"
PIN=$(node -p 'require(process.argv[1]).dependencies["playwright-core"]' "$E2E/package.json")
HAVE=$(node -p 'require(process.argv[1]).version' "$E2E/node_modules/playwright-core/package.json" 2>/dev/null || true)
if [[ $HAVE != "$PIN" ]]; then
    command -v npm >/dev/null || skip "npm not found (install npm)"
    log "installing playwright-core $PIN into console/e2e/node_modules"
    if [[ -f $E2E/package-lock.json ]]; then
        install=(npm ci --no-audit --no-fund --loglevel=error)
    else
        install=(npm install --no-audit --no-fund --loglevel=error)
    fi
    (cd "$E2E" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "${install[@]}") >&2 </dev/null ||
        skip "${install[*]} could not install playwright-core $PIN"
fi

# The browser: Debian's chromium (playwright-core downloads none).
if [[ ! -x $CHROMIUM ]]; then
    if [[ $CHROMIUM == /usr/bin/chromium && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing Debian's chromium"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >&2 </dev/null ||
            skip "apt-get could not install chromium"
    fi
    [[ -x $CHROMIUM ]] || skip "no browser at $CHROMIUM (as root: apt-get install chromium; or set \$CHROMIUM)"
fi
"$CHROMIUM" --version >/dev/null 2>&1 </dev/null || skip "$CHROMIUM --version fails: the browser cannot run here"

# shellcheck source=scripts/service-lib.sh
source scripts/service-lib.sh
trap service_cleanup EXIT
service_database console
if [[ -n ${FACTUM_CONSOLE_E2E_SIMULATE:-} ]]; then
    # Before the hostile event: the simulation checks the read models against the log.
    log "simulating (FACTUM_CONSOLE_E2E_SIMULATE)"
    DATABASE_URL=$(with_user factum_app) RUST_LOG=warn "$TARGET/debug/factum-example" simulate \
        --customers 20 --orders 200 >/dev/null
fi

# One hostile event, written past the API as only the owner can: an OrderPlaced without a
# customer_id (so order_summary and customer_history record a failure for it), its
# payload and metadata full of markup, quotes, a right-to-left override and a
# 100,000-character string. The correlation id goes in the metadata and in its column,
# as the store writes it.
HOSTILE_ID="hostile-$(random_hex 8)"
hostile=$("$PSQL" "$(with_user factum_owner)" -XqAt -v ON_ERROR_STOP=1 -v stream="$HOSTILE_ID" <<'SQL'
WITH ids AS (SELECT gen_random_uuid() AS event_id, gen_random_uuid() AS correlation_id)
INSERT INTO public.events (event_id, aggregate_type, aggregate_id, version, event_type,
                           event_data, metadata, occurred_at, correlation_id)
SELECT event_id, 'Order', :'stream', 1, 'OrderPlaced',
       jsonb_build_object(
           'xss', '<script>window.__xss=1</script>',
           'attr', '"><img src=x onerror="window.__xss=2">',
           'quote', '''; window.__xss=3; ''',
           'pre', '</pre><script>alert(1)</script>',
           'bidi', 'invoice' || chr(8238) || 'fdp.exe',
           'long', repeat('<>&"''', 20000)),
       jsonb_build_object('correlation_id', correlation_id, 'custom_note', '<script>alert(2)</script>'),
       now(), correlation_id
FROM ids
RETURNING event_id, correlation_id
SQL
)
HOSTILE_EVENT_ID=${hostile%%|*}
HOSTILE_CORRELATION_ID=${hostile#*|}

OP_TOKEN=$(random_hex 24)
RO_TOKEN=$(random_hex 24)
service_start FACTUM_CONSOLE_TOKEN="$OP_TOKEN" FACTUM_CONSOLE_READONLY_TOKEN="$RO_TOKEN"
status=$(node -e 'fetch(process.argv[1]).then((r) => console.log(r.status), (e) => console.log(e.message))' \
    "$BASE/console/login")
if [[ $status != 200 ]]; then
    tail -n 40 "$WORK/service.log" >&2
    log "FAILED: GET $BASE/console/login answered $status: is the console mounted at /console?"
    exit 1
fi
log "service at $BASE as $(with_user factum_app | sed -E 's|^[^:/?]+://([^:@/?#]*).*|\1|') on $OWN_DB; hostile event $HOSTILE_EVENT_ID in Order/$HOSTILE_ID"

rm -rf "$SHOTS" "$WORK/results.tap"
mkdir -p "$SHOTS"
rc=0
BASE=$BASE CONSOLE_TOKEN=$OP_TOKEN CONSOLE_READONLY_TOKEN=$RO_TOKEN HOSTILE_ID=$HOSTILE_ID \
    HOSTILE_EVENT_ID=$HOSTILE_EVENT_ID HOSTILE_CORRELATION_ID=$HOSTILE_CORRELATION_ID \
    SCREENSHOTS=$SHOTS CHROMIUM=$CHROMIUM \
    timeout 900 node --test \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$WORK/results.tap" \
    "$@" console/e2e/console.test.mjs >"$WORK/output.txt" 2>&1 || rc=$?

# The figures, from the run's TAP summary.
figure() { { sed -n "s/^# $1 \([0-9][0-9]*\)\$/\1/p" "$WORK/results.tap" 2>/dev/null || true; } | tail -n 1; }
tests=$(figure tests)
passed=$(figure pass)
fail=$(figure fail)
cancelled=$(figure cancelled)
skipped=$(figure skipped)
failed=$((${fail:-0} + ${cancelled:-0}))
if [[ -z $tests ]]; then
    log "no test results (node exited $rc): the test file did not run"
    rc=1
else
    summary="$tests tests, ${passed:-0} passed, $failed failed"
    ((${skipped:-0} == 0)) || summary+=", $skipped skipped"
    printf '== console-e2e: %s\n' "$summary"
    ((failed == 0 && ${passed:-0} > 0)) || rc=1
fi
if ((rc)); then
    cat "$WORK/output.txt" >&2
    log "the service's log (last 40 lines of $WORK/service.log):"
    tail -n 40 "$WORK/service.log" >&2
    log "FAILED (exit $rc); the output is in $WORK/output.txt, the screenshots in $SHOTS"
    exit 1
fi
log "passed; the screenshots are in $SHOTS"
