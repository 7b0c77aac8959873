#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The replay's test (tests/integration/test_replay.sh: the events of one
# mount's changes on another, exactly, renames as renames) on two nodes
# of a three-member etcd cluster, each talking to a member of its own.
set -euo pipefail
. "$(dirname "$0")/../etcd/lib.sh"

etcd_cluster_start 3
e=("${ETCD_MEMBER_ENDPOINT[@]}")
rc=0
REPLAY_SOURCES="etcd://${e[0]},${e[1]},${e[2]}/r etcd://${e[1]},${e[2]},${e[0]}/r" \
	bash "$(dirname "$0")/../integration/test_replay.sh" || rc=$?
etcd_cluster_stop
exit $rc
