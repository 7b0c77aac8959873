/* SPDX-License-Identifier: MIT */
/*
 * This file is the public contract of libustate, the univrs-state store in
 * C: a versioned, hierarchical key-value store with compare-and-set,
 * multi-key transactions and watch streams, over SQLite, memory or an
 * etcd v3 cluster (see ustate_open()).
 *
 * Conventions, for every function below:
 *  - a fallible function returns 0 (or a documented non-negative value) on
 *    success and a negative errno on failure, never anything else; the FUSE
 *    daemon passes these codes to the kernel unchanged;
 *  - output parameters come first; what they point to is set only on
 *    success (or where a failure documents it) and then belongs to the
 *    caller, who releases it with the matching *_free function;
 *  - input pointers are borrowed for the duration of the call only;
 *  - an open store (ustate *) may be shared by any number of threads; a
 *    watch (ustate_watch *) belongs to one thread at a time.
 *
 * Keys are "/" followed by one or more "/"-separated segments: no empty
 * segment, no trailing "/", no "." or ".." segment, valid UTF-8 without
 * control characters, at most 255 bytes a segment and 2048 bytes in all.
 * The segment names ".value" and ".txn" are reserved for the filesystem.
 * A bad key is -EINVAL; one over a length limit is -ENAMETOOLONG.
 */
#ifndef USTATE_H
#define USTATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USTATE_KEY_MAX 2048    /* bytes in a key, without the NUL */
#define USTATE_SEGMENT_MAX 255 /* bytes in one segment */

/** An open store: opaque, safe to share between threads. */
typedef struct ustate ustate;

/** A watch stream on one store: opaque, used by one thread at a time. */
typedef struct ustate_watch ustate_watch;

/** Durability of a write when its call returns. */
typedef enum ustate_sync {
	USTATE_SYNC_FULL = 0, /* on disk when the call returns (default) */
	USTATE_SYNC_NORMAL,   /* survives a crash of the process; the last
			       * commits may be lost on power failure */
	USTATE_SYNC_OFF,      /* the OS decides when data reaches disk */
} ustate_sync;

/**
 * ustate_log_fn - receives one message of the library.
 * @arg:      the options' log_arg.
 * @priority: a syslog level (LOG_ERR, LOG_WARNING, ... LOG_DEBUG of
 *            <syslog.h>).
 * @msg:      one line, without a trailing newline, valid for the call
 *            only.
 *
 * It may be called from any thread that calls the library and from the
 * library's own threads, from several at the same time: it must be
 * thread-safe, return soon, and must not call the store (nor open or
 * close one).
 */
typedef void (*ustate_log_fn)(void *arg, int priority, const char *msg);

#define USTATE_OPTIONS_VERSION 3

/*
 * Options of a store; start from USTATE_OPTIONS_INIT and change fields.
 *
 * Versions: version 2 appended the fields after max_txn_ops, version 3
 * those after log_arg. A program built against an earlier version passes
 * a struct of that version's size with .version set to it: the store then
 * reads only that version's fields and gives the others their
 * USTATE_OPTIONS_INIT defaults. Any other version is -EINVAL.
 *
 * Strings are borrowed for the call of ustate_open*() only: the store
 * copies those it keeps, so a caller may free or overwrite them (a
 * password, say) as soon as the call returns. log and log_arg are kept
 * as they are: both must stay valid until ustate_close() returns.
 */
typedef struct ustate_options {
	unsigned version; /* USTATE_OPTIONS_VERSION */
	ustate_sync sync;
	size_t max_value_size; /* bytes; larger values are -EFBIG */
	int read_only;	       /* every write is -EROFS */
	uint64_t history;      /* revisions of change history kept (>= 1)
				* for watches that start in the past or
				* fall behind; trimming runs in batches,
				* so up to history/8 + 1040 more may stay */
	size_t max_txn_ops;    /* ops in one transaction; more is -E2BIG;
				* at most USTATE_MAX_TXN_OPS */

	/* version 2: remote stores (etcd) and logging */
	unsigned request_timeout; /* ms: deadline of each request to a
				   * server (etcd); default 5000 */
	unsigned dial_timeout;	  /* ms: connecting to one endpoint;
				   * default 2000 */
	const char *tls_ca;	  /* etcds://: CA file; NULL: the system's */
	const char *tls_cert;	  /* etcds://: client certificate file */
	const char *tls_key;	  /* etcds://: its private key file */
	const char *user;	  /* etcd auth: user name (NULL: no auth) */
	const char *password;	  /* ... and password */
	ustate_log_fn log;	  /* NULL: messages go to stderr */
	void *log_arg;		  /* passed to log */

	/* version 3: a local replica of a remote store (etcd) */
	const char *replica; /* NULL: none, every read asks etcd; "": a
			      * private temporary file (in $TMPDIR, else
			      * /var/tmp), removed at close; else the path
			      * of a replica file, kept for the next open
			      * (see "Replicas" below) */
	int consistency;     /* reads from a replica:
			      * USTATE_CONSISTENCY_LINEARIZABLE (0) or
			      * USTATE_CONSISTENCY_LOCAL */
} ustate_options;

/*
 * Replicas (etcd stores). With .replica set, the store keeps a copy of
 * its PREFIX's etcd keys in a SQLite file of its own, loaded before
 * ustate_open() returns (a progress line every 100,000 keys, through the
 * log) and kept up to date by a watch. A
 * file kept from an earlier open of the same PREFIX on the same cluster
 * is live at once and catches up from its revision; one that etcd
 * compacted past is loaded again, in the background (reads ask etcd
 * meanwhile). Writes always go to etcd; the
 * replica serves reads (get, key_version, list, node, meta_get):
 *
 *  - USTATE_CONSISTENCY_LINEARIZABLE: a read sees every write that
 *    completed, anywhere, before the read began. Cost: one quorum read
 *    of etcd's revision, shared by all reads waiting at the same moment,
 *    then a wait for the replica to reach that revision. A replica that
 *    does not reach it within 100 ms (a cluster whose revision other
 *    clients move, outside PREFIX) is passed by: the read asks etcd.
 *  - USTATE_CONSISTENCY_LOCAL: no round trip. Reads through one handle
 *    never go back in time and always see the handle's own writes (a
 *    read waits for the replica to reach them); they lag behind the
 *    cluster by the watch's delay.
 *
 * When etcd cannot be reached, LINEARIZABLE reads fail as reads do
 * without a replica; LOCAL reads go on from the replica.
 */
#define USTATE_CONSISTENCY_LINEARIZABLE 0
#define USTATE_CONSISTENCY_LOCAL 1

/* The largest max_txn_ops: the changes one revision can hold. */
#define USTATE_MAX_TXN_OPS ((1u << 20) - 1)

/* The largest request_timeout and dial_timeout: one hour. */
#define USTATE_MAX_TIMEOUT_MS 3600000u

/*
 * The defaults. Both timeouts must lie in 1 .. USTATE_MAX_TIMEOUT_MS
 * (0 is -EINVAL, not "the default"). Without a log function, messages of
 * priority LOG_WARNING and more urgent go to stderr as "ustate: MSG",
 * and the others nowhere.
 */
#define USTATE_OPTIONS_INIT                                                    \
	{                                                                      \
		.version = USTATE_OPTIONS_VERSION, .sync = USTATE_SYNC_FULL,   \
		.max_value_size = 16u << 20, .read_only = 0,                   \
		.history = 100000, .max_txn_ops = 100000,                      \
		.request_timeout = 5000, .dial_timeout = 2000, .tls_ca = NULL, \
		.tls_cert = NULL, .tls_key = NULL, .user = NULL,               \
		.password = NULL, .log = NULL, .log_arg = NULL,                \
		.replica = NULL, .consistency = 0,                             \
	}

