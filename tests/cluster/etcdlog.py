#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The write log of a store on etcd, for the checks of tests/cluster: every
# change of the store's keys that start with KEYS (its values only, never
# its side keys, which live under PREFIX + "//"), from etcd revision 1, in
# revision order, read back through the HTTP gateway's watch (etcd keeps
# the whole history: the tests never compact). One JSON line per change:
#   {"rev": R, "key": K, "value": V or null, "version": N}
# K without PREFIX, V decoded as UTF-8, null and version 0 for a delete.
# It reads until the change of END (a key under KEYS that the caller
# wrote once the history was done) and gives up after 60 s.
#   etcdlog.py HOST:PORT PREFIX KEYS END OUT
import base64
import http.client
import json
import sys
import time

DEADLINE = 60


def b64(s):
    return base64.b64encode(s.encode()).decode()


def prefix_end(s):
    """etcd's range_end for every key that starts with s (non-empty)."""
    b = bytearray(s.encode())
    b[-1] += 1
    return base64.b64encode(bytes(b)).decode()


def main():
    ep, prefix, keys, end, out = sys.argv[1:6]
    host, port = ep.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = {"create_request": {"key": b64(prefix + keys),
                               "range_end": prefix_end(prefix + keys),
                               "start_revision": 1}}
    conn.request("POST", "/v3/watch", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit("watch: HTTP %d %r" % (resp.status, resp.read(200)))
    until = time.monotonic() + DEADLINE
    log, done = [], False
    while not done:
        if time.monotonic() > until:
            sys.exit("no change of %s in %d s" % (end, DEADLINE))
        line = resp.readline()
        if not line:
            sys.exit("the watch ended before the change of %s" % end)
        msg = json.loads(line)
        if "error" in msg:
            sys.exit("watch: %r" % msg["error"])
        for ev in msg.get("result", {}).get("events", []):
            kv = ev["kv"]
            key = base64.b64decode(kv["key"]).decode()[len(prefix):]
            gone = ev.get("type") == "DELETE"
            val = base64.b64decode(kv.get("value", "")).decode()
            log.append({"rev": int(kv["mod_revision"]), "key": key,
                        "value": None if gone else val,
                        "version": 0 if gone else int(kv["version"])})
            done = done or key == end
    conn.close()
    with open(out, "w") as f:
        f.writelines(json.dumps(d) + "\n" for d in log)
    print("changes=%d last-revision=%d" % (len(log), log[-1]["rev"]))


if __name__ == "__main__":
    main()
