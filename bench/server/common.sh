# SPDX-License-Identifier: GPL-3.0-or-later
# Sourced by the server benchmarks that start orderdesk-server builds one
# after the other (bench/server/sustained.sh, bench/ceilings/cpu-per-op.sh):
#   bench_init NAME        a work directory, removed at exit with the
#                          server still running; the operator token
#                          ($token) and its tokens file
#   start_server BUILD STORE   a server of BUILD on STORE (sqlite), no rate
#                          limit: $server_pid, $url
#   stop_server
#   writer_task            /proc/PID/task/TID of its od-writer thread
#   batch_mean             commands a commit so far, from its /metrics
#   field KEY TEXT         the value of KEY=value in TEXT
#   builds_of DIR...       the build directories, absolute, into $builds
bench_init () {
  work=$(mktemp -d "/tmp/od-$1.XXXXXX")
  server_pid=
  trap bench_cleanup EXIT
  trap 'exit 1' INT TERM
  token="bench-token"
  umask 077
  printf '[{"name":"bench","role":"operator","token_sha256":"%s"}]\n' \
    "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" > "$work/tokens.json"
}

bench_cleanup () {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}

start_server () { # BUILD STORE
  rm -f "$work/ready"
  "$1/src/server/orderdesk-server" --listen 127.0.0.1:0 --store "sqlite:$2" --rate-limit 0 \
    --tokens "$work/tokens.json" --ready-file "$work/ready" 2>>"$work/server.log" >/dev/null &
  server_pid=$!
  while [ ! -s "$work/ready" ]; do
    kill -0 "$server_pid" 2>/dev/null || { echo "server did not start" >&2; exit 1; }
    sleep 0.05
  done
  url=$(cat "$work/ready")
}

stop_server () { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }

writer_task () {
  local comm
  comm=$(grep -lx od-writer /proc/"$server_pid"/task/*/comm | head -n 1)
  echo "${comm%/comm}"
}

batch_mean () {
  curl -s -H "Authorization: Bearer $token" "$url/metrics" \
    | awk '$1 == "orderdesk_store_batch_size_sum" { s = $2 } $1 == "orderdesk_store_batch_size_count" { n = $2 }
           END { if (n > 0) printf "%.2f", s / n; else print "-" }'
}

field () { tr ' ' '\n' <<< "$2" | awk -v k="$1=" 'index($0, k) == 1 { print substr($0, length(k) + 1) }'; }

builds_of () {
  builds=()
  for b in "$@"; do builds+=("$(realpath "$b")"); done
}
