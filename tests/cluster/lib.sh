# SPDX-License-Identifier: MIT
# Shared by the cluster tests: a three-member etcd cluster on free
# loopback ports (tests/etcd/lib.sh) and three ustatefs mounts of one
# store on it, as three nodes: node i talks to member i first and fails
# over to the others in turn. Everything is unmounted, stopped and removed
# at exit, even when the test fails (tests/integration/lib.sh's at_exit).
#
#   cluster_start [MOUNT-OPTIONS...]   start the members, mount the nodes:
#                                      NODE[0..2] their mountpoints,
#                                      NODE_SRC[0..2] their SOURCEs
#   PREFIX                             the store's etcd prefix (/c)
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../etcd/lib.sh"

PREFIX=/c
NODE=()
NODE_SRC=()

# node_source I: the SOURCE of node I, its own member first.
node_source() {
	local i=$1 j eps=""
	for j in 0 1 2; do
		eps+=${eps:+,}${ETCD_MEMBER_ENDPOINT[$(((i + j) % 3))]}
	done
	echo "etcd://$eps$PREFIX"
}

cluster_start() {
	local i
	etcd_cluster_start 3
	for i in 0 1 2; do
		NODE[i]=$T/node$i
		NODE_SRC[i]=$(node_source $i)
		mount_fs "${NODE_SRC[i]}" "${NODE[i]}" "$@"
	done
}
