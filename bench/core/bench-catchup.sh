#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Catch-up of a whole event log from a local orderdesk-server into a cold
# cache through `orderdeskctl sync`, end to end (HTTP + parse + SQLite
# commit): events/s and peak RSS.  Then the live latency benchmark
# against the same server.
#
#   bench/core/bench-catchup.sh BUILD_DIR [DEMO_ORDERS]
#
# DEMO_ORDERS (default 200000, about 1,000,000 events: ~5 per order,
# UUIDv7 ids) are seeded by the server's --demo.  Set BENCH_STORE=FILE to
# keep (and reuse) the seeded store between runs.
set -eu

build=${1:?usage: bench-catchup.sh BUILD_DIR [DEMO_ORDERS]}
orders=${2:-200000}
work=$(mktemp -d /tmp/od-bench-catchup-XXXXXX)
store=${BENCH_STORE:-$work/store.sqlite}
server=$build/src/server/orderdesk-server
ctl=$build/src/ctl/orderdeskctl
live=$build/bench/core/bench-core-live

"$server" --demo --demo-orders "$orders" --store "sqlite:$store" --listen 127.0.0.1:0 \
  --ready-file "$work/ready" --rate-limit 0 2>"$work/server.log" >/dev/null &
spid=$!
trap 'kill $spid 2>/dev/null; wait $spid 2>/dev/null; rm -rf "$work"' EXIT

while [ ! -s "$work/ready" ]; do sleep 0.2; done
url=$(cat "$work/ready")
head() { curl -s -H 'Authorization: Bearer demo-viewer' "$url/v1/head" | sed 's/.*"head":\([0-9]*\).*/\1/'; }
# The seed runs after the server listens, one event a command: wait for
# the head to reach what the server said it seeds (a head still for 3 s
# was not enough on a loaded machine), or to be still for 30 s (a store
# kept from an earlier run is not seeded again).
until grep -q 'listening on' "$work/server.log"; do sleep 0.2; done
sleep 1
seeded=$(grep 'demo: seeding' "$work/server.log" | tail -1 | sed 's/.*(\([0-9]*\) commands).*/\1/')
last=-1; still=0
while [ $still -lt 60 ]; do
  sleep 0.5
  h=$(head)
  [ -n "$seeded" ] && [ "$h" = "$seeded" ] && break
  if [ "$h" = "$last" ] && [ "$h" -gt 0 ]; then still=$((still + 1)); else still=0; fi
  last=$h
done
last=$h
echo "server $url, head $last ($orders demo orders)"

ORDERDESK_TOKEN=demo-viewer /usr/bin/time -f '%e %M %U %S' -o "$work/time" \
  "$ctl" -q --timeout 0 --server "$url" --cache "$work/cache.sqlite" sync
read -r secs rss user sys < "$work/time"
echo "catch-up: $last events in $secs s = $(echo "$last / $secs" | bc) events/s;" \
     "peak RSS $((rss / 1024)) MiB; CPU user $user s, sys $sys s (orderdeskctl)"
"$ctl" --cache "$work/cache.sqlite" status | sed 's/^/  /'
ls -l "$work/cache.sqlite" | awk '{printf "  cache file %d MiB\n", $5 / 1048576}'

if [ -x "$live" ]; then
  "$live" "$url" demo-operator "${LIVE_COMMANDS:-1000}"
fi
