#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Write files through a mount and say how each ended, with the errno of
# the call that failed (bash's echo hides close() errors):
#   put.py FILE SIZE [FILE SIZE ...]   each FILE gets SIZE bytes
#   put.py --fill DIR SIZE             DIR/f1, DIR/f2 ... until one fails
# Prints one line per file: "ok", or "write ERRNAME" / "close ERRNAME";
# --fill prints "NUMBER ok" for the files that were written, then the
# failure, and exits 0 either way.
import errno
import os
import sys


def put(path, size):
    data = (b"%s\n" % path.encode()) * (size // (len(path) + 1) + 1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data[:size])
    except OSError as e:
        # The open is spoiled: its close reports the same error.
        try:
            os.close(fd)
        except OSError as c:
            if c.errno != e.errno:
                return "write %s, close %s" % (errno.errorcode[e.errno],
                                               errno.errorcode[c.errno])
        return "write " + errno.errorcode[e.errno]
    try:
        os.close(fd)
    except OSError as e:
        return "close " + errno.errorcode[e.errno]
    return "ok"


if sys.argv[1] == "--fill":
    d, size = sys.argv[2], int(sys.argv[3])
    n = 0
    while n < 100000:
        r = put("%s/f%d" % (d, n + 1), size)
        if r != "ok":
            print("%d ok" % n)
            print(r)
            break
        n += 1
else:
    args = sys.argv[1:]
    for path, size in zip(args[::2], args[1::2]):
        print(put(path, int(size)))
