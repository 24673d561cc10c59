#!/usr/bin/env bash
# scripts/pg.sh — find (or boot) a PostgreSQL server for factum's tests.
#
# Prints exactly one line on stdout: a URL for a superuser that can
# CREATE DATABASE. Diagnostics go to stderr. Resolution order:
#   1. $DATABASE_URL, if set and non-empty;
#   2. a server answering on 127.0.0.1:5432 as user `postgres` (trust auth),
#      unless FACTUM_PG_FORCE_PRIVATE=1;
#   3. a private throwaway cluster, booted on first use and reused afterwards,
#      with the least-privilege roles factum_owner and factum_app set up:
#        data dir  ${FACTUM_PG_DIR:-/tmp/factum-pg/data}
#                  (also holds the unix socket and the server log)
#        port      ${FACTUM_PG_PORT:-55432}, listening on 127.0.0.1 only
#      Installs Debian's `postgresql` package first if no server binaries
#      exist (as root; otherwise prints the command and fails).
#
# Usage: scripts/pg.sh            print the URL (booting if needed)
#        scripts/pg.sh stop       stop the private cluster (only ours)
#        scripts/pg.sh status     report whether the private cluster runs
set -euo pipefail

PG_DIR=${FACTUM_PG_DIR:-/tmp/factum-pg/data}
PG_DIR=${PG_DIR%/}
PG_PORT=${FACTUM_PG_PORT:-55432}
PG_LOG="$PG_DIR/postgresql.log"
LOCK_FILE="$PG_DIR.lock" # sibling of the data dir: initdb wants it empty

log() { printf 'pg.sh: %s\n' "$*" >&2; }
die() {
    printf 'pg.sh: error: %s\n' "$*" >&2
    exit 1
}

