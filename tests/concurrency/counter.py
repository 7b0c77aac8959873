#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Increment one counter key from many processes through a ustatefs mount,
# each increment a compare-and-set retry loop over /.txn: one transaction
# reads the value and version ("get"), a second writes value + 1 only at
# that version ("check" + "set"), and a conflict (ECANCELED) starts over.
#   counter.py [--shared] [--versions FILE] MOUNT KEY PROCS INCREMENTS
# The key holds a decimal number V0 + D at version V0. Every increment keeps
# value - version constant, so each commit must have written its version +
# D; no two commits may share a version or a revision. Alone (the default)
# the commits must have made exactly versions V0+1 .. V0+PROCS*INCREMENTS;
# with --shared other writers share the key and the caller checks the sum
# (--versions writes each commit's version, one a line). Prints the final
# value and version read back, and the counts, as one line of key=value.
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import txnfs  # noqa: E402


def worker(mnt, key, incs, out):
    commits = []  # (revision, version, value) of each successful CAS
    conflicts = 0
    for _ in range(incs):
        while True:
            val, ver = txnfs.get(mnt, key)
            nv = int(val) + 1
            r = txnfs.cas(mnt, key, ver, b"%d" % nv)
            if r.ok:
                commits.append((r.revision, r.ops[1][2], nv))
                break
            if r.code != "ECANCELED" or r.found == ver:
                raise txnfs.TxnError("cas %s at %d: %r" % (key, ver, r.raw))
            conflicts += 1
    with open(out, "w") as f:
        json.dump({"commits": commits, "conflicts": conflicts}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", action="store_true")
    ap.add_argument("--versions")
    ap.add_argument("mnt")
    ap.add_argument("key")
    ap.add_argument("procs", type=int)
    ap.add_argument("incs", type=int)
    a = ap.parse_args()
    mnt, key, procs, incs = a.mnt, a.key, a.procs, a.incs
    val0, v0 = txnfs.get(mnt, key)
    delta = int(val0) - v0
    tmp = tempfile.mkdtemp(prefix="counter.")
    outs = [os.path.join(tmp, "%d.json" % i) for i in range(procs)]
    t0 = time.monotonic()
    ws = [subprocess.Popen([sys.executable, __file__, "--worker", mnt, key,
                            str(incs), o]) for o in outs]
    bad = [w.pid for w in ws if w.wait() != 0]
    secs = time.monotonic() - t0
    if bad:
        sys.exit("workers %s failed" % bad)
    commits, conflicts = [], 0
    for o in outs:
        with open(o) as f:
            d = json.load(f)
        commits += d["commits"]
        conflicts += d["conflicts"]
    shutil.rmtree(tmp)
    errors = []
    n = procs * incs
    vers = sorted(c[1] for c in commits)
    if len(set(vers)) != n:
        errors.append("two commits share a version")
    if not a.shared and vers != list(range(v0 + 1, v0 + n + 1)):
        errors.append("versions of the commits are not %d..%d" %
                      (v0 + 1, v0 + n))
    for rev, ver, val in commits:
        if val != ver + delta:
            errors.append("version %d holds %d, not %d" %
                          (ver, val, ver + delta))
    if len(set(c[0] for c in commits)) != len(commits):
        errors.append("two commits share a revision")
    if a.versions:
        with open(a.versions, "w") as f:
            f.writelines("%d\n" % v for v in vers)
    val, ver = txnfs.get(mnt, key)
    if not a.shared and (int(val) != int(val0) + n or ver != v0 + n):
        errors.append("read back %s at version %d" % (val, ver))
    print("value=%s version=%d commits=%d conflicts=%d attempts=%d "
          "seconds=%.1f" % (val.decode(), ver, len(commits), conflicts,
                            len(commits) + conflicts, secs))
    for e in errors[:10]:
        print("not ok:", e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
