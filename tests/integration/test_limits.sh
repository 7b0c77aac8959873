#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs: a client cannot exhaust the daemon. Bytes held for open files
# and transactions are capped (max_buffered: ENOMEM), so are the ops of
# one transaction (max_txn_ops: E2BIG), a value (max_value_size: EFBIG)
# and the history kept (history=); past a cap the caller gets the error,
# nothing of its change lands, and other clients keep working.
. "$(dirname "$0")/lib.sh"
: "${USTATE_CLI:?}"

M=$T/mnt
DB=$T/state.db
mount_fs "$DB" "$M" \
	-o max_value_size=1000000,max_buffered=1500000,max_txn_ops=100,history=50

out=$(python3 - "$M" <<'EOF'
import errno, os, sys, time
m = sys.argv[1]
def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
def settled(f):
    # FUSE sends RELEASE after close() returned: the buffers of a closed
    # file return to the budget a moment later (5 s at most here).
    for _ in range(50):
        r = err(f)
        if r != "ENOMEM":
            return r
        time.sleep(0.1)
    return r
def put(k, v):
    fd = os.open(m + "/" + k, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, v)
    os.close(fd)
res = []
# A holds 900,000 bytes open: most of the budget.
a = os.open(m + "/a", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.write(a, b"a" * 900000)
b = os.open(m + "/b", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
res.append("b write " + err(lambda: os.write(b, b"b" * 900000)))
res.append("b close " + err(lambda: os.close(b)))
res.append("b exists " + str(os.path.exists(m + "/b")))
# Others keep working meanwhile: a small write, a read.
res.append("small " + err(lambda: put("small", b"fits")))
res.append("read " + open(m + "/small").read())
res.append("a close " + err(lambda: os.close(a)))
res.append("a size %d" % os.stat(m + "/a").st_size)
# Readers hold snapshots too: two of the 900,000-byte key do not fit.
r1 = os.open(m + "/a", os.O_RDONLY)
res.append("second reader " + err(lambda: os.close(os.open(m + "/a", os.O_RDONLY))))
os.close(r1)
res.append("after, reader " + settled(lambda: os.close(os.open(m + "/a", os.O_RDONLY))))
res.append("after, b " + settled(lambda: put("b", b"b" * 900000)))
print("|".join(res))
EOF
)
check "max_buffered: ENOMEM for the one past it, others work" \
	"b write ENOMEM|b close ENOMEM|b exists False|small ok|read fits|a close ok|a size 900000|second reader ENOMEM|after, reader ok|after, b ok" \
	"$out"

# A transaction of 101 ops against max_txn_ops=100: E2BIG, nothing lands.
before=$(sqlite3 "$DB" 'SELECT count(*), max(version) FROM kv_store')
script=$(for i in $(seq 101); do printf 'set /t/%d 1\nx\n' "$i"; done; printf 'commit\n')
out=$(python3 - "$M" "$script" <<'EOF'
import errno, os, sys
fd = os.open(sys.argv[1] + "/.txn", os.O_RDWR)
try:
    os.write(fd, sys.argv[2].encode())
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno], os.read(fd, 200).decode().split("\n")[0])
EOF
)
check "max_txn_ops: E2BIG, with the line" "E2BIG error 201 E2BIG - 0" "$out"
check "... and nothing changed" "$before" \
	"$(sqlite3 "$DB" 'SELECT count(*), max(version) FROM kv_store')"

# history=50: a watch cannot start further back than that (ENODATA).
for i in $(seq 120); do echo "$i" > "$M/h"; done
rev=$("$USTATE_CLI" -d "$DB" revision)
check_err "history=50: a watch from revision 1 is refused" \
	"no longer in the retained history" \
	timeout 5 "$USTATE_CLI" -d "$DB" watch '*' --from 1
out=$(timeout 2 "$USTATE_CLI" -d "$DB" watch '/h' --from $((rev - 10)) |
	head -1 | jq -r .key || true)
check "... one from 10 revisions back replays" /h "$out"
