#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Crash consistency: in a loop, mount a store (sync=full), run concurrent
# writers (files, /.txn transactions, renames) that log each operation
# that returned success, kill the daemon with SIGKILL at a random moment,
# recover the mountpoint, and check: PRAGMA integrity_check is ok; every
# acknowledged value is there (at least the acknowledged counter); every
# transaction is all or nothing; nothing is half-written.
#   crash.sh [CYCLES]           (USTATEFS names the daemon)
. "$(dirname "$0")/../integration/lib.sh"

cycles=${1:-30}
M=$T/mnt
DB=$T/state.db
. "$(dirname "$0")/lib.sh"

for ((c = 1; c <= cycles; c++)); do
	crash_cycle $c full
	count_acks
	verify "cycle $c"
	rm -f "$T"/ack/*
done
echo "cycles=$cycles acknowledged-operations=$acks values-checked=$checked lost=$lost torn=$torn"
check "writers were acknowledged at all" 1 $((acks > cycles))
check "no acknowledged write lost, no transaction torn" "0 0" "$lost $torn"
