/* SPDX-License-Identifier: MIT */
/*
 * This file defines the table of operations a storage backend provides to
 * the store front (store.c), and all that a backend may use besides the
 * public API of ustate.h: the helpers of backend.c. A backend includes
 * this header alone (and system headers); it never calls into store.c.
 * The front validates every key, value size and option before calling a
 * backend, owns the watch machinery and the read-only rule; a backend only
 * stores, applies transactions atomically, and keeps the change history
 * that watches read. Every function returns 0 or a negative errno, as the
 * public API does.
 *
 * The backends are SQLite (sqlite.c), memory (memory.c) and etcd (etcd.c
 * over the transport of etcd_http.c, for etcd:// and etcds:// sources),
 * which maps txn to one etcd Txn with version compares, history to a
 * ring fed by one etcd watch, and revision to the cluster's revision.
 */
#ifndef USTATE_BACKEND_I_H
#define USTATE_BACKEND_I_H

#include <stdbool.h>

#include "ustate.h"

/*
 * Version 2 appended the optional operations (export to compact): a
 * backend leaves those it cannot do NULL and the front answers
 * -EOPNOTSUPP. Version 3 appended meta_get (ownership), version 4 node.
 * Version 5 appended watch_from, version 6 the lease operations, version
 * 7 barrier and connected, version 8 xattrs (and USTATE_OP_XATTR in txn),
 * version 9 lease owners (lease_grant's owner, lease_owner), version 10
 * get_many.
 */
#define USTATE_BACKEND_VERSION 10

/* Whether an op only checks (CHECK_VERSION, CHECK_CHILDREN). */
static inline int ustate_op_is_check(ustate_op_type type)
{
	return type == USTATE_OP_CHECK_VERSION ||
	       type == USTATE_OP_CHECK_CHILDREN;
}

/*
 * Whether an op writes a key (SET, CREATE, DELETE): one statement in the
 * SQLite backend, and always a change with a revision of its own.
 */
static inline int ustate_op_writes_key(ustate_op_type type)
{
	return type == USTATE_OP_SET || type == USTATE_OP_CREATE ||
	       type == USTATE_OP_DELETE;
}

/* Which set a scan walks. */
#define USTATE_SCAN_KEYS 0 /* the keys */
#define USTATE_SCAN_DIRS 1 /* the directory records */

/* Flags of ustate_backend_ops.txn. */
#define USTATE_TXN_NO_REVISION 0x1

/* One change as the history records it. */
struct ustate_change {
	ustate_event_type type;
	uint64_t version;
	uint64_t revision;
	char *key; /* owned by the array that holds it */
};

struct ustate_backend_ops {
	unsigned version; /* USTATE_BACKEND_VERSION */
	const char *name;

	/* Release everything; b is not used again. */
	void (*close)(void *b);

	/* ustate_get(); -ENOENT when absent. */
	int (*get)(void *b, const char *key, ustate_entry **out);

	/* The version of key, 0 when absent. */
	int (*key_version)(void *b, const char *key, uint64_t *version);

	/*
	 * Up to max names of one set (USTATE_SCAN_*) that start with prefix
	 * and sort strictly after `after` (NULL: no lower bound; it may hold
	 * any bytes, 0xff included), in byte order; max may be SIZE_MAX.
	 * O(log N + returned). Free with ustate_list_free().
	 */
	int (*scan)(void *b, int set, const char *prefix, const char *after,
		    size_t max, char ***names, size_t *n);

	/*
	 * Apply ops (already validated) atomically, as ustate_transaction()
	 * describes; res is never NULL and res->versions has n slots. With
	 * USTATE_TXN_NO_REVISION in flags, res->revision may be left unset on
	 * success (the caller will not read it).
	 */
	int (*txn)(void *b, const ustate_op *ops, size_t n,
		   ustate_txn_result *res, unsigned flags);

	/* The current store revision. */
	int (*revision)(void *b, uint64_t *rev);

