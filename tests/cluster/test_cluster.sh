#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Three nodes mount one store on a three-member etcd cluster (lib.sh):
#  - 3 nodes x 4 processes of /.txn compare-and-set increments of one key
#    end at exactly the total, each commit at a version of its own;
#  - an O_EXCL create race across the nodes has exactly one winner, round
#    after round;
#  - the writes of one node, its /.txn commits, a directory renamed there,
#    and etcdctl's puts and deletes reach the inotify watchers of the
#    other two nodes as exactly the events of the writing node, in order,
#    each file's value readable when its event arrives;
#  - a daemon killed with SIGKILL under writers loses no write whose
#    close() returned.
# test_lin.sh checks linearizability through the three nodes while a
# member dies, test_replay.sh the replay's exact events on two nodes.
. "$(dirname "$0")/lib.sh"

cluster_start
A=${NODE[0]} B=${NODE[1]} C=${NODE[2]}
D=$(dirname "$0")/../concurrency

# -- compare-and-set increments from every node ------------------------------
printf 0 > "$A/counter"
wait_for 5 bash -c "[ \"\$(cat '$C/counter')\" = 0 ]" || fail "C: counter"
pids=()
for i in 0 1 2; do
	python3 "$D/counter.py" --shared --versions "$T/versions.$i" \
		"${NODE[i]}" /counter 4 25 > "$T/counter.$i" &
	pids+=($!)
done
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
check "the counters of three nodes all ran" 0 $bad
for i in 0 1 2; do
	check "node $i reads the total" 300 "$(cat "${NODE[i]}/counter")"
done
check "each commit at a version of its own, none missing" \
	"$(seq 2 301)" "$(sort -n "$T"/versions.* | uniq)"

# -- one winner of an O_EXCL race --------------------------------------------
excl() { (set -C && echo "$2" > "$1/race/r$3") 2>/dev/null && echo "$2"; }
mkdir "$A/race"
wait_for 5 test -d "$C/race" || fail "C: race/"
many=0 none=0
for r in $(seq 10); do
	# (Waits name their processes: the etcd members are children too.)
	pids=()
	for i in 0 1 2; do
		excl "${NODE[i]}" "node$i" "$r" > "$T/excl.$i" &
		pids+=($!)
	done
	wait "${pids[@]}" || true
	winners=$(cat "$T"/excl.* | wc -l)
	[ "$winners" -le 1 ] || many=$((many + 1))
	[ "$winners" -ge 1 ] || none=$((none + 1))
	won=$(cat "$T"/excl.*)
	for i in 0 1 2; do
		wait_for 5 bash -c "[ \"\$(cat '${NODE[i]}/race/r$r')\" = '$won' ]" ||
			fail "round $r: node $i does not read the winner $won"
	done
done
check "O_EXCL across nodes: one winner in each of 10 rounds" "0 0" "$many $none"

# -- the events of one node's changes on the others ---------------------------
EVENTS=create,delete,moved_from,moved_to,close_write
# watch NAME DIR: a watcher that reads each file that a close_write event
# names, at once, into $T/NAME.
watch() {
	inotifywait -m -e "$EVENTS" --format '%e %f' "$2" 2>"$T/$1.err" |
		while read -r e f; do
			case $e in
			CLOSE_WRITE*) echo "$e $f $(cat "$2/$f" 2>&1)" ;;
			*) echo "$e $f" ;;
			esac
		done > "$T/$1" &
	at_exit "pkill -f 'inotifywait -m -e $EVENTS --format %e %f $2\$'"
	wait_for 5 grep -q "Watches established" "$T/$1.err" ||
		fail "$1: inotifywait did not start"
}
lines() { [ "$(wc -l < "$T/$2")" -ge "$1" ]; }
mkdir "$A/w"
for i in 0 1 2; do
	wait_for 5 test -d "${NODE[i]}/w" || fail "node $i: w/"
	watch w$i "${NODE[i]}/w"
done
for k in $(seq 10); do echo "value $k" > "$A/w/k$k"; done
printf 'set /w/t1 2\nt1\nset /w/t2 2\nt2\ncommit\n' |
	python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDWR); os.write(fd, sys.stdin.buffer.read()); os.close(fd)' "$A/.txn"
mkdir -p "$A/w/d1/x"
echo inner > "$A/w/d1/x/k"
mv "$A/w/d1" "$A/w/d2"
etcd_ctl put "$PREFIX/w/e1" "from etcdctl" >/dev/null
etcd_ctl del "$PREFIX/w/k1" >/dev/null
want=""
for k in $(seq 10); do
	want+="CREATE k$k
CLOSE_WRITE,CLOSE k$k value $k
"
done
want+="CREATE t1
CLOSE_WRITE,CLOSE t1 t1
CREATE t2
CLOSE_WRITE,CLOSE t2 t2
CREATE,ISDIR d1
MOVED_FROM,ISDIR d1
MOVED_TO,ISDIR d2
CREATE e1
CLOSE_WRITE,CLOSE e1 from etcdctl
DELETE k1"
n=$(wc -l <<< "$want")
for i in 1 2; do
	wait_for 15 lines "$n" w$i || true
done
sleep 0.5
for i in 1 2; do
	check "node $i: every event of node 0's changes, in order, values readable" \
		"$want" "$(cat "$T/w$i")"
done
# Node 0 itself sees its own writes once, and etcdctl's as replays.
wait_for 5 lines "$n" w0 || true
check "node 0: the same events" "$want" "$(cat "$T/w0")"
for i in 0 1 2; do
	diff <(echo "$want") "$T/w$i" >&2 || echo "(node $i's events above)" >&2
done

# -- SIGKILL of a daemon under writers ----------------------------------------
# The crash test's writers: each acknowledges a counter only after its
# close() returned (a shell's redirection would not tell a failed close).
mkdir "$B/c"
mkdir -p "$T/ack"
pids=()
for w in 1 2 3; do
	python3 "$D/../crash/writers.py" "$B" "$T/ack" file $w 0 &
	pids+=($!)
done
wait_for 10 bash -c "[ -s '$T/ack/file.1' ] && [ -s '$T/ack/file.2' ] && [ -s '$T/ack/file.3' ]" || true
sleep 0.5
pkill -9 -f "^$USTATEFS ${NODE_SRC[1]} $B\$"
wait "${pids[@]}" || true
fusermount3 -uz "$B"
lost=0
for w in 1 2 3; do
	last=$(tail -1 "$T/ack/file.$w")
	v=$(etcd_ctl get --print-value-only "$PREFIX/c/w$w")
	[ -n "$last" ] && [ "$v" -ge "$last" ] || lost=$((lost + 1))
	echo "writer $w: acknowledged $last, etcd has $v"
done
check "no write whose close() returned was lost" 0 $lost
"$USTATEFS" "${NODE_SRC[1]}" "$B"
check "the node mounts again and reads the last value" \
	"$(etcd_ctl get --print-value-only "$PREFIX/c/w1")" "$(cat "$B/c/w1")"

for i in 0 1 2; do umount_fs "${NODE[i]}"; done
check "unmounted cleanly" "" "$(grep "$T/node" /proc/mounts || true)"
