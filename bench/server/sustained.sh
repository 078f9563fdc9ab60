#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Durable commands under sustained load: one server and one store per
# build and round, INTERVALS back-to-back runs of od-bench-server commands
# (INTERVAL_SECONDS each, CLIENTS keep-alive clients, random Idempotency-Keys),
# printing each interval's commands/s and the writer thread's user and
# system CPU a command.  A short run misses what only a warm, growing
# store shows (the writer's page cache filling up, see benchmarks.md).
# Builds alternate in each round, so that a before/after pair shares the
# machine's load.
# Usage: bench/server/sustained.sh BUILD_DIR [BUILD_DIR...]
#   (a BUILD_DIR needs src/server/orderdesk-server and
#   bench/server/od-bench-server)
# Sizes (environment): ROUNDS (2), INTERVALS (8), INTERVAL_SECONDS (5),
# CLIENTS (16).
set -euo pipefail
rounds=${ROUNDS:-2}
intervals=${INTERVALS:-8}
seconds=${INTERVAL_SECONDS:-5}
clients=${CLIENTS:-16}
work=$(mktemp -d /tmp/od-sustained.XXXXXX)
server_pid=
cleanup () {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

token="bench-token"
umask 077
printf '[{"name":"bench","role":"operator","token_sha256":"%s"}]\n' \
  "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" > "$work/tokens.json"
ticks () { sed 's/.*) //' "$1" | awk '{ print $12, $13 }'; }
field () { tr ' ' '\n' <<< "$2" | awk -v k="$1=" 'index($0, k) == 1 { print substr($0, length(k) + 1) }'; }

builds=()
for b in "$@"; do builds+=("$(realpath "$b")"); done
[ ${#builds[@]} -gt 0 ] || { echo "usage: sustained.sh BUILD_DIR [BUILD_DIR...]" >&2; exit 2; }
hz=$(getconf CLK_TCK)
echo "== sustained commands: $rounds rounds, $intervals x $seconds s x $clients clients a build;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
  for b in "${builds[@]}"; do
    rm -f "$work"/store.sqlite* "$work/ready"
    "$b/src/server/orderdesk-server" --listen 127.0.0.1:0 --store "sqlite:$work/store.sqlite" \
      --rate-limit 0 --tokens "$work/tokens.json" --ready-file "$work/ready" \
      2>>"$work/server.log" >/dev/null &
    server_pid=$!
    while [ ! -s "$work/ready" ]; do
      kill -0 "$server_pid" 2>/dev/null || { echo "server did not start" >&2; exit 1; }
      sleep 0.05
    done
    url=$(cat "$work/ready")
    writer=$(grep -lx od-writer /proc/"$server_pid"/task/*/comm | head -n 1)
    writer=${writer%/comm}
    line="  round $r $b:"
    for i in $(seq 1 "$intervals"); do
      t0=$(ticks "$writer/stat")
      out=$("$b/bench/server/od-bench-server" commands --url "$url" --token "$token" \
              --clients "$clients" --seconds "$seconds")
      t1=$(ticks "$writer/stat")
      line="$line $(awk -v a="$t0" -v z="$t1" -v n="$(field accepted "$out")" \
                       -v rate="$(field commands/s "$out")" -v hz="$hz" 'BEGIN {
        split (a, x, " "); split (z, y, " ");
        printf "%d/s (%.0f+%.0f us)", rate, (y[1] - x[1]) * 1e6 / hz / n, (y[2] - x[2]) * 1e6 / hz / n }')"
    done
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
    echo "$line"
  done
done
echo "(each interval: commands/s (writer user + system CPU a command)); load average at end:" \
     "$(cut -d' ' -f1-3 /proc/loadavg)"
