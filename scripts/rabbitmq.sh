#!/usr/bin/env bash
# scripts/rabbitmq.sh — find (or start) a RabbitMQ broker for factum's bus tests.
#
# Prints exactly one line on stdout: an AMQP URL of a broker that answers.
# Diagnostics go to stderr. Resolution order:
#   1. $FACTUM_TEST_AMQP_URL, if set and non-empty (not checked);
#   2. a broker answering on 127.0.0.1:5672 (guest/guest, the default vhost);
#   3. Debian's rabbitmq-server, started with `rabbitmq-server -detached` (the
#      system's own node, left running for later runs), after installing the
#      `rabbitmq-server` package if it is missing (as root; otherwise prints the
#      command and fails).
# Tests that stop a broker start private ones of their own on other ports; this
# script never stops anything.
set -euo pipefail

URL="amqp://guest:guest@127.0.0.1:5672/%2f"

log() { printf 'rabbitmq.sh: %s\n' "$*" >&2; }
die() {
    printf 'rabbitmq.sh: error: %s\n' "$*" >&2
    exit 1
}

# Succeeds when something accepts TCP connections on 127.0.0.1:5672 and speaks
# AMQP (the broker answers a protocol header with its own).
answers() {
    local reply
    { exec 3<>/dev/tcp/127.0.0.1/5672; } 2>/dev/null || return 1
    printf 'AMQP\x00\x00\x09\x01' >&3
    reply=$(timeout 3 head -c 8 <&3 2>/dev/null | od -An -c | tr -d ' \n') || true
    exec 3<&- 3>&- || true
    [[ -n $reply ]]
}

if [[ -n ${FACTUM_TEST_AMQP_URL:-} ]]; then
    log "using \$FACTUM_TEST_AMQP_URL"
    printf '%s\n' "$FACTUM_TEST_AMQP_URL"
    exit 0
fi

if answers; then
    log "using the broker on 127.0.0.1:5672"
    printf '%s\n' "$URL"
    exit 0
fi

if ! command -v rabbitmq-server >/dev/null && [[ ! -x /usr/sbin/rabbitmq-server ]]; then
    INSTALL_CMD="apt-get update && apt-get install -y --no-install-recommends rabbitmq-server"
    ((EUID == 0)) || die "rabbitmq-server is not installed; run as root: $INSTALL_CMD"
    log "installing Debian's rabbitmq-server"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends rabbitmq-server; } >&2 </dev/null ||
        die "could not install rabbitmq-server"
fi

if ! answers; then
    log "starting rabbitmq-server -detached"
    # Close our pipes in the long-lived node, so that callers waiting for EOF do not hang.
    (rabbitmq-server -detached >/dev/null 2>&1 </dev/null 3>&- &) || true
fi
for _ in $(seq 1 120); do
    if answers; then
        printf '%s\n' "$URL"
        exit 0
    fi
    sleep 0.5
done
die "rabbitmq-server did not answer on 127.0.0.1:5672 within 60 s (see /var/log/rabbitmq/)"
