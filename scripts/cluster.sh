#!/usr/bin/env bash
# scripts/cluster.sh — a local replicated PostgreSQL cluster for failover tests
# and trials: three Patroni nodes (n1, n2, n3) on a one-member etcd, all on
# 127.0.0.1 with trust authentication (superuser `postgres`). Not for production.
#
#   state dir ${FACTUM_CLUSTER_DIR:-/tmp/factum-cluster}: Patroni configs (n1.yml..),
#             data dirs, pid files and logs (etcd.log, n1.log, n2.log, n3.log)
#   ports     base ${FACTUM_CLUSTER_PORT:-55451}: PostgreSQL on base..base+2, Patroni
#             REST API on base+100..base+102, etcd on base+200 and base+201
#   timing    Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10): writes
#             resume about 30 s after the leader's death. FACTUM_CLUSTER_FAST=1:
#             ttl 20, loop_wait 1, retry_timeout 5, about 23 s. Patroni 3.0.2 only
#             checks that these are integers; Patroni >= 3.2 requires ttl >= 20,
#             loop_wait >= 1, retry_timeout >= 3 and loop_wait + 2*retry_timeout
#             <= ttl. retry_timeout does not delay the detection of a dead leader.
#             Set at bootstrap (the first `up`): run `down` before changing it.
#   install   apt-get installs what is missing of postgresql, patroni, python3-etcd
#             and etcd-server when run as root; otherwise it prints the command.
#
# Usage: scripts/cluster.sh up             start what is not running, wait (120 s)
#                                          for a leader and two streaming replicas,
#                                          print the multi-host URL (read-write)
#        scripts/cluster.sh down           stop everything, remove the state dir
#        scripts/cluster.sh status         per node: name port role state timeline lag
#        scripts/cluster.sh leader         the leader's name (exit 1 if none)
#        scripts/cluster.sh port NODE      PostgreSQL port of NODE
#        scripts/cluster.sh kill NODE      SIGKILL NODE's Patroni and postmaster
#        scripts/cluster.sh start NODE     start NODE again: it rejoins as a replica
#                                          (rewound or re-cloned), or stays leader
#                                          if restarted before its ttl expired
#        scripts/cluster.sh wait-replicas N [TIMEOUT_S]    (default 120)
# patronictl works too: patronictl -c /tmp/factum-cluster/n1.yml list
set -euo pipefail

DIR=${FACTUM_CLUSTER_DIR:-/tmp/factum-cluster}
DIR=${DIR%/}
BASE=${FACTUM_CLUSTER_PORT:-55451}
NODES=(n1 n2 n3)
PACKAGES="patroni python3-etcd etcd-server"
# shellcheck disable=SC2034 # read by find_bindir, which prefers its major version
PG_DIR=$DIR/n1/data

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() {
    printf 'cluster.sh: error: %s\n' "$*" >&2
    exit 1
}

