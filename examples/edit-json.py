#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Edit a JSON value on a ustatefs mount: set or delete fields by path.

    edit-json.py [--cas] FILE PATH=VALUE... [-d PATH]...

PATH is a dotted path of object fields ("spec.replicas"); missing objects
on the way are made. VALUE is JSON ("3", "true", '{"a": 1}'), or else a
string. A FILE that does not exist starts as {}. It prints the new
version of FILE (its user.version xattr).

By default it writes as editors do: a temporary file in the same
directory, then os.replace() over FILE (a DIR/.value, which cannot be
renamed over, is written in place). On ustatefs that rename is one
transaction, so FILE goes to exactly one new version, and a reader sees
the old JSON or the new, never a mix. Two editors at once: the last one
wins.

--cas commits through /.txn instead, only if FILE is still at the version
it read ("check KEY VERSION" + "set KEY LEN"), and starts over when
another writer got there first: concurrent edits of different fields all
land.

By hand:
    ustatefs /tmp/state.db /tmp/mnt && mkdir -p /tmp/mnt/apps
    echo '{"image": "nginx", "replicas": 2}' > /tmp/mnt/apps/web
    examples/edit-json.py /tmp/mnt/apps/web replicas=3 labels.tier=front
    cat /tmp/mnt/apps/web
"""
import argparse
import errno
import json
import os
import sys
import tempfile


def parse_value(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def edit(doc, sets, deletes):
    """Apply PATH=VALUE settings and PATH deletions to doc, in place."""
    for path, value in sets:
        *parents, last = path.split(".")
        node = doc
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value
    for path in deletes:
        *parents, last = path.split(".")
        node = doc
        for name in parents:
            node = node.get(name, {})
        node.pop(last, None)
    return doc


def version(path):
    """The key's version: 0 when it does not exist."""
    try:
        return int(os.getxattr(path, "user.version"))
    except FileNotFoundError:
        return 0


def read(path):
    """The JSON document in path, and the version it was read at."""
    while True:
        v = version(path)
        try:
            with open(path, "rb") as f:
                text = f.read()
        except FileNotFoundError:
            text = b"{}"
        # A version that moved while reading: the text may be the next
        # one's. Read again until both belong together.
        if version(path) == v:
            return json.loads(text or b"{}"), v


def dump(doc):
    return (json.dumps(doc, indent=2) + "\n").encode()


def write_replace(path, doc):
    """Write a temporary file next to path, then rename it over path."""
    if os.path.basename(path) == ".value":
        # A directory key's own value cannot be renamed over: write it in
        # place, which on ustatefs is as atomic (one set at the close).
        with open(path, "wb") as f:
            f.write(dump(doc))
        return
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                               prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(dump(doc))
        # The close committed the temporary key; the rename moves it over
        # path in one transaction.
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def mount_root(path):
    """The mountpoint above path, and the key that path is."""
    path = os.path.abspath(path)
    root = os.path.dirname(path)
    while not os.path.ismount(root):
        root = os.path.dirname(root)
    key = "/" + os.path.relpath(path, root)
    if key.endswith("/.value"):  # a directory key's own value
        key = key[: -len("/.value")]
    return root, key


def write_cas(path, sets, deletes):
    """Edit through /.txn, retrying until no other writer came between.
    Returns the new version."""
    root, key = mount_root(path)
    while True:
        doc, v = read(path)
        data = dump(edit(doc, sets, deletes))
        k = key.encode()
        script = (b"check %s %d\nset %s %d\n" % (k, v, k, len(data))
                  + data + b"\ncommit\n")
        # Each open of /.txn is one transaction; the write that completes
        # "commit" runs it and fails with its error.
        with open(os.path.join(root, ".txn"), "r+b", buffering=0) as txn:
            try:
                view = memoryview(script)
                while view:
                    view = view[txn.write(view):]
            except OSError as e:
                if e.errno == errno.ECANCELED:
                    continue  # another writer was first: start over
                reply = txn.read().decode(errors="replace")
                sys.exit("edit-json: %s: %s" % (e.strerror, reply))
            # "ok REVISION", "check KEY VERSION", "set KEY NEW_VERSION"
            reply = txn.read().decode().splitlines()
            return int(reply[2].rsplit(" ", 1)[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cas", action="store_true",
                    help="commit through /.txn only at the version read")
    ap.add_argument("-d", "--delete", action="append", default=[],
                    metavar="PATH", help="remove a field")
    ap.add_argument("file")
    ap.add_argument("set", nargs="*", metavar="PATH=VALUE")
    args = ap.parse_args()
    sets = []
    for item in args.set:
        path, eq, value = item.partition("=")
        if not eq or not path:
            ap.error("not PATH=VALUE: " + item)
        sets.append((path, parse_value(value)))
    if args.cas:
        print(write_cas(args.file, sets, args.delete))
    else:
        doc, _ = read(args.file)
        write_replace(args.file, edit(doc, sets, args.delete))
        print(version(args.file))


if __name__ == "__main__":
    main()
