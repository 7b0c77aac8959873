#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Write the seed corpus of fuzz_diff (tests/fuzz/corpus/fuzz_diff/) from
# readable operation sequences, encoded as fuzz_diff.c decodes its input.
# Run it by hand after changing the decoder; the fuzzers never write to the
# repository's corpus.
import os
import sys

SEGS = ["a", "b", "c", "ab", "a b", "a.b", "a-", "a0", "\u00e9", "*", "~"]
OPS = ["set", "delete", "cas", "create", "get", "exists", "version", "list",
       "txn", "node", "readdir", "list_dirs", "revision", "script", "watch",
       "fill", "watch_open", "watch_read"]
TXN = {"check": 0, "set": 1, "delete": 2, "create": 3, "mkdir": 4,
       "rmdir": 5, "children": 6, "bad": 9}


def key(k):
    """A key: a path of SEGS, or ("odd", i) for odd_keys[i] of fuzz_diff.c,
    ("long", c) for a key at the length limits, ("raw", bytes)."""
    if isinstance(k, tuple):
        kind, arg = k
        if kind == "odd":
            return bytes([14, arg])
        if kind == "long":
            return bytes([15, arg])
        return bytes([13, len(arg)]) + arg
    segs = k.strip("/").split("/")
    return bytes([(len(segs) - 1) << 4]) + bytes(SEGS.index(s) for s in segs)


def value(v):
    v = v.encode() if isinstance(v, str) else v
    return bytes([len(v)]) + v


def prefix(p):
    if isinstance(p, tuple):
        return bytes([2]) + key(p)
    if p == "":
        return bytes([0])
    if p == "/":
        return bytes([1])
    if p.endswith("/"):
        return bytes([3]) + key(p[:-1])
    return bytes([2]) + key(p)


def path(p):
    return bytes([0]) if p == "/" else bytes([1]) + key(p)


def op(name, *args):
    out = bytes([OPS.index(name)])
    if name in ("set", "create"):
        return out + key(args[0]) + value(args[1])
    if name == "cas":
        return out + key(args[0]) + bytes([args[1]]) + value(args[2])
    if name in ("delete", "get", "exists", "version"):
        return out + key(args[0])
    if name in ("list", "list_dirs"):
        return out + prefix(args[0])
    if name in ("node", "readdir"):
        return out + path(args[0])
    if name == "revision":
        return out
    if name == "script":
        text = args[0].encode()
        return out + bytes([len(text)]) + text
    if name == "fill":
        return out + key(args[0]) + bytes([args[1]])
    if name == "watch_read":
        return out + bytes([args[0] - 1])
    if name in ("watch", "watch_open"):
        # back: 0 watches from now on, n from n - 1 revisions before the next
        pattern, start = args
        if pattern == "*":
            return out + bytes([0, start])
        if pattern.endswith("*"):
            return out + bytes([2]) + prefix(pattern[:-1]) + bytes([start])
        return out + bytes([1]) + prefix(pattern) + bytes([start])
    if name == "txn":
        out += bytes([len(args)])
        for t in args:
            out += bytes([TXN[t[0]]]) + key(t[1])
            if t[0] in ("check", "children"):
                out += bytes([t[2]])
            elif t[0] in ("set", "create"):
                out += value(t[2])
        return out
    raise ValueError(name)


