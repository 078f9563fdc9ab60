#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The digest of 1,000,000 events against the replay of the same events,
# back to back on one server, ROUNDS times alternating (the machine is
# shared: each line gives the load average and the server's CPU time for
# that request, which load from others does not inflate the way it does
# wall time).  Ends with the digest itself, so two builds can be checked
# to answer the same hash for the same store.
# Usage: bench/server/digest-vs-replay.sh BUILD_DIR [STORE_URI]
# Without STORE_URI it preloads EVENTS (1,000,000) events into a fresh
# SQLite store; give sqlite:PATH to reuse one, or postgresql://… .  With
# PG_POSTMASTER=PID (the cluster's postmaster, first line of its
# postmaster.pid) each line also has the CPU time of that cluster's
# processes, where most of a PostgreSQL read is spent (nothing else
# should use that cluster meanwhile).
set -euo pipefail
build=$(realpath "${1:-build}")
server=${SERVER:-$build/src/server/orderdesk-server}
bench=${BENCH:-$build/bench/server/od-bench-server}
work=$(mktemp -d /tmp/od-bench-digest.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

store=${2:-}
if [ -z "$store" ]; then
  store=sqlite:$work/replay.sqlite
  "$bench" preload --store "$store" --events "${EVENTS:-1000000}"
fi

token=bench-token
printf '[{"name":"bench","role":"operator","token_sha256":"%s"}]\n' \
  "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" > "$work/tokens.json"
chmod 600 "$work/tokens.json"

"$server" --listen 127.0.0.1:0 --store "$store" --tokens "$work/tokens.json" \
  --rate-limit 0 --ready-file "$work/ready" 2>>"$work/server.log" &
server_pid=$!
while [ ! -s "$work/ready" ]; do sleep 0.05; done
url=$(cat "$work/ready")

# utime + stime of the server, in clock ticks (fields 14 and 15; the
# command name in field 2 has no spaces here).
cpu_ticks () { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
hz=$(getconf CLK_TCK)

# The same for every child of the postmaster (its backends).
pg_ticks () {
  local t=0 p
  for p in $(pgrep -P "$PG_POSTMASTER"); do
    t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

timed () {
  local before after pg_before pg_after load pg=''
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  before=$(cpu_ticks)
  [ -z "${PG_POSTMASTER:-}" ] || pg_before=$(pg_ticks)
  out=$("$bench" "$1" --url "$url" --token "$token")
  after=$(cpu_ticks)
  if [ -n "${PG_POSTMASTER:-}" ]; then
    pg_after=$(pg_ticks)
    pg=$(printf ' | postgres-cpu=%.2fs' "$(echo "($pg_after - $pg_before) / $hz" | bc -l)")
  fi
  printf '%s | server-cpu=%.2fs%s | load=%s\n' "$out" "$(echo "($after - $before) / $hz" | bc -l)" \
    "$pg" "$load"
}

for round in $(seq "${ROUNDS:-3}"); do
  echo "== round $round"
  timed replay
  timed digest
done
echo "== the digest"
curl -sS -H "Authorization: Bearer $token" "$url/v1/events/digest?after=0&upto=1000000"
echo
