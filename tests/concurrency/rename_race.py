#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A write must not be lost to a rename over its key that fails. Each round:
# a file W is open on key /k with a value written; at once, a rename of
# /tmp over /k starts, a /.txn transaction deletes /tmp (through /.txn, so
# no directory lock of the kernel orders it with the rename: the rename can
# see /tmp and then fail), and W is closed. When the rename failed and W's
# close() returned 0, /k must hold W's value. Timings are jittered so that
# the close lands inside the rename's transaction on most machines.
#   rename_race.py MOUNT ROUNDS
# Prints one line of counts; exits 1 if a write was lost.
import os
import random
import sys
import threading
import time

mnt, rounds = sys.argv[1], int(sys.argv[2])
k, tmp = mnt + "/k", mnt + "/tmp"
with open(k, "w") as f:
    f.write("old")
failed = lost = 0
for i in range(rounds):
    with open(tmp, "w") as f:
        f.write("r%d" % i)
    want = b"w%d" % i
    fd = os.open(k, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, want)
    res = {}
    start = threading.Barrier(3)

    def rename():
        start.wait()
        try:
            os.rename(tmp, k)
            res["rename"] = 0
        except OSError as e:
            res["rename"] = e.errno

    def delete():
        start.wait()
        time.sleep(random.random() * 0.0002)
        t = os.open(mnt + "/.txn", os.O_RDWR)
        try:
            os.write(t, b"delete /tmp\ncommit\n")
        except FileNotFoundError:
            pass  # the rename moved it first
        finally:
            os.close(t)

    def close():
        start.wait()
        time.sleep(random.random() * 0.0004)
        os.close(fd)

    ts = [threading.Thread(target=f) for f in (rename, delete, close)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if res["rename"] != 0:
        failed += 1
        with open(k, "rb") as f:
            got = f.read()
        if got != want:
            lost += 1
            print("round %d: rename failed (%s), close() returned 0, /k "
                  "holds %r, not %r" % (i, os.strerror(res["rename"]), got,
                                        want), file=sys.stderr)
    if os.path.exists(tmp):
        os.unlink(tmp)
print("rounds=%d rename-failed=%d lost=%d" % (rounds, failed, lost))
sys.exit(1 if lost else 0)
