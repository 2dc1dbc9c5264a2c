#!/usr/bin/env python3
"""Search files for the test run's secrets.

    python3 test/check_secrets.py --server-log LOG [FILE...]

The secret values come from the environment (CFDW_TOKEN, CFDW_TOKEN2,
CFDW_BEARER, CFDW_BAD_TOKEN, and CFDW_CLIENT_SECRET and CFDW_CLIENT_SECRET2
when set) and are never printed: a finding names the variable, the file and
the line.  Access tokens the stand-in issued ("cfdwat-" and 32 hex digits)
may appear nowhere, not even in a user mapping statement.

FILEs (test outputs, expected outputs) may not contain a secret anywhere.
The server log, written with log_statement = 'all', may contain one only
where PostgreSQL itself logs the text of a CREATE or ALTER USER MAPPING
statement (the README warns about that); anything else, such as a message
of the extension, a failing statement's echo that is not a user mapping, or
a pg_cron command, is a leak.  Log entries are told apart by their prefix
(log_line_prefix starts with a timestamp), so a statement continued over
several lines counts as one entry.

Exit status: 0 when clean, 1 when a secret was found, 2 on bad usage.
"""
import argparse
import os
import re
import sys

SECRET_VARS = ("CFDW_TOKEN", "CFDW_TOKEN2", "CFDW_BEARER", "CFDW_BAD_TOKEN")
# OAuth client secrets: searched for whenever they are set (test/lib.sh sets
# them; a caller that gives only the four above is still served).
OPTIONAL_SECRET_VARS = ("CFDW_CLIENT_SECRET", "CFDW_CLIENT_SECRET2")
# The access tokens the stand-in issues (test/standin.py): never known in
# advance, so found by their form.
ACCESS_TOKEN = re.compile(r"cfdwat-[0-9a-f]{32}")

# An entry starts with log_line_prefix's %m: "2026-11-29 01:52:02.123 UTC".
ENTRY_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
# What PostgreSQL logs for a statement's text: log_statement's "statement:",
# an extended-protocol "execute <name>:", or the "STATEMENT:" of an error.
STATEMENT = re.compile(r"^\S.*?\b(?:LOG|STATEMENT|DETAIL):\s+(?:statement:\s+|execute [^:]*:\s+)?(.*)$",
                       re.S)
USER_MAPPING = re.compile(r"^\s*(CREATE|ALTER)\s+USER\s+MAPPING\b", re.I)


def secrets():
    found = {}
    for name in SECRET_VARS:
        value = os.environ.get(name, "")
        if len(value) < 8:
            sys.exit("check_secrets: %s is not set (or too short to search for)" % name)
        found[name] = value
    for name in OPTIONAL_SECRET_VARS:
        value = os.environ.get(name, "")
        if value:
            if len(value) < 8:
                sys.exit("check_secrets: %s is too short to search for" % name)
            found[name] = value
    return found


def hits_in(vals, text):
    hits = [name for name, v in vals.items() if v in text]
    if ACCESS_TOKEN.search(text):
        hits.append("an issued access token")
    return hits


def entries(path):
    """(first line number, text) of each log entry."""
    start, lines = None, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if ENTRY_START.match(line) and lines:
                yield start, "".join(lines)
                lines = []
            if not lines:
                start = n
            lines.append(line)
    if lines:
        yield start, "".join(lines)


def allowed_in_log(entry):
    m = STATEMENT.match(entry)
    if not m:
        return False
    text = m.group(1)
    return bool(USER_MAPPING.match(text))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-log", action="append", default=[])
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    vals = secrets()
    leaks = 0
    allowed = 0

    for log in args.server_log:
        if not os.path.exists(log):
            print("check_secrets: no server log at %s" % log, file=sys.stderr)
            leaks += 1
            continue
        for start, entry in entries(log):
            hits = hits_in(vals, entry)
            if not hits:
                continue
            if allowed_in_log(entry) and not ACCESS_TOKEN.search(entry):
                allowed += 1
                continue
            leaks += 1
            print("SECRET LEAK: %s in %s, log entry at line %d" % (", ".join(hits), log, start))

    for path in args.files:
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                hits = hits_in(vals, line)
                if hits:
                    leaks += 1
                    print("SECRET LEAK: %s in %s, line %d" % (", ".join(hits), path, n))

    print("check_secrets: %d file(s) and %d server log(s) searched; %d user mapping statement(s) "
          "logged by PostgreSQL itself; %d leak(s)"
          % (len(args.files), len(args.server_log), allowed, leaks))
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
