#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A linearizability checker for histories of a versioned key-value store.

This file implements the check of tests/concurrency: given a history of
get, set and compare-and-set operations on several keys, each with the
CLOCK_MONOTONIC times of its invocation and completion and the result it
returned, decide whether some order of the operations, each placed at an
instant between its invocation and its completion, explains every result
(Herlihy & Wing). The search is that of Wing & Gong, with the memoization
of Lowe and of porcupine:

 - keys are independent registers, so each key's operations are checked on
   their own (a history is linearizable iff each key's is);
 - a key's operations split into segments at quiescent instants (no
   operation in flight), where every earlier one precedes every later one;
   a segment is searched from each state the previous one may end in, and
   yields the set of states it may end in;
 - in a segment, an operation may come next iff it was invoked before the
   earliest completion among those not yet placed; a configuration (which
   operations are placed, register state) is explored once. The placed
   set is kept as (count of the first placed ones, bits of the rest).

The model is a versioned register: the state is (value, version), (None, 0)
when the key does not exist. set v makes (v, version + 1); cas (e, v)
succeeds iff version == e, then makes (v, e + 1), else fails reporting the
version; delete succeeds iff version > 0, then makes (None, 0), else fails
(ENOENT); get returns the state. A result that was not observed (the
version of a plain file write or read) is left out of the comparison.

One rule is the file system's: a set through a file ("via": "file", from
open to close) that overlaps a set by rename ("via": "rename") or a
delete of the same key may have had no effect at all, for as in POSIX the
rename or delete may have replaced or removed the file under the open
descriptor, whose writes then go to a file without a name.

History: JSON lines, one operation each:
  {"p": PROC, "key": K, "f": "get"|"set"|"cas", "call": NS, "ret": NS,
   "value": V (set, cas), "expect": E (cas), "out": OUT, ...}
  get OUT: {"value": V or null, "version": N or null}
  set OUT: {"version": N or null}
  delete OUT: {"ok": true|false}
  cas OUT: {"ok": true|false, "version": N (the new one, or the one found)}
An operation that never completed has "ret": null and no "out"; it may
have taken effect or not. One that failed without effect (an open that
failed) has "error" and no "out", and is left out. Other fields (such as
"via") are carried along.

  lincheck.py [--dump FILE] HISTORY
Exit 0 when linearizable; 1 otherwise, printing the smallest
non-linearizable prefix (the fewest invocation and completion events, in
time order, that cannot be explained), and with --dump writing it as a
history. Linearizability is prefix-closed (an operation in flight at the
cut may or may not have happened), so a binary search over the events finds
that prefix.
"""
import argparse
import heapq
import json
import sys
import time

INF = float("inf")
PENDING = object()  # the result of an operation that never completed


class Op:
    __slots__ = ("id", "d", "key", "f", "call", "ret", "inp", "out",
                 "optional")

    def __init__(self, i, d, ret=None):
        self.id = i
        self.d = d
        self.key = d["key"]
        self.f = d["f"]
        self.call = d["call"]
        r = d["ret"] if ret is None else ret
        self.ret = INF if r is None or r is INF else r
        if self.f in ("get", "delete"):
            self.inp = None
        elif self.f == "set":
            self.inp = d["value"]
        elif self.f == "cas":
            self.inp = (d["expect"], d["value"])
        else:
            raise ValueError("op %d: unknown f %r" % (i, self.f))
        if self.ret == INF:
            self.out = PENDING
        elif self.f == "get":
            self.out = (d["out"]["value"], d["out"]["version"])
        elif self.f == "set":
            self.out = d["out"]["version"]
        elif self.f == "delete":
            self.out = bool(d["out"]["ok"])
        else:
            self.out = (bool(d["out"]["ok"]), d["out"]["version"])
        if self.ret < self.call:
            raise ValueError("op %d: completes before it starts" % i)
        self.optional = False  # see replaced_writes()

    def __repr__(self):
        return describe(self)


def steps(state, op):
    """The states op may leave from state: its effect, and state itself
    when op is optional."""
    ns = step(state, op)
    if op.optional and ns != state:
        return (state,) if ns is None else (ns, state)
    return () if ns is None else (ns,)


def step(state, op):
    """The state after op in state, or None if op's result rules it out."""
    value, version = state
    out = op.out
    if op.f == "get":
        if out is PENDING:
            return state
        if out[0] != value or (out[1] is not None and out[1] != version):
            return None
        return state
    if op.f == "delete":
        if out is PENDING:
            return (None, 0)
        return (None, 0) if out == (version > 0) else None
    if op.f == "set":
        if out is not PENDING and out is not None and out != version + 1:
            return None
        return (op.inp, version + 1)
    expect, nv = op.inp
    if out is PENDING:
        return (nv, version + 1) if version == expect else state
    ok, ver = out
    if ok:
        if version != expect or ver != version + 1:
            return None
        return (nv, version + 1)
    if version == expect or ver != version:
        return None
    return state


