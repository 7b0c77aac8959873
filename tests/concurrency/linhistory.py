#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Record a history for the linearizability check: PROCS processes run
# random get, set and compare-and-set operations on a few keys through a
# ustatefs mount, each logged with its invocation and completion times
# (CLOCK_MONOTONIC, shared by every process), its arguments and its result,
# in the format lincheck.py reads.
#   linhistory.py [--procs N] [--keys N] [--seed N] [--deletes W] [--faults]
#                 MOUNT OUT OPS
# (W: the weight of deletes among the operations below, 0.06 unless said;
# more of them replay more deletes and re-creations on a second mount)
# With --faults (a cluster losing members meanwhile), an operation that
# fails as no operation otherwise may is recorded as what its errno says:
# ETIMEDOUT of a write, outcome unknown: never completed ("ret": null),
# it may or may not have happened; ENOTCONN, ECONNREFUSED, EHOSTUNREACH
# (never sent), or any failed read: "error", no effect. Anything else
# still stops the run.
# Operations, each on a random key:
#   get via file  open, read to the end, close: the value, version unseen
#   get via txn   a /.txn "get": value and version
#   set via file  open O_TRUNC, write, close: version unseen
#   set via rename  write a temporary file, rename it over the key (as
#                 editors and os.replace do): version unseen
#   set via txn   a /.txn "set": the new version
#   cas via txn   /.txn "check" + "set" at the version last seen (or
#                 another one now and then): ok and the new version, or
#                 ECANCELED and the version found
#   delete via file   unlink: ok, or ENOENT
#   delete via txn    a /.txn "delete": ok, or ENOENT
# A set through a file whose open() fails with ESTALE (see one()) had no
# effect: it is logged with "error" and no "out". A get of a missing key
# gives no value (a file read: ENOENT, or an empty
# file, which is a key being created: no value is ever empty), and a set
# through a file creates the key when it is missing.
# Each operation names the mount it went through ("m": its index in
# MOUNT). Every written value is unique ("p3.17"). The keys (/lin/k0 ...) must not
# exist: they are created first, by /.txn creates that are part of the
# history. Prints one line of counts.
import argparse
import errno
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import txnfs  # noqa: E402

KINDS = [("get", "file", 0.2), ("get", "txn", 0.2), ("set", "file", 0.1),
         ("set", "rename", 0.1), ("set", "txn", 0.1), ("cas", "txn", 0.24),
         ("delete", "txn", 0.03), ("delete", "file", 0.03)]


def now():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def txn_set(mnt, key, value):
    r = txnfs.run(mnt, b"set %s %d\n%s\ncommit\n" %
                  (key.encode(), len(value), value))
    if not r.ok:
        raise txnfs.TxnError("set %s: %r" % (key, r.raw))
    return r.ops[0][2]


