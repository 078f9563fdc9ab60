#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Installs the build into a temporary DESTDIR with `meson install` and
compares the files it put down with tests/install/expected-files.txt.

Usage: check-install.py MESON BUILD_DIR SOURCE_DIR NAME=VALUE...
The NAME=VALUE pairs fill in @name@ (absolute install directories, app_id)
and say which parts were built (gui=true, server=false)."""

import os
import subprocess
import sys
import tempfile


def expected_files(source_dir, values):
    with open(os.path.join(source_dir, 'po', 'LINGUAS')) as f:
        langs = [w for line in f if not line.startswith('#') for w in line.split()]
    expected = set()
    with open(os.path.join(source_dir, 'tests', 'install', 'expected-files.txt')) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            if line.startswith('['):
                condition, line = line[1:].split(']', 1)
                line = line.strip()
                if values[condition] != 'true':
                    continue
            for name, value in values.items():
                line = line.replace(f'@{name}@', value)
            for lang in (langs if '@lang@' in line else [None]):
                expected.add(line.replace('@lang@', lang) if lang else line)
    return expected


def main():
    meson, build_dir, source_dir = sys.argv[1:4]
    values = dict(arg.split('=', 1) for arg in sys.argv[4:])
    expected = expected_files(source_dir, values)

    with tempfile.TemporaryDirectory() as destdir:
        p = subprocess.run([meson, 'install', '-C', build_dir, '--no-rebuild', '--quiet',
                            '--destdir', destdir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            print(p.stdout)
            print(f'meson install exited {p.returncode}')
            return 1
        installed = set()
        for root, dirs, files in os.walk(destdir):
            for name in files:
                installed.add('/' + os.path.relpath(os.path.join(root, name), destdir))

    missing = sorted(expected - installed)
    extra = sorted(installed - expected)
    for path in sorted(installed & expected):
        print(f'ok: {path}')
    for path in missing:
        print(f'FAIL: not installed: {path}')
    for path in extra:
        print(f'FAIL: installed but not expected (add it to tests/install/expected-files.txt): {path}')
    return 1 if missing or extra else 0


if __name__ == '__main__':
    sys.exit(main())