if ! [[ $PG_PORT =~ ^[0-9]{1,5}$ ]] || ((10#$PG_PORT < 1 || 10#$PG_PORT > 65535)); then
    die "FACTUM_PG_PORT must be a TCP port number, got '$PG_PORT'"
fi
PG_PORT=$((10#$PG_PORT))
[[ $PG_DIR == /* ]] || die "FACTUM_PG_DIR must be an absolute path, got '$PG_DIR'"

# as_owner, find_bindir, find_client, ensure_binaries, INSTALL_CMD.
# shellcheck source=scripts/pg-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/pg-lib.sh"

# Succeeds if $1 is a URL on which we can run SQL as a role allowed to
# create databases.
url_usable() {
    local url=$1 psql isready out
    psql=$(find_client psql)
    isready=$(find_client pg_isready)
    [[ -n $psql ]] || return 1
    if [[ -n $isready ]]; then
        "$isready" -q -t 3 -d "$url" >/dev/null 2>&1 || return 1
    fi
    out=$(PGCONNECT_TIMEOUT=5 "$psql" "$url" -XAtq -c 'select 1' \
        -c 'select rolsuper or rolcreatedb from pg_roles where rolname = current_user' \
        2>/dev/null </dev/null) || return 1
    [[ $out == $'1\nt' ]]
}

# Port of the running private cluster, or nothing if it isn't running.
running_port() {
    [[ -f $PG_DIR/postmaster.pid ]] || return 0
    as_owner "$BINDIR/pg_ctl" status -D "$PG_DIR" >/dev/null 2>&1 || return 0
    sed -n 4p "$PG_DIR/postmaster.pid"
}

# Close every fd above 2 in the current (sub)shell. Used before pg_ctl
# starts the long-lived postmaster so that it holds neither our lock (fd 9)
# nor pipes of whoever called us (CI runners may wait for their EOF).
close_extra_fds() {
    local fd
    [[ -d /proc/$BASHPID/fd ]] || return 0
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
}

# Serialise concurrent invocations on the same cluster (fd 9; see
# close_extra_fds for why it must not leak into the postmaster).
take_lock() {
    # umask 022: parent dirs we create must be traversable by postgres.
    (umask 022 && mkdir -p "$(dirname "$LOCK_FILE")")
    exec 9>>"$LOCK_FILE"
    if command -v flock >/dev/null; then
        flock -w 180 9 || die "timed out waiting for lock $LOCK_FILE"
    fi
}

prepare_dir() {
    if ((EUID == 0)); then
        id -u postgres >/dev/null 2>&1 ||
            die "running as root but there is no 'postgres' OS user to own the cluster (install the postgresql package: $INSTALL_CMD)"
    fi
    (umask 022 && mkdir -p "$PG_DIR")
    if ((EUID == 0)); then
        chown postgres:postgres "$PG_DIR"
    fi
    chmod 700 "$PG_DIR"
    as_owner test -w "$PG_DIR" -a -x "$PG_DIR" ||
        die "the cluster owner cannot write $PG_DIR (is a parent directory not traversable?); set FACTUM_PG_DIR to a path under /tmp"
}

init_cluster() {
    if [[ -f $PG_DIR/PG_VERSION ]]; then
        return
    fi
    if [[ -n $(ls -A "$PG_DIR") ]]; then
        die "$PG_DIR exists, is not empty and is not a PostgreSQL cluster; remove it or set FACTUM_PG_DIR"
    fi
    log "initialising throwaway cluster in $PG_DIR ($BINDIR)"
    local out
    if ! out=$(as_owner "$BINDIR/initdb" -D "$PG_DIR" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C --no-sync 2>&1 </dev/null 9>&-); then
        printf '%s\n' "$out" >&2
        die "initdb failed"
    fi

    # Unix socket inside the cluster dir, unless the path would exceed the
    # 107-byte sun_path limit; we only use TCP, so then disable it.
    local sockdir=$PG_DIR
    if ((${#PG_DIR} + 20 > 107)); then
        log "warning: $PG_DIR is too long for a unix socket path; unix socket disabled"
        sockdir=""
    fi
    # Durability is pointless for a throwaway test cluster; speed is not.
    cat >>"$PG_DIR/postgresql.conf" <<EOF

# --- added by factum scripts/pg.sh (throwaway test cluster) ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sockdir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
}

start_cluster() {
    local port
    port=$(running_port)
    if [[ -n $port ]]; then
        [[ $port == "$PG_PORT" ]] ||
            die "the cluster in $PG_DIR is already running on port $port; use FACTUM_PG_PORT=$port or run '$0 stop' first"
        log "reusing running throwaway cluster in $PG_DIR (port $PG_PORT)"
        return
    fi
    log "starting throwaway cluster in $PG_DIR on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    if ! (close_extra_fds && as_owner "$BINDIR/pg_ctl" start -D "$PG_DIR" -w -t 90 \
        -l "$PG_LOG" -o "-p $PG_PORT") >&2 </dev/null; then
        log "pg_ctl start failed; last lines of $PG_LOG:"
        tail -n 20 "$PG_LOG" >&2 2>/dev/null || true
        die "could not start the throwaway cluster (port $PG_PORT in use? try FACTUM_PG_PORT=<other>)"
    fi
}

cmd_url() {
    if [[ -n ${DATABASE_URL:-} ]]; then
        log "using \$DATABASE_URL"
        printf '%s\n' "$DATABASE_URL"
        return
    fi

    local shared=postgres://postgres@127.0.0.1:5432/postgres
    if [[ ${FACTUM_PG_FORCE_PRIVATE:-0} != 1 ]] && url_usable "$shared"; then
        log "using the server on 127.0.0.1:5432"
        printf '%s\n' "$shared"
        return
    fi

    ensure_binaries
    take_lock
    prepare_dir
    init_cluster
    start_cluster

    local url="postgres://postgres@127.0.0.1:$PG_PORT/postgres" i
    for i in $(seq 1 30); do
        url_usable "$url" && break
        ((i == 30)) && die "throwaway cluster started but $url does not accept queries (see $PG_LOG)"
        sleep 1
    done
    # The least-privilege roles (factum_owner owns and migrates, factum_app runs the
    # service; docs/operations.md), so that the cluster runs the example as factum_app.
    sed -e 's/{owner}/factum_owner/g' -e 's/{runtime}/factum_app/g' -e 's/{schema}/public/g' \
        -e 's/{database}/postgres/g' "$(dirname "${BASH_SOURCE[0]}")/../store-postgres/sql/roles/create_roles.sql" |
        "$(find_client psql)" "$url" -XqAt -v ON_ERROR_STOP=1 >/dev/null ||
        die "could not set up the roles factum_owner and factum_app"
    printf '%s\n' "$url"
}

cmd_stop() {
    BINDIR=$(find_bindir)
    if [[ -z $BINDIR || ! -f $PG_DIR/PG_VERSION ]]; then
        log "no throwaway cluster in $PG_DIR; nothing to stop"
        return
    fi
    take_lock
    if [[ -z $(running_port) ]]; then
        log "throwaway cluster in $PG_DIR is not running"
        return
    fi
    log "stopping throwaway cluster in $PG_DIR"
    as_owner "$BINDIR/pg_ctl" stop -D "$PG_DIR" -m fast -w -t 60 >&2 </dev/null 9>&-
}

cmd_status() {
    BINDIR=$(find_bindir)
    local port=""
    [[ -n $BINDIR ]] && port=$(running_port)
    if [[ -n $port ]]; then
        log "throwaway cluster in $PG_DIR is running on 127.0.0.1:$port"
    else
        log "throwaway cluster in $PG_DIR is not running"
        return 3
    fi
}

case ${1:-url} in
url) cmd_url ;;
stop) cmd_stop ;;
status) cmd_status ;;
-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2 ;;
*) die "unknown command '$1' (expected: url, stop, status)" ;;
esac
