#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writers of other processes against a saturated mount.

fair.py USTATE FAIR_CAPI DB MOUNT WRITERS CLI_WRITES SHELL_WRITES SECONDS

WRITERS processes (not threads: one interpreter would serialise them)
rewrite files of the mount without pause, alone for
SECONDS, then while another process makes CLI_WRITES writes through
`ustate -d DB set` (one process each, as a script would), fair_capi makes as many in one
libustate process (each call timed: the library's own wait) and the sqlite3
shell, one session with `.timeout 5000`, makes SHELL_WRITES upserts into
kv_store the way a program outside libustate writes; then, for SECONDS,
a sqlite3 shell holds the file open without writing. Prints one line per
side (failures, p50/p99/max wait) and the mount's own rate alone, with
the others and beside the idle shell; exits 1 when any outside write failed. Every loop is
bounded in count and in time.
"""
import multiprocessing
import os
import subprocess
import sys
import threading
import time

LIMIT = 120.0  # seconds: no phase runs longer than this


def writer(mount, i, stop, counts):
    path = os.path.join(mount, "w%d" % i)
    n = 0
    end = time.monotonic() + 2 * LIMIT
    while not stop.is_set() and time.monotonic() < end:
        with open(path, "w") as f:
            f.write(str(n))
        n += 1
        counts[i] = n


def pct(v, p):
    if not v:
        return 0.0
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


def report(name, times, fails):
    print("%s: writes=%d failures=%d p50=%.1fms p99=%.1fms max=%.1fms" %
          (name, len(times), fails, pct(times, 0.5) * 1e3,
           pct(times, 0.99) * 1e3, max(times or [0]) * 1e3))


def cli_side(ustate, db, n, out):
    times, fails = [], 0
    end = time.monotonic() + LIMIT
    for i in range(n):
        if time.monotonic() > end:
            fails += n - i
            break
        t = time.monotonic()
        r = subprocess.run([ustate, "-d", db, "set", "/cli/k%d" % (i % 50),
                            str(i)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=LIMIT)
        times.append(time.monotonic() - t)
        if r.returncode != 0:
            fails += 1
            sys.stderr.write("ustate set: %s" % r.stderr.decode())
    out["cli"] = (times, fails)


def capi_side(capi, db, n, out):
    r = subprocess.run([capi, db, str(n)], stdout=subprocess.PIPE,
                       timeout=LIMIT)
    out["capi"] = r.stdout.decode().strip() or "no output"
    out["capi_failed"] = r.returncode != 0


def shell_side(db, n, out):
    # .timer prints "Run Time: real S ..." after each statement: the
    # wait of each write, measured by the shell itself.
    script = [".timeout 5000", ".timer on"]
    for i in range(n):
        script.append(
            "INSERT INTO kv_store(key, value, version, created_at, "
            "updated_at) VALUES ('/shell/k%d', '%d', 1, unixepoch(), "
            "unixepoch()) ON CONFLICT(key) DO UPDATE SET "
            "value = excluded.value, version = version + 1, "
            "updated_at = excluded.updated_at;" % (i % 50, i))
    r = subprocess.run(["sqlite3", "-bail", db],
                       input="\n".join(script).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=LIMIT)
    times = [float(l.split()[3]) for l in r.stdout.decode().splitlines()
             if l.startswith("Run Time:")]
    err = r.stderr.decode()
    if err:
        sys.stderr.write("sqlite3: %s" % err)
    # -bail stops at the first error: the rest count as failed too.
    out["shell"] = (times, max(n - len(times), 1 if err else 0))


def main():
    ustate, capi, db, mount = sys.argv[1:5]
    writers, ncli, nshell = (int(a) for a in sys.argv[5:8])
    secs = float(sys.argv[8])
    stop = multiprocessing.Event()
    counts = multiprocessing.Array("q", writers, lock=False)
    ws = [multiprocessing.Process(target=writer, args=(mount, i, stop, counts))
          for i in range(writers)]
    for w in ws:
        w.start()
    try:
        time.sleep(1)  # under way
        c0, t0 = sum(counts), time.monotonic()
        time.sleep(secs)
        alone = (sum(counts) - c0) / (time.monotonic() - t0)
        out = {}
        sides = [threading.Thread(target=cli_side,
                                  args=(ustate, db, ncli, out)),
                 threading.Thread(target=capi_side,
                                  args=(capi, db, ncli, out)),
                 threading.Thread(target=shell_side,
                                  args=(db, nshell, out))]
        c0, t0 = sum(counts), time.monotonic()
        for s in sides:
            s.start()
        for s in sides:
            s.join(2 * LIMIT)
        shared = (sum(counts) - c0) / (time.monotonic() - t0)
        took = time.monotonic() - t0
        # A shell that has the file open and writes nothing.
        idle_shell = subprocess.Popen(["sqlite3", db], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL)
        idle_shell.stdin.write(b"SELECT count(*) FROM kv_store;\n")
        idle_shell.stdin.flush()
        time.sleep(0.5)
        c0, t0 = sum(counts), time.monotonic()
        time.sleep(secs)
        idle = (sum(counts) - c0) / (time.monotonic() - t0)
        idle_shell.stdin.close()
        idle_shell.wait(LIMIT)
    finally:
        stop.set()
        for w in ws:
            w.join(LIMIT)
    report("ustate set", *out.get("cli", ([], ncli)))
    print("libustate calls: %s" % out.get("capi", "did not finish"))
    report("sqlite3 shell", *out.get("shell", ([], nshell)))
    print("mount: %d writers, %.0f writes/s alone, %.0f writes/s with the "
          "others (%.2fx) over %.1f s" %
          (writers, alone, shared, shared / alone if alone else 0, took))
    print("mount: %.0f writes/s with an idle sqlite3 shell open on the file "
          "(%.2fx)" % (idle, idle / alone if alone else 0))
    fails = out.get("cli", ([], ncli))[1] + out.get("shell", ([], nshell))[1]
    return 1 if fails or out.get("capi_failed", True) else 0


if __name__ == "__main__":
    sys.exit(main())