def segments(ops):
    """Split one key's ops (sorted by call) at quiescent instants."""
    seg, end = [], -INF
    for op in ops:
        if seg and op.call > end:
            yield seg
            seg = []
        seg.append(op)
        end = max(end, op.ret)
    if seg:
        yield seg


def search(ops, starts, stats):
    """Every state a segment (ops sorted by call) may end in, from any of
    starts; empty when none explains its results."""
    n = len(ops)
    # A configuration: (lo, rel, state), every op below lo placed, and
    # bit k of rel set when op lo + k is placed (bit 0 never is). Placing
    # an op never lowers lo, so configurations are explored by rising lo
    # and those below the current lo are forgotten: memory stays that of
    # the operations in flight at once, not of the segment.
    level = {0: set((0, s) for s in starts)}  # lo -> {(rel, state)}
    lows = [0]
    while lows:
        lo = heapq.heappop(lows)
        seen = level[lo]
        if lo == n:
            stats["configurations"] += len(seen)
            break
        todo = list(seen)
        while todo:
            rel, st = todo.pop()
            # The earliest completion among the unplaced ops: an op
            # invoked after it cannot come next, nor can any later one.
            minret = INF
            i = lo
            while i < n and ops[i].call <= minret:
                if not (rel >> (i - lo)) & 1 and ops[i].ret < minret:
                    minret = ops[i].ret
                i += 1
            for j in range(lo, i):
                if (rel >> (j - lo)) & 1 or ops[j].call > minret:
                    continue
                r = rel | (1 << (j - lo))
                skip = (~r & (r + 1)).bit_length() - 1  # trailing ones
                for ns in steps(st, ops[j]):
                    c = (r >> skip, ns)
                    if not skip:
                        if c not in seen:
                            seen.add(c)
                            todo.append(c)
                        continue
                    if lo + skip not in level:
                        level[lo + skip] = set()
                        heapq.heappush(lows, lo + skip)
                    level[lo + skip].add(c)
        stats["configurations"] += len(seen)
        del level[lo]
    stats["segments"] += 1
    stats["longest_segment"] = max(stats["longest_segment"], n)
    return set(st for _, st in level.get(n, ()))


def check(ops, stats=None):
    """Check ops (any keys). Return None when linearizable, else (key,
    segment, start states) of the first segment nothing explains."""
    if stats is None:
        stats = new_stats()
    by_key = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    for key in sorted(by_key):
        kops = sorted(by_key[key], key=lambda o: (o.call, o.id))
        stats["writes_a_rename_or_delete_may_end"] += replaced_writes(kops)
        states = {(None, 0)}
        for seg in segments(kops):
            ends = search(seg, states, stats)
            if not ends:
                return key, seg, states
            states = ends
    return None


def replaced_writes(ops):
    """Mark optional each set through a file (of one key's ops, sorted by
    call) that a set by rename overlaps: it may have gone to the file the
    rename replaced or a delete removed. Return how many."""
    renames = [o for o in ops if o.f == "delete" or
               o.f == "set" and o.d.get("via") == "rename"]
    for o in ops:
        o.optional = o.f == "set" and o.d.get("via") == "file" and any(
            r.call < o.ret and r.ret > o.call for r in renames)
    return sum(o.optional for o in ops)


def new_stats():
    return {"configurations": 0, "segments": 0, "longest_segment": 0,
            "writes_a_rename_or_delete_may_end": 0}