	/*
	 * Up to max changes with revision >= from, in order, starting after
	 * the first skip changes of revision from (so a reader can resume
	 * in the middle of a revision). *oldest receives the oldest revision
	 * still retained (changes before it were trimmed). The caller frees
	 * the array with ustate_changes_free().
	 */
	int (*history)(void *b, uint64_t from, size_t skip, size_t max,
		       struct ustate_change **out, size_t *n, uint64_t *oldest);

	/* ---- optional (version 2); NULL: -EOPNOTSUPP ---- */

	/*
	 * ustate_export(), prefix already checked, LEASE records and each
	 * key's lease included (version 9) when the backend has leases.
	 */
	int (*export)(void *b, const char *prefix, ustate_export_fn fn,
		      void *arg);

	/*
	 * ustate_restore(), flags already checked; next is the front's, and
	 * gives only records that keep every rule (valid keys, versions,
	 * value sizes, lease names and TTLs) except uniqueness and the
	 * existence of the leases keys name, which the backend checks. res
	 * is never NULL. LEASE records and KEY records' leases (version 9)
	 * as ustate.h says, from a backend that has leases.
	 */
	int (*restore)(void *b, ustate_import_fn next, void *arg,
		       unsigned flags, ustate_restore_result *res);

	/*
	 * Copy a consistent snapshot into the existing empty file path; the
	 * front made it and puts it in place.
	 */
	int (*backup)(void *b, const char *path, ustate_progress_fn progress,
		      void *arg);

	/* Report each problem to fn, which the front counts; 0 or an error. */
	int (*check)(void *b, ustate_problem_fn fn, void *arg);

	/*
	 * ustate_compact(), revision >= 1; -EINVAL past the current
	 * revision + 1, which only the backend can tell atomically.
	 */
	int (*compact)(void *b, uint64_t revision, uint64_t *removed);

	/* ---- optional (version 3) ---- */

	/*
	 * ustate_meta_get(), path and which already checked; -ENOENT when
	 * none is kept. NULL: the backend keeps no metadata; the front
	 * answers -ENOENT, and -EOPNOTSUPP to a transaction that writes
	 * some. The backend keeps metadata with its key or record:
	 * USTATE_OP_META and MKDIR with a value (txn) write it, and it goes
	 * when the key or record goes, by whatever means. An etcd backend
	 * would keep it in side keys, written in the same Txn.
	 */
	int (*meta_get)(void *b, const char *path, unsigned which,
			ustate_meta *out);

	/* ---- optional (version 4) ---- */

	/*
	 * ustate_node_get() of a valid path other than "/", in one
	 * consistent read: ustatefs asks it at every open. revision and entry
	 * may be NULL (not wanted). NULL: the front asks key_version, scan,
	 * revision and get, which is as exact but several reads.
	 */
	int (*node)(void *b, const char *path, unsigned *flags,
		    uint64_t *revision, ustate_entry **entry);

	/* ---- optional (version 5) ---- */

	/*
	 * The first watch of the store is about to read the history from
	 * revision rev on: a backend whose history arrives as a stream (etcd)
	 * starts it there, so that history() serves every revision from rev,
	 * however late its first call comes. NULL: the history is there.
	 */
	int (*watch_from)(void *b, uint64_t rev);

	/* ---- optional (version 6): leases; NULL: -EOPNOTSUPP ---- */

	/*
	 * The lease calls of ustate.h, name and ttl already checked, at the
	 * time now (unix ms, ustate_clock_ms()). A backend that has them
	 * also honours ustate_op.lease in txn: a SET or CREATE naming a
	 * lease that is absent or whose deadline is <= ustate_clock_ms()
	 * fails the transaction with -ENOENT (res->failed naming the op,
	 * res->found 0), and a SET or CREATE without one detaches its key.
	 * Each call that writes first expires, as lease_expire does, every
	 * lease overdue at now, in the same atomic step where it can, so no
	 * key of an overdue lease is ever attached to a lease granted again
	 * under its name. A lease overdue at now counts as absent.
	 * lease_revoke's *revision gets the revision of the deletion of the
	 * keys (0 when there were none). lease_grant gives a lease it makes
	 * owner (uid, gid and mode; NULL: none), and keeps a live lease's;
	 * the infos a backend returns carry the owner (USTATE_LEASE_OWNED).
	 */
	int (*lease_grant)(void *b, const char *name, int64_t ttl,
			   const ustate_meta *owner, int64_t now,
			   ustate_lease_info **out);
	int (*lease_keepalive)(void *b, const char *name, int64_t now,
			       ustate_lease_info **out);
	int (*lease_revoke)(void *b, const char *name, int64_t now,
			    uint64_t *revision);
	int (*lease_get)(void *b, const char *name, int64_t now,
			 ustate_lease_info **out);
	int (*lease_list)(void *b, int64_t now, char ***names, size_t *n);

