/* SPDX-License-Identifier: MIT */
/*
 * This file declares the parts of the ustatefs daemon: the inode table
 * (nodes.c), the FUSE operations (ops.c) and the daemon's shared state.
 * The daemon touches state only through <ustate.h>.
 */
#ifndef USTATEFS_FS_I_H
#define USTATEFS_FS_I_H

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>

#include <ustate.h>

/*
 * Room for a path of the mount: a key, or a key's DIR/.value (7 more
 * bytes). Keys themselves stay within USTATE_KEY_MAX: the store says so.
 */
#define FS_PATH_MAX (USTATE_KEY_MAX + 16)

/* What a path of the mount is. */
enum node_kind {
	KIND_NONE = 0,
	KIND_DIR,    /* a directory: keys or records below, or the root */
	KIND_FILE,   /* a key without children */
	KIND_VALUE,  /* DIR/.value: the value of a key that has children */
	KIND_TXN,    /* /.txn */
	KIND_LEASES, /* /.leases */
	KIND_LEASE,  /* /.leases/NAME */
};

struct node_xattr {
	char *name; /* then, after its NUL, the value */
	size_t len; /* of the name, its NUL and the value */
};

struct node {
	fuse_ino_t ino;
	char *path;	     /* protected by the table lock */
	uint64_t nlookup;    /* protected by the table lock */
	unsigned creating;   /* writers of a key not yet committed,
			      * protected by the table lock */
	uint64_t cached;     /* revision whose bytes the kernel's page
			      * cache may hold, protected by the table lock */
	unsigned pc_users;   /* opens reading through the page cache,
			      * protected by the table lock */
	unsigned writers;    /* opens for writing, protected by the table
			      * lock */
	uint64_t attr_rev;   /* revision whose size the kernel caches as
			      * valid (0: none), protected by the table lock */
	unsigned replying;   /* attribute replies under way, protected by
			      * the table lock (see node_reply_begin()) */
	uint64_t reply_rev;  /* ... the revision they tell, protected by
			      * the table lock */
	bool reply_mixed;    /* ... or they tell several, protected by
			      * the table lock */
	unsigned notifying;  /* invalidations under way, protected by the
			      * table lock (see node_notify_begin()) */
	mode_t type;	     /* S_IFREG or S_IFDIR as the kernel was told
			      * (0: not yet), protected by the table lock */
	unsigned committing; /* commits of open files under way,
			      * protected by the table lock */
	unsigned expecting;  /* opens whose commit waits for their release,
			      * protected by the table lock */
	uint64_t generation; /* +1 at each unlink of the path,
			      * protected by the table lock */
	unsigned unlinking;  /* unlinks and renames over the path under
			      * way, protected by the table lock */
	uint64_t deleted;    /* store revision of the last delete of the
			      * path by another process that the replay
			      * heard of, protected by the table lock */
	bool orphan;	     /* replaced by a rename, or a ghost: out of
			      * the path index, protected by the table
			      * lock */
	bool ghost;	     /* made for the replayer alone (see
			      * node_ghost()), set at creation */
	bool has_meta;	     /* owner and mode of a key being created, */
	ustate_meta meta;    /* till its first commit; protected by the
			      * table lock */
	struct node_xattr *xattrs; /* user xattrs of a key being created, */
	size_t nxattrs;		   /* protected by the table lock */
	bool has_mtime;		   /* a time set by hand while writers were */
	int64_t mtime;		   /* open, for their next commit (unix ns);
				    * protected by the table lock */
	bool gone;		   /* unlinked (or renamed over) while open, */
	ustate_meta last;	   /* with this owner and mode; protected by
				    * the table lock */
	struct node *next_ino, *next_path; /* hash chains */
};

