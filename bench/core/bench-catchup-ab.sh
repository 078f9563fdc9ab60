#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Catch-up of one server's whole log by several orderdeskctl builds and
# the cache ceiling, ROUNDS rounds, the order reversed every other round
# (issue 15): events/s and CPU per event of each, from the same minutes.
#
#   bench/core/bench-catchup-ab.sh URL ROUNDS OD_CEILING CTL...
#
# URL is a server holding the log (an orderdesk-server --demo, its seed
# finished; token demo-viewer); each CTL is an orderdeskctl binary; the
# ceiling (od-ceiling cache --indexes-after) copies the rows of the cache
# the last catch-up made.
set -eu
url=${1:?usage: bench-catchup-ab.sh URL ROUNDS OD_CEILING CTL...}
rounds=${2:?}
ceiling=${3:?}
shift 3
work=$(mktemp -d /tmp/od-bench-catchup-ab-XXXXXX)
trap 'rm -rf "$work"' EXIT
head=$(curl -s -H 'Authorization: Bearer demo-viewer' "$url/v1/head" | sed 's/.*"head":\([0-9]*\).*/\1/')
echo "head $head, load average $(cut -d' ' -f1-3 /proc/loadavg)"
last=
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then order="$* ceiling"; else order="ceiling $(printf '%s\n' "$@" | tac | tr '\n' ' ')"; fi
  for b in $order; do
    if [ "$b" = ceiling ]; then
      [ -n "$last" ] || continue # round 1 runs a catch-up first
      echo "round $r ceiling: $("$ceiling" cache --indexes-after --source "$last" --out "$work/ceiling.sqlite")" \
           "(load $(cut -d' ' -f1 /proc/loadavg))"
      rm -f "$work"/ceiling.sqlite*
      continue
    fi
    name=$(basename "$b")-$(echo "$b" | md5sum | cut -c1-6)
    rm -f "$work/$name".sqlite*
    ORDERDESK_TOKEN=demo-viewer /usr/bin/time -f '%e %U %S' -o "$work/time" \
      "$b" -q --timeout 0 --server "$url" --cache "$work/$name.sqlite" sync
    read -r s u y < "$work/time"
    last=$work/$name.sqlite
    echo "round $r $b: $s s, $(awk -v n="$head" -v s="$s" 'BEGIN { printf "%.0f", n / s }') events/s," \
         "CPU $(awk -v u="$u" -v y="$y" 'BEGIN { print u + y }') s =" \
         "$(awk -v u="$u" -v y="$y" -v n="$head" 'BEGIN { printf "%.2f", (u + y) * 1e6 / n }') us/event" \
         "(load $(cut -d' ' -f1 /proc/loadavg))"
  done
done