def one(mnt, f, via, key, value, expect):
    """Run one operation; return its "out"."""
    if f == "get" and via == "file":
        # Values are never empty: an empty file is a key being created.
        try:
            v = txnfs.read_file(mnt + key).decode()
        except FileNotFoundError:
            v = ""
        return {"value": v or None, "version": None}
    if f == "delete" and via == "file":
        try:
            os.unlink(mnt + key)
            return {"ok": True}
        except FileNotFoundError:
            return {"ok": False}
    if f == "delete":
        r = txnfs.run(mnt, b"delete %s\ncommit\n" % key.encode())
        if not r.ok and r.code != "ENOENT":
            raise txnfs.TxnError("delete %s: %r" % (key, r.raw))
        return {"ok": r.ok}
    if f == "get":
        v, ver = txnfs.get(mnt, key)
        return {"value": None if v is None else v.decode(), "version": ver}
    if f == "set" and via == "file":
        try:
            fd = os.open(mnt + key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o644)
        except OSError as e:
            # The daemon answers ESTALE when the kernel still had the
            # name of a key deleted since; the kernel retries once, and
            # a second delete in between leaves it with ESTALE.
            if e.errno != errno.ESTALE:
                raise
            return {"error": "ESTALE"}
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
        return {"version": None}
    if f == "set" and via == "rename":
        tmp = "%s/lin/.tmp.%d" % (mnt, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
        os.rename(tmp, mnt + key)
        return {"version": None}
    if f == "set":
        return {"version": txn_set(mnt, key, value.encode())}
    r = txnfs.cas(mnt, key, expect, value.encode())
    if r.ok:
        return {"ok": True, "version": r.ops[1][2]}
    if r.code != "ECANCELED":
        raise txnfs.TxnError("cas %s: %r" % (key, r.raw))
    return {"ok": False, "version": r.found}


NOT_SENT = ("ENOTCONN", "ECONNREFUSED", "EHOSTUNREACH")


def fault(e, f):
    """What a failure under --faults means: "unknown", "error" or None
    (a failure no fault explains)."""
    if isinstance(e, OSError):
        code = errno.errorcode.get(e.errno, "")
    else:
        code = next((c for c in ("ETIMEDOUT",) + NOT_SENT if c in str(e)),
                    "")
    if not code:
        return None, ""
    if f == "get" or code in NOT_SENT:
        return "error", code
    return ("unknown", code) if code == "ETIMEDOUT" else (None, code)


def worker(mnt, m, p, n, keys, seed, out, deletes, faults):
    rng = random.Random(seed * 1000 + p)
    known = {k: 1 for k in keys}  # the version last seen of each key
    kinds = [(f, via) for f, via, _ in KINDS]
    weights = [deletes / 2 if f == "delete" else w for f, _, w in KINDS]
    with open(out, "w") as log:
        for i in range(n):
            f, via = rng.choices(kinds, weights)[0]
            key = rng.choice(keys)
            d = {"p": p, "m": m, "key": key, "f": f, "via": via}
            if f != "get":
                d["value"] = "p%d.%d" % (p, i)
            if f == "cas":
                r = rng.random()
                d["expect"] = (known[key] if r < 0.7 else known[key] + 1
                               if r < 0.85 else rng.randint(0, known[key]))
            d["call"] = now()
            try:
                d["out"] = one(mnt, f, via, key, d.get("value"),
                               d.get("expect"))
            except (OSError, txnfs.TxnError) as e:
                what, code = fault(e, f) if faults else (None, "")
                if what is None:
                    raise
                d["out"] = {"error": code}
                if what == "unknown":
                    d["unknown"] = code
            d["ret"] = now()
            if "unknown" in d:
                d.pop("out")
                d["ret"] = None
            elif "error" in d["out"]:
                d["error"] = d.pop("out")["error"]
            elif d["out"].get("version") is not None:
                known[key] = d["out"]["version"]
            elif f == "delete":
                known[key] = 0
            log.write(json.dumps(d) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--keys", type=int, default=3)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--deletes", type=float, default=0.06)
    ap.add_argument("--faults", action="store_true")
    ap.add_argument("mnt", help="a mount, or several of one store, "
                    "separated by commas (process p uses mount p mod n)")
    ap.add_argument("out")
    ap.add_argument("ops", type=int)
    a = ap.parse_args()
    keys = ["/lin/k%d" % i for i in range(a.keys)]
    mounts = a.mnt.split(",")
    a.mnt = mounts[0]
    os.makedirs(a.mnt + "/lin", exist_ok=True)
    hist = []
    for k in keys:
        # A create is a cas at version 0: the model starts from nothing.
        d = {"p": "init", "m": 0, "key": k, "f": "cas", "via": "txn-create",
             "expect": 0, "value": "init", "call": now()}
        r = txnfs.run(a.mnt, b"create %s 4\ninit\ncommit\n" % k.encode())
        d["ret"] = now()
        if not r.ok:
            sys.exit("create %s (it must not exist): %r" % (k, r.raw))
        d["out"] = {"ok": True, "version": r.ops[0][2]}
        hist.append(d)
    tmp = tempfile.mkdtemp(prefix="linhistory.")
    outs = [os.path.join(tmp, "%d.jsonl" % p) for p in range(a.procs)]
    per = [a.ops // a.procs + (p < a.ops % a.procs) for p in range(a.procs)]
    t = time.monotonic()
    ws = [subprocess.Popen([sys.executable, __file__, "--worker",
                            mounts[p % len(mounts)], str(p % len(mounts)),
                            str(p), str(per[p]), ",".join(keys),
                            str(a.seed), outs[p], str(a.deletes),
                            "1" if a.faults else "0"])
          for p in range(a.procs)]
    bad = [p for p, w in enumerate(ws) if w.wait() != 0]
    secs = time.monotonic() - t
    for o in outs:
        if os.path.exists(o):
            with open(o) as f:
                hist += [json.loads(line) for line in f]
    shutil.rmtree(tmp)
    hist.sort(key=lambda d: d["call"])
    with open(a.out, "w") as f:
        f.writelines(json.dumps(d) + "\n" for d in hist)
    if bad:
        sys.exit("workers %s failed" % bad)
    # How concurrent the history is: the most operations in flight at once.
    ev = sorted([(d["call"], 1) for d in hist] +
                [(d["ret"], -1) for d in hist if d["ret"] is not None])
    depth = most = 0
    for _, x in ev:
        depth += x
        most = max(most, depth)
    count = {}
    for d in hist[a.keys:]:
        k = "%s-%s" % (d["f"], d["via"])
        if "unknown" in d:
            k += "-" + d["unknown"]
        elif "error" in d:
            k += "-" + d["error"]
        elif d["f"] in ("cas", "delete"):
            k += "-ok" if d["out"]["ok"] else "-refused"
        count[k] = count.get(k, 0) + 1
    print("history=%d seed=%d seconds=%.1f most-in-flight=%d %s" %
          (len(hist), a.seed, secs, most,
           " ".join("%s=%d" % kv for kv in sorted(count.items()))))


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
               int(sys.argv[5]), sys.argv[6].split(","), int(sys.argv[7]),
               sys.argv[8], float(sys.argv[9]), sys.argv[10] == "1")
    else:
        main()
