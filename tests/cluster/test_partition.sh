#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A node cut off from the cluster, and healed. Node A's daemon runs in a
# network namespace of this test's own (ip netns, a veth pair to the
# host; nsenter --net keeps its mount visible here) and reaches the
# three members only through the veth; node B is on loopback. With the
# link down:
#  - a write on A fails, with ETIMEDOUT when its outcome is unknown or an
#    errno that says it was not sent, and is not applied (checked in etcd);
#  - an open on A fails the same way rather than serve stale data;
#  - both mounts of A say they are cut off (user.connected 0 on the root),
#    and A's second mount, at consistency=local, reads on from its replica;
#  - B goes on writing.
# With the link up again, A catches up by itself: B's changes made while
# A was away arrive as A's inotify events (the update, the create, the
# delete), A reads the values B wrote, and says it is connected again.
# Then a longer cut, during
# which B changes a key twice, makes a directory, deletes a key, and etcd
# compacts away those revisions: once healed, A reads the store again and
# replays the net difference (one update of the key changed twice, one
# new directory, one delete).
# Only loopback and this namespace's addresses are ever used.
. "$(dirname "$0")/lib.sh"

if ! ip netns add "ustate-probe-$$" 2>/dev/null; then
	echo "SKIP: cannot create network namespaces here"
	exit 77
fi
ip netns del "ustate-probe-$$"

NS=ustate-$$
host=usv$$h ns_if=usv$$n
net=10.251.$(($$ % 250))
ip netns add "$NS"
at_exit "ip netns del $NS"
ip link add "$host" type veth peer name "$ns_if"
at_exit "ip link del $host"
ip link set "$ns_if" netns "$NS"
ip addr add "$net.1/30" dev "$host"
ip link set "$host" up
ip -n "$NS" addr add "$net.2/30" dev "$ns_if"
ip -n "$NS" link set "$ns_if" up
ip -n "$NS" link set lo up

ETCD_LISTEN_ALSO=$net.1
etcd_cluster_start 3
eps=""
for i in 0 1 2; do eps+=${eps:+,}$net.1:${ETCD_MEMBER_ENDPOINT[i]##*:}; done
A=$T/a B=$T/b
mkdir -p "$A" "$B"
nsenter --net="/run/netns/$NS" "$USTATEFS" -o request_timeout=2000,dial_timeout=1000 \
	"etcd://$eps$PREFIX" "$A"
at_exit "fusermount3 -uz '$A'"
# A second mount on node A, reading its replica at local consistency.
AL=$T/al
mkdir -p "$AL"
nsenter --net="/run/netns/$NS" "$USTATEFS" \
	-o request_timeout=2000,dial_timeout=1000,consistency=local \
	"etcd://$eps$PREFIX" "$AL"
at_exit "fusermount3 -uz '$AL'"
# connected MOUNT: its root's user.connected.
connected() { getfattr -n user.connected --only-values "$1" 2>/dev/null; }
mount_fs "etcd://${ETCD_MEMBER_ENDPOINT[1]}$PREFIX" "$B"

echo 1 > "$A/k"
echo gone > "$A/old"
wait_for 5 bash -c "[ \"\$(cat '$B/k' 2>/dev/null)\" = 1 ]" || fail "B reads A's write"
wait_for 5 bash -c "[ \"\$(cat '$AL/k' 2>/dev/null)\" = 1 ]" ||
	fail "A's local mount reads it"
check "a mount that reaches etcd says so (user.connected)" "1 1" \
	"$(connected "$A") $(connected "$AL")"
inotifywait -m -e create,delete,close_write --format '%e %f' "$A" \
	> "$T/events" 2> "$T/events.err" &
at_exit "kill $!"
wait_for 5 grep -q "Watches established" "$T/events.err" || fail "no watcher on A"

# -- cut ----------------------------------------------------------------------
ip link set "$host" down
# errno NAME of a write of $2 to A/$1, or "ok" (python: close() tells).
write_a() {
	timeout 30 python3 -c '
import errno, os, sys
try:
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, sys.argv[2].encode())
    finally:
        os.close(fd)
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])' "$A/$1" "$2"
}
w=$(write_a k cut)
case $w in
ETIMEDOUT | ENOTCONN | ECONNREFUSED | EHOSTUNREACH | ENETUNREACH)
	echo "ok: a write on the cut-off node fails: $w" ;;
