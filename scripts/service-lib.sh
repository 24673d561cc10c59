# shellcheck shell=bash
# scripts/service-lib.sh — sourced by the scripts that test the example service from
# outside (schemathesis.sh, console-e2e.sh): a database of their own, set up with the
# least-privilege roles as scripts/example.sh does, the service started on a free port,
# and the clean-up. Expects $CARGO, $TARGET, $WORK and a log function; sets $ADMIN_URL,
# $PSQL, $OWN_DB, $DB_URL, $SERVICE_PID and $BASE.

SERVICE_PID=""
OWN_DB=""

# Stops the service and drops the database; the EXIT trap of the sourcing script.
service_cleanup() {
    local rc=$?
    if [[ -n $SERVICE_PID ]]; then
        kill -TERM "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
    fi
    if [[ -n $OWN_DB ]]; then
        "$PSQL" "$ADMIN_URL" -XqAt -c "DROP DATABASE IF EXISTS \"$OWN_DB\" WITH (FORCE)" </dev/null >/dev/null || true
    fi
    exit "$rc"
}

# The database URL as another user (no password: the local server trusts its users).
with_user() { sed -E "s|^([^:/?]+://)[^@/?#]*@|\1$1@|" <<<"$DB_URL"; }

# service_database SUFFIX: a database of its own on the server of $DATABASE_URL (test.sh's
# run database, so named "<run db>_t<SUFFIX>" that test.sh drops too) or of scripts/pg.sh,
# with factum_owner (sets the database up) and factum_app (the service; owns nothing).
service_database() {
    local suffix=$1 base query parent
    ADMIN_URL=${DATABASE_URL:-$(bash scripts/pg.sh)}
    PSQL=$(command -v psql || printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
    [[ -x $PSQL ]] || { log "FAILED: psql not found (install the postgresql-client package)"; exit 1; }
    base=${ADMIN_URL%%\?*}
    query=${ADMIN_URL:${#base}}
    parent=${base##*/}
    [[ -n ${DATABASE_URL:-} && $parent =~ ^[a-z_][a-z0-9_]{0,40}$ ]] || parent="factum_${suffix}_$(date +%s)_$$"
    OWN_DB="${parent}_t${suffix}"
    PGOPTIONS='-c client_min_messages=warning' "$PSQL" "$ADMIN_URL" -XqAt -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS \"$OWN_DB\" WITH (FORCE)" -c "CREATE DATABASE \"$OWN_DB\"" </dev/null >/dev/null
    DB_URL="${base%/*}/$OWN_DB$query"
    sed -e 's/{owner}/factum_owner/g' -e 's/{runtime}/factum_app/g' -e 's/{schema}/public/g' \
        -e "s/{database}/$OWN_DB/g" store-postgres/sql/roles/create_roles.sql |
        "$PSQL" "$DB_URL" -XqAt -v ON_ERROR_STOP=1 >/dev/null
    log "building the example"
    "$CARGO" build -p factum-example --quiet
    "$TARGET/debug/factum-example" --database-url "$(with_user factum_owner)" setup --grant-to factum_app >/dev/null
}

# service_start [VAR=value...]: serves the example as factum_app on a free port, with
# those variables set; its output and log go to $WORK/service.out and $WORK/service.log.
service_start() {
    : >"$WORK/service.out" # before the service starts: never read an earlier run's address
    env "$@" DATABASE_URL="$(with_user factum_app)" RUST_LOG=warn \
        "$TARGET/debug/factum-example" serve --listen 127.0.0.1:0 >"$WORK/service.out" 2>"$WORK/service.log" &
    SERVICE_PID=$!
    BASE=""
    for _ in $(seq 600); do
        BASE=$(sed -n 's/^listening on //p' "$WORK/service.out" | head -n 1)
        [[ -n $BASE ]] && break
        kill -0 "$SERVICE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $BASE ]]; then
        cat "$WORK/service.log" >&2
        log "FAILED: the service did not start"
        exit 1
    fi
}
