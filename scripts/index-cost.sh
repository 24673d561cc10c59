#!/usr/bin/env bash
# scripts/index-cost.sh — what each index on the events table costs per event.
#
# Boots a private PostgreSQL cluster with default durability (as scripts/bench.sh does)
# in a temporary directory, and for each index configuration below: creates the events
# table with the framework's columns and that configuration's indexes, appends the same
# 200,000 events in 200 transactions of 1,000 (one stream each, as bench W5 does), all
# on the server (no client in the way), and prints the WAL written per event
# (pg_current_wal_lsn before and after), the time, and the table's bytes per event
# (heap plus indexes). Removes the cluster on exit.
#
#   scripts/index-cost.sh [--reps N] [--events N] [CONFIG ...]
#
# Configurations (each adds to `minimal`, the raw table's primary key, unique event id
# and unique stream/version):
#   minimal   nothing more: the physical limit
#   lean      + the log's own indexes: (transaction_id, global_position) and
#             (aggregate_type, transaction_id, global_position); schema version 7 with
#             query indexes switched off
#   v6        lean + schema version 6's six query indexes (B-trees on event_type,
#             topic, aggregate_id, occurred_at, recorded_at; GIN on metadata)
#   v7        lean + schema version 7's query indexes (the default)
#   +NAME     lean + one index alone, to attribute its cost: +type +topic +aggid
#             +occurred +occurred_brin +recorded +recorded_brin +meta_gin +meta_rest
#             +correlation, and schema version 7's one by one: +type_topic +tracing_brin
#             +meta_partial
# Default: all of them. The time is the median over the repetitions (default 3), the
# WAL and sizes are the last repetition's.
#
# Environment: FACTUM_INDEX_COST_PORT (default 55441). Never touches the server on 5432.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PORT=${FACTUM_INDEX_COST_PORT:-55441}
REPS=3
EVENTS=200000
CONFIGS=()

log() { printf 'index-cost.sh: %s\n' "$*" >&2; }
die() {
    printf 'index-cost.sh: error: %s\n' "$*" >&2
    exit 1
}

ALL=(minimal lean v6 v7 +type +topic +aggid +occurred +occurred_brin +recorded +recorded_brin +meta_gin +meta_rest +correlation +type_topic +tracing_brin +meta_partial)
while (($#)); do
    case $1 in
    --reps) REPS=${2:?--reps needs a number}; shift 2 ;;
    --events) EVENTS=${2:?--events needs a number}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 0 ;;
    minimal | lean | v6 | v7 | +*) CONFIGS+=("$1"); shift ;;
    *) die "unknown argument '$1'" ;;
    esac
