#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Verification of a clean cache of EVENTS events (default 1,000,000)
# against a local orderdesk-server: `orderdeskctl verify --json`, end to
# end (digests of the events, bisect of nothing, re-fold of every order),
# with the time of each part from its report; then what a verification
# costs the list's page query, at full speed and paced (bench-verify-pace.c).
#
#   bench/core/bench-verify.sh BUILD_DIR [EVENTS]
#
# Set BENCH_STORE=FILE to keep (and reuse) the preloaded store.
set -eu

build=${1:?usage: bench-verify.sh BUILD_DIR [EVENTS]}
events=${2:-1000000}
work=$(mktemp -d /tmp/od-bench-verify-XXXXXX)
store=${BENCH_STORE:-$work/store.sqlite}
server=$build/src/server/orderdesk-server
ctl=$build/src/ctl/orderdeskctl
token=bench-token

printf '[{"name":"bench","role":"viewer","token_sha256":"%s"}]\n' \
  "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" > "$work/tokens.json"
chmod 600 "$work/tokens.json"
[ -s "$store" ] || "$build/bench/server/od-bench-server" preload --store "sqlite:$store" --events "$events"
"$server" --store "sqlite:$store" --listen 127.0.0.1:0 --tokens "$work/tokens.json" \
  --ready-file "$work/ready" --rate-limit 0 2>"$work/server.log" >/dev/null &
spid=$!
trap 'kill $spid 2>/dev/null; wait $spid 2>/dev/null; rm -rf "$work"' EXIT
while [ ! -s "$work/ready" ]; do sleep 0.2; done
url=$(cat "$work/ready")

export ORDERDESK_TOKEN=$token
echo "== catch-up into a cold cache (to have something to verify)"
/usr/bin/time -f '%e s' "$ctl" -q --server "$url" --cache "$work/cache.sqlite" sync
echo "== verify, clean cache, end to end"
/usr/bin/time -f '%e s, %M KiB peak RSS' "$ctl" -q --server "$url" --cache "$work/cache.sqlite" verify --json
echo "== the list's page query alone, during a verification at full speed, and paced"
"$build/bench/core/bench-core-verify-pace" "$url" "$token" "$work/cache.sqlite"
