#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# PostgreSQL store benchmarks of docs/benchmarks.md.
# Usage: bench/pg/run.sh BUILD_DIR
# Starts a throwaway PostgreSQL cluster (tests/pg-cluster.sh) unless
# OD_TEST_PGHOST is set, then:
#  0. a baseline: the same client against a SQLite store, 16 clients;
#  1. durable commands/s through one instance with the same client as the
#     SQLite figures (bench/server's od-bench-server), 16 and 64 clients;
#  2. bench-pg: 1 and 2 instances on one database, 16 and 64 clients,
#     commands/s and append -> delivered latency to a subscriber on the
#     other instance; and once more with 1,000,000 events in the log.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=$(realpath "${1:-build}")
export OD_SERVER_BIN=$build/src/server/orderdesk-server
seconds=${SECONDS_RUN:-10}

if [ -z "${OD_TEST_PGHOST:-}" ]; then
  . tests/pg-cluster.sh
  pg_cluster_start
  trap pg_cluster_stop EXIT
fi

work=$(mktemp -d /tmp/od-bench-pg.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; pg_cluster_stop 2>/dev/null || true' EXIT
token=bench-token
printf '[{"name":"bench","role":"operator","token_sha256":"%s"}]\n' \
  "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" > "$work/tokens.json"

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# A baseline from the same moment on this (shared, noisy) machine.
rm -f "$work/ready"
"$OD_SERVER_BIN" --listen 127.0.0.1:0 --store "sqlite:$work/baseline.sqlite" \
  --tokens "$work/tokens.json" --rate-limit 0 --ready-file "$work/ready" 2>>"$work/server.log" &
pid=$!
while [ ! -s "$work/ready" ]; do sleep 0.05; done
echo "== baseline: od-bench-server commands, SQLite store, 16 clients, $seconds s"
"$build/bench/server/od-bench-server" commands --url "$(cat "$work/ready")" --token "$token" \
  --clients 16 --seconds "$seconds"
kill "$pid"; wait "$pid" || true

for clients in 16 64; do
  db=od_bench_$$_$clients
  psql -q "host=$OD_TEST_PGHOST user=postgres dbname=postgres" -c "CREATE DATABASE $db"
  rm -f "$work/ready"
  "$OD_SERVER_BIN" --listen 127.0.0.1:0 --store "postgresql:///$db?host=$OD_TEST_PGHOST&user=postgres" \
    --tokens "$work/tokens.json" --rate-limit 0 --ready-file "$work/ready" 2>>"$work/server.log" &
  pid=$!
  while [ ! -s "$work/ready" ]; do sleep 0.05; done
  echo "== od-bench-server commands, 1 instance, $clients clients, $seconds s (PostgreSQL, synchronous_commit=on)"
  "$build/bench/server/od-bench-server" commands --url "$(cat "$work/ready")" --token "$token" \
    --clients "$clients" --seconds "$seconds"
  kill "$pid"; wait "$pid" || true
done

for instances in 1 2; do
  for clients in 16 64; do
    echo "== bench-pg, $instances instance(s), $clients clients, $seconds s"
    "$build/bench/pg/bench-pg" --instances "$instances" --clients "$clients" --seconds "$seconds"
  done
done
echo "== bench-pg, 1 instance, 16 clients, $seconds s, after 1,000,000 events already in the log"
"$build/bench/pg/bench-pg" --instances 1 --clients 16 --seconds "$seconds" --preload 1000000
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
