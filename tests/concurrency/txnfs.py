# SPDX-License-Identifier: MIT
"""The /.txn file of a ustatefs mount (and a plain read), for the
concurrency tests.

Every open of MOUNT/.txn is a private transaction: run() writes one
script through one descriptor, reads the whole reply back and parses it.
The outcome is taken from the reply ("ok REVISION" or "error LINE CODE KEY
FOUND"), and the errno of the write() that completed "commit" must agree
with it.
"""
import errno
import os


class TxnError(Exception):
    pass


class Reply:
    """A parsed reply: ok, revision and ops on success; line, code, key
    and found on failure. ops holds one (cmd, key, version, value) per
    command, value being bytes for a get and None otherwise."""

    def __init__(self, raw, werr):
        self.raw = raw
        self.werr = werr
        self.ok = False
        self.revision = None
        self.ops = []
        self.line = self.code = self.key = self.found = None
        try:
            self._parse(raw)
        except (ValueError, IndexError) as e:
            raise TxnError("bad reply %r: %s" % (raw[:200], e))
        want = 0 if self.ok else getattr(errno, self.code, None)
        if werr != want:
            raise TxnError("write() said %s, the reply %r" %
                           (errno.errorcode.get(werr, werr), raw[:200]))

    def _parse(self, raw):
        nl = raw.index(b"\n")
        head = raw[:nl].decode().split(" ")
        pos = nl + 1
        if head[0] == "error":
            # error LINE CODE KEY FOUND (KEY may hold spaces)
            self.line, self.code = int(head[1]), head[2]
            self.key, self.found = " ".join(head[3:-1]), int(head[-1])
            return
        if head[0] != "ok" or len(head) != 2:
            raise ValueError("no ok or error line")
        self.ok = True
        self.revision = int(head[1])
        while pos < len(raw):
            nl = raw.index(b"\n", pos)
            f = raw[pos:nl].decode().split(" ")
            pos = nl + 1
            if f[0] == "get":
                n = int(f[-1])
                val = raw[pos:pos + n]
                if len(val) != n or raw[pos + n:pos + n + 1] != b"\n":
                    raise ValueError("get value cut short")
                pos += n + 1
                self.ops.append(("get", " ".join(f[1:-2]), int(f[-2]), val))
            else:
                self.ops.append((f[0], " ".join(f[1:-1]), int(f[-1]), None))


def read_to_end(fd, size):
    chunks = []
    while True:
        b = os.read(fd, size)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def run(mnt, script):
    """Run one transaction script (bytes) on mount mnt; return its Reply.
    A script is written whole; a failed commit is an OSError of the
    write, which is kept for the Reply to check."""
    fd = os.open(os.path.join(mnt, ".txn"), os.O_RDWR)
    try:
        werr = 0
        view = memoryview(script)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            werr = e.errno
        return Reply(read_to_end(fd, 1 << 20), werr)
    finally:
        os.close(fd)


def read_file(path, size=1 << 16):
    """Read a file through one descriptor, size bytes a read, to the end."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_to_end(fd, size)
    finally:
        os.close(fd)


def get(mnt, key):
    """Read key's value and version as one transaction: (value, version),
    (None, 0) when the key does not exist."""
    r = run(mnt, b"get %s\ncommit\n" % key.encode())
    if not r.ok:
        raise TxnError("get %s: %r" % (key, r.raw))
    _, _, ver, val = r.ops[0]
    return (val if ver else None), ver


def cas(mnt, key, expected, value):
    """Write value at key only if key is at version expected. Return the
    Reply: ok with ops[1] = ("set", key, new_version, None), or code
    ECANCELED with found = the version the key had."""
    k = key.encode()
    return run(mnt, b"check %s %d\nset %s %d\n%s\ncommit\n" %
               (k, expected, k, len(value), value))
