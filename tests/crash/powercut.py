#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Rebuild a database as a power cut could have left it, from a copy of its
# files taken before the daemon started (BASEDIR/db, BASEDIR/db-wal,
# BASEDIR/db-journal; a missing copy is a missing file) and the log that
# powerloss.so wrote while the daemon ran.
#
# For each file: every write and truncation before its last sync is on
# disk. What came after that sync is "pending", and MODE decides which of
# it reached the disk before the power went:
#   none     none of it
#   all      all of it (what a SIGKILL alone leaves)
#   prefix   the first K pending operations, K random (an in-order disk)
#   random   each 512-byte sector of each pending write, and each pending
#            truncation, independently (a disk cache that reorders and
#            tears writes at sector boundaries)
# The -shm is deleted: SQLite rebuilds it from the WAL. An unlink counts as
# durable at once (SQLite syncs the directory where that matters).
#   powercut.py BASEDIR LOG DB MODE SEED
# Prints one line: the mode, the pending operations and how many were kept.
import os
import random
import struct
import sys

REC = struct.Struct("<IBBHQQ")
MAGIC = 0x504C4F47
WRITE, TRUNC, SYNC, UNLINK = 1, 2, 3, 4
SUFFIXES = ["", "-wal", "-journal"]
SECTOR = 512


def read_log(path):
    """The records of the log; a record cut short by the kill ends it."""
    recs = []
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        return recs
    pos = 0
    while pos + REC.size <= len(data):
        magic, typ, f, _, off, n = REC.unpack_from(data, pos)
        if magic != MAGIC:
            sys.exit("powercut: bad record at %d" % pos)
        pos += REC.size
        if typ != WRITE:
            n = 0
        if pos + n > len(data):
            break
        recs.append((typ, f, off, data[pos:pos + n]))
        pos += n
    return recs


def apply(img, typ, off, data):
    """One operation on a file image (None: no file)."""
    if typ == UNLINK:
        return None
    if img is None:
        img = bytearray()
    if typ == TRUNC:
        del img[off:]
        img.extend(bytes(max(0, off - len(img))))
    elif typ == WRITE:
        if len(img) < off:
            img.extend(bytes(off - len(img)))
        img[off:off + len(data)] = data
    return img


def sectors(off, data):
    """A write cut at the sector boundaries of the file."""
    pos = 0
    while pos < len(data):
        end = min(len(data), (off + pos) // SECTOR * SECTOR + SECTOR - off)
        yield off + pos, data[pos:end]
        pos = end


def main():
    base, log, db, mode, seed = sys.argv[1:6]
    rng = random.Random(int(seed))
    recs = read_log(log)
    pending_total = kept_total = 0
    for f, suffix in enumerate(SUFFIXES):
        try:
            img = bytearray(open(os.path.join(base, "db" + suffix),
                                 "rb").read())
        except FileNotFoundError:
            img = None
        mine = [r for r in recs if r[1] == f]
        last = max((i for i, r in enumerate(mine) if r[0] in (SYNC, UNLINK)),
                   default=-1)
        for typ, _, off, data in mine[:last + 1]:
            img = apply(img, typ, off, data)
        pending = [r for r in mine[last + 1:] if r[0] != SYNC]
        if mode == "none":
            keep = []
        elif mode == "all":
            keep = pending
        elif mode == "prefix":
            keep = pending[:rng.randint(0, len(pending))]
        elif mode == "random":
            keep = []
            for typ, _, off, data in pending:
                if typ == WRITE:
                    keep += [(typ, f, o, d) for o, d in sectors(off, data)
                             if rng.random() < 0.5]
                elif rng.random() < 0.5:
                    keep.append((typ, f, off, data))
        else:
            sys.exit("powercut: unknown mode " + mode)
        for typ, _, off, data in keep:
            img = apply(img, typ, off, data)
        pending_total += len(pending)
        kept_total += len(keep)
        path = db + suffix
        if img is None:
            if os.path.exists(path):
                os.unlink(path)
        else:
            with open(path, "wb") as out:
                out.write(img)
    if os.path.exists(db + "-shm"):
        os.unlink(db + "-shm")
    print("%s: pending %d kept %d" % (mode, pending_total, kept_total))


main()