/** One key with its value and metadata. Free with ustate_entry_free(). */
typedef struct ustate_entry {
	char *key;
	void *value; /* value_len bytes, followed by a NUL byte */
	size_t value_len;
	uint64_t version;      /* >= 1 */
	int64_t created_at;    /* unix seconds */
	int64_t updated_at;    /* unix seconds */
	uint64_t mod_revision; /* store revision of the last change */
	/* since libustate 0.3; an entry is only ever made by the library */
	const char *lease; /* the lease the key is attached to (see
			    * ustate_lease_grant()), or NULL; it lives in
			    * the entry's own block */
} ustate_entry;

/** Kinds of operation inside ustate_transaction(). */
typedef enum ustate_op_type {
	USTATE_OP_CHECK_VERSION = 1, /* key must be at version (0: absent) */
	USTATE_OP_SET,		     /* write value; version + 1 */
	USTATE_OP_DELETE,	     /* remove key; -ENOENT if absent */
	USTATE_OP_CREATE,	     /* write value; -EEXIST if present */
	USTATE_OP_MKDIR,	     /* record key as a directory */
	USTATE_OP_RMDIR,	     /* drop key's directory record */
	USTATE_OP_CHECK_CHILDREN,    /* exactly version keys below key
				      * (prefix key + "/") */
	USTATE_OP_META,		     /* set (or drop) key's owner and mode */
	USTATE_OP_XATTR,	     /* set (or remove) one extended attribute
				      * of a key or record (since 0.5) */
} ustate_op_type;

/*
 * One operation of a transaction; every pointer is borrowed.
 *
 * ABI: libustate 0.3 appended lease. A program built against an older
 * ustate.h passes arrays of the shorter struct to the USTATE_0.1 version
 * of ustate_transaction(), which reads them as such (no lease); programs
 * built since bind to the USTATE_0.3 one. Initialise ops with designated
 * initialisers ({.type = ..., .key = ...}) so that fields appended later
 * are zero.
 */
typedef struct ustate_op {
	ustate_op_type type;
	const char *key;
	uint64_t version;  /* CHECK_VERSION only */
	const void *value; /* SET and CREATE; a ustate_meta for META and
			    * MKDIR (see below) */
	size_t value_len;
	const char *lease; /* SET and CREATE: attach the key to this lease
			    * (a live one, else -ENOENT); NULL: the key is
			    * attached to none after the op (see
			    * ustate_lease_grant()). Ignored by other ops. */
} ustate_op;

/*
 * Ownership, for file systems: an owner, a group and permission bits kept
 * with a key, and with a directory record, for as long as that key or
 * record exists. The store only keeps them; a file system applies them.
 *
 *  - USTATE_OP_META sets the metadata of a key: value points to a
 *    ustate_meta and value_len is sizeof(ustate_meta); a NULL value drops
 *    it (the file system's default applies again). The key must exist at
 *    that point of the transaction (-ENOENT otherwise). A set keeps the
 *    metadata; a delete drops it, so a key created again has none.
 *  - USTATE_OP_MKDIR with a value (a ustate_meta, as above) records the
 *    directory and sets its metadata; without one it leaves the metadata
 *    of an existing record as it is. USTATE_OP_RMDIR drops it. Only for
 *    MKDIR with a value may the key be "/": the root directory, which is
 *    always recorded and keeps its metadata for ever.
 *
 * A change of metadata alone takes no revision and makes no watch event
 * (a MKDIR that makes its record does, as any MKDIR); in a transaction
 * it is all or nothing with the other ops. A rename is a transaction
 * that also moves the metadata (META, MKDIR with a value). Export and
 * restore (below) carry it (since libustate 0.5).
 *
 * Times (since libustate 0.5): the metadata also holds a file system's
 * times, which the store keeps as given and never sets itself.
 *  - mtime_ns, with USTATE_META_MTIME in flags: a modification time set
 *    by hand (utimensat(), touch -d, cp -p, rsync -t). For a key it holds
 *    only until the key's value is next written, by any program: from
 *    then on ustate_meta_get() clears USTATE_META_MTIME, and the key's
 *    updated_at is its time again. Kept with the version the key has at
 *    that point of the transaction, so a META after a SET in one
 *    transaction (a rename) keeps it. A directory record's holds until
 *    the next META or MKDIR with a value.
 *  - ctime_ns: when the metadata last changed (0: unknown), for a file
 *    system's st_ctime together with updated_at.
 * A program built against an older ustate.h passes the shorter struct
 * (USTATE_META_V1_SIZE bytes: owner and mode alone); its META and MKDIR
 * keep no times, and its ustate_meta_get() (USTATE_0.1) fills only those.
 */
typedef struct ustate_meta {
	uint32_t uid;
	uint32_t gid;
	uint32_t mode; /* permission bits: 07777 at most */
	/* since libustate 0.5 */
	uint32_t flags;	  /* USTATE_META_MTIME, or 0 */
	int64_t mtime_ns; /* unix time in nanoseconds, with USTATE_META_MTIME */
	int64_t ctime_ns; /* unix time in nanoseconds; 0: unknown */
} ustate_meta;

#define USTATE_META_MTIME 0x1  /* ustate_meta.mtime_ns is kept */
#define USTATE_META_V1_SIZE 12 /* the ustate_meta of libustate 0.1 to 0.4 */

#define USTATE_META_KEY 0 /* ustate_meta_get(): the metadata of a key */
#define USTATE_META_DIR 1 /* ... of a directory record, or of "/" */

/*
 * Extended attributes (since libustate 0.5): named values kept with a key
 * or a directory record beside its metadata, for as long as that key or
 * record exists, for file systems' user xattrs. The store only keeps
 * them. A name is 1 to USTATE_XATTR_NAME_MAX bytes with no NUL, a value
 * at most USTATE_XATTR_SIZE_MAX bytes (ext4's limits).
 *
 *  - USTATE_OP_XATTR sets one: version is USTATE_META_KEY (the key, which
 *    must exist at that point of the transaction: -ENOENT) or
 *    USTATE_META_DIR (the directory record, which must exist likewise, or
 *    "/"); value points to the name, a NUL, then the value's bytes
 *    (value_len counts them all). With version | USTATE_XATTR_REMOVE it
 *    removes the name instead (value: the name alone, with its NUL; no
 *    error when it is absent). A set of a key's value keeps them, a
 *    delete drops them; a rename is a transaction that also sets them on
 *    the new key. Like metadata, they take no revision and make no watch
 *    event (the etcd backend's revision counts their writes).
 *  - ustate_xattr_get(), ustate_xattr_list() read them, ustate_xattr_set()
 *    writes one with the flags of setxattr(2).
 * The names and values of one key or record, each name counted with one
 * byte more, total at most USTATE_XATTR_TOTAL_MAX (-ENOSPC, checked by
 * ustate_xattr_set(); a transaction checks each op alone).
 */
#define USTATE_XATTR_NAME_MAX 255
#define USTATE_XATTR_SIZE_MAX 65536
#define USTATE_XATTR_TOTAL_MAX (128u << 10)
#define USTATE_XATTR_REMOVE 0x10 /* in ustate_op.version of an XATTR */
#define USTATE_XATTR_CREATE 0x1	 /* ustate_xattr_set(): -EEXIST if present */
#define USTATE_XATTR_REPLACE 0x2 /* ustate_xattr_set(): -ENODATA if absent */

