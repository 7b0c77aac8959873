#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The check of -o consistency=local: each mount sequentially consistent.

What consistency=local promises (README, "Consistency"): a mount reads
from a replica that applies the cluster's revisions in order, so it never
goes back in time and always sees its own writes, however far it lags.
Given the cluster's write log (the state of every key at every revision:
tests/cluster/etcdlog.py) and a history taken through several mounts
(linhistory.py, each operation with "m", the mount it went through), this
checks that on each mount the operations can be given revisions such that

 - each one is explained by the state at its revision: a read returns the
   value (and, through /.txn, the version) the key had there; a refused
   compare-and-set found the version it reports; a refused delete found
   no key; a write is the change at its revision (a set, or a successful
   compare-and-set, is the one that wrote its value, with the version it
   reports and, for a compare-and-set, after the version it expected; a
   delete one of the key's deletes);
 - an operation that began after another of the same mount completed has
   a revision at least as late: no read goes back in time, and every read
   after a write of the mount sees that write or something later.

Each operation gets the earliest revision that explains it at or after
the latest revision of the operations of its mount that completed before
it began: choosing the earliest never constrains later ones more, so the
history passes iff this greedy pass never finds an operation that nothing
explains. Mounts are not compared with one another (that is
linearizability, lincheck.py). A write through a file that left no change
in the log had no effect; that is allowed only when a rename or delete of
its key overlapped it (POSIX, see lincheck.py), and it then takes no
revision. Operations that failed ("error") or whose outcome is unknown
("ret": null) are left out.

  seqcheck.py LOG HISTORY
Exit 0 when every mount is sequentially consistent; 1 otherwise, naming
the first operation that nothing explains, with the revision it needed to
be at or after and the states its key had from there.
"""
import bisect
import json
import sys


class Timeline:
    """The states of one key: (value, version) from each revision on."""

    def __init__(self):
        self.revs = [0]
        self.states = [(None, 0)]
        self.by_value = {}

    def add(self, rev, value, version):
        self.revs.append(rev)
        self.states.append((value, version))
        if value is not None:
            self.by_value[value] = len(self.revs) - 1

    def first(self, floor, match):
        """The earliest revision >= floor whose state satisfies match."""
        i = max(bisect.bisect_right(self.revs, floor) - 1, 0)
        for j in range(i, len(self.revs)):
            if match(self.states[j]):
                return max(self.revs[j], floor)
        return None

    def states_from(self, floor, n=4):
        i = max(bisect.bisect_right(self.revs, floor) - 1, 0)
        return list(zip(self.revs[i:i + n], self.states[i:i + n]))


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def timelines(log):
    keys = {}
    for d in sorted(log, key=lambda d: d["rev"]):
        keys.setdefault(d["key"], Timeline()).add(d["rev"], d["value"],
                                                  d["version"])
    return keys


def overlapped(d, hist):
    """Whether a rename or delete of d's key overlapped d."""
    for o in hist:
        if (o is not d and o["key"] == d["key"] and
                (o.get("via") == "rename" or o["f"] == "delete") and
                o["call"] < d["ret"] and
                (o["ret"] is None or o["ret"] > d["call"])):
            return True
    return False


def revision(d, tl, floor, hist):
    """The earliest revision >= floor that explains d, or None; "none"
    for a file write that had no effect (allowed)."""
    f, out = d["f"], d.get("out", {})
    if f == "get":
        want, ver = out.get("value"), out.get("version")
        return tl.first(floor, lambda s: s[0] == want and
                        (ver is None or s[1] == ver))
    if f == "delete":
        if not out["ok"]:
            return tl.first(floor, lambda s: s[1] == 0)
        # One of the key's deletes: the state at it is "no key".
        for j in range(len(tl.revs)):
            if tl.revs[j] >= floor and j and tl.states[j][1] == 0:
                return tl.revs[j]
        return None
    if f == "cas" and not out["ok"]:
        return tl.first(floor, lambda s: s[1] == out["version"])
    # A set, or a compare-and-set that succeeded: the change of its value.
    j = tl.by_value.get(d["value"])
    if j is None:
        if f == "set" and d.get("via") in ("file", "rename") and \
                overlapped(d, hist):
            return "none"
        return None
    ver = out.get("version")
    if ver is not None and tl.states[j][1] != ver:
        return None
    if f == "cas" and tl.states[j - 1][1] != d["expect"]:
        return None
    return tl.revs[j] if tl.revs[j] >= floor else None


def check(log, hist, floors=None):
    """None when every mount is sequentially consistent, else a message.
    floors, a dict: filled with each operation's floor (the revision it
    had to be at or after), by id() of the operation."""
    keys = timelines(log)
    hist = [d for d in hist if "error" not in d]
    done = [d for d in hist if d["ret"] is not None]
    # Sweep the calls and completions in time order (a completion first
    # at a tie: it did not begin after).
    events = sorted([(d["call"], 1, i) for i, d in enumerate(done)] +
                    [(d["ret"], 0, i) for i, d in enumerate(done)])
    latest = {}  # mount -> the latest revision of its completed ops
    given = {}
    for _, is_call, i in events:
        d = done[i]
        m = d.get("m", 0)
        if not is_call:
            if given[i] is not None:
                latest[m] = max(latest.get(m, 0), given[i])
            continue
        floor = latest.get(m, 0)
        if floors is not None:
            floors[id(d)] = floor
        tl = keys.get(d["key"], Timeline())
        r = revision(d, tl, floor, hist)
        if r is None:
            return ("mount %d: nothing at or after revision %d explains %s;"
                    " %s from there: %s" %
                    (m, floor, json.dumps(d), d["key"],
                     tl.states_from(floor)))
        given[i] = None if r == "none" else r
    return None


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: seqcheck.py LOG HISTORY")
    log, hist = load(sys.argv[1]), load(sys.argv[2])
    err = check(log, hist)
    mounts = sorted({d.get("m", 0) for d in hist})
    if err:
        print("not sequentially consistent:", err)
        sys.exit(1)
    print("sequentially consistent: %d operations on %d mounts, %d changes"
          " in the log" % (len(hist), len(mounts), len(log)))


if __name__ == "__main__":
    main()
