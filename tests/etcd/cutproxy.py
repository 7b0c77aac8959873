#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A TCP proxy in front of one etcd client port that breaks a connection
# the way a member dying at the wrong moment does: it passes the first
# CUT-1 HTTP requests of a connection through, forwards request CUT to
# etcd too (so etcd applies it), waits until etcd has answered, and then
# resets the client's connection instead of passing the answer on. The
# client saw its request leave and no byte come back: the request's
# outcome is unknown to it. A client that sends it again (libcurl does,
# on its own, for a request on a reused connection) applies it twice.
#   cutproxy.py [--cut N] [--times N] [--refuse] UPSTREAM_PORT
# --cut (2): which request of a connection is cut (2: the first one on a
# connection that is reused). --times (1): how many cuts in all; after
# them everything passes. --refuse: after the last cut, stop listening,
# so a new connection is refused, as by a member that is gone.
# Prints its port on stdout, then "cut" on stdout after each cut. Serves
# loopback only; exits when stdin closes.
import argparse
import os
import socket
import struct
import sys
import threading

lock = threading.Lock()
state = {"cuts": 0}


def read_request(sock, buf):
    """One request (head and Content-Length body) from sock after buf:
    (request bytes, rest), or (None, b"") at the end of the stream."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def pump(src, dst, stop, answered):
    """Copy src to dst until either ends, or until stop is set: then the
    next bytes from src are kept from dst and set answered."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if stop.is_set():
                answered.set()
                break
            dst.sendall(data)
    except OSError:
        pass


def reset(sock):
    """Close sock with a reset: no FIN, no byte of the answer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def serve(client, upstream_port, a, listener):
    up = socket.create_connection(("127.0.0.1", upstream_port))
    stop, answered = threading.Event(), threading.Event()
    back = threading.Thread(target=pump, args=(up, client, stop, answered),
                            daemon=True)
    n, buf = 0, b""
    try:
        while True:
            req, buf = read_request(client, buf)
            if req is None:
                break
            n += 1
            with lock:
                cut = n == a.cut and state["cuts"] < a.times
                if cut:
                    state["cuts"] += 1
                    last = state["cuts"] == a.times
            if n == 1:
                back.start()
            if not cut:
                up.sendall(req)
                continue
            # Let etcd take and answer it, and keep the answer.
            stop.set()
            up.sendall(req)
            answered.wait(10)
            reset(client)
            if last and a.refuse:
                listener.close()
            print("cut", flush=True)
            break
    except OSError:
        pass
    finally:
        stop.set()
        try:
            client.close()
        except OSError:
            pass
        up.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cut", type=int, default=2)
    ap.add_argument("--times", type=int, default=1)
    ap.add_argument("--refuse", action="store_true")
    ap.add_argument("upstream", type=int)
    a = ap.parse_args()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)

    def accept():
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c, a.upstream, a, listener),
                             daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    main()
