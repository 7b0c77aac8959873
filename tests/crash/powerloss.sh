#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Power loss: with sync=full, an acknowledged write survives losing
# everything not yet fsync'ed. Each cycle copies the database files, mounts
# the store with powerloss.so preloaded into the daemon (it logs every
# write and sync of the database, its -wal and -journal), runs the crash
# test's writers, kills the daemon with SIGKILL, and then rebuilds the
# files from the copy and the log as a power cut could have left them
# (powercut.py): none of the writes since each file's last sync, all of
# them, a random prefix, and random sector-sized pieces of them; each is
# checked like a crash (lib.sh: verify).
#
# With --sync normal the store may lose the commits since its last WAL
# sync (a checkpoint): the run checks that it stays consistent (integrity,
# transactions whole, nothing torn) and counts the acknowledged writes
# lost, without requiring any.
#   powerloss.sh [--sync full|normal] [CYCLES]   (USTATEFS, POWERLOSS_SO)
. "$(dirname "$0")/../integration/lib.sh"

: "${POWERLOSS_SO:?POWERLOSS_SO must name powerloss.so}"
sync=full
if [ "${1:-}" = --sync ]; then
	sync=$2
	shift 2
fi
cycles=${1:-6}
M=$T/mnt
DB=$T/state.db
B=$T/base
LOG=$T/powerloss.log
CUT=$(dirname "$0")/powercut.py
. "$(dirname "$0")/lib.sh"

if [ "$sync" = full ]; then
	modes=(none all prefix random random)
	may_lose=
else
	modes=(none random)
	may_lose=may-lose
fi
shim=(LD_PRELOAD="$(shim_preload)" POWERLOSS_DB="$DB" POWERLOSS_LOG="$LOG")

# Copy the database files as they are before the daemon starts.
snapshot() {
	local s
	rm -rf "$B" "$LOG"
	mkdir -p "$B"
	for s in "" -wal -journal; do
		[ ! -e "$DB$s" ] || cp "$DB$s" "$B/db$s"
	done
}

# The log is faithful: after a clean unmount (which checkpoints and
# removes the WAL), rebuilding with every write gives the very files.
snapshot
env "${shim[@]}" "$USTATEFS" -o sync=$sync "$DB" "$M"
mkdir "$M/c"
for i in $(seq 20); do echo "value $i" > "$M/c/k$i"; done
umount_fs "$M"
wait_for 5 _no_daemon
cp "$DB" "$T/actual.db"
python3 "$CUT" "$B" "$LOG" "$DB" all 0 >/dev/null
check "a rebuild with every logged write is the database" same \
	"$(cmp -s "$DB" "$T/actual.db" && [ ! -e "$DB-wal" ] && echo same)"
python3 "$CUT" "$B" "$LOG" "$DB" none 0 >/dev/null
check "after a clean unmount nothing was pending" "value 20" \
	"$(sqlite3 "$DB" "SELECT CAST(value AS TEXT) FROM kv_store WHERE key = '/c/k20'")"

pending=0
# At least $cycles cycles; more (up to 4 times as many) until some cut
# found writes not yet synced and the writers had work acknowledged: a
# cut lands between syncs by chance, and a loaded machine starts slowly.
for ((c = 1; c <= cycles || ((pending == 0 || acks <= cycles) &&
	c <= 4 * cycles); c++)); do
	snapshot
	crash_cycle $c $sync "${shim[@]}"
	count_acks
	for m in "${modes[@]}"; do
		out=$(python3 "$CUT" "$B" "$LOG" "$DB" $m $RANDOM)
		echo "cycle $c: $out"
		[ $m != none ] || pending=$((pending + $(echo "$out" | awk '{ print $3 }')))
		verify "cycle $c $m" $may_lose
	done
	rm -f "$T"/ack/*
done
cycles=$((c - 1))
echo "sync=$sync cycles=$cycles outcomes=$((cycles * ${#modes[@]})) acknowledged-operations=$acks values-checked=$checked pending-writes=$pending lost=$lost torn=$torn"
check "writers were acknowledged at all" 1 $((acks > cycles))
check "the power cuts had unsynced writes to drop" 1 $((pending > 0))
if [ "$sync" = full ]; then
	check "no acknowledged write lost, no transaction torn" "0 0" "$lost $torn"
else
	check "no transaction torn, no value half-written" 0 "$torn"
fi
