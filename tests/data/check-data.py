#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Consistency checks of the console's data files that no stock validator
makes: screenshots named by the metainfo exist, every UI file is compiled
into the GResource, every source with translatable strings is in
POTFILES.in, and the German catalogue is complete."""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

top = sys.argv[1]
failures = []

# Screenshots.
metainfo = os.path.join(top, 'data', 'io.github.orderdesk.OrderDesk.metainfo.xml.in.in')
root = ET.parse(metainfo).getroot()
images = [e.text.strip() for e in root.iter('image')]
if not images:
    failures.append('the metainfo names no screenshot')
for url in images:
    path = os.path.join(top, 'data', 'screenshots', os.path.basename(url))
    if not os.path.isfile(path):
        failures.append(f'screenshot {url} is not in data/screenshots/')
    else:
        with open(path, 'rb') as f:
            if f.read(8) != b'\x89PNG\r\n\x1a\n':
                failures.append(f'{path} is not a PNG')

# UI files in the GResource.
gresource = ET.parse(os.path.join(top, 'data', 'ui', 'orderdesk.gresource.xml')).getroot()
listed = {os.path.basename(f.text) for f in gresource.iter('file')}
for name in sorted(os.listdir(os.path.join(top, 'data', 'ui'))):
    if name.endswith('.ui') and name not in listed:
        failures.append(f'data/ui/{name} is not in orderdesk.gresource.xml')

# POTFILES.in.
with open(os.path.join(top, 'po', 'POTFILES.in')) as f:
    potfiles = {line.strip() for line in f if line.strip() and not line.startswith('#')}
for name in sorted(os.listdir(os.path.join(top, 'src', 'app'))):
    rel = f'src/app/{name}'
    if name.endswith('.c'):
        with open(os.path.join(top, rel)) as f:
            if re.search(r'\b(_|N_|C_|ngettext)\s*\(', f.read()) and rel not in potfiles:
                failures.append(f'{rel} has translatable strings but is not in po/POTFILES.in')
for name in sorted(os.listdir(os.path.join(top, 'data', 'ui'))):
    rel = f'data/ui/{name}'
    if name.endswith('.ui'):
        with open(os.path.join(top, rel)) as f:
            if 'translatable="yes"' in f.read() and rel not in potfiles:
                failures.append(f'{rel} has translatable strings but is not in po/POTFILES.in')

# German: complete against the strings in the sources today (merged with a
# fresh template, as `ninja orderdesk-update-po` would), no fuzzy entry,
# formats consistent.
import tempfile
with tempfile.TemporaryDirectory() as tmp:
    pot = os.path.join(tmp, 'orderdesk.pot')
    subprocess.run(['xgettext', '--package-name=orderdesk', '--from-code=UTF-8',
                    '--add-comments', '--keyword=_', '--keyword=N_', '--keyword=C_:1c,2',
                    '--keyword=NC_:1c,2', '--keyword=g_dcgettext:2', '--keyword=g_dngettext:2,3',
                    '--keyword=g_dpgettext2:2c,3', '--flag=N_:1:pass-c-format',
                    '--flag=C_:2:pass-c-format', '--flag=NC_:2:pass-c-format',
                    '--flag=g_dngettext:2:pass-c-format', '--flag=g_strdup_printf:1:c-format',
                    '--flag=g_string_printf:2:c-format', '--flag=g_string_append_printf:2:c-format',
                    '--flag=g_error_new:3:c-format', '--flag=g_set_error:4:c-format',
                    '--directory', top, '--files-from', os.path.join(top, 'po', 'POTFILES.in'),
                    '-o', pot], check=True)
    for lang in ['de']:
        po = os.path.join(tmp, f'{lang}.po')
        subprocess.run(['msgmerge', '--quiet', '--no-fuzzy-matching', '-o', po,
                        os.path.join(top, 'po', f'{lang}.po'), pot], check=True)
        result = subprocess.run(['msgfmt', '--check', '--statistics', '-o', os.devnull, po],
                                capture_output=True, text=True)
        stats = result.stderr.strip()
        if result.returncode != 0:
            failures.append(f'po/{lang}.po: msgfmt --check failed: {stats}')
        elif 'fuzzy' in stats or 'untranslated' in stats:
            failures.append(f'po/{lang}.po is incomplete: {stats}')

for failure in failures:
    print(failure)
sys.exit(1 if failures else 0)
