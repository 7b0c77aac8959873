#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The linearizability checker's own test: hand-built histories that are
# and are not linearizable (each failing one must fail, with the smallest
# prefix named), then random histories built from real linearization
# points (all must pass) and the same with one result falsified (all must
# fail). Speaks TAP.
#   lincheck_test.py [--mutant HISTORY]
# With --mutant, instead: the history (from a real run, linearizable)
# must fail once one read in it is made stale.
import io
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lincheck  # noqa: E402

K = "/k"


def get(call, ret, value, version, key=K, p=0):
    return {"p": p, "key": key, "f": "get", "call": call, "ret": ret,
            "out": {"value": value, "version": version}}


def put(call, ret, value, version, key=K, p=0):
    return {"p": p, "key": key, "f": "set", "call": call, "ret": ret,
            "value": value, "out": {"version": version}}


def cas(call, ret, expect, value, ok, version, key=K, p=0):
    return {"p": p, "key": key, "f": "cas", "call": call, "ret": ret,
            "expect": expect, "value": value,
            "out": {"ok": ok, "version": version}}


def delete(call, ret, ok, key=K, p=0, via="txn"):
    return {"p": p, "key": key, "f": "delete", "via": via, "call": call,
            "ret": ret, "out": {"ok": ok}}


def pending(d):
    d = dict(d, ret=None)
    d.pop("out")
    return d


def ops_of(history):
    return [lincheck.Op(i, d) for i, d in enumerate(history)]


