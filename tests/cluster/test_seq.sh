#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Sequential consistency of -o consistency=local mounts: 6 processes run
# random get, set, compare-and-set and delete operations through three
# nodes that read their replicas without a round trip (two processes a
# node), and the member node 0 talks to is killed in the middle and
# restarted. Nodes may lag behind one another, but each must be
# sequentially consistent: seqcheck.py, given the cluster's write log read
# back from etcd (etcdlog.py), finds revisions for every operation of a
# node that never go back in time and never miss the node's own writes.
#   LIN_OPS (2400): the size of the history.
. "$(dirname "$0")/lib.sh"

ops=${LIN_OPS:-2400}
cluster_start -o consistency=local
history_under_kill "$T/h.jsonl" "$ops" 6
if history_seqcheck "$T/h.jsonl"; then
	echo "ok: each consistency=local node sequentially consistent"
	# The check can fail: one read of this history sent back in time.
	python3 "$LIN_D/seqcheck_test.py" --mutant "$T/log.jsonl" "$T/h.jsonl" ||
		fail "a read sent back in time passed the check"
else
	keep=$(mktemp -d /tmp/ustate-seq-failed.XXXXXX)
	cp "$T/h.jsonl" "$T/log.jsonl" "$keep/" 2>/dev/null || true
	fail "not sequentially consistent (kept in $keep)"
fi
for i in 0 1 2; do umount_fs "${NODE[i]}"; done
