#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# record_watch.sh: record what etcd's HTTP/JSON gateway really streams
# for a watch, and print it as C string constants (the recordings of
# tests/unit/test_etcd_stream.c come from here). Starts its own
# one-member etcd (lib.sh), watches with curl while etcdctl writes, and
# records four streams:
#   events     a watch of the prefix /a/ from revision 1: puts (one value
#              with quotes and a newline, one of 2000 bytes), a put
#              outside the prefix, a txn of two puts, deletes
#   compacted  a watch from a compacted revision: created, then canceled
#              with compact_revision
#   killed     a watch whose member is killed with SIGKILL: the stream
#              just stops
#   stopped    a watch whose member is stopped with SIGTERM: the stream
#              ends in {"error":{...}} without a newline
# and the chunk sizes of the HTTP chunked encoding of "events". Not a
# test: run it by hand when the gateway's output needs a new look.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
command -v curl >/dev/null || {
	echo "record_watch.sh: curl missing (scripts/deps)" >&2
	exit 1
}

b64() { printf '%s' "$1" | base64 -w0; }
watch_body() { # START_REVISION
	printf '{"create_request":{"key":"%s","range_end":"%s","start_revision":"%s"}}' \
		"$(b64 /a/)" "$(b64 /a0)" "$1"
}
# The number of result messages in a recording so far.
results() { grep -o '{"result"' "$1" 2>/dev/null | wc -l; }

# watch NAME START_REVISION: curl the watch in the background, raw (with
# its chunk framing) into $ETCD_DIR/NAME.raw; sets curl_pid.
watch() {
	curl -sN --raw --max-time 30 "http://${ETCD_MEMBER_ENDPOINT[0]}/v3/watch" \
		-d "$(watch_body "$2")" > "$ETCD_DIR/$1.raw" &
	curl_pid=$!
	# created comes first: after it, the watch sees every write.
	etcd_wait_for 5 grep -q created "$ETCD_DIR/$1.raw" || {
		echo "record_watch.sh: no created message for $1" >&2
		exit 1
	}
}
# until_results NAME N: wait until NAME has N result messages.
until_results() {
	etcd_wait_for 5 eval '[ "$(results "$ETCD_DIR/'"$1"'.raw")" -ge '"$2"' ]' || {
		echo "record_watch.sh: $1 has $(results "$ETCD_DIR/$1.raw")" \
			"messages, not $2" >&2
		exit 1
	}
}
end_curl() {
	kill "$curl_pid" 2>/dev/null || true
	wait "$curl_pid" 2>/dev/null || true
}

etcd_cluster_start 1
ctl() { etcd_ctl "$@" >/dev/null; }

watch events 1
ctl put /a/x hello
ctl put /a/y 'with "quotes" and
newline'
ctl put /b/z outside
ctl put /a/x again
printf '\nput /a/t1 one\nput /a/t2 two\n\n\n' | etcd_ctl txn >/dev/null
ctl put /a/big "$(head -c 2000 /dev/zero | tr '\0' b)"
ctl del /a/x
ctl del --prefix /a/
# created, 4 puts in the prefix, the txn, 2 deletes: 8 messages.
until_results events 8
end_curl

rev=$(etcd_ctl put /a/c 1 -w json | python3 -c \
	'import json, sys; print(json.load(sys.stdin)["header"]["revision"])')
ctl put /a/c 2
ctl compaction "$((rev + 1))"
watch compacted 2
until_results compacted 2
end_curl

watch killed "$((rev + 2))"
ctl put /a/k 1
until_results killed 2
etcd_member_kill 0
wait "$curl_pid" 2>/dev/null || true
etcd_member_start 0

watch stopped "$((rev + 3))"
ctl put /a/s 1
until_results stopped 2
etcd_member_stop 0
wait "$curl_pid" 2>/dev/null || true

python3 - "$ETCD_DIR" "$(etcd --version | head -1)" <<'EOF'
import sys

def dechunk(raw):
    """The body and its chunk sizes; a stream cut short keeps what came."""
    body, sizes, i = b"", [], 0
    while i < len(raw):
        j = raw.find(b"\r\n", i)
        if j < 0:
            break
        n = int(raw[i:j], 16)
        if n == 0:
            break
        body += raw[j + 2:j + 2 + n]
        sizes.append(n)
        i = j + 2 + n + 2
    return body, sizes

def c_string(body):
    """C literal lines of at most 64 bytes, split after each newline."""
    out, cur, n = [], "", 0
    for b in body:
        c = chr(b)
        e = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r"}.get(c, c)
        if not (32 <= b < 127 or c in "\n\r"):
            e = "\\%03o" % b
        if n + len(e) > 64:
            out.append(cur)
            cur, n = "", 0
        cur += e
        n += len(e)
        if c == "\n":
            out.append(cur)
            cur, n = "", 0
    if cur:
        out.append(cur)
    return "\n".join('\t"%s"' % s for s in out)

d, version = sys.argv[1], sys.argv[2]
print("/* Recorded by tests/etcd/record_watch.sh, %s. */" % version)
for name in ["events", "compacted", "killed", "stopped"]:
    body, sizes = dechunk(open("%s/%s.raw" % (d, name), "rb").read())
    print("static const char rec_%s[] =\n%s;" % (name, c_string(body)))
    if name == "events":
        print("static const size_t rec_events_chunks[] = {\n\t%s,\n};"
              % ", ".join(map(str, sizes)))
EOF