/** What a transaction did, or where it failed. */
typedef struct ustate_txn_result {
	uint64_t revision;  /* store revision after the commit; on failure
			     * the revision the transaction saw */
	uint64_t *versions; /* optional, caller-owned array of n: the
			     * version each op left its key at (0 for a
			     * delete; the checked version for a check) */
	size_t failed;	    /* on -ECANCELED, -EEXIST or -ENOENT: the
			     * index of the op that failed */
	uint64_t found;	    /* ... and the version its key had then */
} ustate_txn_result;

/** Kinds of change reported by a watch. */
typedef enum ustate_event_type {
	USTATE_EVENT_CREATED = 1,
	USTATE_EVENT_UPDATED = 2,
	USTATE_EVENT_DELETED = 3,
	USTATE_EVENT_DIR_CREATED = 4, /* a directory record made (MKDIR) */
	USTATE_EVENT_DIR_DELETED = 5, /* a directory record dropped (RMDIR) */
} ustate_event_type;

/** One change; filled in by ustate_watch_next() in caller memory. */
typedef struct ustate_event {
	ustate_event_type type;
	uint64_t version;  /* version after the change; 0 for a delete
			    * and for directory records */
	uint64_t revision; /* store revision of the change */
	char key[USTATE_KEY_MAX + 1];
} ustate_event;

/**
 * ustate_open() - open the store a SOURCE string names, whatever its
 * backend: what a program takes from its user (a command line, a
 * configuration file) to name a store.
 * @out:    receives the store; the caller closes it with ustate_close().
 * @source: one of:
 *          - ":memory:": a new, empty store in this process, as
 *            ustate_open_memory() opens;
 *          - "etcd://HOST:PORT[,HOST:PORT...]/PREFIX", or "etcds://..."
 *            for TLS (the tls_* options): the keys under PREFIX in an
 *            etcd v3 cluster, through the etcd backend; the scheme is in
 *            lower case;
 *          - any other string without "://": a SQLite file, as
 *            ustate_open_sqlite() opens (a file name that holds "://"
 *            may be written with one "/" instead: "a:/b" is "a://b").
 * @opts:   options, or NULL for USTATE_OPTIONS_INIT. A failure that
 *          needs explaining (an unknown scheme, a backend this library
 *          lacks) is logged through opts->log (see ustate_log_fn).
 *
 * Return: 0; -EINVAL for bad options, a NULL or empty source, an unknown
 * scheme ("foo://...") or an etcd SOURCE that does not parse (PREFIX must
 * be a key); otherwise the errors of the opener of that backend: those of
 * ustate_open_memory(), of ustate_open_sqlite(), or of the etcd backend,
 * which checks the cluster with one linearizable read and fails fast:
 * -ECONNREFUSED, -EHOSTUNREACH, -ENETUNREACH or -ETIMEDOUT when no
 * endpoint answers, -ENOTCONN when the cluster has no quorum, -EACCES for
 * credentials or permissions etcd refuses, each logged with the endpoint
 * and the cause.
 */
int ustate_open(ustate **out, const char *source, const ustate_options *opts);

/**
 * ustate_open_sqlite() - open (or create) a store in a SQLite file.
 * @out:  receives the store; the caller closes it with ustate_close().
 * @path: file name; a new file is created with mode 0600. The file may be
 *        shared with other processes, ours or the Rust univrs-state. A
 *        name is never a SQLite URI ("file:a" is the file ./file:a), and
 *        ":memory:" is refused: ustate_open_memory() makes such a store.
 * @opts: options, or NULL for USTATE_OPTIONS_INIT.
 *
 * Return: 0; -EINVAL for bad options, an empty path or ":memory:";
 * -EUCLEAN when the file is not a SQLite database or is corrupt; -EROFS
 * when read-only and the file lacks the store's tables; an errno from the
 * file system (-ENOENT, -EACCES ...); -EBUSY, -EIO, -ENOSPC when a
 * writable open cannot expire the leases that ran out while the file was
 * closed (see ustate_lease_grant()): it then fails rather than let a
 * write come first.
 */
int ustate_open_sqlite(ustate **out, const char *path,
		       const ustate_options *opts);

/**
 * ustate_open_memory() - open an empty store that lives in this process.
 * @out:  receives the store; the caller closes it with ustate_close().
 * @opts: options, or NULL for USTATE_OPTIONS_INIT.
 *
 * Return: 0; -EINVAL for bad options; -ENOMEM.
 */
int ustate_open_memory(ustate **out, const ustate_options *opts);

/* Flags of ustate_global_tune(). */
#define USTATE_TUNE_NO_MEMSTATS 0x1 /* SQLite keeps no memory statistics */

/**
 * ustate_global_tune() - process-wide settings of the library, for a
 * program that owns its process (a daemon such as ustatefs).
 * @flags: USTATE_TUNE_* bits; 0 changes nothing.
 *
 * USTATE_TUNE_NO_MEMSTATS: SQLite's memory statistics, which libustate
 * never reads, take one process-wide mutex at every allocation, and all
 * the threads of every SQLite store contend for it. This turns them off
 * for all of SQLite in the process: other code that reads them
 * (sqlite3_memory_used(), sqlite3_status()) then sees nothing counted.
 *
 * Call it before any store is opened, while no other thread may be using
 * SQLite (it changes SQLite's global configuration, which is not
 * thread-safe); calling it again before then is harmless. Memory stores
 * do not use SQLite and are not affected.
 *
 * Return: 0; -EINVAL for unknown flags; -EBUSY when it is too late:
 * SQLite is already initialised (a SQLite store was opened, or the
 * program used SQLite itself) and nothing changed.
 */
int ustate_global_tune(unsigned flags);

/**
 * ustate_options_get() - the options a store runs with: the caller's,
 * with defaults filled in and as the backend adjusted them when it
 * opened (a backend may lower a limit it cannot meet, such as
 * max_value_size), .version being USTATE_OPTIONS_VERSION whatever version
 * the caller opened with.
 * @s:   the store.
 * @out: receives the options, in caller memory. Its string fields point
 *       to the store's own copies (NULL where none was given): they stay
 *       valid while the store is open and must not be freed. A program
 *       built against version 1 of the options gets their version 1 part
 *       only, with .version = 1.
 */
void ustate_options_get(const ustate *s, ustate_options *out);

/**
 * ustate_close() - close a store. Every watch on it must be closed first.
 * Every write whose call returned is already committed. NULL is a no-op.
 */
void ustate_close(ustate *s);

/**
 * ustate_get() - read one key.
 * @s:   the store.
 * @key: the key.
 * @out: receives a new entry, owned by the caller (ustate_entry_free()).
 *
 * Return: 0; -ENOENT if the key does not exist; -EINVAL, -ENAMETOOLONG
 * for a bad key; -ENOMEM; -EIO and other errors of the backend.
 */
int ustate_get(ustate *s, const char *key, ustate_entry **out);

