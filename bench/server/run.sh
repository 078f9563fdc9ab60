#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Server benchmarks of docs/benchmarks.md: durable commands/s with 16
# concurrent clients, replay of 1,000,000 events to one subscriber, their digest, and the
# server's RSS with 1,000 idle subscribers.  Usage: bench/server/run.sh BUILD_DIR
set -euo pipefail
build=$(realpath "${1:-build}")
server=$build/src/server/orderdesk-server
bench=$build/bench/server/od-bench-server
work=$(mktemp -d /tmp/od-bench-server.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

token=bench-token
printf '[{"name":"bench","role":"operator","token_sha256":"%s"}]\n' \
  "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" > "$work/tokens.json"
chmod 600 "$work/tokens.json"

start_server () {
  rm -f "$work/ready"
  "$server" --listen 127.0.0.1:0 --store "sqlite:$work/$1.sqlite" --tokens "$work/tokens.json" \
    --rate-limit 0 --ready-file "$work/ready" 2>>"$work/server.log" &
  server_pid=$!
  while [ ! -s "$work/ready" ]; do sleep 0.05; done
  url=$(cat "$work/ready")
}

echo "== durable commands, 16 clients, 10 s (SQLite, synchronous=FULL)"
start_server commands
"$bench" commands --url "$url" --token "$token" --clients "${CLIENTS:-16}" --seconds "${SECONDS_RUN:-10}"
kill "$server_pid"; wait "$server_pid" || true

echo "== replay of ${EVENTS:-1000000} events to one subscriber"
"$bench" preload --store "sqlite:$work/replay.sqlite" --events "${EVENTS:-1000000}"
start_server replay
"$bench" replay --url "$url" --token "$token"

echo "== digest of the same ${EVENTS:-1000000} events (GET /v1/events/digest)"
"$bench" digest --url "$url" --token "$token"

echo "== server RSS with ${SUBSCRIBERS:-1000} idle subscribers"
"$bench" idle --url "$url" --token "$token" --subscribers "${SUBSCRIBERS:-1000}" --pid "$server_pid"
kill "$server_pid"; wait "$server_pid" || true