# (name, linearizable?, history, for a failing one: the length of its
# smallest non-linearizable prefix in events)
CASES = [
    ("empty history", True, [], None),
    ("sequential set then get", True,
     [put(0, 1, "a", 1), get(2, 3, "a", 1)], None),
    ("a get of a missing key", True, [get(0, 1, None, 0)], None),
    ("a get before any set sees nothing", False,
     [get(0, 1, "a", 1), put(2, 3, "a", 1)], 2),
    ("a stale read after two completed sets", False,
     [put(0, 1, "a", 1), put(2, 3, "b", 2), get(4, 5, "a", 1)], 6),
    ("a read concurrent with a set may see the old value", True,
     [put(0, 1, "a", 1), put(2, 6, "b", 2), get(3, 5, "a", 1)], None),
    ("... or the new one", True,
     [put(0, 1, "a", 1), put(2, 6, "b", 2), get(3, 5, "b", 2)], None),
    ("but not the new value with the old version", False,
     [put(0, 1, "a", 1), put(2, 6, "b", 2), get(3, 5, "b", 1)], 5),
    ("a file read (version unseen) of the new value", True,
     [put(0, 1, "a", 1), put(2, 6, "b", None), get(3, 5, "b", None)], None),
    ("a file read of a value never written", False,
     [put(0, 1, "a", 1), get(3, 5, "c", None)], 4),
    ("a read, once newer, cannot go back", False,
     [put(0, 1, "a", 1), put(2, 9, "b", 2), get(3, 4, "b", 2),
      get(5, 6, "a", 1)], 7),
    ("two sets reporting the same version", False,
     [put(0, 1, "a", 1), put(2, 3, "b", 1)], 4),
    ("concurrent sets: the get fixes their order", True,
     [put(0, 5, "a", None), put(0, 5, "b", None), get(6, 7, "a", 2)], None),
    ("concurrent sets both done: version must be 2", False,
     [put(0, 5, "a", None), put(0, 5, "b", None), get(6, 7, "a", 1)], 6),
    ("cas at the current version succeeds", True,
     [put(0, 1, "a", 1), cas(2, 3, 1, "b", True, 2), get(4, 5, "b", 2)],
     None),
    ("cas succeeding at a stale version", False,
     [put(0, 1, "a", 1), put(2, 3, "b", 2), cas(4, 5, 1, "c", True, 2)], 6),
    ("cas refused although the version matched", False,
     [put(0, 1, "a", 1), cas(2, 3, 1, "b", False, 1)], 4),
    ("cas refused must report the version found", False,
     [put(0, 1, "a", 1), put(2, 3, "b", 2), cas(4, 5, 1, "c", False, 1)], 6),
    ("cas refused by a concurrent set", True,
     [put(0, 1, "a", 1), put(2, 6, "b", 2), cas(3, 5, 1, "c", False, 2)],
     None),
    ("two concurrent cas at one version: only one may win", False,
     [put(0, 1, "a", 1), cas(2, 5, 1, "b", True, 2),
      cas(3, 6, 1, "c", True, 2)], 6),
    ("two concurrent cas at one version: one wins, one is refused", True,
     [put(0, 1, "a", 1), cas(2, 5, 1, "b", True, 2),
      cas(3, 6, 1, "c", False, 2)], None),
    ("cas 0 creates a missing key", True,
     [cas(0, 1, 0, "a", True, 1), get(2, 3, "a", 1)], None),
    ("needs backtracking: the first order tried fails later", True,
     [put(0, 10, "a", None), put(0, 10, "b", None), put(0, 10, "c", None),
      get(11, 12, "b", 3), cas(13, 14, 3, "d", True, 4)], None),
    ("an unfinished set may have taken effect", True,
     [pending(put(0, 1, "a", 1)), get(2, 3, "a", 1)], None),
    ("... or not", True,
     [pending(put(0, 1, "a", 1)), get(2, 3, None, 0)], None),
    ("but not halfway: its value at another version", False,
     [pending(put(0, 1, "a", 1)), get(2, 3, "a", 2)], 3),
    ("a file write lost to an overlapping rename (POSIX)", True,
     [put(0, 1, "a", 1), dict(put(2, 6, "f", None), via="file"),
      dict(put(3, 5, "r", None), via="rename"), get(7, 8, "r", 2)], None),
    ("... but not to a rename that did not overlap it", False,
     [put(0, 1, "a", 1), dict(put(2, 3, "r", None), via="rename"),
      dict(put(4, 6, "f", None), via="file"), get(7, 8, "r", 2)], 8),
    ("... and may have landed after it", True,
     [put(0, 1, "a", 1), dict(put(2, 6, "f", None), via="file"),
      dict(put(3, 5, "r", None), via="rename"), get(7, 8, "f", 3)], None),
    ("... but the rename itself is not optional", False,
     [put(0, 1, "a", 1), dict(put(2, 6, "f", None), via="file"),
      dict(put(3, 5, "r", None), via="rename"), get(7, 8, "f", 2)], 8),
    ("a delete, then nothing is there", True,
     [put(0, 1, "a", 1), delete(2, 3, True), get(4, 5, None, 0)], None),
    ("a delete that finds nothing", True,
     [delete(0, 1, False), put(2, 3, "a", 1)], None),
    ("a delete that finds nothing although the key exists", False,
     [put(0, 1, "a", 1), delete(2, 3, False)], 4),
    ("a delete that succeeds on a missing key", False,
     [delete(0, 1, True)], 2),
    ("two deletes of one key cannot both succeed", False,
     [put(0, 1, "a", 1), delete(2, 5, True), delete(3, 6, True)], 6),
    ("versions start again at 1 after a delete", True,
     [put(0, 1, "a", 1), put(2, 3, "b", 2), delete(4, 5, True),
      put(6, 7, "c", 1), cas(8, 9, 1, "d", True, 2)], None),
    ("... not where they were", False,
     [put(0, 1, "a", 1), delete(2, 3, True), put(4, 5, "c", 3)], 6),
    ("a file write lost to an overlapping delete (POSIX)", True,
     [put(0, 1, "a", 1), dict(put(2, 6, "f", None), via="file"),
      delete(3, 5, True), get(7, 8, None, 0)], None),
    ("... but not to one before it", False,
     [put(0, 1, "a", 1), delete(2, 3, True),
      dict(put(4, 6, "f", None), via="file"), get(7, 8, None, 0)], 8),
    ("keys are independent registers", True,
     [put(0, 1, "a", 1, key="/x"), put(0, 1, "a", 1, key="/y"),
      get(2, 3, "a", 1, key="/x"), get(2, 3, "a", 1, key="/y")], None),
    ("a stale read on one key among others", False,
     [put(0, 1, "a", 1, key="/x"), put(0, 1, "a", 1, key="/y"),
      put(2, 3, "b", 2, key="/y"), get(2, 3, "a", 1, key="/x"),
      get(4, 5, "a", 1, key="/y")], 10),
]


def random_history(rng, n, keys, procs):
    """A history with real linearization points: each op happens at an
    instant inside its interval, results computed in that order, each
    process's ops in sequence. Linearizable by construction."""
    state = {k: (None, 0) for k in keys}
    hist = []
    busy = [-1] * procs  # when each process's last op completed
    t = 0
    for i in range(n):
        t += rng.randint(1, 20)
        free = [p for p in range(procs) if busy[p] < t]
        if not free:
            t = min(busy) + 1
            free = [busy.index(min(busy))]
        p = rng.choice(free)
        call = max(busy[p] + 1, t - rng.randint(0, 60))
        ret = t + rng.randint(0, 60)
        busy[p] = ret
        k = rng.choice(keys)
        value, version = state[k]
        f = rng.random()
        if f < 0.35:
            hide = rng.random() < 0.3
            hist.append(get(call, ret, value, None if hide else version,
                            key=k, p=p))
        elif f < 0.4:
            ok = version > 0
            state[k] = (None, 0)
            hist.append(delete(call, ret, ok, key=k, p=p))
        elif f < 0.65:
            nv = "v%d" % i
            hide = rng.random() < 0.3
            state[k] = (nv, version + 1)
            hist.append(put(call, ret, nv, None if hide else version + 1,
                            key=k, p=p))
        else:
            e = version if rng.random() < 0.6 else rng.randint(0, version + 1)
            nv = "v%d" % i
            if e == version:
                state[k] = (nv, version + 1)
                hist.append(cas(call, ret, e, nv, True, version + 1, key=k,
                                p=p))
            else:
                hist.append(cas(call, ret, e, nv, False, version, key=k,
                                p=p))
    return hist