	/*
	 * End every lease whose deadline is <= now: each one's keys deleted
	 * in one transaction of their own (one revision), exactly once even
	 * when other processes expire the same store. *expired receives how
	 * many leases ended, *next the earliest deadline still to come
	 * (INT64_MAX: none), which may be one another process sets later.
	 */
	int (*lease_expire)(void *b, int64_t now, unsigned *expired,
			    int64_t *next);

	/* ---- optional (version 7); NULL: reads see every commit ---- */

	/*
	 * ustate_barrier(): make the reads that follow see every write that
	 * completed before the call (a store whose reads may lag, a replica
	 * read at USTATE_CONSISTENCY_LOCAL).
	 */
	int (*barrier)(void *b);

	/* ustate_connected(); NULL: always (a local store). */
	bool (*connected)(void *b);

	/* ---- optional (version 8); NULL: no extended attributes ---- */

	/*
	 * The extended attributes of a key or record (path and which
	 * checked), in one consistent read: *blob gets a new buffer (free())
	 * of *len bytes, the entries in byte order of their names, each the
	 * name, a NUL, the value's length as 4 bytes little-endian, then the
	 * value (ustate_xattr_entry() walks them); -ENOENT when there are
	 * none. A backend that has it also applies USTATE_OP_XATTR in txn
	 * (checked by the front: see ustate.h), and drops a key's or
	 * record's attributes when it goes, by whatever means.
	 */
	int (*xattrs)(void *b, const char *path, unsigned which, void **blob,
		      size_t *len);

	/* ---- optional (version 9); NULL: -EOPNOTSUPP ---- */

	/*
	 * ustate_lease_set_owner(), name and owner checked: the owner of the
	 * lease live at now becomes owner's uid, gid and mode; -ENOENT when
	 * it is not live. Its deadline and keys stay.
	 */
	int (*lease_owner)(void *b, const char *name, const ustate_meta *owner,
			   int64_t now);

	/* ---- optional (version 10); NULL: -EOPNOTSUPP ---- */

	/*
	 * ustate_get_many(), keys checked, n >= 0: out[i] the entry of
	 * keys[i] or NULL, all from one snapshot whose revision goes to
	 * *revision. On failure every out[i] is NULL.
	 */
	int (*get_many)(void *b, const char *const *keys, size_t n,
			ustate_entry **out, uint64_t *revision);
};

/*
 * One entry of an xattrs() blob at *off of len bytes: its name, value and
 * value_len, pointing into blob; *off moves past it. 1, 0 at the end, or
 * -EIO for a blob that does not parse.
 */
int ustate_xattr_entry(const void *blob, size_t len, size_t *off,
		       const char **name, const void **value,
		       size_t *value_len);

/*
 * Append the entry (name, value of len bytes) to the blob *buf of *used
 * bytes (*cap allocated); 0 or -ENOMEM.
 */
int ustate_xattr_append(char **buf, size_t *used, size_t *cap, const char *name,
			const void *value, size_t len);

/*
 * The backends' openers; each fills *b and *ops on success only, and
 * returns 0 or a negative errno.
 *
 * opts is never NULL: the front's copy of the caller's options, checked
 * and with every default filled in, at USTATE_OPTIONS_VERSION. An opener
 * may change its numeric fields, to lower a default it cannot meet (the
 * etcd backend lowers max_value_size to the server's request limit when
 * the caller left it at the USTATE_OPTIONS_INIT value); the store runs
 * with opts as they are when the opener returns, and ustate_options_get()
 * reports them. Its string fields are the store's copies, valid until
 * the backend's close returns, so a backend may keep pointers to them;
 * it must not change those pointers. Log through ustate_log(opts, ...).
 */
