#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Torn reads: writers replace one key with large values through a ustatefs
# mount while readers read it back, for a few seconds, and no read may see
# a torn or mixed value.
#   torn.py MOUNT SECONDS [SIZE [WRITERS]]
# SIZE: 1 MiB unless given; WRITERS: how each writer writes, "file,txn"
# unless given (a comma-separated list of file and txn).
# Value (w, s), the s-th of writer w: a header line "ustate-torn w=W s=S
# crc=CRC32" padded to 64 bytes, then one byte that (w, s) determines,
# repeated to a length between 15/16 SIZE and SIZE that (w, s) also
# determines (so that a value cut short, or run on, by the length of
# another is caught too), CRC32 being that of those bytes. A read is whole only
# if it equals the value its header names, byte for byte, and names a value
# its writer wrote. Writers: "file" writes the file in 64 KiB pieces,
# "txn" sends each value as a /.txn "set". Readers: one reads the file in 64 KiB
# pieces, one in reads of the whole size, one with a /.txn "get". Each reader must
# also see each writer's values in the order they were written. Prints one
# line of counts; exits 1 on any bad read.
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import txnfs  # noqa: E402

SIZE = 1 << 20
HDR = 64
KEY = "/big"
CHUNK = 64 << 10
WRITERS = ["file", "txn"]
READERS = ["file-64k", "file-whole", "txn"]


def set_size(n):
    global SIZE
    SIZE = max(n, 2 * HDR)


def size(w, s):
    return SIZE - (w * 7919 + s * 104729) % (SIZE // 16)


def value(w, s):
    body = bytes([(w * 97 + s) % 255 + 1]) * (size(w, s) - HDR)
    hdr = b"ustate-torn w=%d s=%d crc=%08x\n" % (w, s, zlib.crc32(body))
    return hdr.ljust(HDR, b"#") + body


def name(v):
    """The (w, s) that v claims to be, or None when it is not whole."""
    m = re.match(rb"ustate-torn w=(\d+) s=(\d+) crc=[0-9a-f]{8}\n#*$",
                 v[:HDR])
    if not m:
        return None
    w, s = int(m.group(1)), int(m.group(2))
    return (w, s) if len(v) == size(w, s) and v == value(w, s) else None


def write(mnt, mode, v):
    if mode == "file":
        fd = os.open(mnt + KEY, os.O_WRONLY | os.O_TRUNC)
        try:
            for off in range(0, len(v), CHUNK):
                os.write(fd, v[off:off + CHUNK])
        finally:
            os.close(fd)
    else:
        r = txnfs.run(mnt, b"set %s %d\n%s\ncommit\n" %
                      (KEY.encode(), len(v), v))
        if not r.ok:
            raise txnfs.TxnError("set: %r" % r.raw[:200])


def read(mnt, mode):
    if mode == "txn":
        return txnfs.get(mnt, KEY)[0]
    return txnfs.read_file(mnt + KEY,
                           CHUNK if mode == "file-64k" else SIZE + 1)


def writer(mnt, w, until, out):
    s = 0
    while time.monotonic() < until:
        s += 1
        write(mnt, WRITERS[w], value(w, s))
    with open(out, "w") as f:
        json.dump({"last": s}, f)


def reader(mnt, r, until, out):
    seen, bad = [], []
    while time.monotonic() < until:
        v = read(mnt, READERS[r])
        n = name(v)
        if n is None:
            m = re.match(rb"ustate-torn w=(\d+) s=(\d+) ", v)
            want = size(int(m.group(1)), int(m.group(2))) if m else "?"
            tail = v.rstrip(b"\0")
            bad.append("%d bytes (%d NULs at the end), the value its "
                       "header names has %s; head %r" %
                       (len(v), len(v) - len(tail), want, v[:48]))
        else:
            seen.append(n)
    with open(out, "w") as f:
        json.dump({"seen": seen, "bad": bad[:20], "nbad": len(bad)}, f)


def main():
    mnt, secs = sys.argv[1], float(sys.argv[2])
    if len(sys.argv) > 3:
        set_size(int(sys.argv[3]))
    if len(sys.argv) > 4:
        WRITERS[:] = sys.argv[4].split(",")
    # The check can fail: a value of two halves, a short one, a bad byte.
    a, b = value(0, 1), value(1, 1)
    for v in (a[:len(a) // 2] + b[len(a) // 2:], a[:-1], a[:-1] + b"x",
              a + b"\0"):
        assert name(v) is None
    assert name(a) == (0, 1)
    # Value (0, 0) is there before anyone starts.
    with open(mnt + KEY, "wb") as f:
        f.write(value(0, 0))
    tmp = tempfile.mkdtemp(prefix="torn.")
    until = time.monotonic() + secs
    procs = []
    for role, n in (("writer", len(WRITERS)), ("reader", len(READERS))):
        for i in range(n):
            out = os.path.join(tmp, "%s.%d" % (role, i))
            procs.append((role, i, out, subprocess.Popen(
                [sys.executable, __file__, "--" + role, mnt, str(i),
                 repr(until), out, str(SIZE), ",".join(WRITERS)])))
    failed = [(role, i) for role, i, _, p in procs if p.wait() != 0]
    if failed:
        shutil.rmtree(tmp)
        sys.exit("%s failed" % failed)
    res = {}
    for role, i, out, _ in procs:
        with open(out) as f:
            res[role, i] = json.load(f)
    shutil.rmtree(tmp)

    last = {0: res["writer", 0]["last"]}
    for w in range(1, len(WRITERS)):
        last[w] = res["writer", w]["last"]
    errors = []
    reads = bad = 0
    distinct = set()
    for r, mode in enumerate(READERS):
        d = res["reader", r]
        reads += len(d["seen"]) + d["nbad"]
        bad += d["nbad"]
        errors += ["%s reader: torn: %s" % (mode, b) for b in d["bad"]]
        latest = {}
        for w, s in map(tuple, d["seen"]):
            distinct.add((w, s))
            if w not in last or s > last[w]:
                errors.append("%s reader: value (%d, %d) never written" %
                              (mode, w, s))
            elif s < latest.get(w, 0):
                errors.append("%s reader: (%d, %d) after (%d, %d)" %
                              (mode, w, s, w, latest[w]))
            latest[w] = max(s, latest.get(w, 0))
        if not d["seen"]:
            errors.append("%s reader read nothing" % mode)
    print("writes=%d reads=%d %s distinct-values-read=%d torn=%d" %
          (sum(last.values()), reads,
           " ".join("%s=%d" % (m, len(res["reader", r]["seen"]))
                    for r, m in enumerate(READERS)),
           len(distinct), bad))
    for e in errors[:20]:
        print("not ok:", e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    if sys.argv[1] in ("--writer", "--reader"):
        fn = writer if sys.argv[1] == "--writer" else reader
        set_size(int(sys.argv[6]))
        WRITERS[:] = sys.argv[7].split(",")
        fn(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        main()
