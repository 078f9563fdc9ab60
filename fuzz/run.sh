#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Builds the libFuzzer targets with clang and runs each for SECONDS
# (default 60).  Usage: fuzz/run.sh [SECONDS] [TARGET...]
#
# Each target starts from its committed seed corpus (fuzz/corpus/<target>)
# plus its saved crashes (fuzz/regressions/<target>); inputs that find new
# coverage go to BUILD/fuzz-corpus/<target>, not into the source tree.  A
# crash is written to fuzz/regressions/<target>/ so that it is kept: the
# replay test of every ordinary build then runs it.  Exits non-zero when
# any target crashed.
#
# Environment: OD_FUZZ_SRC (source tree, default: this script's parent),
# OD_FUZZ_BUILD (build directory, default: $OD_FUZZ_SRC/build-fuzz),
# OD_FUZZ_JOBS (parallel fuzzing processes per target, default 1),
# OD_FUZZ_PARALLEL (targets fuzzed at once, each for SECONDS, default 1;
# their output is printed target by target once all are done),
# OD_FUZZ_ARGS (more libFuzzer options), ASAN_OPTIONS (replaces the default
# below).  To go on fuzzing past a leak that is already known:
#   ASAN_OPTIONS=detect_leaks=0 OD_FUZZ_ARGS=-detect_leaks=0 fuzz/run.sh ...
# An input whose fix has not landed yet is moved by hand from
# fuzz/regressions/<target>/ to fuzz/pending/<target>/, which nothing
# replays, and back when it is fixed.

set -eu

seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-command content-length problem event sse event-fast}

here=$(cd "$(dirname "$0")" && pwd)
src=${OD_FUZZ_SRC:-$(dirname "$here")}
build=${OD_FUZZ_BUILD:-$src/build-fuzz}
jobs=${OD_FUZZ_JOBS:-1}

if [ ! -f "$build/build.ninja" ]; then
  # Only the fuzz targets: no console, server, tests or benchmarks.
  CC=clang meson setup "$build" "$src" -Dfuzz=true -Dfuzzing=true \
    -Db_sanitize=address,undefined -Db_lundef=false -Dgui=disabled \
    -Dserver=false -Dpostgresql=disabled -Dtests=false -Dbench=false
fi
for t in $targets; do
  ninja -C "$build" "fuzz/od-fuzz-$t"
done

# Fuzzes one target; its exit status says whether it crashed.
fuzz_one () {
  t=$1
  work="$build/fuzz-corpus/$t"
  regressions="$here/regressions/$t"
  mkdir -p "$work" "$regressions"
  opts=""
  [ -f "$here/$t.dict" ] && opts="-dict=$here/$t.dict"
  # -jobs=1 would still fork a child that logs to a file; only ask for
  # processes when more than one is wanted.
  [ "$jobs" -gt 1 ] && opts="$opts -jobs=$jobs -workers=$jobs"
  opts="$opts ${OD_FUZZ_ARGS:-}"
  echo "== $t: ${seconds}s"
  # shellcheck disable=SC2086
  if ! ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
       UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
       "$build/fuzz/od-fuzz-$t" $opts \
         -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
         -print_final_stats=1 \
         -artifact_prefix="$regressions/" \
         "$work" "$here/corpus/$t" "$regressions"; then
    echo "== $t: CRASH, input saved in $regressions/"
    return 1
  fi
}

parallel=${OD_FUZZ_PARALLEL:-1}
status=0
if [ "$parallel" -le 1 ]; then
  for t in $targets; do
    fuzz_one "$t" || status=1
  done
else
  # Round-robin into PARALLEL lanes, each fuzzing its targets in turn.
  logs="$build/fuzz-logs"
  rm -rf "$logs"
  mkdir -p "$logs"
  pids=""
  lane=0
  while [ "$lane" -lt "$parallel" ]; do
    (
      lane_status=0
      i=0
      for t in $targets; do
        if [ $((i % parallel)) -eq "$lane" ]; then
          fuzz_one "$t" > "$logs/$t.log" 2>&1 || lane_status=1
        fi
        i=$((i + 1))
      done
      exit $lane_status
    ) &
    pids="$pids $!"
    lane=$((lane + 1))
  done
  for pid in $pids; do
    wait "$pid" || status=1
  done
  for t in $targets; do
    cat "$logs/$t.log"
  done
fi
exit $status