[[ $DIR == /* ]] || die "FACTUM_CLUSTER_DIR must be an absolute path, got '$DIR'"
# Each node's unix socket is $DIR/nN/.s.PGSQL.PORT, and sun_path holds 107 bytes.
((${#DIR} <= 80)) || die "FACTUM_CLUSTER_DIR is too long for unix sockets (over 80 bytes): '$DIR'"
if ! [[ $BASE =~ ^[0-9]{1,5}$ ]] || ((10#$BASE < 1024 || 10#$BASE + 201 > 65535)); then
    die "FACTUM_CLUSTER_PORT must be a port number in 1024..65334, got '$BASE'"
fi
BASE=$((10#$BASE))
ETCD_PORT=$((BASE + 200))
HOSTS="127.0.0.1:$BASE,127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2))"
URL="postgresql://postgres@$HOSTS/postgres?target_session_attrs=read-write"

# ensure_binaries (sets BINDIR, installing postgresql if need be), find_client.
# shellcheck source=scripts/pg-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/pg-lib.sh"

node_index() {
    case ${1:-} in
    n1) echo 0 ;; n2) echo 1 ;; n3) echo 2 ;;
    *) die "unknown node '${1:-}' (expected n1, n2 or n3)" ;;
    esac
}
pg_port() { echo $((BASE + $(node_index "$1"))); }
api_port() { echo $((BASE + 100 + $(node_index "$1"))); }

# Succeeds if something accepts TCP connections on 127.0.0.1:$1.
port_open() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Succeeds if process $1 exists and is not a zombie (orphans may never be
# reaped); no fork, as kill polls every child of a postmaster.
running() {
    local stat
    [[ -n $1 ]] && read -r stat 2>/dev/null <"/proc/$1/stat" && [[ $stat != *") Z "* ]]
}

# live_pid FILE MARK: the pid on FILE's first line if that process runs and
# its command line contains MARK (a stale pid may belong to another process).
live_pid() {
    local pid
    pid=$(head -n 1 "$1" 2>/dev/null) || return 0
    if running "$pid" && [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *"$2"* ]]; then echo "$pid"; fi
}
pid_of() { # etcd, n1, n2 or n3
    if [[ $1 == etcd ]]; then
        live_pid "$DIR/etcd.pid" "--data-dir $DIR/etcd "
    else
        live_pid "$DIR/$1.pid" "$DIR/$1.yml"
    fi
}
postmaster_of() { live_pid "$DIR/$1/data/postmaster.pid" "$DIR/$1/data"; }

ensure_packages() {
    ensure_binaries # PostgreSQL itself, as scripts/pg.sh does
    command -v patroni >/dev/null && command -v etcd >/dev/null && return
    local cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES"
    ((EUID == 0)) || die "patroni or etcd is missing; install them as root with: $cmd"
    log "installing $PACKAGES"
    # shellcheck disable=SC2086 # a list of package names
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES; } >&2 ||
        die "package installation failed; run manually: $cmd"
}

# Serialise up and down (fd 9; spawn closes it in the daemons).
take_lock() {
    (umask 022 && mkdir -p "$(dirname "$DIR")")
    exec 9>>"$DIR.lock"
    flock -w 300 9 || die "timed out waiting for lock $DIR.lock"
}

# spawn NAME CMD...: run CMD in the background as the owner (runuser, as
# as_owner does), logging to $DIR/NAME.log. Both runuser and CMD get a session
# of their own, so that signals to the caller's process group reach neither,
# and CMD writes its pid to $DIR/NAME.pid (its pid is also its process group).
spawn() {
    local name=$1 fd
    shift
    (
        for fd in /proc/"$BASHPID"/fd/*; do # no lock or caller's pipe in daemons
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        cd /
        # shellcheck disable=SC2016 # $$ and $@ are the inner shell's
        local run=(setsid sh -c 'echo $$ >"$0"; exec "$@"' "$DIR/$name.pid" "$@")
        if ((EUID == 0)); then run=(runuser -u postgres -- "${run[@]}"); fi
        exec setsid "${run[@]}" </dev/null >>"$DIR/$name.log" 2>&1
    ) &
}

# write_config NODE: the node's Patroni configuration, $DIR/NODE.yml, and
# its directory $DIR/NODE (data dir, unix socket, pgpass).
write_config() {
    local n=$1 ttl=30 loop_wait=10 retry_timeout=10
    if [[ ${FACTUM_CLUSTER_FAST:-0} == 1 ]]; then ttl=20 loop_wait=1 retry_timeout=5; fi
    mkdir -p "$DIR/$n"
    if ((EUID == 0)); then chown postgres:postgres "$DIR/$n"; fi
    cat >"$DIR/$n.yml" <<EOF
# Written by scripts/cluster.sh at the first 'up' (FACTUM_CLUSTER_FAST=${FACTUM_CLUSTER_FAST:-0}).
scope: factum
name: $n
restapi:
  listen: 127.0.0.1:$(api_port "$n")
  connect_address: 127.0.0.1:$(api_port "$n")
# etcd's v3 API: etcd 3.4 serves the v2 API only with --enable-v2.
etcd3:
  host: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    ttl: $ttl
    loop_wait: $loop_wait
    retry_timeout: $retry_timeout
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        # Patroni 3.0.2 has no quorum commit, so its synchronous_mode stays
        # off and this is a plain PostgreSQL parameter: a commit is
        # acknowledged once one of the two standbys has flushed it, and on
        # failover Patroni promotes the most advanced healthy standby.
        synchronous_commit: "on"
        synchronous_standby_names: "ANY 1 (*)"
        max_connections: 200
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        shared_buffers: 64MB
        # After a failover a standby often asks the new leader for its slot
        # before Patroni has created it; retry after 1 s, not the default
        # 5 s, as commits wait for a standby.
        wal_retrieve_retry_interval: 1s
  initdb:
    - data-checksums
    - encoding: UTF8
    - locale: C
postgresql:
  listen: 127.0.0.1:$(pg_port "$n")
  connect_address: 127.0.0.1:$(pg_port "$n")
  data_dir: $DIR/$n/data
  bin_dir: $BINDIR
  pgpass: $DIR/$n/pgpass
  # A former leader whose rewind fails, or whose timeline diverged, is re-cloned.
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser: {username: postgres}
    replication: {username: postgres}
  parameters:
    unix_socket_directories: $DIR/$n
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
EOF
}

start_etcd() {
    [[ -n $(pid_of etcd) ]] && return
    port_open "$ETCD_PORT" && die "port $ETCD_PORT is in use by something else"
    log "starting etcd on 127.0.0.1:$ETCD_PORT (log: $DIR/etcd.log)"
    local peer="http://127.0.0.1:$((BASE + 201))" client="http://127.0.0.1:$ETCD_PORT"
    local deadline=$((SECONDS + 30))
    spawn etcd etcd --name etcd --data-dir "$DIR/etcd" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "etcd=$peer" --initial-cluster-state new
    until port_open "$ETCD_PORT"; do
        ((SECONDS < deadline)) || die "etcd did not start; see $DIR/etcd.log"
        sleep 0.5
    done
}

start_node() {
    local n=$1
    [[ -z $(pid_of "$n") ]] || { log "$n is running"; return; }
    [[ -n $(postmaster_of "$n") ]] && die "a postmaster of $n runs without its Patroni; run '$0 kill $n' first"
    port_open "$(pg_port "$n")" && die "port $(pg_port "$n") is in use by something else"
    port_open "$(api_port "$n")" && die "port $(api_port "$n") is in use by something else"
    log "starting $n: PostgreSQL on 127.0.0.1:$(pg_port "$n") (log: $DIR/$n.log)"
    spawn "$n" patroni "$DIR/$n.yml"
}

# One line per member in the DCS, "name role state timeline lag", from the
# REST API (GET /cluster) of the first node that answers; fails if none does.
members() {
    /usr/bin/python3 - "$(api_port n1)" "$(api_port n2)" "$(api_port n3)" <<'EOF'
import json, sys, urllib.request
for port in sys.argv[1:]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cluster", timeout=3) as r:
            cluster = json.load(r)
    except (OSError, ValueError):
        continue
    for m in cluster.get("members", []):
        print(m["name"], m["role"], m.get("state") or "-", m.get("timeline", "-"), m.get("lag", "-"))
    sys.exit(0)
sys.exit(1)
EOF
}

# The leader's name, if its Patroni is alive (the DCS keeps a dead leader's
# key until its ttl expires).
current_leader() {
    local name role rest
    while read -r name role rest; do
        if [[ $role == leader && -n $(pid_of "$name") ]]; then echo "$name"; fi
    done < <(members 2>/dev/null || true)
}

# Number of live replicas that Patroni reports running with a known lag and
# that stream from the leader (pg_stat_replication there).
streaming_replicas() {
    local leader streaming name role state tl lag count=0
    leader=$(current_leader)
    [[ -n $leader ]] || { echo 0; return; }
    streaming=" $(PGCONNECT_TIMEOUT=3 "$(find_client psql)" -XAtq -d \
        "postgresql://postgres@127.0.0.1:$(pg_port "$leader")/postgres" -c \
        "select string_agg(application_name, ' ') from pg_stat_replication where state = 'streaming'" \
        2>/dev/null </dev/null) "
    while read -r name role state tl lag; do
        if [[ $role == replica && $state =~ ^(running|streaming)$ && $lag =~ ^[0-9]+$ &&
            -n $(pid_of "$name") && $streaming == *" $name "* ]]; then count=$((count + 1)); fi
    done < <(members 2>/dev/null || true)
    echo "$count"
}

# wait_replicas N TIMEOUT_S: until N replicas stream; 1 on timeout.
wait_replicas() {
    local want=$1 deadline=$((SECONDS + $2))
    until (($(streaming_replicas) >= want)); do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

# stop_pids SIGNAL TIMEOUT_S PID...: signal them, wait until they are gone; 1 if some are not.
stop_pids() {
    local sig=$1 deadline=$((SECONDS + $2)) pid
    shift 2
    (($# > 0)) || return 0
    kill -s "$sig" "$@" 2>/dev/null || true
    for pid in "$@"; do
        while running "$pid"; do
            ((SECONDS < deadline)) || return 1
            sleep 0.1
        done
    done
}

# kill_postmaster NODE: SIGKILL its postmaster and the postmaster's children.
kill_postmaster() {
    local pm
    pm=$(postmaster_of "$1")
    [[ -n $pm ]] || return 0
    # shellcheck disable=SC2046 # one pid per word
    stop_pids KILL 10 "$pm" $(pgrep -P "$pm") || die "postmaster $pm of $1 survived SIGKILL"
}

cmd_up() {
    ensure_packages
    ((EUID != 0)) || id -u postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user"
    take_lock
    (umask 022 && mkdir -p "$DIR")
    if ((EUID == 0)); then chown postgres:postgres "$DIR"; fi
    chmod 700 "$DIR"
    start_etcd
    local n
    for n in "${NODES[@]}"; do
        [[ -f $DIR/$n.yml ]] || write_config "$n"
        start_node "$n"
    done
    if ! wait_replicas 2 120; then
        cmd_status >&2
        die "no leader with two streaming replicas after 120 s; see the logs $DIR/{etcd,n1,n2,n3}.log"
    fi
    printf '%s\n' "$URL"
}

cmd_down() {
    take_lock
    local n pids
    # Patroni stops its PostgreSQL on SIGTERM; SIGKILL leaves it to kill_postmaster.
    mapfile -t pids < <(for n in "${NODES[@]}"; do pid_of "$n"; done)
    stop_pids TERM 60 "${pids[@]}" || stop_pids KILL 10 "${pids[@]}" || die "Patroni survived SIGKILL"
    for n in "${NODES[@]}"; do kill_postmaster "$n"; done
    mapfile -t pids < <(pid_of etcd)
    stop_pids TERM 20 "${pids[@]}" || stop_pids KILL 10 "${pids[@]}" || die "etcd survived SIGKILL"
    rm -rf "$DIR"
    log "stopped; removed $DIR"
}

cmd_status() {
    local n name role state tl lag
    declare -A roles=() states=() tls=() lags=()
    while read -r name role state tl lag; do
        roles[$name]=$role states[$name]=$state tls[$name]=$tl lags[$name]=$lag
    done < <(members 2>/dev/null || true)
    for n in "${NODES[@]}"; do
        role=stopped state=stopped tl=- lag=-
        if [[ -n $(pid_of "$n") ]]; then
            role=${roles[$n]:-unknown} state=${states[$n]:-unknown} tl=${tls[$n]:--} lag=${lags[$n]:--}
        fi
        printf '%-3s %-5s %-8s %-16s %-3s %s\n' "$n" "$(pg_port "$n")" "$role" "$state" "$tl" "$lag"
    done
    log "logs: $DIR/{etcd,n1,n2,n3}.log"
}

cmd_kill() {
    local n=$1 pid
    node_index "$n" >/dev/null
    pid=$(pid_of "$n")
    [[ -n $pid$(postmaster_of "$n") ]] || { log "$n is not running"; return; }
    # Patroni first, and its whole process group (pg_rewind, pg_basebackup),
    # so that nothing restarts the postmaster.
    if [[ -n $pid ]]; then
        kill -KILL -- "-$pid" 2>/dev/null || true
        stop_pids KILL 10 "$pid" || die "Patroni of $n ($pid) survived SIGKILL"
    fi
    kill_postmaster "$n"
    log "killed $n"
}

cmd_start() {
    node_index "$1" >/dev/null
    [[ -f $DIR/$1.yml ]] || die "no cluster in $DIR; run '$0 up' first"
    [[ -n $(pid_of etcd) ]] || die "etcd is not running; run '$0 up'"
    start_node "$1"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
leader) leader=$(current_leader) && [[ -n $leader ]] && echo "$leader" || exit 1 ;;
port) node_index "${2:-}" >/dev/null && pg_port "$2" ;;
kill) cmd_kill "${2:-}" ;;
start) cmd_start "${2:-}" ;;
wait-replicas)
    [[ ${2:-} =~ ^[0-9]+$ && ${3:-120} =~ ^[0-9]+$ ]] || die "usage: $0 wait-replicas N [TIMEOUT_S]"
    wait_replicas "$2" "${3:-120}" || die "fewer than $2 streaming replicas after ${3:-120} s (see '$0 status')"
    ;;
-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2 ;;
*) die "unknown command '${1:-}' (expected: up, down, status, leader, port, kill, start, wait-replicas)" ;;
esac