struct fs {
	ustate *store;
	struct fuse_session *se;
	char *mountpoint; /* absolute, for the replay's own requests */
	bool read_only;
	bool permissions; /* default_permissions: others may come in */
	bool debug;
	bool single;	     /* -s: one thread serves every request */
	bool background;     /* no -f: the daemon leaves the terminal once
			      * the mount is live, its helpers at once */
	double timeout;	     /* entry cache, seconds */
	double attr_timeout; /* attribute cache, seconds */
	bool direct_io;	     /* no page cache for readers either */
	bool noopen;	     /* no OPEN requests (read-only) */
	bool barrier;	     /* each open: ustate_barrier() (close-to-open
			      * reads of an etcd replica) */
	size_t max_value;    /* the store's maximum value size */
	size_t max_buffered; /* bytes all open files may hold */
	uid_t uid;
	gid_t gid;
	struct timespec started;
	ustate_watch *watch; /* every change, for cache invalidation */
	pthread_t watcher;
	bool watching;
	bool closing; /* unmounting: no more notifications (atomic) */
};

extern struct fs fs;

/*
 * Tell the kernel to drop its cached attributes (off < 0) or also its
 * pages from off (len 0: to the end) of ino; of the dentry name in
 * parent. No-ops once the daemon unmounts (fs.closing): the connection
 * is gone, and libfuse would complain of a bad descriptor.
 */
static inline void kernel_forget_inode(fuse_ino_t ino, off_t off, off_t len)
{
	if (!__atomic_load_n(&fs.closing, __ATOMIC_ACQUIRE))
		fuse_lowlevel_notify_inval_inode(fs.se, ino, off, len);
}

static inline void kernel_forget_entry(fuse_ino_t parent, const char *name)
{
	if (!__atomic_load_n(&fs.closing, __ATOMIC_ACQUIRE))
		fuse_lowlevel_notify_inval_entry(fs.se, parent, name,
						 strlen(name));
}

/* Whether USTATE_NODE_* flags make a path a directory. */
static inline bool flags_dir(unsigned flags)
{
	return flags & (USTATE_NODE_CHILDREN | USTATE_NODE_RECORD);
}

/* nodes.c: the inode table. Paths are keys ("/" is the root). */
int nodes_init(void);
void nodes_destroy(void);
/* The node of path with its lookup count raised by one; NULL on ENOMEM. */
struct node *node_lookup(const char *path);
/* Copy the path of ino into buf (FS_PATH_MAX bytes); -ESTALE. */
int node_path(fuse_ino_t ino, char *buf);
struct node *node_of(fuse_ino_t ino);
void node_forget(fuse_ino_t ino, uint64_t n);
/* The parent directory of path into dir; returns the last segment. */
const char *path_split(const char *path, char *dir);
/* The inode number path has or would get (readdir's d_ino). */
fuse_ino_t node_ino_for(const char *path);
/* After a rename: every live node at or below from moves to to. */
void node_move(const char *from, const char *to);
/*
 * A node for the replayer alone, looked up once: of path, but out of the
 * path index, with a number no path is given. What the replayer's entry
 * tells of a file that the store does not have (any more) goes to it, and
 * never to the inode that readers of the key share.
 */
struct node *node_ghost(const char *path);
bool node_is_ghost(fuse_ino_t ino);
/* The live node of path, or 0. */
fuse_ino_t node_find(const char *path);
/* Creating writers: count them, and find them for lookup and readdir. */
void node_creating(struct node *n, int delta);
bool node_is_creating(const char *path);
/* Call fn for each name directly below dir with a creating writer. */
void node_each_creating(const char *dir,
			void (*fn)(void *arg, const char *name), void *arg);
/*
 * Commits of open files. node_commit_begin() claims one for an open made
 * at generation gen; false when an unlink ended the name since. RELEASE
 * is asynchronous (close() returns before the daemon has handled it), so
 * node_settle() waits until no commit of path is under way: the request
 * a process makes right after close() sees what that close committed.
 * node_deleted() waits likewise, then ends the name of every open file
 * of path made before another process deleted the key at store revision
 * rev: their later commits must not bring the key back. A file opened
 * since (rev at its open >= rev) keeps its name: it came after the delete.
 *
 * An unlink or a rename over path that has yet to commit is bracketed by
 * node_unlink_begin() (which waits for commits under way, as above) and
 * node_unlink_end(): meanwhile node_commit_begin() waits, for a commit
 * then must neither be dropped (the unlink may fail and leave the name)
 * nor land after the unlink (which would bring the key back).
 */
