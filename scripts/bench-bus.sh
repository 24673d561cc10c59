#!/usr/bin/env bash
# scripts/bench-bus.sh — the event bus's benchmark (docs/performance.md, "The event bus").
#
# Boots a private PostgreSQL cluster of its own through scripts/pg.sh (port
# FACTUM_BUS_BENCH_PG_PORT, default 55441, in /tmp/factum-bus-bench-pg), so that no
# other client's long transaction holds back the log's gap-safe horizon; takes the
# broker from scripts/rabbitmq.sh; builds and runs bus-rabbitmq/benches/bus.rs in
# release mode; stops the private cluster on exit. Extra environment passes through
# (FACTUM_BENCH_REPS, FACTUM_BENCH_EVENTS, FACTUM_BENCH_RATE, FACTUM_BENCH_ONLY).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO=${CARGO:-cargo}
export FACTUM_PG_FORCE_PRIVATE=1
export FACTUM_PG_PORT=${FACTUM_BUS_BENCH_PG_PORT:-55441}
export FACTUM_PG_DIR=/tmp/factum-bus-bench-pg/data
unset DATABASE_URL

trap 'bash scripts/pg.sh stop || true' EXIT
DATABASE_URL=$(bash scripts/pg.sh)
FACTUM_TEST_AMQP_URL=$(bash scripts/rabbitmq.sh)
export DATABASE_URL FACTUM_TEST_AMQP_URL
"$CARGO" bench -p factum-rabbitmq --bench bus
