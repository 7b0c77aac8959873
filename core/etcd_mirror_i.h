/* SPDX-License-Identifier: MIT */
/*
 * This file declares the replica of the etcd backend: a local copy of the
 * etcd keys of one key range (a store's PREFIX), kept in a SQLite file of
 * its own and fed by a watch of that range, so that reads need no round
 * trip. It copies etcd's keys as they are (value, create and mod revision,
 * version, lease), nothing of the store's mapping, and answers the read
 * requests etcd.c makes (a range, a Txn of ranges) with the JSON etcd
 * would give at the replica's revision, or, for the hot reads, with the
 * key-values themselves (etcd_kv_i.h). It is etcd.c's alone.
 *
 *   - Loading: the range is read page by page at one revision, then the
 *     watch resumes from it; a progress line is logged every 100,000 keys.
 *     A replica file kept from an earlier run (same cluster, same range)
 *     is live at once and resumes from its revision; one etcd compacted
 *     past is loaded again (reads go to etcd meanwhile).
 *   - The replica's revision only grows, one watch message at a time, in
 *     one SQLite transaction with the changes it brings: a replica never
 *     shows half of a revision, and never goes back in time (etcd 3.4's
 *     repeated events are dropped).
 *   - A read that the replica cannot answer (not loaded, a past revision,
 *     not at the revision the caller needs in time) is -EAGAIN: the caller
 *     asks etcd.
 */
#ifndef USTATE_ETCD_MIRROR_I_H
#define USTATE_ETCD_MIRROR_I_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "etcd_http_i.h"
#include "etcd_kv_i.h"

struct ustate_etcd_mirror;

/*
 * Start a replica of the etcd keys in [lo, hi) through c (borrowed, it
 * must outlive the replica), in the SQLite file path ("": a private
 * temporary file, removed at close). Messages go through opts (borrowed).
 * Returns once the replica is loaded (or resumed from its file): 0, or
 * -errno when the file cannot be opened or made, or the load failed. A
 * load again after a compaction runs in the replica's own thread, and
 * reads are -EAGAIN until it is done.
 */
int ustate_etcd_mirror_open(struct ustate_etcd_mirror **out,
			    struct ustate_etcd_conn *c, const char *lo,
			    const char *hi, const char *path,
			    const ustate_options *opts);

/* Stop the replica's thread and close its file. NULL is a no-op. */
void ustate_etcd_mirror_close(struct ustate_etcd_mirror *m);

/*
 * Answer the read request req (borrowed) to etcd's path ("/v3/kv/range",
 * or "/v3/kv/txn" with ranges only) from the replica, once its revision
 * is at least need (waiting up to wait_ms for it): 0 with *out (owned by
 * the caller), -EAGAIN when it cannot (ask etcd), -ENOMEM.
 */
int ustate_etcd_mirror_read(struct ustate_etcd_mirror *m, const char *path,
			    json_t *req, uint64_t need, long wait_ms,
			    json_t **out);

/*
 * The same for the n ranges rs (borrowed), without JSON: 0 with *out at
 * the replica's revision (the caller frees it), -EAGAIN, -ENOMEM.
 */
int ustate_etcd_mirror_ranges(struct ustate_etcd_mirror *m,
			      const struct ustate_etcd_range *rs, size_t n,
			      uint64_t need, long wait_ms,
			      struct ustate_etcd_ranges **out);

/*
 * Whether the replica's watch hears its cluster: false from the moment a
 * watch stream ends in an error (a member gone or hung, a partition), or
 * a load fails, until the next stream's first message. Each change is
 * logged.
 */
bool ustate_etcd_mirror_connected(struct ustate_etcd_mirror *m);

/* The replica's revision; 0 while it is not loaded. */
uint64_t ustate_etcd_mirror_revision(struct ustate_etcd_mirror *m);

#endif