bool node_commit_begin(struct node *n, uint64_t gen, uint64_t rev);
/* created: the commit landed a creation, which is then no longer pending. */
void node_commit_end(struct node *n, bool created);
void node_settle(const char *path);
/*
 * A flush found a truncation or creation with nothing written: its commit
 * comes at the release. node_settle() waits for it a short while.
 */
void node_expect(struct node *n, int delta);
void node_deleted(const char *path, uint64_t rev);
/* The node of path, held until node_unlink_end(); NULL when none. */
/* creating (may be NULL): whether, once commits under way have landed,
 * path still has a creation that no commit has made a key of. */
struct node *node_unlink_begin(const char *path, bool *creating);
/* done: the unlink happened, open files lose the name; NULL is a no-op. */
void node_unlink_end(struct node *n, bool done);
uint64_t node_generation(struct node *n);
/*
 * The kernel's caches of a file (see "Caching" in ops.c). A reader may
 * read through the page cache when no writer has the file open and every
 * other such reader has the same revision: node_cache_open() says
 * whether, and whether the pages cached are already those of rev. For
 * CACHE_INVAL the caller drops the kernel's pages, then calls
 * node_cache_ready(); until then other readers read directly. For
 * CACHE_ATTRS (the pages are rev's, the size the kernel may trust is
 * not known to be) it drops the kernel's attributes. Only the first
 * reader of the page cache is told either: a drop while others read
 * would make the kernel drop their refreshes of the size under way.
 * node_writer() counts writers; a new one first waits a short while for
 * the page-cache readers to close. node_attr_valid() records the
 * revision whose size an attribute reply tells the kernel and returns
 * how long the kernel may trust it: 0 while page-cache readers of
 * another revision are open, or a writer (whose own stats tell its
 * edits). node_attr_drop() records that it must not trust any.
 */
enum cache_use { CACHE_DIRECT, CACHE_KEEP, CACHE_ATTRS, CACHE_INVAL };
enum cache_use node_cache_open(struct node *n, uint64_t rev);
void node_cache_ready(struct node *n, uint64_t rev);
void node_cache_close(struct node *n);
void node_writer(struct node *n, int delta);
double node_attr_valid(fuse_ino_t ino, uint64_t rev);
/*
 * Around every reply that tells the kernel a file's size, of revision rev
 * (0: of no revision, a writer's): a size other than their snapshot's
 * would cut short (or pad) readers of the page cache that hold another
 * revision, so node_reply_begin() waits a short while for them to close,
 * and until node_reply_done() no reader of another revision starts on
 * the page cache (node_cache_open() says CACHE_DIRECT).
 */
void node_reply_begin(fuse_ino_t ino, uint64_t rev);
void node_reply_done(fuse_ino_t ino);
/*
 * Around an invalidation of ino for a change of revision rev (the
 * watcher's, or this mount's own commit). A notification makes the
 * kernel drop every attribute reply under way, a page-cache reader's
 * refresh of its size among them: false when readers of the page cache
 * hold rev or later already (nothing to drop); else readers of an older
 * revision are waited for a short while, and until node_notify_done() no
 * reader starts on the page cache.
 */
bool node_notify_begin(fuse_ino_t ino, uint64_t rev);
void node_notify_done(fuse_ino_t ino);
void node_attr_drop(fuse_ino_t ino);
/*
 * The file type the kernel has for ino. When the path changed type since
 * (a file key gained a child elsewhere), requests on the old inode get
 * ESTALE: the kernel then looks the path up again (a GETATTR of another
 * type would make it mark the inode bad: EIO).
 */
void node_set_type(fuse_ino_t ino, mode_t mode);
bool node_type_is(fuse_ino_t ino, mode_t mode);
/*
 * The owner and mode of a key being created (it has no key to keep them
 * until its first commit): node_set_meta() sets them, node_meta() says
 * whether n has a creating writer with some, and gives them.
 */
