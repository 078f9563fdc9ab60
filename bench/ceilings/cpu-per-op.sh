#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Issue 15: server CPU per command and per replayed event of one or more
# builds, alternating between them each round, so that a before/after pair
# shares the machine's load.  CPU per operation depends much less on a
# shared machine's load than throughput does.
# Usage: bench/ceilings/cpu-per-op.sh BUILD_DIR [BUILD_DIR...]
#   (a BUILD_DIR needs src/server/orderdesk-server and
#   bench/server/od-bench-server)
# Sizes (environment): CPU_ROUNDS (3), CPU_SECONDS of commands (3),
# CPU_CLIENTS (16), CPU_EVENTS replayed (200000, three replays a round),
# CPU_LOAD one-thread (the clients on one epoll thread, as redis-benchmark
# runs them) or threads (a blocking thread a client) (one-thread).
set -euo pipefail
rounds=${CPU_ROUNDS:-3}
seconds=${CPU_SECONDS:-3}
clients=${CPU_CLIENTS:-16}
events=${CPU_EVENTS:-200000}
case ${CPU_LOAD:-one-thread} in
  one-thread) load_args=(--one-thread) ;;
  threads) load_args=() ;;
  *) echo "CPU_LOAD is one-thread or threads" >&2; exit 2 ;;
esac
hz=$(getconf CLK_TCK)
. "$(dirname "$0")/../server/common.sh"
bench_init cpu-per-op
cpu () { sed 's/.*) //' "$1" | awk -v hz="$hz" '{ printf "%.3f", ($12 + $13) / hz }'; }

builds_of "$@"
[ ${#builds[@]} -gt 0 ] || { echo "usage: cpu-per-op.sh BUILD_DIR [BUILD_DIR...]" >&2; exit 2; }
"${builds[0]}/bench/server/od-bench-server" preload --store "sqlite:$work/replay.sqlite" \
  --events "$events" >/dev/null
echo "== server CPU per operation: $rounds rounds, commands $seconds s x $clients clients" \
     "(load: ${CPU_LOAD:-one-thread}),"\
     "replay of $events events x 3; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
  for b in "${builds[@]}"; do
    rm -f "$work"/commands.sqlite*
    start_server "$b" "$work/commands.sqlite"
    writer=$(writer_task)
    m0=$(cpu "/proc/$server_pid/task/$server_pid/stat"); t0=$(cpu "/proc/$server_pid/stat")
    w0=$(cpu "$writer/stat")
    out=$("$b/bench/server/od-bench-server" commands --url "$url" --token "$token" \
            --clients "$clients" --seconds "$seconds" "${load_args[@]}")
    m1=$(cpu "/proc/$server_pid/task/$server_pid/stat"); t1=$(cpu "/proc/$server_pid/stat")
    w1=$(cpu "$writer/stat")
    batch=$(batch_mean)
    stop_server
    n=$(field accepted "$out")
    rate=$(field commands/s "$out")
    client=$(field client-cpu-us/command "$out")
    start_server "$b" "$work/replay.sqlite"
    "$b/bench/server/od-bench-server" replay --url "$url" --token "$token" >/dev/null # warm
    r0=$(cpu "/proc/$server_pid/stat"); rates=""
    for _ in 1 2 3; do
      out=$("$b/bench/server/od-bench-server" replay --url "$url" --token "$token")
      rates="$rates $(field events/s "$out")"
    done
    r1=$(cpu "/proc/$server_pid/stat")
    stop_server
    awk -v b="$b" -v r="$r" -v n="$n" -v m0="$m0" -v m1="$m1" -v t0="$t0" -v t1="$t1" \
        -v w0="$w0" -v w1="$w1" -v rate="$rate" -v client="$client" -v batch="$batch" \
        -v r0="$r0" -v r1="$r1" -v e="$events" -v rates="$rates" 'BEGIN {
      printf "  round %d %s: %d commands (%s/s, %s a commit), %.1f us CPU a command (main thread %.1f," \
             " writer %.1f; the load %s); replay %.3f us CPU an event, events/s%s\n",
             r, b, n, rate, batch, (t1 - t0) * 1e6 / n, (m1 - m0) * 1e6 / n, (w1 - w0) * 1e6 / n, client,
             (r1 - r0) * 1e6 / (3 * e), rates }'
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
