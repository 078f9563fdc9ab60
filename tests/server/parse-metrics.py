#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
# Debian's python3, where python3-prometheus-client installs the module
# (a python3 earlier on PATH, e.g. pyenv's, may not have it).
# Parses Prometheus text exposition on stdin with the reference parser
# (python3-prometheus-client) and prints one sample a line:
#   name{label="value",...} value      (labels sorted by name)
# Exits 1 with the parser's complaint when the text does not parse.
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
try:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(sample.labels.items()))
            print("%s{%s} %r" % (sample.name, labels, float(sample.value)))
except Exception as e:  # the parser raises ValueError and others
    print("parse error: %s" % e, file=sys.stderr)
    sys.exit(1)
