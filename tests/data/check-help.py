#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The man pages and the bash completion list exactly the options that each
program's --help lists, so that neither drifts when an option is added,
renamed or dropped.

Usage: check-help.py --man-dir DIR --completion FILE --ctl PROGRAM
                     [--server PROGRAM] [--app PROGRAM]

Options are compared by name (long and short); --help, its variants and
GApplication's own --gapplication-service are left out on both sides.
orderdeskctl is compared per command as well: the commands its --help
lists, each command's options (from the command's line in --help and from
`orderdeskctl COMMAND --help` when that exists), the COMMANDS entries of
orderdeskctl.1, and what the completion offers after each command."""

import argparse
import os
import re
import subprocess
import sys
import tempfile

OPTION = re.compile(r'(?<![\w-])(--?[A-Za-z0-9][A-Za-z0-9-]*)')
# An option line of GLib's or orderdeskctl's help: "  -s, --server=URL  ...".
OPTION_LINE = re.compile(r'^\s+((?:-\w,\s+)?--?[A-Za-z0-9][A-Za-z0-9-]*)')

failures = []


def relevant(options):
    return {o for o in options
            if not o.startswith('--help') and o != '-h'
            and not o.startswith('--gapplication-')}


def run_help(argv, env):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, timeout=30, text=True)
    return p.returncode, p.stdout


def help_options(text):
    """Options of a GLib-style help: the first words of the option lines."""
    found = set()
    for line in text.splitlines():
        m = OPTION_LINE.match(line)
        if m:
            found |= set(OPTION.findall(m.group(1)))
    return relevant(found)


def roff_plain(line):
    line = re.sub(r'\\f(\[[^]]*\]|\(..|.)', '', line)
    line = line.replace('\\-', '-').replace('\\e', '\\')
    return re.sub(r'^\.(B|I|BR|RB|BI|IB|IR|RI)\s+', '', line).replace('"', '')


def man_entries(path):
    """{section: [tag line, ...]} of the .TP entries of a roff page."""
    sections = {}
    section = None
    with open(path) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith('.SH'):
            section = line[3:].strip().strip('"')
        elif line.startswith('.TP') and i + 1 < len(lines):
            sections.setdefault(section, []).append(roff_plain(lines[i + 1]))
    return sections


def compare(what, expected, actual, expected_name, actual_name):
    if expected != actual:
        missing = sorted(expected - actual)
        extra = sorted(actual - expected)
        msg = f'{what}:'
        if missing:
            msg += f' missing from {actual_name}: {" ".join(missing)};'
        if extra:
            msg += f' in {actual_name} but not in {expected_name}: {" ".join(extra)};'
        failures.append(msg)
    else:
        print(f'ok: {what}: {" ".join(sorted(expected)) or "(none)"}')


def check_goption_program(name, program, man_dir, env):
    rc, text = run_help([program, '--help-all'], env)
    if rc != 0:
        failures.append(f'{name} --help-all exited {rc}:\n{text}')
        return
    options = help_options(text)
    if not options:
        failures.append(f'no option found in {name} --help-all:\n{text}')
    entries = man_entries(os.path.join(man_dir, name + '.1.in'))
    man = set()
    for tag in entries.get('OPTIONS', []):
        man |= set(OPTION.findall(tag))
    compare(f'{name} options', options, relevant(man), '--help', f'{name}.1')


def parse_ctl_help(text):
    """Global options, and {command: options} from orderdeskctl --help."""
    global_options = set()
    commands = {}
    section = ''
    command = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            section = line.strip().lower() if line.rstrip().endswith(':') else ''
            command = None
            continue
        if section.startswith('commands'):
            m = re.match(r'^  ([a-z][a-z-]*)\b', line)
            if m:
                command = m.group(1)
                commands[command] = set()
            if command is not None:
                commands[command] |= set(OPTION.findall(line))
        elif section:
            m = OPTION_LINE.match(line)
            if m:
                global_options |= set(OPTION.findall(m.group(1)))
    return relevant(global_options), {c: relevant(o) for c, o in commands.items()}


def completion(script, words):
    """What the completion offers for the words, the last being completed."""
    quoted = ' '.join("'" + w.replace("'", "'\\''") + "'" for w in words)
    prog = f'''
source '{script}' || exit 1
spec=$(complete -p orderdeskctl) || exit 1
function=${{spec#*-F }}; function=${{function%% *}}
COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
"$function" orderdeskctl "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD - 1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
'''
    p = subprocess.run(['bash', '--norc', '--noprofile', '-c', prog],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    if p.returncode != 0:
        failures.append(f'completion of {words} failed: {p.stderr}')
    return {w for w in p.stdout.split('\n') if w}


def check_ctl(program, man_dir, script, env):
    rc, text = run_help([program, '--help'], env)
    if rc != 0:
        failures.append(f'orderdeskctl --help exited {rc}:\n{text}')
        return
    global_options, commands = parse_ctl_help(text)
    if not global_options or not commands:
        failures.append(f'cannot find the options or commands in orderdeskctl --help:\n{text}')
        return
    # A command with its own --help (GOptionContext per command) lists its
    # options there too; today's commands refuse --help (status 2).
    for command in commands:
        rc, text = run_help([program, command, '--help'], env)
        if rc == 0:
            commands[command] |= help_options(text) - global_options

    entries = man_entries(os.path.join(man_dir, 'orderdeskctl.1.in'))
    man_global = set()
    for tag in entries.get('OPTIONS', []):
        man_global |= set(OPTION.findall(tag))
    compare('orderdeskctl global options', global_options, relevant(man_global),
            '--help', 'orderdeskctl.1')
    man_commands = {}
    for tag in entries.get('COMMANDS', []):
        words = tag.split()
        if words:
            man_commands[words[0]] = relevant(set(OPTION.findall(tag)))
    compare('orderdeskctl commands', set(commands), set(man_commands), '--help', 'orderdeskctl.1')

    compare('orderdeskctl completion of global options', global_options,
            relevant(completion(script, ['orderdeskctl', '-'])), '--help', 'the completion')
    compare('orderdeskctl completion of commands', set(commands),
            completion(script, ['orderdeskctl', '']), '--help', 'the completion')
    for command, options in sorted(commands.items()):
        compare(f'orderdeskctl {command} options in orderdeskctl.1', options,
                man_commands.get(command, set()), '--help', 'orderdeskctl.1')
        compare(f'orderdeskctl {command} options in the completion', options,
                relevant(completion(script, ['orderdeskctl', command, '-'])),
                '--help', 'the completion')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--man-dir', required=True)
    parser.add_argument('--completion', required=True)
    parser.add_argument('--ctl', required=True)
    parser.add_argument('--server')
    parser.add_argument('--app')
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        # No program may reach a cache, keyring or display of the user's.
        env = {k: v for k, v in os.environ.items()
               if k not in ('DISPLAY', 'WAYLAND_DISPLAY', 'ORDERDESK_SERVER', 'ORDERDESK_TOKEN')}
        env.update({'HOME': home, 'XDG_DATA_HOME': home, 'XDG_CONFIG_HOME': home,
                    'XDG_CACHE_HOME': home, 'LC_ALL': 'C'})
        check_ctl(args.ctl, args.man_dir, args.completion, env)
        if args.server:
            check_goption_program('orderdesk-server', args.server, args.man_dir, env)
        if args.app:
            check_goption_program('orderdesk', args.app, args.man_dir, env)

    for f in failures:
        print('FAIL: ' + f)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
