#!/usr/bin/env bash
# scripts/bench.sh — the performance workloads of docs/performance.md.
#
# Builds the benchmark in release mode, boots a private PostgreSQL cluster with
# default durability (fsync and synchronous_commit on) in a temporary directory,
# runs every workload (each in fresh schemas) against it, and removes the cluster
# on exit. Prints one JSON line per workload, then a table.
#
#   scripts/bench.sh [--reps N] [w1 w2 ... w10 physical ab coalesce]
#   scripts/bench.sh [--reps N] statements
#
# `physical` measures the physical limit: W1's one-event appends, W5's bulk appends
# (with the WAL written and the bytes stored per event) and W4's catch-up, for the
# framework's default schema (every filter indexed) and its lean one (only the log's
# own indexes), against a minimal raw table (primary key, unique event id, unique
# stream/version: what PostgreSQL needs, and nothing more), printed beside the
# same-schema raw baseline that W1, W4 and W5 use. scripts/index-cost.sh attributes
# the WAL to each index. `ab` (only when named) runs W3 and W6 alternately on schema
# version 6's query indexes and on version 7's, on one build, in one run.
#
# `coalesce` (only when named; about 7 minutes at 5 repetitions on 2 cores) measures the
# store's coalescing writer, on and off, against one autocommit INSERT per event into the
# minimal raw table on dedicated connections: commands through warm aggregate actors (64
# callers over 10,000 aggregates, 16 over 200, 1 over 200), W1's appends, and W6's live
# latency at 2,000 and 5,000 commands/s, and W5's bulk appends as the yardstick of CPU per
# event; with CPU per event, appends per flush, rows read by sequential scans, and two
# diagnostics (the lean schema; a filled, analyzed table). For a profile of one phase:
# FACTUM_BENCH_CASES (C1a,...), FACTUM_BENCH_VARIANTS (raw,on,off,lean,filled) and
# FACTUM_BENCH_SCALE (multiplies the phase's operations).
#
# `statements` runs no Rust: it puts the framework's schema on the cluster and
# compares, with pgbench (16 clients, prepared statements, 12 s each, alternating), the
# raw INSERT with the append's version-checked INSERT (its head through events_head), and
# with the same check written inline (as before schema version 9), to show what the check
# and its function cost on the server alone; then an aggregate's load of 50 events, through
# events_stream and inline.
#
# Environment: FACTUM_BENCH_PORT (default 55439), FACTUM_BENCH_REPS (default 5),
# FACTUM_BENCH_WORKLOADS (comma-separated), FACTUM_BENCH_KEEP=1 to leave the
# cluster's directory behind (it is still stopped). Never touches the server on
# 5432 nor scripts/pg.sh's test cluster. Honours $CARGO.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO=${CARGO:-cargo}
PORT=${FACTUM_BENCH_PORT:-55439}
REPS=${FACTUM_BENCH_REPS:-5}
WORKLOADS=${FACTUM_BENCH_WORKLOADS:-}
STATEMENTS=0

log() { printf 'bench.sh: %s\n' "$*" >&2; }
die() {
    printf 'bench.sh: error: %s\n' "$*" >&2
    exit 1
}

while (($#)); do
    case $1 in
    --reps) REPS=${2:?--reps needs a number}; shift 2 ;;
    --reps=*) REPS=${1#--reps=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 0 ;;
    w[1-9] | w10 | physical | ab | coalesce) WORKLOADS=${WORKLOADS:+$WORKLOADS,}$1; shift ;;
    statements) STATEMENTS=1; shift ;;
    *) die "unknown argument '$1' (expected --reps N, w1..w10, physical, ab or coalesce)" ;;
    esac
done
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive number, got '$REPS'"
[[ $PORT =~ ^[0-9]{1,5}$ ]] || die "FACTUM_BENCH_PORT must be a port number, got '$PORT'"

# Server binaries (installed if missing), as_owner: shared with scripts/pg.sh.
# shellcheck source=scripts/pg-lib.sh
source scripts/pg-lib.sh
ensure_binaries

# Build first, so that the cluster only lives while the benchmark runs.
if ((!STATEMENTS)); then
    log "building the benchmark (release)"
    "$CARGO" bench -p factum-tests --bench workloads --no-run >&2
fi

DIR=$(mktemp -d /tmp/factum-bench.XXXXXX)
chmod 755 "$DIR"
((EUID == 0)) && chown postgres:postgres "$DIR"
DATA=$DIR/data
LOGFILE=$DIR/postgres.log
STARTED=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    if ((STARTED)); then
        log "stopping the benchmark cluster"
        as_owner "$BINDIR/pg_ctl" stop -D "$DATA" -m fast -w -t 60 >/dev/null 2>&1
    fi
    if [[ ${FACTUM_BENCH_KEEP:-0} == 1 ]]; then
        log "kept $DIR"
    else
        rm -rf "$DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

