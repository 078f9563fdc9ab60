#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Issue 15: each of our hot paths and its ceiling on this machine, back to
# back, CEIL_ROUNDS rounds with the order swapped each round; prints the
# per-round ratios (ours / ceiling), their median, and the CPU per command
# or event of both sides.  Commands are also run against libsoup answering
# at once (od-ceiling http): the part of a command that a server keeping
# libsoup cannot shed.  Usage: bench/ceilings/run.sh BUILD_DIR
#
# Sizes (environment):
#   CEIL_ROUNDS   rounds (3)
#   CEIL_SECONDS  duration of each commands run and store ceiling (10)
#   CEIL_CLIENTS  keep-alive clients of the commands bench (16)
#   CEIL_LOAD     one-thread (all clients on one epoll thread, as
#                 redis-benchmark runs its clients) or threads (a blocking
#                 thread a client, as before session 21) (one-thread)
#   CEIL_EVENTS   events replayed (1000000)
#   CEIL_ORDERS   demo orders for the catch-up, ~5 events each (240000)
#   CEIL_CATCHUP  0 skips the catch-up pair
#   CEIL_REDIS    0 skips the Redis XADD pair even when redis-server exists
#   CEIL_XADD     XADD appends per Redis run (200000)
set -euo pipefail
build=$(realpath "${1:?usage: run.sh BUILD_DIR}")
rounds=${CEIL_ROUNDS:-3}
seconds=${CEIL_SECONDS:-10}
clients=${CEIL_CLIENTS:-16}
events=${CEIL_EVENTS:-1000000}
orders=${CEIL_ORDERS:-240000}
xadd=${CEIL_XADD:-200000}
case ${CEIL_LOAD:-one-thread} in
  one-thread) load_args=(--one-thread) ;;
  threads) load_args=() ;;
  *) echo "CEIL_LOAD is one-thread or threads" >&2; exit 2 ;;
