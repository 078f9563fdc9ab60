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
. "$(dirname "$0")/common.sh"
bench_init sustained
ticks () { sed 's/.*) //' "$1" | awk '{ print $12, $13 }'; }

builds_of "$@"
[ ${#builds[@]} -gt 0 ] || { echo "usage: sustained.sh BUILD_DIR [BUILD_DIR...]" >&2; exit 2; }
hz=$(getconf CLK_TCK)
echo "== sustained commands: $rounds rounds, $intervals x $seconds s x $clients clients a build;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
  for b in "${builds[@]}"; do
    rm -f "$work"/store.sqlite*
    start_server "$b" "$work/store.sqlite"
    writer=$(writer_task)
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
    stop_server
    echo "$line"
  done
done
echo "(each interval: commands/s (writer user + system CPU a command)); load average at end:" \
     "$(cut -d' ' -f1-3 /proc/loadavg)"
