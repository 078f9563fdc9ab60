#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Replay A/B (issue 15): one store of preloaded events served by two
# orderdesk-server builds (each on its own copy), alternated ROUNDS times,
# the order reversed every other round; prints the reader's events/s and
# the server's CPU an event (from /proc/PID/stat).
#
#   bench/server/replay-ab.sh BUILD_DIR SERVER_BEFORE SERVER_AFTER [ROUNDS] [EVENTS]
#
# BUILD_DIR gives od-bench-server (preload and replay).  ROUNDS 6, EVENTS
# 1000000 by default.
set -eu
build=$(realpath "${1:?usage: replay-ab.sh BUILD_DIR SERVER_BEFORE SERVER_AFTER [ROUNDS] [EVENTS]}")
declare -A bin=([before]=$(realpath "${2:?}") [after]=$(realpath "${3:?}"))
rounds=${4:-6}
events=${5:-1000000}
bench=$build/bench/server/od-bench-server
hz=$(getconf CLK_TCK)
work=$(mktemp -d /tmp/od-replay-ab.XXXXXX)
declare -A url pid
cleanup () {
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cpu_of () { sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$hz" '{ printf "%.2f", ($12 + $13) / hz }'; }

umask 077 # the server refuses a tokens file others may read
printf '[{"name":"bench","role":"operator","token_sha256":"%s"}]\n' \
  "$(printf '%s' bench-token | sha256sum | cut -d' ' -f1)" > "$work/tokens.json"
"$bench" preload --store "sqlite:$work/before.sqlite" --events "$events" >/dev/null
cp "$work/before.sqlite" "$work/after.sqlite"
for b in before after; do
  "${bin[$b]}" --listen 127.0.0.1:0 --store "sqlite:$work/$b.sqlite" --rate-limit 0 \
    --ready-file "$work/$b.ready" --tokens "$work/tokens.json" 2>>"$work/server.log" >/dev/null &
  pid[$b]=$!
done
while [ ! -s "$work/before.ready" ] || [ ! -s "$work/after.ready" ]; do sleep 0.1; done
for b in before after; do
  url[$b]=$(cat "$work/$b.ready")
  "$bench" replay --url "${url[$b]}" --token bench-token >/dev/null # warm the page cache
done
echo "events $events, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  for b in $order; do
    c0=$(cpu_of "${pid[$b]}")
    out=$("$bench" replay --url "${url[$b]}" --token bench-token)
    c1=$(cpu_of "${pid[$b]}")
    echo "round $r $b: $(tr ' ' '\n' <<< "$out" | grep '^events/s=')" \
         "server-cpu-us/event=$(awk -v a="$c0" -v b="$c1" -v n="$events" 'BEGIN { printf "%.3f", (b - a) * 1e6 / n }')"
  done
done
