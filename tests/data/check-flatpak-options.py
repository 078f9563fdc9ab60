#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The meson options a Flatpak manifest builds the app with are accepted:
`meson setup` with the orderdesk module's config-opts succeeds, and the
build it configures has no server, no libpq and no tests.  (A Flatpak build
itself needs the GNOME runtime, which cannot be downloaded here.)

Usage: check-flatpak-options.py MESON SOURCE_DIR MANIFEST..."""

import json
import os
import subprocess
import sys
import tempfile


def main():
    meson, source_dir = sys.argv[1:3]
    failures = 0
    for manifest in sys.argv[3:]:
        with open(manifest) as f:
            module = [m for m in json.load(f)['modules'] if m['name'] == 'orderdesk'][0]
        opts = module.get('config-opts', [])
        with tempfile.TemporaryDirectory() as build:
            p = subprocess.run([meson, 'setup', build, source_dir, '--prefix=/app'] + opts,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            name = os.path.basename(manifest)
            if p.returncode != 0:
                print(p.stdout)
                print(f'FAIL: {name}: meson setup {" ".join(opts)} exited {p.returncode}')
                failures += 1
                continue
            p = subprocess.run([meson, 'introspect', '--targets', build],
                               stdout=subprocess.PIPE, text=True, check=True)
            targets = {t['name'] for t in json.loads(p.stdout)}
            unwanted = sorted(t for t in targets
                              if t in ('orderdesk-server', 'odserver')
                              or t.startswith(('test-', 'od-bench', 'bench-', 'od-fuzz')))
            if 'orderdesk' not in targets or unwanted:
                print(f'FAIL: {name}: builds {sorted(targets)}; unwanted: {unwanted}')
                failures += 1
            else:
                print(f'ok: {name}: {" ".join(opts)}: {" ".join(sorted(targets))}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