/**
 * ustate_get_many() - read several keys from one consistent snapshot
 * (since libustate 0.7).
 * @s:        the store.
 * @keys:     n keys, borrowed for the call; a key may repeat.
 * @n:        how many; 0 reads only the revision.
 * @out:      n slots, in caller memory: out[i] receives a new entry of
 *            keys[i], owned by the caller (ustate_entry_free()), or NULL
 *            when that key does not exist. On failure every slot is NULL.
 * @revision: if not NULL, receives the store revision of the snapshot:
 *            every entry is as it was at that revision, every NULL a key
 *            absent then.
 *
 * Each key's entry is the one ustate_get() would give at that revision;
 * no write lands between two of them, which separate ustate_get() calls
 * cannot promise. Readers are not blocked by writers, nor writers by it.
 * An etcd store reads them in one etcd Txn (or from its replica at
 * consistency=local, as ustate_get() does): two ranges a key, so n over
 * half the server's --max-txn-ops (max_txn_ops) is -E2BIG.
 *
 * Return: 0 (absent keys are not an error); -EINVAL, -ENAMETOOLONG for a
 * bad key (nothing read); -E2BIG as above; -ENOMEM; -EIO and other
 * errors of the backend.
 */
int ustate_get_many(ustate *s, const char *const *keys, size_t n,
		    ustate_entry **out, uint64_t *revision);

/** ustate_entry_free() - free an entry from ustate_get(). NULL is a no-op. */
void ustate_entry_free(ustate_entry *e);

/**
 * ustate_set() - create or replace the value of a key.
 * @version: if not NULL, receives the key's new version (1 when new).
 *
 * Return: 0; -EINVAL, -ENAMETOOLONG for a bad key; -EFBIG for a value
 * over max_value_size; -EROFS on a read-only store; -ENOSPC, -EIO, -EBUSY
 * (another process held the database locked past the busy timeout).
 * A SQLite store answers every write -EIO once its database file has been
 * deleted or replaced at its path since it was opened. After -EIO the
 * write is not visible, but a crash may still bring it back (its bytes may
 * have reached the file): as after a timeout, its outcome is unknown.
 * An etcd store answers -ETIMEDOUT for a write that was sent and got no
 * answer within request_timeout (or lost its connection): it may or may
 * not have been applied, and the library does not send it again; and
 * -ENOTCONN, -ECONNREFUSED, -EHOSTUNREACH, -EACCES for one surely not
 * applied (no endpoint answered, or the cluster refused it).
 */
int ustate_set(ustate *s, const char *key, const void *val, size_t len,
	       uint64_t *version);

/**
 * ustate_delete() - remove a key. Its version becomes 0; a later set
 * starts again at 1.
 *
 * Return: 0; -ENOENT if it did not exist; the errors of ustate_set().
 */
int ustate_delete(ustate *s, const char *key);

/**
 * ustate_exists() - whether a key exists.
 * Return: 1 or 0; -EINVAL, -ENAMETOOLONG for a bad key; backend errors.
 */
int ustate_exists(ustate *s, const char *key);

/**
 * ustate_version() - the version of a key.
 * @version: receives the version, 0 when the key does not exist.
 * Return: 0; -EINVAL, -ENAMETOOLONG for a bad key; backend errors.
 */
int ustate_version(ustate *s, const char *key, uint64_t *version);

/**
 * ustate_list() - keys that start with a string, in byte order.
 * @prefix: a plain string prefix ("" or "/" lists every key); it must be
 *          valid UTF-8 without control characters, at most USTATE_KEY_MAX
 *          bytes. Costs O(log N + matches).
 * @keys:   receives a new array of *n keys, owned by the caller
 *          (ustate_list_free()); NULL when *n is 0.
 *
 * Return: 0; -EINVAL, -ENAMETOOLONG for a bad prefix; -ENOMEM; backend
 * errors.
 */
int ustate_list(ustate *s, const char *prefix, char ***keys, size_t *n);

/** ustate_list_free() - free the result of ustate_list(). */
void ustate_list_free(char **keys, size_t n);

/*
 * Directories, for file systems. A path is a directory when keys or
 * directory records lie below it, or when it holds a directory record: a
 * record keeps a directory that has no keys (made by mkdir, or left by the
 * removal of its last key) and lasts until USTATE_OP_RMDIR. Records are
 * written in transactions (USTATE_OP_MKDIR, USTATE_OP_RMDIR, both no-ops
 * when already done) and have no version. A record made or dropped is a
 * change like a key's: it takes its transaction's revision and reaches
 * the watches whose pattern matches its path, as USTATE_EVENT_DIR_CREATED
 * or USTATE_EVENT_DIR_DELETED; a no-op takes nothing.
 */
#define USTATE_NODE_VALUE 0x1	 /* a key exists at the path */
#define USTATE_NODE_CHILDREN 0x2 /* keys or records below the path */
#define USTATE_NODE_RECORD 0x4	 /* a directory record at the path */

/**
 * ustate_node() - what exists at a path.
 * @path:  a key, or "/" (the root: always USTATE_NODE_RECORD).
 * @flags: receives USTATE_NODE_* bits; 0 when nothing is there.
 * Return: 0; -EINVAL, -ENAMETOOLONG for a bad path; backend errors.
 */
int ustate_node(ustate *s, const char *path, unsigned *flags);

/**
 * ustate_node_get() - ustate_node(), and in the same consistent read the
 * store revision and the entry of the path: what a file system needs to
 * open a path, in one read.
 * @path:     as for ustate_node().
 * @flags:    receives USTATE_NODE_* bits.
 * @revision: receives the store revision the answer is from (NULL: not
 *            wanted).
 * @entry:    receives the path's entry, owned by the caller
 *            (ustate_entry_free()), when @flags has USTATE_NODE_VALUE,
 *            else NULL (NULL: not wanted).
 * Return: 0; -EINVAL, -ENAMETOOLONG for a bad path; -ENOMEM; backend
 * errors. Nothing is returned on failure.
 */
int ustate_node_get(ustate *s, const char *path, unsigned *flags,
		    uint64_t *revision, ustate_entry **entry);

/** One name in a directory. */
typedef struct ustate_dirent {
	char *name;	/* one segment */
	unsigned flags; /* USTATE_NODE_* of the child's path */
} ustate_dirent;

/**
 * ustate_readdir() - the names directly below a path, sorted by bytes,
 * each once. Costs O((names + records) x log N), not a scan of the keys
 * below the children.
 * @dir: a key or "/".
 * @out: receives a new array of *n entries, owned by the caller
 *       (ustate_dirents_free()); NULL when *n is 0.
 * Return: 0 (also for a path with nothing below it); -EINVAL,
 * -ENAMETOOLONG for a bad path; -ENOMEM; backend errors.
 */
int ustate_readdir(ustate *s, const char *dir, ustate_dirent **out, size_t *n);

/**
 * ustate_list_dirs() - directory records at or below a path prefix, like
 * ustate_list() does for keys (a file system moves them on rename).
 * Free the result with ustate_list_free().
 */
int ustate_list_dirs(ustate *s, const char *prefix, char ***paths, size_t *n);

/** ustate_dirents_free() - free the result of ustate_readdir(). */
void ustate_dirents_free(ustate_dirent *d, size_t n);

/**
 * ustate_meta_get() - the owner and mode kept with a key or a directory
 * record (see USTATE_OP_META).
 * @path:  a key, or "/" with USTATE_META_DIR.
 * @which: USTATE_META_KEY or USTATE_META_DIR.
 * @out:   receives the metadata, in caller memory.
 *
 * Return: 0; -ENOENT when none is kept (nothing exists at path, or what
 * exists has no metadata: the caller's default applies); -EINVAL,
 * -ENAMETOOLONG for a bad path or which; backend errors.
 */
int ustate_meta_get(ustate *s, const char *path, unsigned which,
		    ustate_meta *out);

