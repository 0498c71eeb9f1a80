#!/usr/bin/env python3
"""Waits for the first base backup of every tenant of a stack and tells how
they ran: when the last one ended, counted from T0 (the cold `pulumi up`'s
start), how many ran at once at most, and how long each took.

    first-bases.py STACK_PREFIX N T0 [TIMEOUT_SECONDS]

Reads each agent's state (agent/backup.State) from its spool volume on the
host (docker volume inspect; needs root), so it starts no process in the
agents. Used by scripts/bench-add.sh. Exits 1 when not every tenant has a
base backup within the timeout (default 1200 s), after printing the same
line for those that do.
"""
import datetime
import json
import subprocess
import sys
import time


def parse(ts):
    # Go writes RFC 3339 with nanoseconds; Python takes microseconds.
    ts = ts.replace("Z", "+00:00")
    if "." in ts:
        head, rest = ts.split(".", 1)
        frac, tz = rest[:rest.index("+")], rest[rest.index("+"):]
        ts = head + "." + frac[:6].ljust(6, "0") + tz
    return datetime.datetime.fromisoformat(ts).timestamp()


def main():
    prefix, n, t0 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 1200
    names = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", "name=^" + prefix + "-.*-backup-spool$"],
        check=True, capture_output=True, text=True).stdout.split()
    if not names:
        print("first base backups: no agent spool volume named %s-*-backup-spool" % prefix)
        return 1
    points = subprocess.run(["docker", "volume", "inspect", "-f", "{{.Mountpoint}}"] + names,
                            check=True, capture_output=True, text=True).stdout.split()
    deadline = time.time() + timeout
    while True:
        bases = []
        for p in points:
            try:
                with open(p + "/state.json") as f:
                    base = json.load(f).get("lastBase")
            except (OSError, ValueError):
                base = None
            if base:
                bases.append((parse(base["start"]), parse(base["end"])))
        if len(bases) >= n or time.time() > deadline:
            break
        time.sleep(5)
    if not bases:
        print("first base backups: none of %d within %.0f s" % (n, timeout))
        return 1
    # At most how many ran at once: sweep the starts and ends.
    events = sorted([(s, 1) for s, _ in bases] + [(e, -1) for _, e in bases])
    running = most = 0
    for _, d in events:
        running += d
        most = max(most, running)
    took = sorted(e - s for s, e in bases)
    print("first base backups: %d/%d, the last ended %.0f s after the cold up began; at most %d at once; "
          "each took median %.1f s, max %.1f s"
          % (len(bases), n, max(e for _, e in bases) - t0, most, took[len(took) // 2], took[-1]))
    return 0 if len(bases) >= n else 1


if __name__ == "__main__":
    sys.exit(main())
