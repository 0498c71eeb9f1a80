#!/usr/bin/env python3
# cpu-by-process.py OUT STATE CMD...: runs CMD; once it has exited, and
# before it is reaped, reads its own CPU-seconds and its reaped children's
# from /proc (a zombie keeps them) into OUT, with the count of the versions
# of the file STATE seen meanwhile (inode and mtime, polled every 50 ms).
# OUT.split gets the CPU-seconds of each kind of process under it (the
# docker and random providers, the language host, the program), read from
# /proc every 200 ms while they run (so each loses at most its last
# 200 ms). Used by bench-release.sh and bench-compose.sh for the `pulumi`
# CLI: the engine's own figure is the CLI process's.
import os, subprocess, sys, threading

out, state, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
seen, done = set(), threading.Event()
cpu = {}  # pid -> (kind, ticks)


def stat(pid):
    with open("/proc/%s/stat" % pid) as f:
        x = f.read().rsplit(")", 1)[1].split()
    return int(x[1]), int(x[11]) + int(x[12])  # ppid, utime + stime


def kind(pid):
    with open("/proc/%s/cmdline" % pid, "rb") as f:
        argv0 = os.path.basename(f.read().split(b"\0")[0].decode(errors="replace"))
    if argv0 in ("go", "compile", "link", "asm", "cgo"):
        return "go build"
    return argv0 if argv0.startswith("pulumi") else "program"


def walk(root):
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = stat(d)
            except (OSError, IndexError):
                pass
    under = {root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in parent.items():
            if ppid in under and pid not in under:
                under.add(pid)
                changed = True
    for pid in under - {root}:
        try:
            cpu[pid] = (cpu[pid][0] if pid in cpu else kind(pid), parent[pid][1])
        except OSError:
            pass


def poll(root):
    n = 0
    while not done.is_set():
        try:
            st = os.stat(state)
            seen.add((st.st_ino, st.st_mtime_ns))
        except FileNotFoundError:
            pass
        if n % 4 == 0:
            walk(root)
        n += 1
        done.wait(0.05)


p = subprocess.Popen(cmd)
poller = threading.Thread(target=poll, args=(p.pid,))
poller.start()
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
with open("/proc/%d/stat" % p.pid) as f:
    x = f.read().rsplit(")", 1)[1].split()
hz = os.sysconf("SC_CLK_TCK")
rc = p.wait()
done.set()
poller.join()
try:
    st = os.stat(state)
    seen.add((st.st_ino, st.st_mtime_ns))
except FileNotFoundError:
    pass
with open(out, "w") as f:
    f.write("%.2f %.2f %d\n" % ((int(x[11]) + int(x[12])) / hz, (int(x[13]) + int(x[14])) / hz, len(seen) - 1))
by = {}
for k, t in cpu.values():
    by[k] = by.get(k, 0) + t
with open(out + ".split", "w") as f:
    f.write(", ".join("%s %.1f" % (k, t / hz) for k, t in sorted(by.items(), key=lambda kv: -kv[1])) + "\n")
sys.exit(rc)
