#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Builds the console's Flatpak from this checkout and packs it into one
# file that can be handed out and installed with
# `flatpak install --user FILE`; the GNOME runtime then comes from Flathub.
#
# Usage: flatpak/build-bundle.sh [--devel] [OUTPUT.flatpak]
#   --devel   the development profile (io.github.orderdesk.OrderDesk.Devel)
#   OUTPUT    default: <checkout>/<app id>.flatpak
# Needs flatpak, flatpak-builder and access to Flathub (the runtime and SDK
# are installed for the user from there on the first run).  Environment:
# FLATPAK_BUILD_DIR (default <checkout>/build-flatpak), FLATPAK_REPO
# (default <checkout>/repo-flatpak).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
flathub=https://dl.flathub.org/repo/flathub.flatpakrepo

app_id=io.github.orderdesk.OrderDesk
if [ "${1:-}" = --devel ]; then
  app_id=$app_id.Devel
  shift
fi
if [ $# -gt 1 ] || [[ ${1:-} == -* ]]; then
  echo "usage: $0 [--devel] [OUTPUT.flatpak]" >&2
  exit 2
fi
manifest=$here/$app_id.json
output=$(realpath -m "${1:-$top/$app_id.flatpak}")
build=${FLATPAK_BUILD_DIR:-$top/build-flatpak}
repo=${FLATPAK_REPO:-$top/repo-flatpak}

for tool in flatpak flatpak-builder; do
  if ! command -v "$tool" >/dev/null; then
    echo "$0: $tool is not installed (Debian: apt install $tool)" >&2
    exit 1
  fi
done

# flatpak-builder keeps its cache (.flatpak-builder/, ignored by git) in
# the directory it runs from.
cd "$top"
flatpak remote-add --user --if-not-exists flathub "$flathub"
flatpak-builder --user --install-deps-from=flathub --force-clean \
  --repo="$repo" "$build" "$manifest"
# --runtime-repo lets `flatpak install` of the bundle fetch the GNOME
# runtime from Flathub when the machine does not have it.
flatpak build-bundle --runtime-repo="$flathub" "$repo" "$output" "$app_id"

echo
echo "Bundle: $output"
echo "Install: flatpak install --user $output"
echo "Run:     flatpak run $app_id"
