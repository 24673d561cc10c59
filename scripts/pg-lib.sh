# scripts/pg-lib.sh — shell functions shared by scripts/pg.sh and scripts/bench.sh
# for finding (or installing) PostgreSQL's server binaries and running them as
# the cluster's owner. Sourced, not run; the caller defines log() and die(), and
# may set PG_DIR (a data directory whose major version find_bindir prefers).

INSTALL_CMD='apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql'

# Run a command as the cluster's OS owner: `postgres` when we are root
# (the server refuses to run as root), otherwise ourselves. cd / so that
# an unreadable cwd (e.g. /root) doesn't upset initdb/pg_ctl.
as_owner() {
    if ((EUID == 0)); then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Directory holding initdb/pg_ctl/postgres. Prefers the major version the
# existing cluster was created with, then the highest Debian-style version,
# then whatever is on $PATH. Prints nothing if there is none.
find_bindir() {
    local want="" d
    [[ -n ${PG_DIR:-} && -f $PG_DIR/PG_VERSION ]] && want=$(<"$PG_DIR/PG_VERSION")
    if [[ -n $want && -x /usr/lib/postgresql/$want/bin/pg_ctl ]]; then
        echo "/usr/lib/postgresql/$want/bin"
        return
    fi
    d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V |
        while read -r d; do
            [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && echo "$d"
        done | tail -n 1)
    if [[ -z $d ]] && command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        d=$(dirname "$(command -v pg_ctl)")
    fi
    [[ -n $d ]] && echo "$d"
    return 0
}

# A client binary (psql, pg_isready) from $PATH or from the server bindir.
find_client() {
    local name=$1 d
    if command -v "$name" >/dev/null; then
        command -v "$name"
        return
    fi
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
        [[ -x $d/$name ]] && { echo "$d/$name"; return; }
    done
    return 0
}

# Sets BINDIR, installing Debian's postgresql package first (as root) if no
# server binaries exist.
ensure_binaries() {
    BINDIR=$(find_bindir)
    [[ -n $BINDIR ]] && return
    if ((EUID != 0)); then
        log "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and \$PATH)."
        log "install them as root with:"
        log "  $INSTALL_CMD"
        log "or point DATABASE_URL at an existing server."
        exit 1
    fi
    command -v apt-get >/dev/null ||
        die "no PostgreSQL server binaries and no apt-get; install PostgreSQL or set DATABASE_URL"
    log "no PostgreSQL server binaries found; installing Debian's postgresql package"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } >&2 ||
        die "package installation failed; run manually: $INSTALL_CMD"
    BINDIR=$(find_bindir)
    [[ -n $BINDIR ]] || die "postgresql installed but no server binaries found under /usr/lib/postgresql"
}