/**
 * ustate_xattr_get() - one extended attribute of a key or record.
 * @path, @which: as for ustate_meta_get().
 * @value: receives a new buffer of *len bytes and a NUL (free() it).
 *
 * Return: 0; -ENODATA when path has no attribute of that name (or nothing
 * is at path); -ERANGE for a name over USTATE_XATTR_NAME_MAX, -EINVAL for
 * an empty one, a bad path or which; -ENOMEM; backend errors.
 */
int ustate_xattr_get(ustate *s, const char *path, unsigned which,
		     const char *name, void **value, size_t *len);

/**
 * ustate_xattr_list() - the names of a key's or record's extended
 * attributes, in byte order. Free them with ustate_list_free().
 *
 * Return: 0 (n may be 0); the errors of ustate_xattr_get() but -ENODATA.
 */
int ustate_xattr_list(ustate *s, const char *path, unsigned which,
		      char ***names, size_t *n);

/**
 * ustate_xattr_set() - set (value not NULL) or remove (NULL) one extended
 * attribute of a key or record, as one USTATE_OP_XATTR.
 * @flags: 0, USTATE_XATTR_CREATE or USTATE_XATTR_REPLACE (setxattr(2)'s).
 *
 * Return: 0; -ENOENT when nothing is at path; -ENODATA for a removal of
 * an absent name, or a REPLACE of one; -EEXIST for a CREATE of a present
 * one; -ERANGE (name over USTATE_XATTR_NAME_MAX), -E2BIG (value over
 * USTATE_XATTR_SIZE_MAX), -ENOSPC (the key's would total more than
 * USTATE_XATTR_TOTAL_MAX), -EINVAL (empty name, bad path, which or
 * flags); -EOPNOTSUPP on a backend that keeps none; -EROFS; backend
 * errors. On error nothing changed. The flags are checked against a read
 * just before the write: a writer elsewhere may act in between.
 */
int ustate_xattr_set(ustate *s, const char *path, unsigned which,
		     const char *name, const void *value, size_t len,
		     unsigned flags);

/**
 * ustate_compare_and_set() - write a key only if it is at a version.
 * @expected: the version the key must have; 0 means it must not exist.
 * @version:  if not NULL, receives the new version on success and the
 *            version found on -ECANCELED.
 *
 * Return: 0; -ECANCELED when the version differs; the errors of
 * ustate_set().
 */
int ustate_compare_and_set(ustate *s, const char *key, uint64_t expected,
			   const void *val, size_t len, uint64_t *version);

/**
 * ustate_create_if_not_exists() - write a key only if it does not exist.
 * @version: if not NULL, receives 1 on success and the existing version on
 *           -EEXIST.
 *
 * Return: 0; -EEXIST when the key exists; the errors of ustate_set().
 */
int ustate_create_if_not_exists(ustate *s, const char *key, const void *val,
				size_t len, uint64_t *version);

/**
 * ustate_transaction() - apply several operations atomically: all or none.
 * @ops: n operations, applied in order. A key may appear in several ops;
 *       every CHECK_VERSION and CHECK_CHILDREN compares against the
 *       state before the transaction (a CHECK_CHILDREN failure reports
 *       the number of keys found as res->found); CREATE and DELETE see the
 * earlier ops of the same transaction. All changes share one new store
 * revision; a transaction that changes nothing (only MKDIR and RMDIR that
 * were already done) takes none. For MKDIR and RMDIR, res->versions
 * holds 1 when the record changed, 0 for a no-op.
 * @res: if not NULL, receives the outcome (see ustate_txn_result).
 *
 * Return: 0; -ECANCELED (a check failed), -EEXIST (a create found its key),
 * -ENOENT (a delete found none), with res->failed and res->found set;
 * -ENOENT also for a META whose key does not exist then; -EINVAL (bad key,
 * op type, or metadata: a value_len other than sizeof(ustate_meta) or
 * USTATE_META_V1_SIZE, mode bits outside 07777, unknown flags;
 * res->failed names the op); -EOPNOTSUPP for
 * metadata on a backend that keeps none; -EFBIG; -E2BIG for more than
 * max_txn_ops ops; -EROFS; backend errors. On any error the store is
 * unchanged. For a META, res->versions gets the key's version.
 */
int ustate_transaction(ustate *s, const ustate_op *ops, size_t n,
		       ustate_txn_result *res);

/*
 * Leases: keys that live only as long as their owner keeps a lease alive
 * (etcd's leases, ZooKeeper's ephemeral nodes). A lease has a name, one
 * key segment ("node-1": the rules of a segment of a key, no "/"), a TTL
 * in whole seconds and a deadline on the wall clock (CLOCK_REALTIME, unix
 * time in milliseconds), kept in the store: it survives a restart.
 *
 *  - A SET or CREATE op with .lease attaches its key to the lease; a later
 *    SET or CREATE without one detaches it (etcd's rule), and so does a
 *    delete of the key. A write by another program that knows no leases
 *    (the sqlite3 shell, the Rust univrs-state) detaches the key too. A
 *    lease may have no keys. The library has no rename: a rename is a
 *    transaction of a DELETE and a SET, and the key keeps its lease only
 *    if that SET names it again.
 *  - At the deadline, or at ustate_lease_revoke(), the lease ends and
 *    every key attached to it is deleted in one transaction: one
 *    revision, whose USTATE_EVENT_DELETED events watchers get as for any
 *    delete (none when it had no keys, and then no revision either).
 *  - Every store open for writing expires the leases whose deadline has
 *    passed: at open, before ustate_open*() returns (so a lease that ran
 *    out while no process had the store open is gone before the opener
 *    writes anything), and from then on within a second of each deadline,
 *    from a thread of its own, for as long as it is open. Several
 *    processes may have one SQLite file open: whichever comes first
 *    expires the lease, exactly once. A lease past its deadline and not
 *    yet expired counts as expired: writes naming it fail with -ENOENT,
 *    ustate_lease_get() and ustate_lease_keepalive() say -ENOENT.
 *  - A read-only store never expires leases; it reports those past their
 *    deadline as gone, while their keys stay until a writer comes.
 *  - A backend without leases answers every call here, and a SET or
 *    CREATE with a lease, -EOPNOTSUPP. The etcd backend maps leases onto
 *    etcd's own: the server keeps the clock and expires them; its TTL has
 *    a minimum (about 2 s, a shorter one is raised and the TTL granted is
 *    reported), a grant of a live lease keeps its first TTL, and time
 *    left is told in whole seconds.
 *
 * Threads: every call below is safe from any thread, as all store calls
 * are; several threads (or processes) may grant, keep alive and revoke
 * the same lease, each call taking effect whole.
 */

#define USTATE_LEASE_TTL_MAX 315360000 /* seconds in a TTL: ten years */

/** What a lease is, as ustate_lease_get() and the others report it. */
typedef struct ustate_lease_info {
	char *name;	      /* the lease's name */
	int64_t ttl;	      /* seconds, as granted */
	int64_t deadline;     /* unix time in ms when it expires */
	int64_t remaining_ms; /* ms left when the store answered, >= 0 */
	char **keys;	      /* ustate_lease_get() only: the keys attached,
			       * in byte order; NULL when nkeys is 0 */
	size_t nkeys;
	/* since libustate 0.6 (the library allocates this struct) */
	uint32_t flags;		 /* USTATE_LEASE_OWNED, or 0 */
	uint32_t uid, gid, mode; /* with USTATE_LEASE_OWNED: its owner */
} ustate_lease_info;