def falsify(rng, hist):
    """Make one result impossible: a get of a value never written, a set
    or a cas reporting a version it cannot have, or a refused cas that
    succeeds at a version never reached."""
    h = [dict(d) for d in hist]
    # (Not a delete: another order of concurrent ops may explain its
    # opposite result.)
    d = rng.choice([d for d in h if d["f"] != "delete"])
    if d["f"] == "get":
        d["out"] = {"value": "never-written", "version": None}
    elif d["f"] == "set" or d["out"]["ok"]:
        d["out"] = dict(d["out"], version=10 ** 9)
    else:
        d["expect"] = 10 ** 9 - 1
        d["out"] = {"ok": True, "version": 10 ** 9}
    return h


def stale_mutant(hist):
    """A real history with one read made stale: a get whose value is that
    of a set, when another set completed after that set and before the
    get began (one not through a file, which may have had no effect).
    None when the history has no such get."""
    h = [dict(d) for d in hist]
    writes = {}
    for d in h:
        if d["f"] in ("set", "cas") and d.get("ret") is not None and \
                (d["f"] == "set" or d["out"]["ok"]):
            writes.setdefault(d["key"], []).append(d)
    for d in sorted(h, key=lambda d: -d["call"]):
        if d["f"] != "get" or d.get("ret") is None:
            continue
        ws = sorted(writes.get(d["key"], []), key=lambda w: w["ret"])
        for a in ws:
            if any(b["call"] > a["ret"] and b["ret"] < d["call"] and
                   b.get("via") != "file" for b in ws):
                d["out"] = {"value": a["value"], "version": None}
                return h
    return None


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--mutant":
        with open(sys.argv[2]) as f:
            hist = [json.loads(line) for line in f if line.strip()]
        hist = [d for d in hist if "error" not in d]
        m = stale_mutant(hist)
        if m is None:
            print("not ok: no read in the history can be made stale")
            return 1
        good = lincheck.check(ops_of(hist)) is None
        bad = lincheck.check(ops_of(m)) is not None
        print("%s: the history of the run is linearizable" %
              ("ok" if good else "not ok"))
        print("%s: with one read made stale it is not" %
              ("ok" if bad else "not ok"))
        return 0 if good and bad else 1

    rng = random.Random(4)
    tests = []
    for name, want, hist, k in CASES:
        ops = ops_of(hist)
        got = lincheck.check(ops) is None
        ok = got == want
        if ok and not want:
            out = io.StringIO()
            kk = lincheck.report(ops, out=out)
            ok = kk == k
            if not ok:
                name += " (smallest prefix %d events, expected %d)\n# " % (
                    kk, k) + out.getvalue().replace("\n", "\n# ")
        tests.append((ok, "%s: %s" % (
            "linearizable" if want else "not linearizable", name)))
    counts = [0, 0]
    for r in range(200):
        h = random_history(rng, rng.randint(5, 60), ["/a", "/b"],
                           rng.randint(1, 5))
        counts[0] += lincheck.check(ops_of(h)) is None
        counts[1] += lincheck.check(ops_of(falsify(rng, h))) is not None
    tests.append((counts[0] == 200, "200 random linearizable histories pass "
                  "(%d did)" % counts[0]))
    tests.append((counts[1] == 200, "each with one result falsified fails "
                  "(%d did)" % counts[1]))
    h = random_history(rng, 3000, ["/a", "/b", "/c"], 4)
    tests.append((lincheck.check(ops_of(h)) is None,
                  "a random history of 3000 operations passes"))
    m = stale_mutant(h)
    tests.append((m is not None and lincheck.check(ops_of(m)) is not None,
                  "... and fails with one read made stale"))

    print("1..%d" % len(tests))
    for i, (ok, name) in enumerate(tests, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
    return 0 if all(ok for ok, _ in tests) else 1


if __name__ == "__main__":
    sys.exit(main())