int ustate_sqlite_backend_open(void **b, const struct ustate_backend_ops **ops,
			       const char *path, ustate_options *opts);
int ustate_memory_backend_open(void **b, const struct ustate_backend_ops **ops,
			       ustate_options *opts);

/*
 * The SQLite part of ustate_global_tune(), flags already checked: 0, or
 * -EBUSY when SQLite is initialised already.
 */
int ustate_sqlite_global_tune(unsigned flags);

/*
 * The etcd backend (etcd.c, etcd_http.c), for a source "etcd://" or
 * "etcds://" HOST:PORT[,HOST:PORT...]/PREFIX, exactly as the caller of
 * ustate_open() gave it.
 */
int ustate_etcd_backend_open(void **b, const struct ustate_backend_ops **ops,
			     const char *source, ustate_options *opts);

/* ---- helpers shared by the backends (backend.c) ---- */

/*
 * A new entry holding copies of key and of len bytes of val, followed by
 * a NUL byte, its other fields zero; one allocation, which the caller
 * owns and frees with ustate_entry_free(). NULL when out of memory.
 */
ustate_entry *ustate_entry_new(const char *key, const void *val, size_t len);

/*
 * ustate_entry_new(), with a copy of lease (NULL: none) in the same
 * block, as e->lease.
 */
ustate_entry *ustate_entry_new_leased(const char *key, const void *val,
				      size_t len, const char *lease);

/*
 * A new lease description of name (keys NULL), or NULL when out of
 * memory; remaining_ms is computed from deadline and now.
 */
ustate_lease_info *ustate_lease_info_new(const char *name, int64_t ttl,
					 int64_t deadline, int64_t now);

/* Give li the owner owner (uid, gid, mode), or none when NULL. */
void ustate_lease_info_owner(ustate_lease_info *li, const ustate_meta *owner);

/*
 * The wall clock of leases: CLOCK_REALTIME in unix milliseconds, plus
 * whatever ustate_clock_advance() added in this process. Safe from any
 * thread.
 */
int64_t ustate_clock_ms(void);

/*
 * For tests only: move this process's lease clock forward by ms (or
 * back, when negative). Lease deadlines are kept in the store in wall
 * clock time, so a test moves time instead of sleeping through a TTL.
 */
void ustate_clock_advance(int64_t ms);

/*
 * For tests only: stop this process's lease clock where it is (frozen
 * true) or let it run with the real clock again (false), keeping what
 * ustate_clock_advance() added; stopping a stopped clock leaves it
 * where it stopped. A stopped clock makes a case that checks
 * one second either side of a deadline immune to a stalled machine or a
 * stepped CLOCK_REALTIME.
 */
void ustate_clock_freeze(bool frozen);

/*
 * For tests only: keep (paused true) every store's expiry thread of this
 * process from expiring leases, so that a case can look at a lease past
 * its deadline that no one expired yet; ustate_lease_expire_now() still
 * does. ustate_expiry_paused() tells the thread.
 */
void ustate_expiry_pause(bool paused);
bool ustate_expiry_paused(void);

/* Free n changes of a history batch and their keys; NULL, 0 is a no-op. */
void ustate_changes_free(struct ustate_change *c, size_t n);

/*
 * Hand a problem to a check's fn; detail is printf-formatted (cut at 511
 * bytes), and check and key are borrowed for the call. Returns what fn
 * returns.
 */
int ustate_report(ustate_problem_fn fn, void *arg, const char *check,
		  const char *key, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/*
 * Log a message through the options of a store (o->log, or stderr for
 * LOG_WARNING and above when it is NULL; o may be NULL): priority is a
 * syslog level, fmt printf's, the text is cut at 1023 bytes and loses
 * any trailing newline. Safe from any thread. Messages name keys and
 * errors, never values or secrets.
 */
void ustate_log(const ustate_options *o, int priority, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif /* USTATE_BACKEND_I_H */