/*
 * A lease may have an owner: a uid, a gid and permission bits (07777 at
 * most), kept in the store with the lease and gone with it, for a file
 * system's lease files. The store only keeps them, as it keeps a key's
 * ustate_meta; it checks nothing against them. A lease granted without
 * one (ustate_lease_grant(), or a library older than 0.6) has none.
 */
#define USTATE_LEASE_OWNED 0x1 /* ustate_lease_info.uid, gid, mode are kept */

/**
 * ustate_lease_info_free() - free a lease description and all it points
 * to. NULL is a no-op.
 */
void ustate_lease_info_free(ustate_lease_info *info);

/**
 * ustate_lease_grant() - make a lease, or refresh one: its TTL becomes
 * ttl and its deadline now + ttl. The keys of an existing lease stay
 * attached.
 * @name: the lease's name, one key segment.
 * @ttl:  seconds, 1 .. USTATE_LEASE_TTL_MAX.
 * @out:  if not NULL, receives a new description (without keys), owned
 *        by the caller (ustate_lease_info_free()).
 *
 * Return: 0; -EINVAL for a bad name or ttl; -ENAMETOOLONG for a name over
 * USTATE_SEGMENT_MAX bytes; -EROFS; -ENOMEM; -EOPNOTSUPP; the errors of
 * ustate_set(). On an error nothing changed.
 */
int ustate_lease_grant(ustate *s, const char *name, int64_t ttl,
		       ustate_lease_info **out);

/**
 * ustate_lease_grant_owned() - ustate_lease_grant() that gives a lease it
 * makes an owner: owner->uid, gid and mode (its other fields are not
 * read). A refresh of a live lease keeps the owner it has (or none), as
 * open(2) with O_CREAT keeps an existing file's: the owner is its
 * creator's. Since libustate 0.6.
 * @owner: the owner, read during the call; NULL: as ustate_lease_grant().
 *
 * Return: those of ustate_lease_grant(); -EINVAL also for a mode over
 * 07777.
 */
int ustate_lease_grant_owned(ustate *s, const char *name, int64_t ttl,
			     const ustate_meta *owner, ustate_lease_info **out);

/**
 * ustate_lease_set_owner() - give a live lease the owner owner->uid, gid
 * and mode (chmod and chown of its file), replacing the one it has. Its
 * deadline and keys do not change. Since libustate 0.6.
 * @owner: read during the call.
 *
 * Return: 0; -ENOENT when there is no such lease (or it expired);
 * -EINVAL for a bad name, a NULL owner or a mode over 07777; the errors
 * of ustate_lease_grant().
 */
int ustate_lease_set_owner(ustate *s, const char *name,
			   const ustate_meta *owner);

/**
 * ustate_lease_keepalive() - move the deadline of a live lease to now +
 * its TTL.
 * @out: as for ustate_lease_grant().
 *
 * Return: 0; -ENOENT when there is no such lease (or it expired);
 * -EINVAL, -ENAMETOOLONG for a bad name; the errors of
 * ustate_lease_grant().
 */
int ustate_lease_keepalive(ustate *s, const char *name,
			   ustate_lease_info **out);

/**
 * ustate_lease_revoke() - end a lease now: its keys are deleted in one
 * transaction (one revision), and the lease is gone.
 *
 * Return: 0; -ENOENT when there is no such lease (or it expired: its keys
 * are gone then too); -EINVAL, -ENAMETOOLONG for a bad name; -EROFS;
 * -EOPNOTSUPP; the errors of ustate_set().
 */
int ustate_lease_revoke(ustate *s, const char *name);

/**
 * ustate_lease_get() - describe a live lease, with its keys.
 * @out: receives a new description, owned by the caller
 *       (ustate_lease_info_free()).
 *
 * Return: 0; -ENOENT when there is no such lease (or it expired);
 * -EINVAL, -ENAMETOOLONG for a bad name, -EINVAL for a NULL out; -ENOMEM;
 * -EOPNOTSUPP; backend errors.
 */
int ustate_lease_get(ustate *s, const char *name, ustate_lease_info **out);

/**
 * ustate_lease_list() - the names of the live leases, in byte order.
 * @names: receives a new array of *n names, owned by the caller
 *         (ustate_list_free()); NULL when *n is 0.
 *
 * Return: 0; -EINVAL for a NULL names or n; -ENOMEM; -EOPNOTSUPP; backend
 * errors.
 */
int ustate_lease_list(ustate *s, char ***names, size_t *n);

/**
 * ustate_set_leased() - ustate_set() that attaches the key to a lease
 * (lease NULL: detaches it, as ustate_set() does).
 *
 * Return: the codes of ustate_set(); -ENOENT when the lease does not
 * exist or expired (nothing is written); -EINVAL, -ENAMETOOLONG for a bad
 * lease name; -EOPNOTSUPP.
 */
int ustate_set_leased(ustate *s, const char *key, const void *val, size_t len,
		      const char *lease, uint64_t *version);

/**
 * ustate_barrier() - make the reads that follow, through this handle, see
 * every write that completed anywhere before the call. A store opened
 * with a replica at USTATE_CONSISTENCY_LOCAL (see "Replicas") makes one
 * quorum read of etcd's revision (shared by the calls waiting at the
 * same moment), and its reads then wait for the replica to reach it (or
 * ask etcd). Every other store's reads see every commit already: 0 at
 * once. This is close-to-open consistency: ustatefs calls it at each
 * open.
 *
 * Return: 0; -ETIMEDOUT, -ENOTCONN, -ECONNREFUSED when etcd gives no
 * quorum revision (the reads that follow would be stale: refuse them).
 */
int ustate_barrier(ustate *s);

/**
 * ustate_connected() - whether the store reaches its server: 1, or 0 for
 * an etcd store whose replica's watch has lost its cluster (no member
 * answered it; its reads at USTATE_CONSISTENCY_LOCAL go on from the
 * replica, at the revision it had), or whose last request found no
 * member (without a replica). A local store (SQLite, memory) is always
 * connected: 1.
 */
int ustate_connected(ustate *s);

/**
 * ustate_revision() - the current store revision: the number of committed
 * changes (a transaction counts once), including those of other processes
 * sharing the file. 0 for a new store; 0 also on a backend error.
 */
uint64_t ustate_revision(ustate *s);

/**
 * ustate_watch_open() - start a stream of changes.
 * @out:            receives the watch; close it with ustate_watch_close()
 *                  before closing the store.
 * @pattern:        an exact key, or a prefix followed by "*" ("/a/" + "*"
 * matches every key under /a/; "*" matches every key).
 * @start_revision: 0 for changes from now on; otherwise the first revision
 *                  to report, replayed from the retained history.
 *
 * Events come in revision order, without gaps or duplicates, and include
 * changes made by other processes on the same SQLite file.
 *
 * Return: 0; -EINVAL for a bad pattern; -ENAMETOOLONG for one over
 * USTATE_KEY_MAX + 1 bytes, or whose key breaks a length limit; -ENODATA
 * when start_revision is older than the retained history; -ENOMEM;
 * -EMFILE.
 */
int ustate_watch_open(ustate_watch **out, ustate *s, const char *pattern,
		      uint64_t start_revision);

/**
 * ustate_watch_fd() - a descriptor that polls readable while an event is
 * pending. It belongs to the watch: do not read or close it.
 */
int ustate_watch_fd(ustate_watch *w);