SEEDS = {
    "set-get-cas-delete": [
        op("set", "/a", "v1"), op("get", "/a"), op("set", "/a", "v2"),
        op("cas", "/a", 2, "v3"), op("cas", "/a", 1, "no"),
        op("cas", "/b", 0, "new"), op("create", "/a", "x"),
        op("create", "/c", ""), op("delete", "/a"), op("delete", "/a"),
        op("get", "/a"), op("exists", "/b"), op("version", "/b"),
        op("set", "/a", "again"), op("version", "/a")],
    "tree-list-readdir": [
        op("set", "/a/b", "1"), op("set", "/a/c/a", "2"), op("set", "/a-", "3"),
        op("set", "/a0", "4"), op("set", "/a.b", "5"), op("set", "/a", "6"),
        op("set", "/\u00e9/a b", "7"), op("list", "/a"), op("list", "/a/"),
        op("list", ""), op("list", "/"), op("readdir", "/a"),
        op("readdir", "/"), op("node", "/a"), op("node", "/a/c"),
        op("node", "/"), op("node", "/b")],
    "transactions": [
        op("set", "/a", "1"),
        op("txn", ("check", "/a", 1), ("set", "/b", "x"), ("create", "/c", "y"),
           ("delete", "/a")),
        op("txn", ("set", "/a", "1"), ("set", "/a", "2"), ("delete", "/a"),
           ("create", "/a", "3")),
        op("txn", ("check", "/b", 2), ("set", "/b", "z")),
        op("txn", ("create", "/b", "z"), ("delete", "/c/c")),
        op("txn", ("delete", "/c/c"), ("create", "/b", "z")),
        op("txn", ("set", "/a", "1"), ("bad", "/a")),
        op("txn", ("set", "/a", "1"), ("set", ("odd", 3), "x")),
        op("txn", *[("check", "/a", 1)] * 7),
        op("txn"), op("get", "/a"), op("get", "/b"), op("get", "/c")],
    "directories": [
        op("txn", ("mkdir", "/a/b"), ("mkdir", "/c")),
        op("node", "/a"), op("node", "/a/b"), op("readdir", "/"),
        op("list_dirs", ""), op("list_dirs", "/a/"),
        op("set", "/a/b/c", "x"),
        op("txn", ("children", "/a/b", 1), ("rmdir", "/a/b"),
           ("delete", "/a/b/c")),
        op("txn", ("children", "/a", 0), ("mkdir", "/a")),
        op("readdir", "/a"), op("node", "/a/b"), op("list_dirs", "/"),
        op("txn", ("mkdir", "/c"), ("rmdir", "/c"), ("mkdir", "/c"))],
    "limits": [
        op("set", "/a", "x" * 48), op("set", "/b", "x" * 49),
        op("set", ("long", 0), "v"), op("set", ("long", 1), "v"),
        op("set", ("long", 3), "v"), op("set", ("long", 5), "v"),
        op("get", ("long", 3)), op("list", "/"),
        op("set", ("odd", 1), "v"), op("get", ("odd", 9)),
        op("delete", ("raw", b"/a\x01")), op("node", ("odd", 0)),
        op("readdir", ("odd", 5)), op("list", ("odd", 13))],
    "scripts": [
        op("set", "/a", "1"),
        op("script", "check /a 1\nset /a 2\nhi\ncreate /c 0\n\nget /a\ncommit\n"),
        op("script", "set /b 1\nX\ncheck /a 5\ncommit\n"),
        op("script", "delete /nope\ncommit\n"),
        op("script", "get /c\nget /zz\ndelete /c\ncommit\n"),
        op("get", "/a"), op("get", "/c")],
    "watches": [
        op("set", "/a", "1"), op("set", "/a/b", "2"), op("delete", "/a"),
        op("txn", ("set", "/b", "1"), ("set", "/a/c", "2"), ("delete", "/a/b")),
        op("watch", "*", 5), op("watch", "/a/*", 3), op("watch", "/a/b", 1),
        op("watch", "/a*", 0), op("watch", "*", 9), op("watch", "/a", 4)],
    "history-trimmed": [op("set", "/a", str(i)) for i in range(100)] + [
        op("watch", "*", 60), op("watch", "*", 70), op("watch", "*", 100),
        op("txn", ("set", "/a", "x"), ("set", "/b", "y")),
        op("watch", "/a", 66), op("watch", "*", 254)],
    "fill-readdir": [
        op("fill", "/a", 129), op("readdir", "/a"), op("list", "/a/"),
        op("node", "/a"), op("readdir", "/"), op("set", "/a-", "x"),
        op("fill", "/a/b", 100), op("readdir", "/a/b"), op("readdir", "/a"),
        op("list", "/a/b/"), op("delete", ("raw", b"/a/b/0/x")), op("node", ("raw", b"/a/b/0")),
        op("txn", ("mkdir", "/a/~"), ("mkdir", "/a/b/c")),
        op("readdir", "/a"), op("list_dirs", "/a")],
    "watch-open-read": [
        op("watch_open", "*", 0), op("set", "/a", "1"), op("set", "/b", "2"),
        op("watch_read", 1), op("delete", "/a"), op("watch_read", 10),
        op("watch_open", "/a/*", 3), op("fill", "/a", 60),
        op("watch_read", 64), op("fill", "/c", 129), op("watch_read", 64),
        op("watch_read", 64), op("watch_open", "*", 100),
        op("watch_read", 5)],
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                       "fuzz_diff")
    os.makedirs(out, exist_ok=True)
    for name, ops in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(b"".join(ops))
    print(f"{len(SEEDS)} seeds in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