*) fail "a write on the cut-off node: $w, expected a network errno" ;;
esac
check "... and is not in etcd" 1 "$(etcd_ctl get --print-value-only "$PREFIX/k")"
r=$(timeout 30 cat "$A/k" 2>&1 || true)
case $r in
*"timed out"* | *"not connected"* | *"unreachable"* | *"refused"*)
	echo "ok: an open on the cut-off node fails rather than serve stale data: $r" ;;
*) fail "an open on the cut-off node: [$r], expected a network error" ;;
esac
# The watch of each replica finds the link gone (TCP keepalive, or its
# probe of a silent stream: within 8 s), and the mount says so.
cut_off() { [ "$(connected "$A")" = 0 ] && [ "$(connected "$AL")" = 0 ]; }
wait_for 20 cut_off ||
	fail "the cut-off node does not say it is disconnected: $(connected "$A") $(connected "$AL")"
check "... a local-consistency mount reads on from its replica" 1 \
	"$(timeout 30 cat "$AL/k" 2>&1)"
echo 2 > "$B/k"
echo new > "$B/fresh"
rm "$B/old"

# -- heal -----------------------------------------------------------------------
ip link set "$host" up
caught() { [ "$(cat "$A/k" 2>/dev/null)" = 2 ] && [ "$(cat "$A/fresh" 2>/dev/null)" = new ]; }
wait_for 30 caught || fail "A did not catch up with B's changes"
healed() { [ "$(connected "$A")" = 1 ] && [ "$(connected "$AL")" = 1 ] &&
	[ "$(cat "$AL/k" 2>/dev/null)" = 2 ]; }
wait_for 30 healed ||
	fail "healed, the node says it is connected and its local mount catches up"
has() { grep -qx "$1" "$T/events"; }
wait_for 30 has "DELETE old" || true
check "A reads B's values, and the deleted key is gone" "2 new no" \
	"$(cat "$A/k") $(cat "$A/fresh") $([ -e "$A/old" ] && echo yes || echo no)"
check "A's watcher: B's changes made while A was away, as events" \
	"CLOSE_WRITE,CLOSE k
CREATE fresh
CLOSE_WRITE,CLOSE fresh
DELETE old" "$(cat "$T/events")"

# -- a longer cut, and a compaction --------------------------------------------
from=$(wc -l < "$T/events")
ip link set "$host" down
echo 3 > "$B/k"
echo 4 > "$B/k"
mkdir "$B/d"
echo y > "$B/d/x"
rm "$B/fresh"
rev=$(etcd_ctl get / -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
etcd_ctl compact "$rev" >/dev/null
# A's watch connection is declared dead by TCP keepalive (2 s idle, then
# 9 probes a second apart) only while the link is down; then A's retries
# resume from a revision that etcd compacted.
sleep 14
ip link set "$host" up
resynced() { [ "$(cat "$A/k" 2>/dev/null)" = 4 ] && has "DELETE fresh"; }
wait_for 30 resynced || fail "A did not read the store again after the compaction"
sleep 0.5
check "A's watcher: the net difference, after a compaction" \
	"CREATE,ISDIR d
CLOSE_WRITE,CLOSE k
DELETE fresh" "$(tail -n +$((from + 1)) "$T/events")"
check "A reads it" "4 y no" \
	"$(cat "$A/k") $(cat "$A/d/x") $([ -e "$A/fresh" ] && echo yes || echo no)"
umount_fs "$B"
umount_fs "$A"
umount_fs "$AL"