/**
 * ustate_watch_next() - take the next event.
 * @ev:         receives the event.
 * @timeout_ms: how long to wait: 0 not at all, -1 for ever.
 *
 * Return: 0; -EAGAIN when none arrived in time; -EOVERFLOW when the watch
 * fell behind the retained history and events were lost:
 * reopen it from ustate_revision() after re-reading state (on etcd, also
 * when etcd compacted away revisions the watch had not read while its
 * client was cut off); -EINTR.
 */
int ustate_watch_next(ustate_watch *w, ustate_event *ev, int timeout_ms);

/** ustate_watch_close() - end a watch. NULL is a no-op. */
void ustate_watch_close(ustate_watch *w);

/**
 * ustate_key_valid() - check a key against the rules above.
 * Return: 0, -EINVAL or -ENAMETOOLONG.
 */
int ustate_key_valid(const char *key);

/**
 * ustate_strerror() - explain a code returned by this library, in the
 * store's terms (-ECANCELED is a version conflict, ...). Accepts err or
 * -err. The string is static.
 */
const char *ustate_strerror(int err);

/**
 * Transaction scripts: the text protocol of the filesystem's /.txn file
 * and of `ustate txn`, documented in the README. A script is fed in pieces
 * of any size; the piece that completes "commit" runs the transaction.
 */
typedef struct ustate_script ustate_script;

/**
 * ustate_script_new() - start a script on a store.
 * @out: receives the script; free it with ustate_script_free(). It borrows
 *       s, which must outlive it.
 * Return: 0; -ENOMEM.
 */
int ustate_script_new(ustate_script **out, ustate *s);

/**
 * ustate_script_feed() - parse more of the script.
 * Return: 0 when more input is expected; 1 when the piece completed
 * "commit" and the transaction committed, or when it holds only newlines
 * after such a piece; a negative errno when the script failed, now or
 * earlier: -ECANCELED (a check), -EEXIST (a create), -ENOENT (a delete),
 * -EINVAL (malformed, or input other than newlines after the end), -EFBIG,
 * -E2BIG, or an error of ustate_transaction(). Nothing is written unless
 * the result is 1. The reply says what happened, and on which line.
 */
int ustate_script_feed(ustate_script *sc, const void *buf, size_t len);

/**
 * ustate_script_reply() - the reply so far (empty before the end).
 * @len: receives its length. The text stays valid until the next call on
 * sc. It may hold the raw bytes of values (after a get).
 */
const char *ustate_script_reply(ustate_script *sc, size_t *len);

/**
 * ustate_script_check_fn - vets one op of a script before it runs.
 * @arg: as given to ustate_script_set_check().
 * @op:  the op, valid for the call only: USTATE_OP_CHECK_VERSION for a
 *       check and for a get (both read the key), USTATE_OP_SET, CREATE or
 *       DELETE.
 *
 * Called for every op, in order, each time the script runs (a get that
 * changed under the transaction runs it again), before it reads or
 * writes anything. Return 0 to allow the op, or a negative errno
 * (-EACCES, -EPERM) to refuse it: the script then fails with that code,
 * nothing is read or written, and the reply names the op's line and key.
 */
typedef int (*ustate_script_check_fn)(void *arg, const ustate_op *op);

/**
 * ustate_script_set_check() - have fn vet each op of sc (NULL: none).
 * It lets a caller, such as a file system, apply its own rules; the store
 * knows nothing of users.
 */
void ustate_script_set_check(ustate_script *sc, ustate_script_check_fn fn,
			     void *arg);

/**
 * ustate_script_set_owner() - give keys the script creates an owner.
 * @m: its owner and mode are copied (not its times: a program built
 *     against libustate 0.4 passes the shorter struct); NULL for none
 *     (the default). Each key that the script
 *     leaves with a value and that is new (absent before the script
 *     ran, or deleted earlier in it) gets m as its metadata
 *     (USTATE_OP_META), in the same transaction; a key that another
 *     writer creates meanwhile makes the script run again, and then it
 *     keeps its owner. Those ops count towards max_txn_ops.
 */
void ustate_script_set_owner(ustate_script *sc, const ustate_meta *m);

/** ustate_script_result() - 1 committed, 0 not finished, <0 failed. */
int ustate_script_result(ustate_script *sc);

/**
 * ustate_script_revision() - the store revision of the script's commit
 * when it wrote a key; 0 when it only read or checked, or while it has not
 * committed (or failed). Since 0.3.
 */
uint64_t ustate_script_revision(ustate_script *sc);

/** ustate_script_free() - discard a script. NULL is a no-op. */
void ustate_script_free(ustate_script *sc);

/*
 * Administration, for operators and the `ustate` command: export and
 * restore of every key with its metadata, online backup, the integrity
 * check, and compaction of the change history. A backend may lack any of
 * these calls; it then returns -EOPNOTSUPP.
 */

/** Kinds of record that an export gives and a restore takes. */
typedef enum ustate_record_type {
	USTATE_RECORD_KEY = 1,	 /* a key with its value and metadata */
	USTATE_RECORD_DIR = 2,	 /* a directory record (see ustate_node()) */
	USTATE_RECORD_LEASE = 3, /* since 0.6: a lease (ustate_lease_grant()) */
} ustate_record_type;

/** One extended attribute of a record (since 0.5); pointers borrowed. */
typedef struct ustate_xattr {
	const char *name;
	const void *value;
	size_t value_len;
} ustate_xattr;

/** One key or directory record; every pointer is borrowed. */
typedef struct ustate_record {
	ustate_record_type type;
	const char *key;       /* the key, or the path of the record */
	const void *value;     /* KEY: value_len bytes */
	size_t value_len;      /* KEY */
	uint64_t version;      /* KEY: >= 1 */
	int64_t created_at;    /* KEY: unix seconds */
	int64_t updated_at;    /* KEY: unix seconds */
	uint64_t mod_revision; /* KEY, set by an export only: the revision
				* of the last change; a restore ignores it */
	/*
	 * since libustate 0.5: the metadata of the key or record, NULL for
	 * none, and its extended attributes, nxattrs of them in byte order of
	 * their names. A restore gives the key or record exactly these (a
	 * program built before, which sets neither, restores none), and a
	 * DIR record of "/" gives the root its own.
	 */
	const ustate_meta *meta;
	const ustate_xattr *xattrs;
	size_t nxattrs;
	/*
	 * since libustate 0.6: leases. A LEASE record has the lease's name
	 * in key, its TTL in ttl and its owner in meta (uid, gid and mode
	 * alone; NULL: none); a KEY record names the lease its key is
	 * attached to in lease (NULL: none).
	 */
	const char *lease; /* KEY */
	int64_t ttl;	   /* LEASE: seconds, 1 .. USTATE_LEASE_TTL_MAX */
} ustate_record;

/**
 * ustate_export_fn - receives one record of ustate_export(). The record
 * and what it points to stay valid until the function returns. Return 0
 * to go on, or a negative errno that ends the export and that
 * ustate_export() returns.
 */
typedef int (*ustate_export_fn)(void *arg, const ustate_record *r);

