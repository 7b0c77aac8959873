#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The sequential-consistency checker's own test: hand-built write logs and
# histories that are and are not sequentially consistent per mount; each
# must get its verdict. Speaks TAP.
#   seqcheck_test.py [--mutant LOG HISTORY]
# With --mutant, instead: the history (from a real run, sequentially
# consistent) must fail once one read in it is sent back in time.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seqcheck  # noqa: E402

K, K2 = "/k", "/k2"

# The cluster's log: /k is "a" (version 1) from revision 2, "b" (2) from 4,
# gone from 6, "c" (1) from 8; /k2 is "x" (1) from 3, "y" (2) from 5.
LOG = [{"rev": 2, "key": K, "value": "a", "version": 1},
       {"rev": 3, "key": K2, "value": "x", "version": 1},
       {"rev": 4, "key": K, "value": "b", "version": 2},
       {"rev": 5, "key": K2, "value": "y", "version": 2},
       {"rev": 6, "key": K, "value": None, "version": 0},
       {"rev": 8, "key": K, "value": "c", "version": 1}]


def get(call, ret, value, version=None, m=0, key=K):
    return {"p": m, "m": m, "key": key, "f": "get", "via": "txn",
            "call": call, "ret": ret,
            "out": {"value": value, "version": version}}


def put(call, ret, value, version=None, m=0, key=K, via="txn"):
    return {"p": m, "m": m, "key": key, "f": "set", "via": via,
            "value": value, "call": call, "ret": ret,
            "out": {"version": version}}


def cas(call, ret, expect, value, ok, version, m=0, key=K):
    return {"p": m, "m": m, "key": key, "f": "cas", "via": "txn",
            "expect": expect, "value": value, "call": call, "ret": ret,
            "out": {"ok": ok, "version": version}}


def delete(call, ret, ok, m=0, key=K, via="txn"):
    return {"p": m, "m": m, "key": key, "f": "delete", "via": via,
            "call": call, "ret": ret, "out": {"ok": ok}}


def unknown(d):
    d = dict(d, ret=None)
    d.pop("out")
    return d


CASES = [
    ("reads in revision order", True,
     [get(0, 1, "a", 1), get(2, 3, "b", 2), get(4, 5, None, 0),
      get(6, 7, "c", 1)]),
    ("a read back in time", False, [get(0, 1, "b"), get(2, 3, "a")]),
    ("a read back in time through a file (no version)", False,
     [get(0, 1, "c"), get(2, 3, "a")]),
    ("overlapping reads in either order", True,
     [get(0, 3, "b"), get(1, 2, "a")]),
    ("another mount may lag", True,
     [get(0, 1, "b", m=0), get(2, 3, "a", m=1)]),
    ("back in time across keys", False,
     [get(0, 1, "y", key=K2), get(2, 3, "a", key=K)]),
    ("across keys, forward", True,
     [get(0, 1, "x", key=K2), get(2, 3, "a", key=K),
      get(4, 5, "y", key=K2)]),
    ("a read of the mount's own write", True,
     [put(0, 1, "b", 2), get(2, 3, "b", 2)]),
    ("a read that misses the mount's own write", False,
     [put(0, 1, "b", 2), get(2, 3, "a", 1)]),
    ("another mount need not see it", True,
     [put(0, 1, "b", 2, m=0), get(2, 3, "a", 1, m=1)]),
    ("a version that does not go with the value", False,
     [get(0, 1, "a", 2)]),
    ("a value never written", False, [get(0, 1, "z")]),
    ("a set the log does not have", False, [put(0, 1, "z", 3)]),
    ("a set with the wrong version", False, [put(0, 1, "b", 3)]),
    ("a write after the mount saw later revisions", False,
     [get(0, 1, "c"), put(2, 3, "b", 2)]),
    ("a compare-and-set", True, [cas(0, 1, 1, "b", True, 2)]),
    ("a compare-and-set that expected another version", False,
     [cas(0, 1, 2, "b", True, 2)]),
    ("a refused compare-and-set found an old version", False,
     [get(0, 1, "c", 1), cas(2, 3, 7, "q", False, 2)]),
    ("a refused compare-and-set, current", True,
     [get(0, 1, "a", 1), cas(2, 3, 7, "q", False, 2)]),
    ("a delete, then the value before it", False,
     [delete(0, 1, True), get(2, 3, "b")]),
    ("a delete, then the next incarnation", True,
     [delete(0, 1, True), get(2, 3, "c", 1)]),
    ("a refused delete where the key exists", False,
     [get(0, 1, "b"), delete(2, 3, False), get(4, 5, "b")]),
    ("a refused delete while it is gone", True,
     [get(0, 1, "b"), delete(2, 3, False), get(4, 5, "c")]),
    ("a file write without effect, nothing overlapping", False,
     [put(0, 1, "z", via="file")]),
    ("a file write without effect under a rename", True,
     [put(0, 3, "z", via="file", m=0), put(1, 2, "b", via="rename", m=1)]),
    ("an operation of unknown outcome takes no part", True,
     [unknown(put(0, 1, "z", 9)), get(2, 3, "a")]),
    ("a failed operation takes no part", True,
     [dict(get(0, 1, "z"), error="ENOTCONN"), get(2, 3, "a")]),
]


def back_in_time(log, hist):
    """hist with one read sent back in time: the latest read whose mount
    had reached a revision at which an earlier value of its key was gone
    gets that value. None when no read can be."""
    floors = {}
    if seqcheck.check(log, hist, floors) is not None:
        return None
    tls = seqcheck.timelines(log)
    for d in sorted(hist, key=lambda d: -d["call"]):
        if d["f"] != "get" or id(d) not in floors:
            continue
        tl = tls.get(d["key"])
        for j in range(1, len(tl.revs) - 1 if tl else 0):
            if tl.revs[j + 1] <= floors[id(d)] and tl.states[j][0]:
                h = [dict(o) for o in hist]
                i = hist.index(d)
                h[i]["out"] = {"value": tl.states[j][0], "version": None}
                return h
    return None


def mutant(log_path, hist_path):
    log, hist = seqcheck.load(log_path), seqcheck.load(hist_path)
    hist = [d for d in hist if "error" not in d]
    h = back_in_time(log, hist)
    if h is None:
        print("not ok: no read in the history can be sent back in time")
        sys.exit(1)
    err = seqcheck.check(log, h)
    if err is None:
        print("not ok: a read sent back in time passed the check")
        sys.exit(1)
    print("ok: a read sent back in time fails the check:", err[:200])


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--mutant":
        mutant(sys.argv[2], sys.argv[3])
        return
    print("1..%d" % len(CASES))
    bad = 0
    for n, (name, want, hist) in enumerate(CASES, 1):
        err = seqcheck.check(LOG, hist)
        ok = (err is None) == want
        bad += not ok
        print("%s %d - %s%s" % ("ok" if ok else "not ok", n, name,
                                "" if ok else ": %s" % err))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