esac
server=$build/src/server/orderdesk-server
bench=$build/bench/server/od-bench-server
ceiling=$build/bench/ceilings/od-ceiling
ctl=$build/src/ctl/orderdeskctl
hz=$(getconf CLK_TCK)
work=$(mktemp -d "${TMPDIR:-/tmp}/od-ceilings.XXXXXX")
pids=()
cleanup () {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

token="bench-token"
umask 077 # the server refuses a tokens file others may read
printf '[{"name":"bench","role":"operator","token_sha256":"%s"}]\n' \
  "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" > "$work/tokens.json"

# CPU seconds (user + system, all threads) a live process has used so far.
cpu_of () { sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$hz" '{ printf "%.2f", ($12 + $13) / hz }'; }
# The value of key=VALUE in a line of output.
field () { tr ' ' '\n' <<< "$2" | awk -v k="$1=" 'index($0, k) == 1 { print substr($0, length(k) + 1) }'; }
median () { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio () { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
per_op_us () { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.2f", c * 1e6 / n }'; }

start_server () { # NAME STORE [ARGS...]
  local name=$1 store=$2
  shift 2
  rm -f "$work/$name.ready"
  "$server" --listen 127.0.0.1:0 --store "sqlite:$store" \
    --rate-limit 0 --ready-file "$work/$name.ready" "$@" 2>>"$work/server.log" >/dev/null &
  server_pid=$!
  pids+=("$server_pid")
  while [ ! -s "$work/$name.ready" ]; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "orderdesk-server did not start:" >&2; tail -5 "$work/server.log" >&2; exit 1
    fi
    sleep 0.05
  done
  url=$(cat "$work/$name.ready")
}
# Also forgets the pid, so that the clean-up never signals a reused one.
stop_server () {
  kill "$1"; wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

echo "== ceilings (issue 15): $(nproc) cores, $rounds rounds, commands ${seconds} s x $clients" \
     "clients (load: ${CEIL_LOAD:-one-thread}), replay $events events, catch-up of $orders demo orders"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "fdatasync: $("$ceiling" fdatasync --dir "$work" --seconds 2)"

declare -A ratios
swap () { [ $(($1 % 2)) -eq 0 ]; } # even rounds run the ceiling first

# --- durable commands, 16 clients, against the store's statements in C
ours_commands () {
  start_server "commands$1" "$work/commands$1.sqlite" --tokens "$work/tokens.json"
  local c0 out c1
  c0=$(cpu_of "$server_pid")
  out=$("$bench" commands --url "$url" --token "$token" --clients "$clients" --seconds "$seconds" \
          "${load_args[@]}")
  c1=$(cpu_of "$server_pid")
  stop_server "$server_pid"
  ours_rate=$(field commands/s "$out")
  ours_cpu=$(per_op_us "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" "$(field accepted "$out")")
}
ceiling_store () { # BATCH SECONDS [--sqlite-defaults]
  local out
  out=$("$ceiling" store --dir "$work" --batch "$1" --seconds "$2" ${3:-})
  rm -f "$work"/ceiling-store.sqlite*
  echo "    $out"
  ceil_rate=$(field commands/s "$out")
  ceil_cpu=$(field cpu-us/command "$out")
}
echo "== durable commands/s, $clients keep-alive clients, vs the store's statements in C (WAL, synchronous=FULL)"
# The store's statements with its own VFS and settings, and also with
# SQLite's defaults (its unix VFS, a checkpoint every 1,000 pages), as the
# store wrote until session 14.
store_ceilings () {
  ceiling_store 1 "$short"; ceiling_store 1024 "$short"
  ceiling_store 16 "$seconds" --sqlite-defaults
  plain_rate=$ceil_rate
  ceiling_store 16 "$seconds"
}
for r in $(seq 1 "$rounds"); do
  short=$(awk -v s="$seconds" 'BEGIN { print s / 4 }')
  if swap "$r"; then store_ceilings; ours_commands "$r"
  else ours_commands "$r"; store_ceilings; fi
  ratio_now=$(ratio "$ours_rate" "$ceil_rate")
  ratio_plain=$(ratio "$ours_rate" "$plain_rate")
  ratios[commands]+=" $ratio_now"
  ratios[commands_plain]+=" $ratio_plain"
  echo "  round $r: ours $ours_rate/s (server CPU $ours_cpu us/command)," \
       "ceiling batch 16 $ceil_rate/s ($ceil_cpu us/command): ratio $ratio_now;" \
       "with SQLite's defaults $plain_rate/s: $ratio_plain"
done

# --- the same load against libsoup answering at once (od-ceiling http: no
# token, no JSON, no store, no fsync), as libsoup accepts connections and
# as our server does (each in an OdConnStream).  What libsoup itself
# allows on this machine: a bound for any server on libsoup and our
# stream, here and against Redis below.
ceiling_http () { # [--conn-stream]
  local c0 c1 out http_pid
  rm -f "$work/http.url"
  "$ceiling" http --out "$work/http.url" "$@" 2>>"$work/server.log" &
  http_pid=$!
  pids+=("$http_pid")
  while [ ! -s "$work/http.url" ]; do
    kill -0 "$http_pid" 2>/dev/null || { echo "od-ceiling http did not start" >&2; exit 1; }
    sleep 0.05
  done
  c0=$(cpu_of "$http_pid")
  # The bench fails when any request is refused.
  out=$("$bench" commands --url "$(cat "$work/http.url")" --token "$token" \
          --clients "$clients" --seconds "$seconds" "${load_args[@]}") \
    || { echo "od-ceiling http refused requests: $out" >&2; exit 1; }
  c1=$(cpu_of "$http_pid")
  stop_server "$http_pid"
  http_rate=$(field commands/s "$out")
  http_cpu=$(per_op_us "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" "$(field accepted "$out")")
}
http_floors () {
  ceiling_http; stock_rate=$http_rate; stock_cpu=$http_cpu
  ceiling_http --conn-stream
}
echo "== durable commands/s vs the same requests answered at once by libsoup alone"
for r in $(seq 1 "$rounds"); do
  if swap "$r"; then http_floors; ours_commands "h$r"; else ours_commands "h$r"; http_floors; fi
  ratio_now=$(ratio "$ours_rate" "$http_rate")
  ratios[http]+=" $ratio_now"
  echo "  round $r: ours $ours_rate/s (server CPU $ours_cpu us/command)," \
       "libsoup alone $http_rate/s ($http_cpu us/request) with our connection stream," \
       "$stock_rate/s ($stock_cpu us/request) as it accepts: ratio $ratio_now"
done

# --- Redis Streams XADD with appendfsync always, when installed
if [ "${CEIL_REDIS:-1}" != 0 ] && command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
  echo "== durable commands/s vs Redis XADD (appendfsync always), $clients clients"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir "$work/redis"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$work/redis" --appendonly yes \
    --appendfsync always --save '' --protected-mode yes --daemonize no --logfile "$work/redis.log" &
  redis_pid=$!
  pids+=("$redis_pid")
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
  payload='{"customer_name":"Bench Client","customer_email":"bench@example.com","currency":"EUR"}'
  ceiling_xadd () {
    local c0 c1 t0 t1
    c0=$(cpu_of "$redis_pid"); t0=$(date +%s.%N)
    redis-benchmark -p "$port" -c "$clients" -n "$xadd" -q XADD orders '*' data "$payload" >/dev/null
    t1=$(date +%s.%N); c1=$(cpu_of "$redis_pid")
    ceil_rate=$(awk -v n="$xadd" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    ceil_cpu=$(per_op_us "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" "$xadd")
  }
  for r in $(seq 1 "$rounds"); do
    if swap "$r"; then ceiling_xadd; ours_commands "x$r"; ceiling_http --conn-stream
    else ours_commands "x$r"; ceiling_http --conn-stream; ceiling_xadd; fi
    ratio_now=$(ratio "$ours_rate" "$ceil_rate")
    ratio_http=$(ratio "$http_rate" "$ceil_rate")
    ratios[xadd]+=" $ratio_now"
    ratios[http_xadd]+=" $ratio_http"
    echo "  round $r: ours $ours_rate/s (server CPU $ours_cpu us/command)," \
         "Redis XADD $ceil_rate/s (redis CPU $ceil_cpu us/append): ratio $ratio_now;" \
         "libsoup alone $http_rate/s: $ratio_http"
  done
  stop_server "$redis_pid"
else
  echo "== Redis XADD pair skipped (redis-server/redis-benchmark not installed, or CEIL_REDIS=0)"
fi

# --- SSE replay against sendfile of the same bytes
echo "== SSE replay of $events events vs sendfile() of the captured bytes"
"$bench" preload --store "sqlite:$work/replay.sqlite" --events "$events" >/dev/null
start_server replay "$work/replay.sqlite" --tokens "$work/tokens.json"
replay_pid=$server_pid
"$ceiling" capture --url "$url" --token "$token" --events "$events" --out "$work/replay.bytes" \
  | sed 's/^/    /'
ours_replay () {
  local c0 out c1
  c0=$(cpu_of "$replay_pid")
  out=$("$bench" replay --url "$url" --token "$token")
  c1=$(cpu_of "$replay_pid")
  ours_rate=$(field events/s "$out")
  ours_cpu=$(per_op_us "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" "$events")
}
ceiling_sendfile () {
  local out
  out=$("$ceiling" sendfile --file "$work/replay.bytes" --events "$events")
  ceil_rate=$(field events/s "$out")
  ceil_cpu=$(field server-cpu-us/event "$out")
}
for r in $(seq 1 "$rounds"); do
  if swap "$r"; then ceiling_sendfile; ours_replay; else ours_replay; ceiling_sendfile; fi
  ratio_now=$(ratio "$ours_rate" "$ceil_rate")
  ratios[replay]+=" $ratio_now"
  echo "  round $r: ours $ours_rate events/s (server CPU $ours_cpu us/event)," \
       "sendfile $ceil_rate events/s (sender CPU $ceil_cpu us/event): ratio $ratio_now"
done
stop_server "$replay_pid"

# --- catch-up into a cold cache against the same rows in one transaction
if [ "${CEIL_CATCHUP:-1}" != 0 ]; then
echo "== catch-up of $orders demo orders into a cold cache vs the same rows in one sqlite3 transaction"
start_server catchup "$work/catchup.sqlite" --demo --demo-orders "$orders"
catchup_pid=$server_pid
head_of () { curl -s -H 'Authorization: Bearer demo-viewer' "$url/v1/head" | sed 's/.*"head":\([0-9]*\).*/\1/'; }
# The seed runs after the server listens, one event a command: wait for
# the head to reach the number of commands the server said it seeds.  A
# head still for 2 s was not enough on a loaded machine (the seed paused
# longer, and the catch-up missed its last 3,651 events).  Still for 30 s
# ends the wait too, should the server refuse some of its own commands.
until grep -q 'demo: seeding' "$work/server.log"; do sleep 0.2; done
seeded=$(grep 'demo: seeding' "$work/server.log" | tail -1 | sed 's/.*(\([0-9]*\) commands).*/\1/')
last=-1; still=0
while [ $still -lt 60 ]; do
  sleep 0.5
  h=$(head_of)
  [ "$h" = "$seeded" ] && break
  if [ "$h" = "$last" ]; then still=$((still + 1)); else still=0; fi
  last=$h
done
head=$h
echo "    server head $head"
ours_catchup () {
  rm -f "$work"/cache*.sqlite*
  ORDERDESK_TOKEN=demo-viewer /usr/bin/time -f '%e %U %S' -o "$work/time" \
    "$ctl" -q --timeout 0 --server "$url" --cache "$work/cache.sqlite" sync \
    || { echo "orderdeskctl sync failed" >&2; exit 1; }
  local secs user sys
  read -r secs user sys < "$work/time"
  ours_rate=$(awk -v n="$head" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
  ours_cpu=$(per_op_us "$(awk -v a="$user" -v b="$sys" 'BEGIN { print a + b }')" "$head")
}
# The ceiling fills the schema in one transaction with the indexes built
# after the rows.  CEIL_CACHE_ROWWISE=1 also runs it with the indexes kept
# up row by row (3-5 times slower: 104 s for 1.2M events on a loaded
# machine), and the faster counts.
ceiling_cache () {
  local out mode rate modes=--indexes-after
  [ "${CEIL_CACHE_ROWWISE:-0}" = 1 ] && modes="rowwise --indexes-after"
  ceil_rate=0
  for mode in $modes; do
    [ "$mode" = rowwise ] && mode=
    out=$("$ceiling" cache --source "$work/cache.sqlite" --out "$work/ceiling-cache.sqlite" $mode) \
      || { echo "od-ceiling cache $mode failed" >&2; exit 1; }
    rm -f "$work"/ceiling-cache.sqlite*
    echo "    $out"
    # Both must have stored the whole log.
    if [ "$(field events "$out")" != "$head" ]; then
      echo "the ceiling stored $(field events "$out") events of $head" >&2; exit 1
    fi
    rate=$(field events/s "$out")
    if [ "$(awk -v a="$rate" -v b="$ceil_rate" 'BEGIN { print (a > b) }')" = 1 ]; then
      ceil_rate=$rate
      ceil_cpu=$(field cpu-us/event "$out")
      # Also the rate with its close (the WAL checkpoint into the file),
      # which our timing (the whole orderdeskctl run) includes.
      ceil_rate_closed=$(awk -v n="$head" -v s="$(field seconds "$out")" \
                           -v c="$(field close-seconds "$out")" 'BEGIN { printf "%.0f", n / (s + c) }')
    fi
  done
}
for r in $(seq 1 "$rounds"); do
  # The ceiling copies the rows the last catch-up left, so round 1 (which
  # runs ours first) provides them.
  if swap "$r"; then ceiling_cache; ours_catchup; else ours_catchup; ceiling_cache; fi
  ratio_now=$(ratio "$ours_rate" "$ceil_rate")
  ratio_closed=$(ratio "$ours_rate" "$ceil_rate_closed")
  ratios[catchup]+=" $ratio_now"
  ratios[catchup_closed]+=" $ratio_closed"
  echo "  round $r: ours $ours_rate events/s (orderdeskctl CPU $ours_cpu us/event)," \
       "one transaction $ceil_rate events/s ($ceil_cpu us/event): ratio $ratio_now" \
       "($ratio_closed against the transaction and its close)"
done
stop_server "$catchup_pid"
fi

echo "== medians of the per-round ratios"
echo "  commands / store statements at batch 16: $(median <<< "${ratios[commands]}") (target >= 0.5)"
echo "  commands / the same with SQLite's defaults: $(median <<< "${ratios[commands_plain]}")"
echo "  commands / libsoup alone with our connection stream: $(median <<< "${ratios[http]}")"
if [ -n "${ratios[xadd]:-}" ]; then
  echo "  commands / Redis XADD appendfsync always: $(median <<< "${ratios[xadd]}") (target >= 1.0)"
  echo "  libsoup alone / Redis XADD appendfsync always: $(median <<< "${ratios[http_xadd]}")" \
       "(a bound for a server on libsoup and our stream)"
fi
echo "  replay / sendfile: $(median <<< "${ratios[replay]}") (target >= 0.7)"
if [ -n "${ratios[catchup]:-}" ]; then
  echo "  catch-up / one transaction: $(median <<< "${ratios[catchup]}") (target >= 0.8)"
  echo "  catch-up / one transaction and its close: $(median <<< "${ratios[catchup_closed]}")"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