def events(ops):
    """Invocations and completions in time order (an invocation first on a
    tie, so that the two operations count as concurrent)."""
    ev = [(o.call, 0, o.id) for o in ops]
    ev += [(o.ret, 1, o.id) for o in ops if o.ret != INF]
    ev.sort()
    return ev


def prefix(ops, ev, k):
    """The history made of the first k events: an op whose completion is
    not among them is in flight (it may or may not have taken effect)."""
    called = set(i for _, kind, i in ev[:k] if kind == 0)
    done = set(i for _, kind, i in ev[:k] if kind == 1)
    return [o if o.id in done else Op(o.id, o.d, INF) for o in ops
            if o.id in called]


def smallest_failing_prefix(ops):
    """The least k such that the first k events are not linearizable
    (the whole history must not be)."""
    ev = events(ops)
    lo, hi = 0, len(ev)  # prefix(lo) linearizable, prefix(hi) not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if check(prefix(ops, ev, mid)) is None:
            lo = mid
        else:
            hi = mid
    return hi, ev


def describe(o, t0=0):
    d = o.d
    if o.f in ("get", "delete"):
        a = o.f
    elif o.f == "set":
        a = "set %r" % d["value"]
    else:
        a = "cas %d %r" % (d["expect"], d["value"])
    if o.out is PENDING:
        r = "(in flight)"
    elif o.f == "get":
        r = "-> %r v%s" % (o.out[0], "?" if o.out[1] is None else o.out[1])
    elif o.f == "set":
        r = "-> v%s" % ("?" if o.out is None else o.out)
    elif o.f == "delete":
        r = "-> %s" % ("ok" if o.out else "ENOENT")
    else:
        r = "-> %s v%d" % ("ok" if o.out[0] else "ECANCELED", o.out[1])
    ret = "..." if o.ret == INF else "%.1f" % ((o.ret - t0) / 1e3)
    via = " (%s)" % d["via"] if "via" in d else ""
    return "#%d p%s %s %s %s%s [%.1f, %s] us" % (
        o.id, d.get("p", "?"), o.key, a, r, via, (o.call - t0) / 1e3, ret)


def load(path):
    ops = []
    with open(path) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                if "error" not in d:
                    ops.append(Op(len(ops), d))
    return ops


def report(ops, out=sys.stdout, dump=None):
    """Print why ops are not linearizable: the smallest failing prefix."""
    k, ev = smallest_failing_prefix(ops)
    pre = prefix(ops, ev, k)
    key, seg, states = check(pre)
    t0 = min(o.call for o in ops)
    last = ops[ev[k - 1][2]]
    print("not linearizable: the first %d of %d events (%d operations) "
          "cannot be explained; the last is the completion of" %
          (k, len(ev), len(pre)), file=out)
    print("  " + describe(last, t0), file=out)
    print("key %s, the operations since it was last quiescent, from "
          "state %s:" % (key, " or ".join(
              "%r v%d" % s for s in sorted(states, key=repr))), file=out)
    for o in seg:
        print("  " + describe(o, t0), file=out)
    if dump:
        with open(dump, "w") as f:
            for o in sorted(pre, key=lambda o: o.id):
                d = dict(o.d)
                if o.ret == INF:
                    d["ret"] = None
                    d.pop("out", None)
                f.write(json.dumps(d) + "\n")
    return k


def main():
    ap = argparse.ArgumentParser(description="check a history for "
                                 "linearizability (versioned registers)")
    ap.add_argument("--dump", help="write the smallest failing prefix here")
    ap.add_argument("history")
    a = ap.parse_args()
    ops = load(a.history)
    stats = new_stats()
    t = time.monotonic()
    bad = check(ops, stats)
    secs = time.monotonic() - t
    print("history: %d operations on %d keys, %s; checked in %.2f s" %
          (len(ops), len(set(o.key for o in ops)),
           ", ".join("%s %d" % (k.replace("_", " "), v)
                     for k, v in stats.items()), secs))
    if bad is None:
        print("linearizable")
        return 0
    report(ops, dump=a.dump)
    return 1


if __name__ == "__main__":
    sys.exit(main())