/**
 * ustate_export() - every key and directory record at or below a prefix,
 * from one consistent snapshot of the store, in byte order of their paths
 * (a key before a directory record of the same path), each with its
 * metadata and extended attributes. When prefix is "" or "/" and the root
 * has metadata or extended attributes, a DIR record of "/" comes first,
 * read just before the snapshot. Then (since libustate 0.6) a LEASE
 * record of each live lease, in byte order of their names: of every lease
 * when prefix is "" or "/", else of those with a key at or below it; each
 * KEY record names its key's lease. A program built before 0.6 calls
 * ustate_export@USTATE_0.1, which gives it no LEASE records.
 * @prefix: a plain string prefix, as for ustate_list().
 * @fn:     called once per record, in order. It must not call the store
 *          s: the memory backend holds its lock meanwhile, which also
 *          keeps writers of that store waiting until the export ends.
 *
 * Return: 0; -EINVAL, -ENAMETOOLONG for a bad prefix; the error fn
 * returned; -ENOMEM; -EOPNOTSUPP; backend errors.
 */
int ustate_export(ustate *s, const char *prefix, ustate_export_fn fn,
		  void *arg);

/**
 * ustate_import_fn - gives ustate_restore() its next record. Fill *r and
 * return 1; return 0 at the end of the input, or a negative errno that
 * ends the restore, unchanged, and that ustate_restore() returns. What r
 * points to must stay valid until the next call.
 */
typedef int (*ustate_import_fn)(void *arg, ustate_record *r);

/* Flags of ustate_restore(); at most one of them. */
#define USTATE_RESTORE_MERGE 0x1   /* into a store that has keys */
#define USTATE_RESTORE_REPLACE 0x2 /* the store becomes the records */

/** What a restore did. */
typedef struct ustate_restore_result {
	uint64_t keys;	   /* key records read */
	uint64_t dirs;	   /* directory records read */
	uint64_t written;  /* keys created or changed; the others were
			    * already identical and were left alone */
	uint64_t deleted;  /* keys removed (USTATE_RESTORE_REPLACE) */
	uint64_t revision; /* store revision after the restore */
} ustate_restore_result;

/**
 * ustate_restore() - write records, with the versions and timestamps they
 * carry, as one atomic change: all of them or, on any error, none.
 * @next:  called until it returns 0 (or an error) for the records; it may
 *         give them in any order. It must not write to the store s (the
 *         SQLite backend holds its writer meanwhile).
 * @flags: 0: the store must be empty (no key and no directory record),
 *         else -ENOTEMPTY before next is first called; the store then
 *         holds exactly the records, at their versions and timestamps.
 *         USTATE_RESTORE_MERGE: a record replaces the key of the same
 *         name (its version may go down, so a client that read the key
 *         before may see a version it saw before with another value);
 *         other keys stay. USTATE_RESTORE_REPLACE: like MERGE, and every
 *         key and directory record that is not among the records is
 *         removed.
 * @res:   if not NULL, receives what was done (on success only).
 *
 * Leases (since libustate 0.6): a LEASE record makes its lease, or
 * refreshes the live one of its name, with the record's TTL and owner
 * and a deadline a whole TTL from now (as etcd gives the leases of a
 * restored snapshot); a KEY record's key is attached to the lease it
 * names, which a LEASE record or the store must have (-ENOENT), and a
 * KEY record without one detaches its key. USTATE_RESTORE_REPLACE also
 * ends the leases that no record gives (their keys not among the records
 * are removed anyway). A store with leases but no keys counts as empty.
 *
 * A key whose value, version and timestamps already equal its record is
 * not written. The changes take one new store revision; the SQLite
 * backend gives every 2^20 - 1 changes a revision of their own, all in
 * the same commit. Watches see CREATED for new keys, UPDATED for replaced
 * ones (with the restored version) and DELETED for removed ones. The
 * SQLite backend holds the database's write lock while it reads the
 * records, so other writers wait (and may time out with -EBUSY).
 *
 * Return: 0; -ENOTEMPTY; for the record next gave last: -EINVAL (bad
 * type or key, version 0 or over 2^63 - 1, a bad lease name or TTL),
 * -ENAMETOOLONG, -EFBIG (a value over max_value_size), -EEXIST (a key,
 * directory or lease given twice); -ENOENT (a key names a lease that
 * neither the records nor the store have);
 * -EINVAL for both flags; -EROFS; the error next returned; -ENOMEM;
 * -EOPNOTSUPP; backend errors.
 */
int ustate_restore(ustate *s, ustate_import_fn next, void *arg, unsigned flags,
		   ustate_restore_result *res);

/**
 * ustate_progress_fn - reports how far a long call is: done of total
 * bytes. Return 0 to go on, or a negative errno that stops the call,
 * which then returns it.
 */
typedef int (*ustate_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Flags of ustate_backup(). */
#define USTATE_BACKUP_FORCE 0x1 /* replace an existing file at path */

/**
 * ustate_backup() - an online, consistent copy of the store into a new
 * SQLite file, which ustate_open_sqlite() opens as it would the store.
 * The copy is of one snapshot, taken in steps: writers, of this process
 * and of others, go on meanwhile (the store's write-ahead log lets a
 * reader keep a snapshot without blocking them; the log grows until the
 * copy ends). The copy goes to a new temporary file beside path, mode
 * 0600, which replaces path only once it is complete and on disk: path
 * never holds a partial copy.
 * @path:     the file to make; it must not exist unless flags has
 *            USTATE_BACKUP_FORCE.
 * @progress: NULL, or called after each step with the bytes copied.
 *
 * Return: 0; -EEXIST when path exists; -EINVAL for an empty path or
 * unknown flags; -EOPNOTSUPP for a store that is no file (memory: export
 * it instead); the error progress returned; errors of the file system
 * (-EACCES, -ENOENT for a missing directory, -ENOSPC ...); -EBUSY;
 * backend errors.
 */
int ustate_backup(ustate *s, const char *path, unsigned flags,
		  ustate_progress_fn progress, void *arg);

/** One problem that ustate_check() found; every pointer is borrowed. */
typedef struct ustate_problem {
	const char *check;  /* the rule broken, a short name such as
			     * "keyrev-missing" (the README lists them) */
	const char *key;    /* the key or path concerned, or NULL */
	const char *detail; /* what is wrong, a sentence */
} ustate_problem;

/**
 * ustate_problem_fn - receives one problem of ustate_check(), valid until
 * it returns. Return 0 to go on, or a negative errno that ends the check
 * and that ustate_check() returns.
 */
typedef int (*ustate_problem_fn)(void *arg, const ustate_problem *p);

/**
 * ustate_check() - verify a store: the backend's own integrity check
 * (SQLite's PRAGMA integrity_check) and every invariant the store keeps
 * (each key has a version >= 1 and a revision, the change history agrees
 * with the keys, and so on), on one consistent snapshot.
 * @fn: NULL, or called once per problem.
 *
 * Return: the number of problems found, 0 when the store is sound (at
 * most INT_MAX); -EUCLEAN when the file is too damaged to be read; the
 * error fn returned; -ENOMEM; -EOPNOTSUPP; backend errors.
 */
int ustate_check(ustate *s, ustate_problem_fn fn, void *arg);

/**
 * ustate_compact() - drop the change history older than a revision, for
 * good (the "history" option trims it too, as commits go on). A watch
 * that asks for a dropped revision gets -ENODATA, one still reading
 * there -EOVERFLOW; keys, versions and the revision do not change.
 * @revision: the oldest revision whose changes stay; 1 drops nothing,
 *            ustate_revision() + 1 drops all.
 * @removed:  if not NULL, receives the number of changes dropped.
 *
 * Return: 0; -EINVAL when revision is 0 or past ustate_revision() + 1;
 * -EROFS; -EOPNOTSUPP; backend errors.
 */
int ustate_compact(ustate *s, uint64_t revision, uint64_t *removed);

#ifdef __cplusplus
}
#endif

#endif /* USTATE_H */