log "initialising a private cluster in $DIR ($BINDIR)"
as_owner "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null
# PostgreSQL's defaults, durability included (fsync, synchronous_commit, full_page_writes
# on); only where it listens and how many may connect are set.
cat >>"$DATA/postgresql.conf" <<CONF

# --- added by factum scripts/bench.sh (benchmark cluster: default durability) ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 200
CONF
as_owner "$BINDIR/pg_ctl" start -D "$DATA" -w -t 90 -l "$LOGFILE" >/dev/null </dev/null ||
    { tail -n 20 "$LOGFILE" >&2; die "could not start the cluster (port $PORT in use? set FACTUM_BENCH_PORT)"; }
STARTED=1

URL="postgres://postgres@127.0.0.1:$PORT/postgres"
settings=$(as_owner "$BINDIR/psql" "$URL" -XAtq -c "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) \
    FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','wal_sync_method','shared_buffers')")
log "PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT: $settings"
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"

if ((STATEMENTS)); then
    query_indexes=$(<store-postgres/sql/indexes/query.sql)
    for f in store-postgres/sql/0*.sql; do
        sql=$(<"$f")
        printf '%s\n' "${sql//\{query_indexes\}/$query_indexes}" | sed -e 's/{schema}/public/g; s/{events}/events/g; s/{streams}/event_streams/g' \
            -e 's/{snapshots}/snapshots/g; s/{positions}/projection_positions/g; s/{failures}/projection_failures/g' |
            as_owner "$BINDIR/psql" "$URL" -XAq -v ON_ERROR_STOP=1 >/dev/null
    done
    cols="event_id, aggregate_type, aggregate_id, version, event_type, event_version, topic, event_data, metadata, occurred_at, correlation_id, causation_id"
    vals="gen_random_uuid(), :t, 'c' || :client_id, :v, 'account.deposited', 1, 'account.money.deposited', '{\"amount\": 1, \"customer\": \"acc-1\"}'::jsonb, '{}'::jsonb, now(), gen_random_uuid(), gen_random_uuid()"
    # Each client appends to a stream of its own, at the next version (v counts per client).
    printf '\\set v :v + 1\nINSERT INTO events (%s) VALUES (%s);\n' "$cols" "$vals" >"$DIR/raw.sql"
    # The append's check as it runs (schema version 9: the head through events_head, planned
    # on the stream index whatever the statistics), and as it ran before, inline.
    printf '\\set v :v + 1\nINSERT INTO events (%s) SELECT %s WHERE events_head(:t, %s, false) = :v - 1 RETURNING version, global_position;\n' \
        "$cols" "$vals" "'c' || :client_id" >"$DIR/checked.sql"
    printf '\\set v :v + 1\nINSERT INTO events (%s) SELECT %s WHERE coalesce((SELECT h.version FROM events h WHERE h.aggregate_type = :t AND h.aggregate_id = %s ORDER BY h.version DESC LIMIT 1), 0) = :v - 1 RETURNING version, global_position;\n' \
        "$cols" "$vals" "'c' || :client_id" >"$DIR/inline.sql"
    # An aggregate's load: 50 events of a stream that the first phase wrote (run1's streams
    # c0..c15 hold thousands each), through events_stream (schema version 9) and inline.
    cols_read="version, event_type, event_version, event_data::text"
    printf '\\set s random(0, 15)\nSELECT %s FROM events_stream('"'"'run1'"'"', '"'"'c'"'"' || :s, 0, 50) ORDER BY version;\n' \
        "$cols_read" >"$DIR/read.sql"
    printf '\\set s random(0, 15)\nSELECT %s FROM events WHERE aggregate_type = '"'"'run1'"'"' AND aggregate_id = '"'"'c'"'"' || :s AND version > 0 AND version <= 50 ORDER BY version;\n' \
        "$cols_read" >"$DIR/read_inline.sql"
    chmod 644 "$DIR"/*.sql
    n=0
    for ((r = 1; r <= REPS; r++)); do
        for kind in raw checked inline read read_inline; do
            n=$((n + 1))
            tps=$(as_owner "$BINDIR/pgbench" "$URL" -n -M prepared -c 16 -j 2 -T 12 -D v=0 -D t="run$n" \
                -f "$DIR/$kind.sql" 2>&1 | awk '/^tps/ {printf "%.0f", $3}')
            printf '{"statement":"%s","repetition":%d,"tps":%s}\n' "$kind" "$r" "${tps:-null}"
        done
    done
    exit 0
fi

FACTUM_BENCH_URL=$URL FACTUM_BENCH_REPS=$REPS FACTUM_BENCH_WORKLOADS=$WORKLOADS \
    "$CARGO" bench -p factum-tests --bench workloads