done
((${#CONFIGS[@]})) || CONFIGS=("${ALL[@]}")
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive number"
[[ $EVENTS =~ ^[1-9][0-9]*000$ ]] || die "--events must be a positive multiple of 1,000"

# shellcheck source=scripts/pg-lib.sh
source scripts/pg-lib.sh
ensure_binaries

DIR=$(mktemp -d /tmp/factum-index-cost.XXXXXX)
chmod 755 "$DIR"
((EUID == 0)) && chown postgres:postgres "$DIR"
DATA=$DIR/data
STARTED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    ((STARTED)) && as_owner "$BINDIR/pg_ctl" stop -D "$DATA" -m fast -w -t 60 >/dev/null 2>&1
    rm -rf "$DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

log "initialising a private cluster in $DIR ($BINDIR)"
as_owner "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
CONF
as_owner "$BINDIR/pg_ctl" start -D "$DATA" -w -t 90 -l "$DIR/postgres.log" >/dev/null </dev/null ||
    die "could not start the cluster (port $PORT in use? set FACTUM_INDEX_COST_PORT)"
STARTED=1
psql() { as_owner "$BINDIR/psql" "postgres://postgres@127.0.0.1:$PORT/postgres" -XAtq -v ON_ERROR_STOP=1 "$@"; }

# The events, made once (unlogged, so making them writes no WAL): 1,000 per stream,
# time-ordered ids as Uuid::now_v7 makes them, the payload and metadata of bench W5.
psql <<SQL
CREATE FUNCTION uuid7(at timestamptz) RETURNS uuid LANGUAGE sql VOLATILE AS \$\$
    SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
        || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid
\$\$;
CREATE UNLOGGED TABLE staging AS
SELECT i / 1000 AS batch, uuid7(t) AS event_id, 'Account'::text AS aggregate_type,
       'bulk-' || (i / 1000) AS aggregate_id, (i % 1000 + 1)::bigint AS version,
       'account.deposited'::text AS event_type, 1 AS event_version,
       'account.money.deposited'::text AS topic,
       jsonb_build_object('amount', 1, 'customer', 'bulk-' || (i / 1000)) AS event_data,
       jsonb_build_object('correlation_id', uuid7(t), 'causation_id', uuid7(t)) AS metadata,
       t AS occurred_at, uuid7(t) AS correlation_id, uuid7(t) AS causation_id
FROM generate_series(0, $EVENTS - 1) AS i,
     LATERAL (SELECT now() + i * interval '50 microseconds' AS t) AS x;
CREATE INDEX ON staging (batch);
ANALYZE staging;
SQL

MINIMAL="CREATE TABLE events (
    global_position BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL,
    aggregate_type VARCHAR(255) NOT NULL, aggregate_id VARCHAR(255) NOT NULL,
    version BIGINT NOT NULL CHECK (version > 0), event_type VARCHAR(255) NOT NULL,
    event_version INTEGER NOT NULL DEFAULT 1 CHECK (event_version > 0), topic VARCHAR(255),
    event_data JSONB NOT NULL, metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
    occurred_at TIMESTAMPTZ NOT NULL, recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    correlation_id UUID, causation_id UUID,
    transaction_id BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (aggregate_type, aggregate_id, version));"
LOG="CREATE INDEX ON events (transaction_id, global_position);
CREATE INDEX ON events (aggregate_type, transaction_id, global_position);"
V6="CREATE INDEX ON events (event_type); CREATE INDEX ON events (topic);
CREATE INDEX ON events (aggregate_id); CREATE INDEX ON events (occurred_at);
CREATE INDEX ON events (recorded_at); CREATE INDEX ON events USING GIN (metadata jsonb_path_ops);"
# Schema version 7's query indexes, as store-postgres/sql/indexes/query.sql has them.
V7=$(sed -e 's/{schema}\.//g; s/{events}/events/g' store-postgres/sql/indexes/query.sql)

# One CREATE INDEX statement of $V7, by its name's suffix.
v7_index() { awk -v RS=';' -v name="events_$1 " 'index($0, name) {print $0 ";"}' <<<"$V7"; }

ddl() {
    case $1 in
    minimal) echo "$MINIMAL" ;;
    lean) echo "$MINIMAL $LOG" ;;
    v6) echo "$MINIMAL $LOG $V6" ;;
    v7) echo "$MINIMAL $LOG $V7" ;;
    +type) echo "$MINIMAL $LOG CREATE INDEX ON events (event_type);" ;;
    +topic) echo "$MINIMAL $LOG CREATE INDEX ON events (topic);" ;;
    +aggid) echo "$MINIMAL $LOG CREATE INDEX ON events (aggregate_id);" ;;
    +occurred) echo "$MINIMAL $LOG CREATE INDEX ON events (occurred_at);" ;;
    +occurred_brin) echo "$MINIMAL $LOG CREATE INDEX ON events USING BRIN (occurred_at);" ;;
    +recorded) echo "$MINIMAL $LOG CREATE INDEX ON events (recorded_at);" ;;
    +recorded_brin) echo "$MINIMAL $LOG CREATE INDEX ON events USING BRIN (recorded_at);" ;;
    +meta_gin) echo "$MINIMAL $LOG CREATE INDEX ON events USING GIN (metadata jsonb_path_ops);" ;;
    +meta_rest) echo "$MINIMAL $LOG CREATE INDEX ON events USING GIN ((metadata - 'correlation_id' - 'causation_id') jsonb_path_ops);" ;;
    +correlation) echo "$MINIMAL $LOG CREATE INDEX ON events (correlation_id);" ;;
    +type_topic) echo "$MINIMAL $LOG CREATE INDEX ON events (event_type, topic);" ;;
    +tracing_brin) echo "$MINIMAL $LOG $(v7_index tracing_brin)" ;;
    +meta_partial) echo "$MINIMAL $LOG $(v7_index metadata_idx)" ;;
    *) die "unknown configuration '$1'" ;;
    esac
}

BATCHES=$((EVENTS / 1000))
printf '| configuration | indexes | WAL B/event | stored B/event | seconds (median of %d) | events/s |\n' "$REPS"
printf '| --- | --- | --- | --- | --- | --- |\n'
for config in "${CONFIGS[@]}"; do
    times=()
    for ((r = 1; r <= REPS; r++)); do
        psql -c "DROP TABLE IF EXISTS events" -c "$(ddl "$config")" -c "CHECKPOINT" >/dev/null
        # One transaction per batch of 1,000, committed (and flushed) one by one.
        out=$(psql <<SQL
SELECT pg_current_wal_lsn() AS wal0, clock_timestamp() AS t0 \gset
DO \$\$
BEGIN
    FOR b IN 0..$BATCHES - 1 LOOP
        INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, event_version,
                topic, event_data, metadata, occurred_at, correlation_id, causation_id)
            SELECT event_id, aggregate_type, aggregate_id, version, event_type, event_version, topic,
                event_data, metadata, occurred_at, correlation_id, causation_id
            FROM staging WHERE batch = b ORDER BY version;
        COMMIT;
    END LOOP;
END
\$\$;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric, 3),
       round(pg_wal_lsn_diff(pg_current_wal_lsn(), :'wal0') / $EVENTS),
       round(pg_total_relation_size('events') / $EVENTS::numeric),
       (SELECT count(*) FROM pg_index WHERE indrelid = 'events'::regclass);
SQL
        )
        IFS='|' read -r secs wal stored nidx <<<"$out"
        times+=("$secs")
    done
    med=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    rate=$(awk -v n="$EVENTS" -v s="$med" 'BEGIN {printf "%.0f", n / s}')
    printf '| %s | %s | %s | %s | %s | %s |\n' "$config" "$nidx" "$wal" "$stored" "$med" "$rate"
done
