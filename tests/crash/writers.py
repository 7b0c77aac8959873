#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Crash-test writers: each writes increasing counters through a ustatefs
# mount and logs a counter only after the operation returned success
# (close() for a file, the commit's write() for /.txn, rename()).
#   writers.py MOUNTPOINT ACKDIR KIND ID START  (KIND: file, txn, rename)
# Counters start above START, so each cycle's values exceed all before.
import os
import sys

mnt, ackdir, kind, wid = sys.argv[1:5]
ack = open(os.path.join(ackdir, "%s.%s" % (kind, wid)), "a", buffering=1)
n = int(sys.argv[5])
try:
    while True:
        n += 1
        v = b"%d\n" % n
        if kind == "file":
            fd = os.open("%s/c/w%s" % (mnt, wid),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, v)
            os.close(fd)
        elif kind == "txn":
            fd = os.open(mnt + "/.txn", os.O_RDWR)
            try:
                os.write(fd, b"set /t/a%s %d\n%s\nset /t/b%s %d\n%s\ncommit\n"
                         % (wid.encode(), len(v), v, wid.encode(), len(v), v))
            finally:
                os.close(fd)
        else:
            tmp = "%s/r/.tmp%s" % (mnt, wid)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, v)
            os.close(fd)
            os.rename(tmp, "%s/r/f%s" % (mnt, wid))
        ack.write("%d\n" % n)
except OSError:
    pass  # the daemon is gone: stop
