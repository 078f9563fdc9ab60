#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Runs COMMAND [ARG...] on an X display of its own.  Xvfb picks a free
# display number itself (-displayfd) and says it once it listens, so two
# of these started at the same moment never share a display, which
# `xvfb-run -a` can (it checks for a free number before the server takes
# it: a test then lost its display when the other one ended).  -noreset:
# by default an X server resets when its last client disconnects, and a
# client connecting then is refused ("cannot open display") or cut off;
# the AT-SPI bus launcher's short connection made app-a11y fail that way
# about one run in five next to the other tests.
set -u
dir=$(mktemp -d "${TMPDIR:-/tmp}/od-display.XXXXXX") || exit 1
Xvfb -displayfd 3 -screen 0 1280x1024x24 -nolisten tcp -noreset 3>"$dir/display" >"$dir/log" 2>&1 &
xvfb=$!
stop () {
  kill "$xvfb" 2>/dev/null
  wait "$xvfb" 2>/dev/null
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM
i=0
while [ ! -s "$dir/display" ]; do
  if ! kill -0 "$xvfb" 2>/dev/null || [ "$i" -ge 300 ]; then
    echo "own-display.sh: Xvfb did not start:" >&2
    cat "$dir/log" >&2
    exit 1
  fi
  i=$((i + 1))
  sleep 0.1
done
DISPLAY=:$(head -n 1 "$dir/display")
export DISPLAY
"$@"