void node_set_meta(struct node *n, const ustate_meta *m);
bool node_meta(struct node *n, ustate_meta *m);
/*
 * A time set by hand on a file that writers have open: node_set_mtime()
 * keeps it for the next commit of one of them (cp -p sets it before its
 * close), which node_take_mtime() hands over; node_wrote() (a write, a
 * truncation) ends it, and the time a creating writer's metadata holds.
 */
void node_set_mtime(struct node *n, int64_t ns);
/*
 * The user xattrs of a key being created, for its first commit:
 * node_set_xattr() sets (value not NULL) or removes one, with
 * USTATE_XATTR_CREATE or _REPLACE and the store's limits (-ENOENT when n
 * creates no key any more); node_xattrs() says whether n is creating, and
 * gives a copy of them (free it with node_xattrs_free()), each its name,
 * a NUL and its value, len bytes in all: the value of an XATTR op.
 */
int node_set_xattr(struct node *n, const char *name, const void *value,
		   size_t len, unsigned flags);
bool node_xattrs(struct node *n, struct node_xattr **copy, size_t *count);
void node_xattrs_free(struct node_xattr *x, size_t count);
bool node_take_mtime(struct node *n, int64_t *ns);
void node_wrote(struct node *n);
/*
 * A file unlinked or renamed over while it is open: node_gone() takes n
 * out of the path index (as an orphan), so that a key made again at its
 * path gets a node and an inode of its own, and keeps m, its owner and
 * mode, for the fstat() of its open files. node_unlinked() says whether
 * ino is such a file (an orphan other than a ghost or a directory) and
 * gives its owner and mode, when kept, into *m.
 */
void node_gone(struct node *n, const ustate_meta *m);
bool node_unlinked(fuse_ino_t ino, ustate_meta *m);

/*
 * perm.c: owners and modes (see the comment there). meta_of() gives the
 * metadata of a key (dir false) or directory, or the default: the
 * mounting user, 0644 files, 0755 directories. meta_attr() fills the
 * owner, group and permission bits of st for what is at `at` (the path of
 * a directory, the key of a file), or for the key node n is creating
 * (not NULL). meta_new() is what req's caller creates in dir with mode
 * (from which the kernel took the umask). meta_setattr() stores SETATTR's
 * mode, uid and gid. meta_create() commits the first value of the key
 * node n creates, with n's metadata, attached to lease (NULL: none; a key
 * another writer created meanwhile gets a plain set). meta_lock() serialises
 * the changes of metadata (exclusive) with the renames that copy it (shared).
 */
int meta_of(const char *path, bool dir, ustate_meta *m);
int meta_attr(const char *at, enum node_kind kind, struct node *n,
	      struct stat *st);
void meta_new(fuse_req_t req, const char *dir, mode_t mode, bool isdir,
	      ustate_meta *m);
int meta_setattr(struct node *n, const char *path, enum node_kind kind,
		 const char *key, const struct stat *attr, int to_set);
int meta_create(struct node *n, const char *key, const void *val, size_t len,
		bool excl, const char *lease);
void meta_lock(bool exclusive);
void meta_unlock(void);
/*
 * A write by req's caller of the key that file node n holds: a caller
 * without CAP_FSETID clears S_ISUID, and S_ISGID when the group may
 * execute the file or the caller is not in its group, as the kernel does
 * on a local file system. The mode is metadata: it changes at the write
 * itself, takes no revision and makes no event; a key being created has
 * it changed in its node. *changed says whether the mode changed (the
 * caller then makes the kernel forget its attributes).
 */
int meta_write_kill(fuse_req_t req, struct node *n, const char *key,
		    bool *changed);
