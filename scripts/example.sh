#!/usr/bin/env bash
# scripts/example.sh — run the example order/customer service.
#
# Uses $DATABASE_URL when it is set. Otherwise gets a PostgreSQL server from
# scripts/pg.sh (the local one on 127.0.0.1:5432, or a private cluster it boots,
# installing PostgreSQL first if needed) and uses a database `factum_example` on
# it, created on first use, with the roles factum_owner (owns the schema, applies
# the migrations) and factum_app (the service runs as it; it owns nothing and
# cannot change or delete events). Then builds the example and runs it: a short
# simulation first (so you see the framework working), then the HTTP API on
# ${FACTUM_EXAMPLE_LISTEN:-127.0.0.1:8080} until Ctrl-C, with the operator console at
# /console (FACTUM_CONSOLE_TOKEN and FACTUM_CONSOLE_READONLY_TOKEN, or a token generated
# for the run and printed).
#
# Usage: scripts/example.sh                 simulate briefly, then serve
#        scripts/example.sh serve [flags]   serve only (see --help)
#        scripts/example.sh simulate --orders 5000 --concurrency 32
#        scripts/example.sh --help          this text (the service's own flags:
#                                           scripts/example.sh serve --help)
# Honours $CARGO, $CARGO_TARGET_DIR and $FACTUM_EXAMPLE_DB (the database name, default factum_example).
#
# Several instances on one database: the set-up steps change nothing when run again,
# so while one instance runs, start another in a second terminal on another address:
#     FACTUM_EXAMPLE_LISTEN=127.0.0.1:8081 scripts/example.sh serve
# (`serve` only: the simulation checks the read models, so it needs every projection
# running in its own instance). Each projection, or each slice of one, runs in one
# instance at a time; the others stand by to take over.
# FACTUM_EXAMPLE_SLICES (default 1, from 1 to 1024) runs the order and customer read
# models in that many slices each, which spread over the instances by themselves. The
# count is fixed per database: give every instance the same one, and to try another
# count use another database, e.g. FACTUM_EXAMPLE_DB=factum_sliced.
# FACTUM_EXAMPLE_SHIP_DEADLINE (seconds, default 86400): a confirmed order not shipped in
# that time is cancelled by the ship_deadline process (GET /ops/processes shows its timers).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO=${CARGO:-cargo}
DB=${FACTUM_EXAMPLE_DB:-factum_example}

log() { printf '== %s\n' "$*" >&2; }
die() {
    printf 'example.sh: error: %s\n' "$*" >&2
    exit 1
}

# The script's own usage, before anything is started or built.
case ${1:-} in
-h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
    ;;
esac

[[ $DB =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "FACTUM_EXAMPLE_DB must be a plain lower-case name, got '$DB'"

if [[ -z ${DATABASE_URL:-} ]]; then
    ADMIN_URL=$(bash scripts/pg.sh) || die "scripts/pg.sh could not provide a PostgreSQL server"
    PSQL=$(command -v psql || printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
    [[ -x $PSQL ]] || die "psql not found (install the postgresql-client package)"
    if [[ -z $("$PSQL" "$ADMIN_URL" -XqAt -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" </dev/null) ]]; then
        log "creating database $DB"
        "$PSQL" "$ADMIN_URL" -XqAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DB\"" </dev/null >/dev/null
    fi
    # Swap the database (and then the user) in the URL from pg.sh
    # (postgres://user@host:port/db[?query]).
    base=${ADMIN_URL%%\?*}
    query=${ADMIN_URL:${#base}}
    DB_URL="${base%/*}/$DB$query"
    with_user() { sed -E "s|^([^:/?]+://)[^@/?#]*@|\1$1@|" <<<"$DB_URL"; }
    # Least privilege: the service runs as factum_app, which owns nothing and cannot
    # change or delete events; factum_owner owns the schema and applies the migrations.
    log "setting up the roles factum_owner and factum_app"
    sed -e 's/{owner}/factum_owner/g' -e 's/{runtime}/factum_app/g' -e 's/{schema}/public/g' \
        -e "s/{database}/$DB/g" store-postgres/sql/roles/create_roles.sql |
        "$PSQL" "$DB_URL" -XqAt -v ON_ERROR_STOP=1 >/dev/null
    # A database made by an earlier version, before the roles: hand its objects to the owner.
    "$PSQL" "$DB_URL" -XqAt -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DO $adopt$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')
               AND pg_get_userbyid(c.relowner) <> 'factum_owner' LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO factum_owner', r.name);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> 'factum_owner' LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO factum_owner', r.name);
    END LOOP;
END
$adopt$;
SQL
    OWNER_URL=$(with_user factum_owner)
    export DATABASE_URL=$(with_user factum_app)
fi
log "database: $(sed -E 's|^([^:/?]+://[^:/?#@]*):[^/?#@]*@|\1:***@|' <<<"$DATABASE_URL")"

log "building the example (the first build takes a few minutes)"
"$CARGO" build -p factum-example --quiet
if [[ -n ${OWNER_URL:-} ]]; then
    log "applying the migrations as factum_owner"
    "${CARGO_TARGET_DIR:-target}/debug/factum-example" --database-url "$OWNER_URL" setup --grant-to factum_app >/dev/null
fi
if (($# == 0)); then
    set -- serve --simulate-first --customers 20 --orders 200
fi
# The operator console at /console: an operator token for this run unless one is given.
if [[ -z ${FACTUM_CONSOLE_TOKEN:-} && -z ${FACTUM_CONSOLE_READONLY_TOKEN:-} ]]; then
    FACTUM_CONSOLE_TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    export FACTUM_CONSOLE_TOKEN
    log "console: http://${FACTUM_EXAMPLE_LISTEN:-127.0.0.1:8080}/console/ (log in with this run's token $FACTUM_CONSOLE_TOKEN)"
fi
exec "${CARGO_TARGET_DIR:-target}/debug/factum-example" "$@"