/*
 * times.c: times (see the comment there). times_now() is the wall clock in
 * unix ns. times_attr() puts m's times into st, whose times hold the
 * key's (its updated_at) or the mount's start, and, for a directory (dir
 * its path, else NULL), the last change of an entry this mount saw.
 * times_setattr() applies SETATTR's times to m, with the ctime of now;
 * true when it set an mtime. times_dir_changed() notes that an entry of
 * dir was created, removed or renamed (own: through this mount's own
 * request, not a replay); times_dir_set() that dir's time was set by
 * hand; times_dir_gone() that dir and its tree are gone (rmdir);
 * times_dir_moved() that from moved to to, out of dir into ndir (its
 * times, and its tree's, go along).
 */
int64_t times_now(void);
void times_attr(const ustate_meta *m, const char *dir, struct stat *st);
bool times_setattr(ustate_meta *m, const struct stat *attr, int to_set);
void times_dir_changed(const char *dir, bool own);
void times_dir_set(const char *dir);
void times_dir_gone(const char *dir);
void times_dir_moved(const char *from, const char *to, const char *dir,
		     const char *ndir, bool own);
void times_free(void);

/*
 * /.txn: while a write of req feeds script sc, its ops are checked
 * against req's caller, and the keys it creates are the caller's.
 */
struct txn_caller {
	fuse_req_t req;
	bool loaded; /* the fields below are set */
	uid_t uid;
	gid_t gid;
	int ngroups;   /* supplementary groups, in groups */
	gid_t *groups; /* small, or allocated */
	gid_t small[32];
};
void txn_caller_begin(struct txn_caller *c, ustate_script *sc, fuse_req_t req);
void txn_caller_end(struct txn_caller *c, ustate_script *sc);

/*
 * leases.c: /.leases/ (see the comment there). lease_name_of() gives the
 * name of /.leases/NAME, NULL for other paths. lease_attr() fills st for
 * a live lease (-ENOENT when none), lease_dir_attr() for /.leases.
 * lease_text() renders its state into a new buffer (the caller frees it).
 * lease_open() and lease_close() count the open descriptors of its file,
 * which keep it alive (an open for writing keeps it alive at once).
 * lease_open() also notes the opener pid (a process, 0: none), which
 * lease_close() forgets. lease_auto() finds the lease of a key that pid
 * creates into name (USTATE_SEGMENT_MAX + 1 bytes): 1 when one, else 0
 * (see the comment in leases.c). lease_held() says whether pid or one of
 * its ancestors holds a file of lease name (NULL: any lease) open.
 * lease_live() is 0 while it lives, else -ENOENT. lease_write() grants it the
 * TTL written (-EINVAL: not one), made by creator when created (else the lease
 * must still be live: -ENOENT). lease_setattr() stores its owner and mode, or
 * keeps it alive. lease_revoke() ends it. lease_list() gives the live ones as
 * directory entries (caller frees: ustate_dirents_free()). leases_start()
 * starts the thread that keeps the held ones alive, leases_stop() ends it.
 */
const char *lease_name_of(const char *path);
/* The TTL in text: whole seconds in decimal, blanks around; 0 if none. */
int64_t lease_ttl_parse(const char *text, size_t len);
int lease_attr(const char *name, struct stat *st);
void lease_dir_attr(struct stat *st);
int lease_text(const char *name, char **text, size_t *len);
/* A number field ("Tgid", "PPid") of /proc/pid/status; 0 when none. */
pid_t proc_status_id(pid_t pid, const char *field);
#define LEASE_CHAIN_MAX 16 /* ancestors lease_auto() looks at */
int lease_open(const char *name, bool write, pid_t pid);
void lease_close(const char *name, pid_t pid);
int lease_auto(pid_t pid, char *name);
bool lease_held(pid_t pid, const char *name);
int lease_live(const char *name);
int lease_write(const char *name, const char *text, size_t len, bool created,
		const ustate_meta *creator);
int lease_setattr(const char *name, const struct stat *attr, int to_set);
int lease_revoke(const char *name);
int lease_list(ustate_dirent **ents, size_t *n);
int leases_start(void);
void leases_stop(void);

/*
 * guard.c: a child that aborts the mount's FUSE connection if the daemon
 * dies without unmounting. guard_init() forks it (before any thread and
 * before the mount), guard_arm() tells it the mount's connection,
 * guard_exit() (after the unmount) ends it.
 */
int guard_init(void);
void guard_arm(const char *mountpoint);
void guard_exit(void);

/* ops.c */
extern const struct fuse_lowlevel_ops ustatefs_ops;
/* After the loop: commit and free the files no RELEASE closed. */
void handles_shutdown(void);

/* replay.c: own changes, and the replay of everyone else's. */
/* ustate_transaction() for a request: the watcher will skip its events. */
int own_transaction(const ustate_op *ops, size_t n);
/* One set (or create, or a set checked against expected when non-zero). */
int own_write(const char *key, const void *val, size_t len, bool create,
	      uint64_t expected);
/* The same, attaching the key to lease (NULL: none, which detaches it). */
int own_write_lease(const char *key, const void *val, size_t len, bool create,
		    uint64_t expected, const char *lease);
/*
 * Start the replay helper process (before any thread exists), and end
 * it (after the watcher stopped).
 */
int replay_init(void);
void replay_exit(void);
/* Whether req comes from the replay helper. */
bool replay_request(fuse_req_t req);
/* How the replayer must see path, if the replay in progress says. */
bool replay_intent(const char *path, enum node_kind *kind);
int watcher_start(void);
void watcher_stop(void);
/*
 * Wait (a short while at most) until the follower has read every change
 * up to store revision rev and made the kernel forget the names they
 * removed: a request that saw such a change then finds none of them.
 */
void replay_seen(uint64_t rev);
/*
 * Wait (a second at most) until the replayer has replayed every change up
 * to revision rev: a /.txn commit's events are delivered, on this mount
 * too, before its write() returns.
 */
void replay_done(uint64_t rev);

/*
 * view.c: the key space as of the last change the replay applied. A
 * path's state: a value, a directory record (always for "/"), how many
 * names exist directly below it; a directory has a record or names
 * below, and it exists if it is a directory or has a value.
 */
struct view_state {
	bool value, record, dir, exists;
	uint32_t nchild;
};
/*
 * Load it from the store: *first and *last are store revisions before
 * and after the reads, so it is exact once the changes after *first up
 * to *last are applied.
 */
int view_load(uint64_t *first, uint64_t *last);
void view_clear(void);
int view_apply(ustate_event_type type, const char *key);
/*
 * Read the store again (between revisions *first and *last) and give fn
 * each change that takes the view, as of revision since, to it, in an
 * order that can be replayed (directories made, keys made, keys changed
 * after since, keys deleted, directories dropped); the view itself is
 * left as it was, for the replay to apply them.
 */
int view_resync(uint64_t since, uint64_t *first, uint64_t *last,
		void (*fn)(void *arg, ustate_event_type type, const char *path),
		void *arg);
void view_state(const char *path, struct view_state *st);
/*
 * A trial: changes applied to a copy, the view unchanged; the states the
 * trial gives, and every path it touched (in order of first touch).
 */
int view_trial_apply(ustate_event_type type, const char *key);
void view_trial_state(const char *path, struct view_state *st);
void view_trial_each(void (*fn)(void *arg, const char *path), void *arg);
void view_trial_end(void);

/*
 * log.c: the daemon's messages, at syslog's levels (LOG_ERR ... LOG_DEBUG),
 * to stderr, the journal or syslog. log_level_parse() maps "error",
 * "warning", "notice", "info" or "debug" to its level, or -EINVAL.
 */
int log_level_parse(const char *name);
void log_init(int level);
/*
 * The process leaves the caller's terminal: messages to syslog from now
 * on (unless the journal), standard input, output and error to
 * /dev/null, so that no pipe of the caller (`ustatefs ... | tee`) stays
 * open while the mount lives. The daemon calls it once the mount is live,
 * its helper processes (guard.c, replay.c) when they start.
 */
void log_detach(void);
void log_msg(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_vmsg(int level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* notify.c: READY=1 and the watchdog, under systemd. */
void notify_start(void);
void notify_stop(void);

#endif /* USTATEFS_FS_I_H */
