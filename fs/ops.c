/* SPDX-License-Identifier: MIT */
/*
 * This file implements the FUSE low-level operations of ustatefs: the
 * mapping of the key space onto files and directories that the README
 * describes. Every handler ends in exactly one fuse_reply_*; errors are
 * negative errno values from libustate passed to fuse_reply_err()
 * unchanged.
 *
 * Writes: an open for writing takes a private buffer (the value, or empty
 * with O_TRUNC); write() edits it; the value is committed as one set at
 * the first flush (close) or fsync after data was written, or at release
 * when the file was truncated or created and nothing else committed it.
 * O_CREAT|O_EXCL commits the empty key with create_if_not_exists at open,
 * so that it claims the name everywhere at once. Reads serve the value
 * as it was at open(). Write handles use direct I/O, so nothing written
 * but not committed ever reaches the page cache that readers share; the
 * writing process alone is told its buffer's size (own_size_of()). A file
 * unlinked while open keeps its snapshot, with no link (node_gone()).
 *
 * Caching. A hot read is one synchronous request, OPEN: entries and
 * attributes are cached (timeout=, attr_timeout=) and a reader reads
 * through the page cache, kept across opens (keep_cache) while the key's
 * revision is the one whose pages the kernel holds (node->cached). OPEN
 * always loads the value, so it alone decides whether the pages are
 * still good; when not, it drops them itself before any other open may
 * trust them (node_cache_open()). Every commit of this mount drops the
 * kernel's attributes of the key before close() returns (own_forget_attrs
 * in replay.c); the watcher drops attributes and pages for everyone
 * else's commits, before it replays them as inotify events.
 *
 * Snapshots with a shared page cache: all readers of the page cache at
 * one time hold the same revision; a reader that opens on another
 * revision, or while a writer has the file open, reads directly (its own
 * snapshot, FOPEN_DIRECT_IO). The kernel's i_size is the inode's, so it
 * must stay that revision's while they read: a writer's open waits
 * briefly for them (node_writer(); an O_TRUNC open sets i_size to 0),
 * so does every reply that tells another revision's size, which also
 * keeps new readers of the page cache out until it is sent
 * (node_reply_begin()), and the watcher's invalidations, which make the
 * kernel drop attribute replies under way, are skipped when the page
 * cache is current and keep new readers out meanwhile
 * (node_notify_begin()). A reader that asks for its attributes gets its
 * snapshot's size, with a timeout of 0 whenever that is not the
 * committed size. -o direct_io makes every reader read directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fs_i.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define RENAME_RETRIES 8

/* Values up to this size are read through the page cache. */
#define PAGECACHE_MAX (64u << 10)

/* fill_attr()'s revision of attributes that no commit changes. */
#define ATTR_STATIC UINT64_MAX

/* H_REPLAY: an open by the replayer, which reads and writes nothing. */
enum handle_kind { H_READ, H_WRITE, H_TXN, H_REPLAY, H_LEASE };

struct handle {
	enum handle_kind kind;
	struct node *node;
	struct handle *prev, *next; /* in the open list, under open_lock */
	pthread_mutex_t lock;
	char *buf; /* the value: snapshot or edit buffer */
	size_t len, cap;
	bool dirty;    /* written since the last commit */
	bool trunc;    /* truncated at open, not yet committed */
	bool creating; /* created by this open, not yet committed */
	bool excl;     /* O_EXCL: the first commit must create */
	bool append;
	int error;	  /* a failed write: nothing of this open commits */
	bool expects;	  /* counted in node->expecting */
	size_t charged;	  /* bytes counted in buffered */
	bool paged;	  /* counted in node->pc_users */
	bool writer;	  /* counted in node->writers */
	uint64_t rev;	  /* H_READ: the revision of the snapshot */
	int64_t updated;  /* ... its update time (0: none loaded) */
	uint64_t gen;	  /* node generation at open (see node_unlink_end) */
	uint64_t opened;  /* H_WRITE: store revision at open (node_deleted) */
	bool killed;	  /* H_WRITE: set-ID bits seen to at a write (atomic) */
	pid_t process;	  /* H_WRITE: the process that opened it; H_LEASE:
			   * the one counted as its holder */
	char *auto_lease; /* H_WRITE: the lease its creation attached the
			   * key to (lease_auto()), or NULL */
	ustate_script *script; /* H_TXN */
	size_t reply_off;      /* H_TXN: bytes of the reply already read */
	char *lease;	       /* H_LEASE: the lease's name (buf: the TTL
				* written since the last grant) */
	char *text;	       /* H_LEASE: its state at open, for reads */
	size_t text_len;
	bool held;		/* H_LEASE: counted by lease_open() */
	bool lease_new;		/* H_LEASE: created by this open, not yet
				 * granted */
	ustate_meta lease_meta; /* ... its creator */
};

/* Longest TTL text a lease file takes. */
#define LEASE_WRITE_MAX 32

struct dir_handle {
	ustate_dirent *ents;
	size_t n;
	bool value; /* the directory has a value: a ".value" entry */
	char path[FS_PATH_MAX];
};

static inline struct handle *fh(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/* ---- paths ------------------------------------------------------------ */

/* parent + "/" + name into out; the key rules decide what is valid. */
static int child_path(const char *parent, const char *name, char *out)
{
	size_t plen = strlen(parent), nlen = strlen(name);

	if (plen + 1 + nlen >= FS_PATH_MAX)
		return -ENAMETOOLONG;
	if (!strcmp(parent, "/")) {
		out[0] = '/';
		memcpy(out + 1, name, nlen + 1);
	} else {
		memcpy(out, parent, plen);
		out[plen] = '/';
		memcpy(out + plen + 1, name, nlen + 1);
	}
	return 0;
}

static bool is_value_path(const char *path, char *key)
{
	size_t len = strlen(path);

	if (len < 8 || strcmp(path + len - 7, "/.value"))
		return false;
	memcpy(key, path, len - 7);
	key[len - 7] = '\0';
	return true;
}

/* /.leases or a path below it: no key of the store. */
static bool is_lease_path(const char *path)
{
	return !strcmp(path, "/.leases") || lease_name_of(path);
}

/*
 * What path is, and for files the key that holds its value. A key's own
 * value shows as a file when it has no children, else as DIR/.value.
 * With rev (and e), in the same read: the store revision, and the key's
 * entry (NULL without a value) for the caller to free; 0 and NULL for the
 * root and /.txn.
 */
static int classify_get(const char *path, enum node_kind *kind, char *key,
			uint64_t *rev, ustate_entry **e)
{
	ustate_entry *got = NULL;
	bool value_path;
	unsigned flags;
	int rc;

	if (rev)
		*rev = 0;
	if (e)
		*e = NULL;
	if (!strcmp(path, "/")) {
		*kind = KIND_DIR;
		return 0;
	}
	if (!strcmp(path, "/.txn")) {
		*kind = KIND_TXN;
		return 0;
	}
	if (!strcmp(path, "/.leases")) {
		*kind = KIND_LEASES;
		return 0;
	}
	if (lease_name_of(path)) {
		ustate_lease_info *info = NULL;

		*kind = KIND_LEASE;
		rc = ustate_lease_get(fs.store, lease_name_of(path), &info);
		ustate_lease_info_free(info);
		/* Being created: granted by its first write. */
		if (rc == -ENOENT && node_is_creating(path))
			rc = 0;
		return rc == -EINVAL || rc == -ENAMETOOLONG ? -ENOENT : rc;
	}
	value_path = is_value_path(path, key);
	if (!value_path)
		strcpy(key, path);
	rc = ustate_node_get(fs.store, key, &flags, rev, e ? &got : NULL);
	if (rc < 0)
		return rc == -EINVAL ? -ENOENT : rc;
	rc = -ENOENT;
	if (value_path) {
		/* Being created, as a file can be (the kernel asks, to check
		 * permissions). */
		if (flags_dir(flags) &&
		    ((flags & USTATE_NODE_VALUE) || node_is_creating(path)))
			rc = 0;
		*kind = KIND_VALUE;
	} else if (flags_dir(flags)) {
		*kind = KIND_DIR;
		rc = 0;
	} else if ((flags & USTATE_NODE_VALUE) || node_is_creating(path)) {
		*kind = KIND_FILE;
		rc = 0;
	}
	if (rc < 0 || !e)
		ustate_entry_free(got);
	else
		*e = got;
	return rc;
}

static int classify(const char *path, enum node_kind *kind, char *key)
{
	return classify_get(path, kind, key, NULL, NULL);
}

/* ---- attributes ------------------------------------------------------- */

static bool own_size_of(fuse_req_t req, fuse_ino_t ino, off_t *size);

static void attr_base(struct stat *st, fuse_ino_t ino)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = fs.uid;
	st->st_gid = fs.gid;
	st->st_blksize = 4096;
	st->st_atim = st->st_mtim = st->st_ctim = fs.started;
}

/*
 * The links of directory path, as on a local file system: 2 (its name
 * and its ".") + one ".." per subdirectory, /.leases among the root's. A
 * readdir of the store (O(names x log N)) at each GETATTR or LOOKUP of a
 * directory that the kernel's cache does not answer; 2 when it fails.
 */
static nlink_t dir_links(const char *path)
{
	nlink_t links = !strcmp(path, "/") ? 3 : 2;
	ustate_dirent *d;
	size_t n, i;

	if (ustate_readdir(fs.store, path, &d, &n) < 0)
		return 2;
	for (i = 0; i < n; i++)
		links += flags_dir(d[i].flags);
	ustate_dirents_free(d, n);
	return links;
}

/*
 * The attributes of path into st, and into *rev the revision they show
 * (ATTR_STATIC for a directory or /.txn, 0 for a file being created).
 * attr_of() as the store has them now, fill_attr() once the commits of
 * path under way have landed (see node_settle()).
 */
static int attr_of(fuse_ino_t ino, const char *path, struct stat *st,
		   uint64_t *rev)
{
	char key[FS_PATH_MAX];
	enum node_kind kind;
	ustate_entry *e;
	int rc;

	/* What it is and its value: one read. */
	rc = classify_get(path, &kind, key, NULL, &e);
	if (rc < 0)
		return rc;
	attr_base(st, ino);
	*rev = ATTR_STATIC;
	if (kind == KIND_LEASES) {
		lease_dir_attr(st);
		return 0;
	}
	if (kind == KIND_LEASE) {
		*rev = 0; /* its size and time change without a revision */
		rc = lease_attr(lease_name_of(path), st);
		if (rc != -ENOENT || !node_is_creating(path))
			return rc;
		/* Not yet granted: empty, its creator's. */
		st->st_mode = S_IFREG;
		st->st_nlink = 1;
		return meta_attr(path, KIND_FILE, node_of(ino), st);
	}
	if (kind == KIND_DIR || kind == KIND_TXN) {
		ustate_entry_free(e);
		st->st_mode = kind == KIND_DIR ? S_IFDIR : S_IFREG;
		st->st_nlink = kind == KIND_DIR ? dir_links(path) : 1;
		return meta_attr(path, kind, NULL, st);
	}
	st->st_mode = S_IFREG;
	st->st_nlink = 1;
	*rev = 0;
	/* Being created: empty until its close, its creator's. */
	if (!e)
		return meta_attr(key, kind, node_of(ino), st);
	*rev = e->mod_revision;
	st->st_size = (off_t)e->value_len;
	st->st_blocks = (blkcnt_t)((e->value_len + 511) / 512);
	st->st_mtim.tv_sec = st->st_ctim.tv_sec = e->updated_at;
	st->st_atim.tv_sec = e->updated_at;
	st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = st->st_atim.tv_nsec = 0;
	ustate_entry_free(e);
	return meta_attr(key, kind, NULL, st);
}

static int fill_attr(fuse_ino_t ino, const char *path, struct stat *st,
		     uint64_t *rev)
{
	node_settle(path);
	return attr_of(ino, path, st, rev);
}

/*
 * Attributes for the replayer, which must see path as kind: the real
 * ones when the store agrees (true), else made up (false). The kernel
 * must not keep them.
 */
static bool replay_attr(fuse_ino_t ino, const char *path, enum node_kind kind,
			struct stat *st, uint64_t *rev)
{
	if (attr_of(ino, path, st, rev) == 0 &&
	    S_ISDIR(st->st_mode) == (kind == KIND_DIR))
		return true;
	attr_base(st, ino);
	st->st_mode = kind == KIND_DIR ? S_IFDIR | 0755 : S_IFREG | 0644;
	st->st_nlink = kind == KIND_DIR ? 2 : 1;
	*rev = 0;
	return false;
}

/*
 * The node of the replayer's entry for path, as kind, with its attributes
 * into st. A file that the store does not have there (deleted or turned
 * into a directory by a later change) gets a ghost (node_ghost()): made
 * up attributes of the path's own node would reach the inode that the
 * key's next incarnation shares (the same number), whose size the kernel
 * then believes; a reader whose own refreshes of the size the kernel
 * drops (it drops every attribute reply that an invalidation or the
 * replay's unlink overtook) read that value as empty. So does every
 * created file (ghost true): the kernel applies a create's attributes
 * without that check. Directories have no size to be wrong about. The
 * caller replies, then calls node_reply_done().
 */
static struct node *replay_node(const char *path, enum node_kind kind,
				bool ghost, struct stat *st)
{
	struct node *n = node_lookup(path);
	uint64_t rev;
	bool real;

	if (!n)
		return NULL;
	real = replay_attr(n->ino, path, kind, st, &rev);
	if (kind != KIND_DIR && (ghost || !real)) {
		node_forget(n->ino, 1);
		n = node_ghost(path);
		if (!n)
			return NULL;
		st->st_ino = n->ino;
	}
	node_reply_begin(n->ino, rev);
	node_attr_drop(n->ino);
	return n;
}

/*
 * Before an unlink, rmdir, rename or setattr, whose checks read the store
 * first (is the name there, what is it, whose is it): a barrier, so that
 * a replica at close-to-open consistency answers them as of now, not
 * from a moment before a change made elsewhere (an unlink of a key a
 * rename elsewhere just made was ENOENT, found by linearizability-etcd).
 */
static int fresh_reads(void)
{
	return fs.barrier ? ustate_barrier(fs.store) : 0;
}

static void reply_entry_for(fuse_req_t req, const char *path)
{
	struct fuse_entry_param e = {0};
	struct node *n;
	off_t size;
	uint64_t rev;
	int rc;

	n = node_lookup(path);
	if (!n) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = fill_attr(n->ino, path, &e.attr, &rev);
	/*
	 * A name the replica does not have may be one created elsewhere
	 * since its last barrier: an open(2) that resolves it must find it
	 * (close-to-open), so a miss asks again after a barrier. A name it
	 * has that is gone since, the open finds gone (ESTALE, see
	 * op_open()), and the kernel looks it up again.
	 */
	if (rc == -ENOENT && fs.barrier && ustate_barrier(fs.store) == 0)
		rc = fill_attr(n->ino, path, &e.attr, &rev);
	if (rc < 0) {
		node_forget(n->ino, 1);
		fuse_reply_err(req, -rc);
		return;
	}
	e.ino = n->ino;
	/* A writer's own lookup, too, tells its edits (see op_getattr()). */
	if (S_ISREG(e.attr.st_mode) && own_size_of(req, n->ino, &size)) {
		e.attr.st_size = size;
		rev = 0;
	}
	node_reply_begin(n->ino, rev);
	e.attr_timeout = node_attr_valid(n->ino, rev);
	e.entry_timeout = fs.timeout;
	node_set_type(n->ino, e.attr.st_mode);
	/* Once the entry is sent, a FORGET may free n at any moment. */
	rc = fuse_reply_entry(req, &e);
	node_reply_done(e.ino);
	if (rc != 0)
		node_forget(e.ino, 1);
}

/* An entry for the replayer: kind as the replay needs it, size 0. */
static void synth_entry(fuse_req_t req, const char *path, enum node_kind kind)
{
	struct fuse_entry_param e = {0};
	struct node *n;
	int rc;

	n = replay_node(path, kind, false, &e.attr);
	if (!n) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	e.ino = n->ino;
	node_set_type(n->ino, e.attr.st_mode);
	/* Once the entry is sent, a FORGET may free n at any moment. */
	rc = fuse_reply_entry(req, &e);
	node_reply_done(e.ino);
	if (rc != 0)
		node_forget(e.ino, 1);
}

/*
 * Answer the replayer as the replay in progress needs (see replay.c):
 * true when the reply is sent.
 */
static bool replay_entry(fuse_req_t req, const char *path)
{
	enum node_kind kind;

	if (!replay_request(req) || !replay_intent(path, &kind))
		return false;
	if (kind == KIND_NONE)
		fuse_reply_err(req, ENOENT);
	else
		synth_entry(req, path, kind);
	return true;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char dir[FS_PATH_MAX], path[FS_PATH_MAX];
	int rc;

	rc = node_path(parent, dir);
	if (rc == 0)
		rc = child_path(dir, name, path);
	if (rc < 0) {
		fuse_reply_err(req,
			       -rc == ENAMETOOLONG ? ENAMETOOLONG : ENOENT);
		return;
	}
	if (!strcmp(name, ".txn") && strcmp(dir, "/")) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (!replay_entry(req, path))
		reply_entry_for(req, path);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	node_forget(ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	size_t i;

	for (i = 0; i < count; i++)
		node_forget(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static bool open_size_of(fuse_ino_t ino, off_t *size, int64_t *updated);

/*
 * The attributes of an open file whose key is gone: no link, its
 * snapshot's (or its writer's) size and time, the owner and mode it had
 * when this mount unlinked it (m), else (m NULL) those its key has (a key
 * deleted elsewhere has none left: the defaults).
 */
static void gone_attr(fuse_ino_t ino, const char *path, const ustate_meta *m,
		      off_t size, int64_t updated, struct stat *st)
{
	char key[FS_PATH_MAX];

	attr_base(st, ino);
	st->st_mode = S_IFREG | 0644;
	st->st_nlink = 0;
	st->st_size = size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	if (updated) {
		st->st_mtim = (struct timespec){.tv_sec = updated};
		st->st_ctim = st->st_atim = st->st_mtim;
	}
	if (m) {
		st->st_uid = m->uid;
		st->st_gid = m->gid;
		st->st_mode =
			S_IFREG | (m->mode & (fs.read_only ? 07555 : 07777));
		times_attr(m, NULL, st); /* its ctime: when it lost its link */
		return;
	}
	/* DIR/.value: the owner is the directory key's. */
	if (!is_value_path(path, key))
		strcpy(key, path);
	meta_attr(key, KIND_FILE, NULL, st);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	char path[FS_PATH_MAX];
	struct handle *h = fi ? fh(fi) : NULL;
	int64_t updated = 0;
	enum node_kind kind;
	bool unlinked;
	ustate_meta gone;
	off_t size = 0;
	struct stat st;
	uint64_t rev;
	int rc;

	rc = node_path(ino, path);
	if (rc == 0 && replay_request(req) && replay_intent(path, &kind) &&
	    kind != KIND_NONE) {
		/*
		 * Made-up attributes only for a ghost or a directory (see
		 * replay_node()): a key's own file that the store no longer
		 * has is stale, and the kernel looks the path up again.
		 */
		if (!replay_attr(ino, path, kind, &st, &rev) &&
		    kind != KIND_DIR && !node_is_ghost(ino)) {
			fuse_reply_err(req, ESTALE);
			return;
		}
		node_reply_begin(ino, rev);
		node_attr_drop(ino);
		fuse_reply_attr(req, &st, 0);
		node_reply_done(ino);
		return;
	}
	/* Unlinked while open: whatever is at its path now is not it. */
	gone = (ustate_meta){.uid = fs.uid, .gid = fs.gid, .mode = 0644};
	unlinked = rc == 0 && node_unlinked(ino, &gone);
	if (unlinked)
		rc = -ENOENT;
	else if (rc == 0)
		rc = fill_attr(ino, path, &st, &rev);
	if (rc == 0 && !node_type_is(ino, st.st_mode))
		rc = -ESTALE;
	/*
	 * An open file whose key is gone (unlinked, renamed over, deleted
	 * elsewhere) keeps its snapshot, with no link: the kernel asks for
	 * its size before it reads, fstat() without saying which open file.
	 */
	if (rc == -ENOENT && h && (h->kind == H_READ || h->kind == H_WRITE)) {
		pthread_mutex_lock(&h->lock);
		size = (off_t)h->len;
		updated = h->updated;
		pthread_mutex_unlock(&h->lock);
		gone_attr(ino, path, unlinked ? &gone : NULL, size, updated,
			  &st);
		rc = 0;
		rev = 0;
	} else if (rc == -ENOENT && open_size_of(ino, &size, &updated)) {
		gone_attr(ino, path, unlinked ? &gone : NULL, size, updated,
			  &st);
		rc = 0;
		rev = 0;
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	/*
	 * An open file sees its own size: its snapshot, or its edits. The
	 * kernel keeps it only while it is also the committed one.
	 */
	if (h && (h->kind == H_READ || h->kind == H_WRITE)) {
		uint64_t mine;

		pthread_mutex_lock(&h->lock);
		/* A writer's size is of no revision at all. */
		mine = h->kind == H_READ ? h->rev : 0;
		if (mine != rev)
			rev = 0;
		st.st_size = (off_t)h->len;
		pthread_mutex_unlock(&h->lock);
		/* A direct reader's size, too, must not cut others short. */
		node_reply_begin(ino, mine);
	} else if (S_ISREG(st.st_mode) && own_size_of(req, ino, &size)) {
		/* The caller writes it: its own edits, never cached. */
		st.st_size = size;
		rev = 0;
		node_reply_begin(ino, 0);
	} else {
		node_reply_begin(ino, rev);
	}
	fuse_reply_attr(req, &st, node_attr_valid(ino, rev));
	node_reply_done(ino);
}

/* ---- writing ---------------------------------------------------------- */

/* The key a file node's value lives at. */
static int node_key(struct node *n, char *key)
{
	char path[FS_PATH_MAX];
	int rc;

	rc = node_path(n->ino, path);
	if (rc < 0)
		return rc;
	if (!is_value_path(path, key))
		strcpy(key, path);
	return 0;
}

/*
 * The set-user-ID and set-group-ID bits of h's key at a write by req's
 * caller (see meta_write_kill()); the kernel must then forget the mode
 * it caches. Called without h->lock (meta_lock() comes after open_lock).
 */
static int write_kill(fuse_req_t req, struct handle *h)
{
	char key[FS_PATH_MAX];
	ustate_meta m;
	bool changed;
	int rc;

	/* Unlinked: it commits nothing, and its path may be another key's. */
	if (node_generation(h->node) != h->gen ||
	    node_unlinked(h->node->ino, &m))
		return 0;
	rc = node_key(h->node, key);
	if (rc == 0)
		rc = meta_write_kill(req, h->node, key, &changed);
	if (rc == 0 && changed) {
		node_attr_drop(h->node->ino);
		kernel_forget_inode(h->node->ino, -1, 0);
	}
	return rc;
}

/*
 * The process (thread group) of req's caller: the kernel names the
 * thread. A thread that leads its group (the caller of most programs,
 * which have one thread) is its process, and pidfd_open() takes only
 * those: two system calls, where /proc/TID/status, which the kernel
 * formats whole, cost a tenth of the daemon's time under many writers.
 * Other threads: the Tgid line of their status. The thread itself when
 * /proc cannot say.
 */
static pid_t caller_process(fuse_req_t req)
{
	pid_t tid = fuse_req_ctx(req)->pid, tgid;
	int fd;

	if (tid <= 0)
		return tid;
	fd = pidfd_open(tid, 0);
	if (fd >= 0) {
		close(fd);
		return tid;
	}
	tgid = proc_status_id(tid, "Tgid");
	return tgid > 0 ? tgid : tid;
}

/*
 * A writer's open by req's caller: its process, for the stats it makes
 * (own_size_of()), and an O_TRUNC of an existing key by a caller without
 * CAP_FSETID clears the set-ID bits, as a truncation does on a local file
 * system (the kernel does not when the truncation comes with OPEN).
 */
static int open_writer(fuse_req_t req, struct handle *h)
{
	int rc;

	h->process = caller_process(req);
	if (!h->trunc || h->creating)
		return 0;
	/* Not yet the kernel's: no lock (and none may be held, see op_write).
	 */
	rc = write_kill(req, h);
	h->killed = rc == 0;
	return rc;
}

/* h's commit no longer waits for its release. */
static void expect_done(struct handle *h)
{
	if (h->expects) {
		h->expects = false;
		node_expect(h->node, -1);
	}
}

/* h no longer creates its key (an unlink already forgot the creation). */
static void creating_done(struct handle *h)
{
	if (node_generation(h->node) == h->gen)
		node_creating(h->node, -1);
}

/*
 * A write of h's existing key: a key attached to a lease that h's writer
 * (or an ancestor, see lease_held()) holds open, or that h's creation
 * attached it to, stays attached; else a set naming no lease, which
 * detaches it (etcd's rule). Checked against the version read.
 */
static int commit_keep(struct handle *h, const char *key)
{
	ustate_entry *e;
	ustate_op ops[2];
	bool keep;
	int rc, i;

	if (!h->auto_lease && !lease_held(h->process, NULL))
		return own_write(key, h->buf, h->len, h->excl, 0);
	for (i = 0; i < RENAME_RETRIES; i++) {
		rc = ustate_get(fs.store, key, &e);
		if (rc == -ENOENT)
			return own_write(key, h->buf, h->len, h->excl, 0);
		if (rc < 0)
			return rc;
		keep = e->lease &&
		       ((h->auto_lease && !strcmp(e->lease, h->auto_lease)) ||
			lease_held(h->process, e->lease));
		if (!keep) {
			ustate_entry_free(e);
			return own_write(key, h->buf, h->len, h->excl, 0);
		}
		ops[0] = (ustate_op){.type = USTATE_OP_CHECK_VERSION,
				     .key = key,
				     .version = e->version};
		ops[1] = (ustate_op){.type = USTATE_OP_SET,
				     .key = key,
				     .value = h->buf,
				     .value_len = h->len,
				     .lease = e->lease};
		rc = own_transaction(ops, 2);
		ustate_entry_free(e);
		if (rc != -ECANCELED)
			return rc;
	}
	return -EBUSY;
}

/*
 * The commit of h's write to the existing key, with a time set by hand
 * while it was pending (mtime, unix ns): the set and the metadata that
 * holds the time, in one transaction, so the time holds from the write's
 * version on. A key attached to a lease keeps commit_keep()'s rules, and
 * gets the time in a transaction of its own after it.
 */
static int commit_timed(struct handle *h, const char *key, int64_t mtime)
{
	ustate_meta m;
	ustate_op ops[2];
	int rc;

	meta_lock(true);
	rc = meta_of(key, false, &m);
	if (rc < 0)
		goto out;
	m.flags |= USTATE_META_MTIME;
	m.mtime_ns = mtime;
	m.ctime_ns = times_now();
	ops[0] = (ustate_op){.type = USTATE_OP_SET,
			     .key = key,
			     .value = h->buf,
			     .value_len = h->len};
	ops[1] = (ustate_op){.type = USTATE_OP_META,
			     .key = key,
			     .value = &m,
			     .value_len = sizeof(m)};
	if (!h->auto_lease && !lease_held(h->process, NULL)) {
		rc = own_transaction(ops, 2);
		goto out;
	}
	rc = commit_keep(h, key);
	if (rc == 0)
		rc = own_transaction(&ops[1], 1);
out:
	meta_unlock();
	return rc;
}

/* Commit the buffer of h as one set (or create). Called with h->lock. */
static int commit(struct handle *h)
{
	char key[FS_PATH_MAX];
	bool created;
	int64_t mtime;
	int rc;

	if (h->error)
		return h->error;
	rc = node_key(h->node, key);
	if (rc < 0)
		return rc;
	/* Unlinked while open: as in POSIX, writes no longer have a name. */
	if (node_commit_begin(h->node, h->gen, h->opened)) {
		/* A new key also gets its creator's owner and mode. */
		if (h->creating)
			rc = meta_create(h->node, key, h->buf, h->len, h->excl,
					 h->auto_lease);
		else if (!h->excl && node_take_mtime(h->node, &mtime))
			rc = commit_timed(h, key, mtime);
		else
			rc = commit_keep(h, key);
		/* The node's count of creations drops with the commit. */
		created = rc == 0 && h->creating;
		node_commit_end(h->node, created);
		if (created)
			h->creating = false;
	}
	/*
	 * The caller hears of the failure (at close or fsync): a later flush
	 * or the release must not commit the value behind its back. The
	 * store's troubles are the operator's; the rest, a client's.
	 */
	if (rc < 0) {
		h->error = rc;
		log_msg(rc == -EIO	? LOG_ERR
			: rc == -ENOSPC ? LOG_WARNING
					: LOG_DEBUG,
			"commit of %s: %s", key, ustate_strerror(rc));
		return rc;
	}
	h->dirty = false;
	h->trunc = false;
	h->excl = false;
	expect_done(h);
	if (h->creating) {
		h->creating = false;
		creating_done(h);
	}
	return 0;
}

/*
 * Bytes held for clients: the buffers of open files and the scripts of
 * open transactions. Past fs.max_buffered a client gets ENOMEM, and the
 * others keep working.
 */
static size_t buffered; /* atomic */

static int charge(struct handle *h, size_t bytes)
{
	if (__atomic_add_fetch(&buffered, bytes, __ATOMIC_RELAXED) >
	    fs.max_buffered) {
		__atomic_sub_fetch(&buffered, bytes, __ATOMIC_RELAXED);
		return -ENOMEM;
	}
	h->charged += bytes;
	return 0;
}

static int ensure_cap(struct handle *h, size_t need)
{
	size_t cap;
	char *p;
	int rc;

	if (need <= h->cap)
		return 0;
	/* need counts one byte past the value, for its NUL. */
	if (need - 1 > fs.max_value)
		return -EFBIG;
	cap = h->cap ? h->cap : 4096;
	while (cap < need)
		cap *= 2;
	if (cap > fs.max_value + 1)
		cap = fs.max_value + 1;
	rc = charge(h, cap - h->cap);
	if (rc < 0)
		return rc;
	p = realloc(h->buf, cap);
	if (!p) {
		__atomic_sub_fetch(&buffered, cap - h->cap, __ATOMIC_RELAXED);
		h->charged -= cap - h->cap;
		return -ENOMEM;
	}
	h->buf = p;
	h->cap = cap;
	return 0;
}

/* Every open file, so that a shutdown can finish what RELEASE did not. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct handle *open_files; /* protected by open_lock */

/*
 * Whether node ino has an open file (read or write); its size and the
 * update time of the value it loaded (0: none) into *size and *updated,
 * for an fstat() that does not say which open file asks.
 */
static bool open_size_of(fuse_ino_t ino, off_t *size, int64_t *updated)
{
	struct handle *h;

	pthread_mutex_lock(&open_lock);
	for (h = open_files; h; h = h->next)
		if (h->node->ino == ino &&
		    (h->kind == H_READ || h->kind == H_WRITE))
			break;
	if (h) {
		pthread_mutex_lock(&h->lock);
		*size = (off_t)h->len;
		*updated = h->updated;
		pthread_mutex_unlock(&h->lock);
	}
	pthread_mutex_unlock(&open_lock);
	return h;
}

/* Whether n has an open file (read or write). */
static bool node_has_open(struct node *n)
{
	struct handle *h;

	pthread_mutex_lock(&open_lock);
	for (h = open_files; h; h = h->next)
		if (h->node == n && (h->kind == H_READ || h->kind == H_WRITE))
			break;
	pthread_mutex_unlock(&open_lock);
	return h;
}

/*
 * Whether req's caller has node ino open for writing: then the size of
 * its buffer into *size. A writer sees its own writes in a stat or
 * fstat(), which the kernel sends without saying which open file asks;
 * other processes see the committed value. A process with several
 * writers of the file sees the newest one's.
 */
static bool own_size_of(fuse_req_t req, fuse_ino_t ino, off_t *size)
{
	struct handle *h;
	bool any = false;
	pid_t me;

	/* Most stats are of files nobody writes: no look at /proc. */
	pthread_mutex_lock(&open_lock);
	for (h = open_files; h && !any; h = h->next)
		any = h->kind == H_WRITE && h->node->ino == ino;
	pthread_mutex_unlock(&open_lock);
	if (!any)
		return false;
	me = caller_process(req);
	pthread_mutex_lock(&open_lock);
	for (h = open_files; h; h = h->next)
		if (h->kind == H_WRITE && h->node->ino == ino &&
		    h->process == me)
			break;
	if (h) {
		pthread_mutex_lock(&h->lock);
		*size = (off_t)h->len;
		pthread_mutex_unlock(&h->lock);
	}
	pthread_mutex_unlock(&open_lock);
	return h;
}

static struct handle *handle_new(enum handle_kind kind, struct node *n)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->kind = kind;
	h->node = n;
	h->gen = node_generation(n);
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_lock(&open_lock);
	h->next = open_files;
	if (open_files)
		open_files->prev = h;
	open_files = h;
	pthread_mutex_unlock(&open_lock);
	return h;
}

static void handle_free(struct handle *h)
{
	pthread_mutex_lock(&open_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		open_files = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&open_lock);
	expect_done(h);
	if (h->creating)
		creating_done(h);
	if (h->paged)
		node_cache_close(h->node);
	if (h->writer)
		node_writer(h->node, -1);
	__atomic_sub_fetch(&buffered, h->charged, __ATOMIC_RELAXED);
	ustate_script_free(h->script);
	if (h->held)
		lease_close(h->lease, h->process);
	free(h->lease);
	free(h->auto_lease);
	free(h->text);
	pthread_mutex_destroy(&h->lock);
	free(h->buf);
	free(h);
}

/*
 * Load the value of key into h (an empty buffer when it does not exist);
 * h->rev is the revision loaded (0: none).
 */
/* The value of entry e (NULL: none) into h's buffer. */
static int take_value(struct handle *h, const ustate_entry *e)
{
	int rc;

	h->rev = 0;
	if (!e)
		return 0;
	rc = ensure_cap(h, e->value_len + 1);
	if (rc == 0) {
		memcpy(h->buf, e->value, e->value_len);
		h->len = e->value_len;
		h->rev = e->mod_revision;
		h->updated = e->updated_at;
	}
	return rc;
}

/*
 * Open node n (of a file) for fi->flags; fills fi. rev and e are the
 * store revision and the key's entry (NULL: no value) of the read that
 * classified its path; e is needed unless the open truncates.
 */
static int open_file(struct node *n, enum node_kind kind,
		     struct fuse_file_info *fi, uint64_t rev,
		     const ustate_entry *e)
{
	int acc = fi->flags & O_ACCMODE;
	enum cache_use use;
	struct handle *h;
	int rc;

	if (kind == KIND_TXN) {
		if (fs.read_only)
			return -EROFS;
		h = handle_new(H_TXN, n);
		if (!h)
			return -ENOMEM;
		rc = ustate_script_new(&h->script, fs.store);
		if (rc < 0) {
			handle_free(h);
			return rc;
		}
		fi->direct_io = 1;
		fi->nonseekable = 1;
		fi->fh = (uintptr_t)h;
		return 0;
	}
	if (acc != O_RDONLY && fs.read_only)
		return -EROFS;
	h = handle_new(acc == O_RDONLY ? H_READ : H_WRITE, n);
	if (!h)
		return -ENOMEM;
	if (acc != O_RDONLY) {
		h->writer = true;
		node_writer(n, 1);
		/*
		 * A delete by another process ends this open's name if it
		 * came later than the revision the open saw.
		 */
		h->opened = rev;
	}
	if (acc == O_RDONLY || !(fi->flags & O_TRUNC)) {
		rc = take_value(h, e);
		if (rc < 0) {
			handle_free(h);
			return rc;
		}
	}
	if (acc != O_RDONLY) {
		h->trunc = fi->flags & O_TRUNC;
		h->append = fi->flags & O_APPEND;
		if (h->trunc)
			node_wrote(n);
	}
	/*
	 * Writers, and readers the page cache cannot serve: direct I/O. So
	 * are values over PAGECACHE_MAX: reading them takes long enough that
	 * a writer would give up waiting for their readers (and the round
	 * trips the cache saves are little beside the copying).
	 */
	fi->direct_io = 1;
	use = acc == O_RDONLY && h->rev && !fs.direct_io &&
			      h->len <= PAGECACHE_MAX
		      ? node_cache_open(n, h->rev)
		      : CACHE_DIRECT;
	if (use != CACHE_DIRECT) {
		h->paged = true;
		fi->direct_io = 0;
		fi->keep_cache = 1;
	}
	if (use == CACHE_INVAL) {
		/*
		 * Drop pages of another revision before anyone may trust
		 * the cache: no reader of the page cache is open (so none
		 * waits on a page lock for a READ of ours).
		 */
		node_attr_drop(n->ino);
		kernel_forget_inode(n->ino, 0, 0);
		node_cache_ready(n, h->rev);
	} else if (use == CACHE_ATTRS) {
		/*
		 * The size the kernel trusts must be this snapshot's. No
		 * other reader of the page cache is open, whose refresh of
		 * its size the kernel would drop.
		 */
		node_attr_drop(n->ino);
		kernel_forget_inode(n->ino, -1, 0);
	}
	/* A reader has nothing to commit: its close needs no FLUSH. */
	fi->noflush = acc == O_RDONLY;
	fi->fh = (uintptr_t)h;
	return 0;
}

/*
 * Open /.leases/NAME for fi->flags: a snapshot of its text to read, a
 * buffer for a TTL to write; the open keeps the lease alive (leases.c).
 * creator: a lease this open creates (its first write grants it). req's
 * caller is its holder (lease_auto()) when it opens it for reading.
 */
static int open_lease(fuse_req_t req, struct node *n, const char *name,
		      struct fuse_file_info *fi, const ustate_meta *creator,
		      struct handle **out)
{
	int acc = fi->flags & O_ACCMODE;
	struct handle *h;
	int rc;

	if (acc != O_RDONLY && fs.read_only)
		return -EROFS;
	h = handle_new(H_LEASE, n);
	if (!h)
		return -ENOMEM;
	h->lease = strdup(name);
	rc = h->lease ? 0 : -ENOMEM;
	if (rc == 0 && creator) {
		h->lease_new = true;
		h->lease_meta = *creator;
	} else if (rc == 0) {
		rc = lease_text(name, &h->text, &h->text_len);
	}
	if (rc == 0 && !fs.read_only) {
		/* Only a descriptor that reads holds it: echo 10 > it grants.
		 */
		h->process = acc != O_WRONLY ? caller_process(req) : 0;
		rc = lease_open(name, acc != O_RDONLY, h->process);
		h->held = rc == 0;
	}
	if (rc < 0) {
		handle_free(h);
		return rc;
	}
	fi->direct_io = 1;
	fi->noflush = acc == O_RDONLY;
	fi->fh = (uintptr_t)h;
	if (out)
		*out = h;
	return 0;
}

/* Grant what h wrote, if anything (see lease_write()). */
static int lease_commit(struct handle *h)
{
	int rc;

	if (h->error || !h->dirty)
		return h->error;
	rc = lease_write(h->lease, h->buf, h->len, h->lease_new,
			 &h->lease_meta);
	h->dirty = false;
	h->len = 0;
	if (rc == 0)
		h->lease_new = false;
	return rc;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	char path[FS_PATH_MAX], key[FS_PATH_MAX];
	bool trunc =
		(fi->flags & O_ACCMODE) != O_RDONLY && (fi->flags & O_TRUNC);
	ustate_entry *e = NULL;
	enum node_kind kind;
	struct node *n;
	uint64_t rev;
	int rc;

	if (fs.noopen) {
		fuse_reply_err(req, ENOSYS); /* the kernel stops asking */
		return;
	}
	n = node_of(ino);
	if (n && replay_request(req)) {
		fi->fh = (uintptr_t)handle_new(H_REPLAY, n);
		fi->direct_io = 1;
		if (!fi->fh)
			fuse_reply_err(req, ENOMEM);
		else if (fuse_reply_open(req, fi) != 0)
			handle_free(fh(fi));
		return;
	}
	rc = n ? node_path(ino, path) : -ESTALE;
	/* Close-to-open: what completed before the open, anywhere. */
	if (rc == 0 && fs.barrier)
		rc = ustate_barrier(fs.store);
	if (rc == 0) {
		node_settle(path);
		/* What it is, the revision and the value: one read. */
		rc = classify_get(path, &kind, key, &rev, trunc ? NULL : &e);
	}
	/*
	 * A value another writer made: once it is read here, no name that
	 * writer removed before it may be left in the kernel's dentries.
	 */
	if (rc == 0 && e && !fs.single)
		replay_seen(e->mod_revision);
	/*
	 * The kernel still trusts a name whose key is gone (a creation whose
	 * commit failed leaves no key; another process deleted it and the
	 * replay has not yet told the kernel): ESTALE makes it look the name
	 * up again and retry (once), so open(O_CREAT) creates it and a plain
	 * open gets ENOENT. A reader needs no retry: ENOENT is its answer
	 * either way.
	 */
	if (rc == -ENOENT && (fi->flags & O_ACCMODE) != O_RDONLY)
		rc = -ESTALE;
	if (rc == 0 && (kind == KIND_DIR || kind == KIND_LEASES))
		rc = node_type_is(ino, S_IFDIR) ? -EISDIR : -ESTALE;
	if (rc == 0 && kind == KIND_LEASE)
		rc = open_lease(req, n, lease_name_of(path), fi, NULL, NULL);
	else if (rc == 0)
		rc = open_file(n, kind, fi, rev, e);
	ustate_entry_free(e);
	if (rc == 0 && fh(fi)->kind == H_WRITE) {
		rc = open_writer(req, fh(fi));
		if (rc < 0)
			handle_free(fh(fi));
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (fuse_reply_open(req, fi) != 0)
		handle_free(fh(fi));
}

/* Names a client may create: keys, but not the reserved names. */
static int creatable(const char *dir, const char *name, char *path)
{
	int rc;

	rc = child_path(dir, name, path);
	if (rc < 0)
		return rc;
	if (!strcmp(name, ".value") || !strcmp(name, ".txn"))
		return -EINVAL;
	if (is_lease_path(path))
		return -EPERM;
	return ustate_key_valid(path);
}

/* O_CREAT in /.leases: a new lease, granted by its first write. */
static void create_lease(fuse_req_t req, const char *name, mode_t mode,
			 struct fuse_file_info *fi)
{
	char path[FS_PATH_MAX];
	struct fuse_entry_param e = {0};
	ustate_lease_info *info = NULL;
	struct handle *h = NULL;
	struct node *n = NULL;
	ustate_meta m;
	bool exists;
	int rc;

	rc = child_path("/.leases", name, path);
	if (rc == 0)
		rc = ustate_key_valid(path);
	if (rc == 0 && !S_ISREG(mode))
		rc = -EPERM;
	if (rc == 0 && fs.read_only)
		rc = -EROFS;
	if (rc < 0)
		goto fail;
	rc = ustate_lease_get(fs.store, name, &info);
	ustate_lease_info_free(info);
	if (rc < 0 && rc != -ENOENT)
		goto fail;
	exists = rc == 0;
	rc = exists && (fi->flags & O_EXCL) ? -EEXIST : 0;
	if (rc < 0)
		goto fail;
	n = node_lookup(path);
	if (!n) {
		rc = -ENOMEM;
		goto fail;
	}
	meta_new(req, "/.leases", mode, false, &m);
	rc = open_lease(req, n, name, fi, exists ? NULL : &m, &h);
	if (rc < 0)
		goto fail;
	if (!exists) {
		/* Until its grant, lookups and stats find it, empty. */
		node_set_meta(n, &m);
		h->creating = true;
		node_creating(n, 1);
	}
	attr_base(&e.attr, n->ino);
	if (!exists || lease_attr(name, &e.attr) < 0) {
		e.attr.st_mode = S_IFREG | m.mode;
		e.attr.st_nlink = 1;
		e.attr.st_uid = m.uid;
		e.attr.st_gid = m.gid;
	}
	e.ino = n->ino;
	e.attr_timeout = 0;
	e.entry_timeout = 0;
	node_set_type(n->ino, S_IFREG);
	if (fuse_reply_create(req, &e, fi) != 0) {
		handle_free(h);
		node_forget(n->ino, 1);
	}
	return;
fail:
	if (n)
		node_forget(n->ino, 1);
	fuse_reply_err(req, -rc);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	char dir[FS_PATH_MAX], path[FS_PATH_MAX];
	struct fuse_entry_param e = {0};
	ustate_entry *got = NULL;
	struct handle *h = NULL;
	struct node *n = NULL;
	unsigned flags;
	ustate_meta m;
	uint64_t rev;
	int rc;

	rc = node_path(parent, dir);
	if (rc == 0 && !strcmp(dir, "/.leases") && !replay_request(req)) {
		create_lease(req, name, mode, fi);
		return;
	}
	if (rc == 0 && !strcmp(name, ".value")) {
		/* DIR/.value: write the directory key's own value. */
		rc = child_path(dir, name, path);
		if (rc == 0 && !strcmp(dir, "/"))
			rc = -EINVAL;
	} else if (rc == 0) {
		rc = creatable(dir, name, path);
	}
	if (rc == 0 && !S_ISREG(mode))
		rc = -EPERM;
	if (rc == 0 && fs.read_only && !replay_request(req))
		rc = -EROFS;
	if (rc < 0)
		goto fail;
	if (replay_request(req)) {
		/* The key exists already: only the kernel is told. */
		n = replay_node(path, KIND_FILE, true, &e.attr);
		h = n ? handle_new(H_REPLAY, n) : NULL;
		if (!h) {
			if (n)
				node_reply_done(n->ino);
			rc = -ENOMEM;
			goto fail;
		}
		fi->direct_io = 1;
		fi->fh = (uintptr_t)h;
		e.ino = n->ino;
		node_set_type(n->ino, S_IFREG);
		if (strcmp(name, ".value"))
			times_dir_changed(dir, false);
		rc = fuse_reply_create(req, &e, fi);
		node_reply_done(e.ino);
		if (rc != 0) {
			handle_free(h);
			node_forget(e.ino, 1);
		}
		return;
	}
	/* What is there, the revision and the value: one read. */
	rc = ustate_node_get(fs.store, strcmp(name, ".value") ? path : dir,
			     &flags, &rev, (fi->flags & O_TRUNC) ? NULL : &got);
	if (rc < 0)
		goto fail;
	if (strcmp(name, ".value") && flags_dir(flags)) {
		rc = -EISDIR;
		goto fail;
	}
	if ((flags & USTATE_NODE_VALUE) && (fi->flags & O_EXCL)) {
		rc = -EEXIST;
		goto fail;
	}
	n = node_lookup(path);
	if (!n) {
		rc = -ENOMEM;
		goto fail;
	}
	h = handle_new(H_WRITE, n);
	if (!h) {
		rc = -ENOMEM;
		goto fail;
	}
	h->writer = true;
	node_writer(n, 1);
	h->opened = rev;
	h->excl = fi->flags & O_EXCL;
	h->append = fi->flags & O_APPEND;
	if (!(flags & USTATE_NODE_VALUE)) {
		meta_new(req, dir, mode, false, &m);
		node_set_meta(n, &m);
		h->creating = true;
		node_creating(n, 1);
		if (strcmp(name, ".value"))
			times_dir_changed(dir, true);
	} else if (!(fi->flags & O_TRUNC)) {
		rc = take_value(h, got);
		if (rc < 0)
			goto fail;
	} else {
		h->trunc = true;
		node_wrote(n);
	}
	rc = open_writer(req, h);
	if (rc < 0)
		goto fail;
	/* Created by a holder of a lease: attached to it (lease_auto()). */
	if (h->creating) {
		char lease[USTATE_SEGMENT_MAX + 1];

		if (lease_auto(h->process, lease) == 1) {
			h->auto_lease = strdup(lease);
			rc = h->auto_lease ? 0 : -ENOMEM;
			if (rc < 0)
				goto fail;
		}
	}
	fi->direct_io = 1;
	fi->fh = (uintptr_t)h;
	attr_base(&e.attr, n->ino);
	e.attr.st_mode = S_IFREG;
	meta_attr(strcmp(name, ".value") ? path : dir, KIND_FILE,
		  h->creating ? n : NULL, &e.attr);
	/*
	 * O_EXCL claims the name at open, in the store: another mount (or
	 * node) racing for it must find it there and fail, as on a local
	 * file system, not at its close. The empty value is the key's first
	 * version; the data written is its next, at the first flush.
	 */
	if (h->excl) {
		pthread_mutex_lock(&h->lock);
		rc = commit(h);
		pthread_mutex_unlock(&h->lock);
		if (rc < 0)
			goto fail;
	}
	e.attr.st_nlink = 1;
	e.attr.st_size = (off_t)h->len;
	e.ino = n->ino;
	/*
	 * Not cached: the key exists only once a commit lands, and a
	 * creation that fails must not leave the kernel a dentry of it.
	 */
	e.attr_timeout = 0;
	e.entry_timeout = 0;
	node_set_type(n->ino, S_IFREG);
	ustate_entry_free(got);
	if (fuse_reply_create(req, &e, fi) != 0) {
		handle_free(h);
		node_forget(n->ino, 1);
	}
	return;
fail:
	ustate_entry_free(got);
	if (h)
		handle_free(h);
	if (n)
		node_forget(n->ino, 1);
	fuse_reply_err(req, -rc);
}

/* -o noopen: a READ with no open behind it reads the store as it is. */
static void read_unopened(fuse_req_t req, fuse_ino_t ino, size_t size,
			  off_t off)
{
	char path[FS_PATH_MAX], key[FS_PATH_MAX];
	enum node_kind kind;
	ustate_entry *e;
	size_t len;
	int rc;

	rc = node_path(ino, path);
	if (rc == 0)
		rc = classify(path, &kind, key);
	if (rc == 0 && kind != KIND_FILE && kind != KIND_VALUE)
		rc = -EBADF;
	if (rc == 0)
		rc = ustate_get(fs.store, key, &e);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	len = (size_t)off < e->value_len ? e->value_len - (size_t)off : 0;
	fuse_reply_buf(req, (const char *)e->value + (len ? off : 0),
		       len < size ? len : size);
	ustate_entry_free(e);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	const char *reply;
	size_t len;

	if (!h) {
		read_unopened(req, ino, size, off);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (h->kind == H_TXN) {
		/* Not seekable: each read continues where the last stopped. */
		reply = ustate_script_reply(h->script, &len);
		len -= h->reply_off;
		if (len > size)
			len = size;
		fuse_reply_buf(req, reply + h->reply_off, len);
		h->reply_off += len;
	} else if (h->kind == H_LEASE) {
		len = (size_t)off < h->text_len ? h->text_len - (size_t)off : 0;
		fuse_reply_buf(req, h->text + (len ? off : 0),
			       len < size ? len : size);
	} else if ((size_t)off >= h->len) {
		fuse_reply_buf(req, NULL, 0);
	} else {
		len = h->len - (size_t)off;
		fuse_reply_buf(req, h->buf + off, len < size ? len : size);
	}
	pthread_mutex_unlock(&h->lock);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	struct txn_caller caller;
	uint64_t committed = 0;
	int rc, kill_rc = 0;
	size_t end;

	if (!h) {
		fuse_reply_err(req, EROFS); /* -o noopen: nothing to write */
		return;
	}
	/*
	 * Once an open: an unprivileged writer clears set-ID bits. Not under
	 * h->lock, which others take under open_lock: meta_lock() must not
	 * wait on a rename that waits for open_lock.
	 */
	if (h->kind == H_WRITE &&
	    !__atomic_load_n(&h->killed, __ATOMIC_ACQUIRE)) {
		kill_rc = write_kill(req, h);
		if (kill_rc == 0)
			__atomic_store_n(&h->killed, true, __ATOMIC_RELEASE);
	}
	pthread_mutex_lock(&h->lock);
	if (h->kind == H_TXN) {
		/* A refused piece leaves the script broken: it never commits.
		 */
		rc = h->error ? h->error : charge(h, size);
		if (rc < 0) {
			h->error = rc;
		} else {
			/* Each op is checked against the writer (perm.c). */
			txn_caller_begin(&caller, h->script, req);
			rc = ustate_script_feed(h->script, buf, size);
			txn_caller_end(&caller, h->script);
			if (rc == 1)
				committed = ustate_script_revision(h->script);
		}
		if (rc >= 0)
			rc = 0;
		h->reply_off = 0;
	} else if (h->kind == H_LEASE) {
		/*
		 * A TTL: a few digits. An append (>>) starts at the size of
		 * the text shown: it goes on from what this open wrote.
		 */
		if ((size_t)off > h->len)
			off = (off_t)h->len;
		end = (size_t)off + size;
		rc = end > LEASE_WRITE_MAX ? -EINVAL : ensure_cap(h, end + 1);
		if (rc == 0) {
			memcpy(h->buf + off, buf, size);
			if (end > h->len)
				h->len = end;
			h->dirty = true;
			/* Refused at the write: shells ignore close()'s. */
			if (!lease_ttl_parse(h->buf, h->len))
				rc = -EINVAL;
			else if (!h->lease_new)
				rc = lease_live(h->lease);
		}
		if (rc < 0)
			h->error = rc;
	} else if (h->kind != H_WRITE) {
		rc = -EBADF;
	} else {
		if (h->append)
			off = (off_t)h->len;
		end = (size_t)off + size;
		rc = end > fs.max_value ? -EFBIG : ensure_cap(h, end);
		if (rc == 0)
			rc = kill_rc;
		if (rc == 0) {
			if ((size_t)off > h->len)
				memset(h->buf + h->len, 0, off - h->len);
			memcpy(h->buf + off, buf, size);
			if (end > h->len)
				h->len = end;
			h->dirty = true;
			node_wrote(h->node);
			/* Now the next flush commits: no release to wait for.
			 */
			expect_done(h);
		} else {
			/* Part of the value was refused: commit none of it. */
			h->error = rc;
		}
	}
	pthread_mutex_unlock(&h->lock);
	/* The commit's events come first, as a file's close gives its own. */
	if (committed)
		replay_done(committed);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

/*
 * A close commits what was written since the last commit. bash closes a
 * redirection's descriptor once before writing, so a truncation or a
 * creation with nothing written commits at the release (see
 * node_settle() in fs_i.h for how the next request waits for it).
 */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	int rc = 0;

	if (!h) {
		/*
		 * -o noopen: no open file, nothing to commit. ENOSYS stops
		 * the kernel's FLUSH at every close for good.
		 */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (h->kind == H_LEASE) {
		rc = lease_commit(h);
	} else if (h->kind == H_WRITE && h->error) {
		rc = h->error; /* a refused write: nothing commits */
	} else if (h->kind == H_WRITE && h->dirty) {
		rc = commit(h);
	} else if (h->kind == H_WRITE && (h->trunc || h->creating) &&
		   !h->expects) {
		h->expects = true;
		node_expect(h->node, 1);
	}
	pthread_mutex_unlock(&h->lock);
	fuse_reply_err(req, -rc);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);
	int rc = 0;

	if (!h) { /* -o noopen: no open file, nothing to commit */
		fuse_reply_err(req, 0);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (h->kind == H_LEASE)
		rc = lease_commit(h);
	else if (h->kind == H_WRITE && (h->dirty || h->trunc || h->creating))
		rc = commit(h);
	pthread_mutex_unlock(&h->lock);
	fuse_reply_err(req, -rc);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct handle *h = fh(fi);

	if (!h) {
		fuse_reply_err(req, 0);
		return;
	}
	/*
	 * A truncation or creation that no write followed (": > k",
	 * "touch k") commits here; its error cannot reach close() any more.
	 */
	pthread_mutex_lock(&h->lock);
	if (h->kind == H_LEASE)
		lease_commit(h);
	else if (h->kind == H_WRITE && (h->dirty || h->trunc || h->creating))
		commit(h);
	pthread_mutex_unlock(&h->lock);
	handle_free(h);
	fuse_reply_err(req, 0);
}

/* truncate(2) on a path: one read-modify-write, retried on a race. */
static int truncate_key(const char *key, off_t size)
{
	ustate_entry *e;
	uint64_t v;
	char *buf;
	int rc, i;

	if ((size_t)size > fs.max_value)
		return -EFBIG;
	for (i = 0; i < RENAME_RETRIES; i++) {
		rc = ustate_get(fs.store, key, &e);
		if (rc < 0)
			return rc;
		buf = calloc(1, (size_t)size + 1);
		if (!buf) {
			ustate_entry_free(e);
			return -ENOMEM;
		}
		memcpy(buf, e->value,
		       e->value_len < (size_t)size ? e->value_len
						   : (size_t)size);
		v = e->version;
		ustate_entry_free(e);
		rc = own_write(key, buf, (size_t)size, false, v);
		free(buf);
		if (rc != -ECANCELED)
			return rc;
	}
	return -EBUSY;
}

/* ftruncate: part of the open file's next commit. */
static int buffer_truncate(struct handle *h, off_t size)
{
	int rc;

	pthread_mutex_lock(&h->lock);
	rc = ensure_cap(h, (size_t)size + 1);
	if (rc == 0) {
		if ((size_t)size > h->len)
			memset(h->buf + h->len, 0, (size_t)size - h->len);
		h->len = (size_t)size;
		h->dirty = true;
		node_wrote(h->node);
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/*
 * SETATTR of the open file h whose key is gone: an ftruncate edits a
 * writer's buffer (which commits nothing any more), times are accepted
 * as ever; its owner and mode are no longer kept anywhere: ENOENT.
 */
static void setattr_gone(fuse_req_t req, fuse_ino_t ino, const char *path,
			 struct handle *h, const struct stat *attr, int to_set)
{
	ustate_meta m = {.uid = fs.uid, .gid = fs.gid, .mode = 0644};
	bool unlinked = node_unlinked(ino, &m);
	struct stat st;
	int rc = 0;

	if (to_set &
	    (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
		rc = -ENOENT;
	else if ((to_set & FUSE_SET_ATTR_SIZE) && h->kind != H_WRITE)
		rc = -EBADF;
	else if (to_set & FUSE_SET_ATTR_SIZE)
		rc = buffer_truncate(h, attr->st_size);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	pthread_mutex_lock(&h->lock);
	gone_attr(ino, path, unlinked ? &m : NULL, (off_t)h->len, h->updated,
		  &st);
	pthread_mutex_unlock(&h->lock);
	node_reply_begin(ino, 0);
	fuse_reply_attr(req, &st, 0);
	node_reply_done(ino);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	char path[FS_PATH_MAX], key[FS_PATH_MAX];
	struct handle *h = fi ? fh(fi) : NULL;
	enum node_kind kind;
	struct stat st;
	off_t size;
	uint64_t rev;
	int rc;

	rc = node_path(ino, path);
	if (rc == 0 && !replay_request(req))
		rc = fresh_reads();
	if (rc == 0 && h && (h->kind == H_READ || h->kind == H_WRITE) &&
	    node_unlinked(ino, &(ustate_meta){0})) {
		/* Unlinked while open: whatever is at its path is not it. */
		setattr_gone(req, ino, path, h, attr, to_set);
		return;
	}
	if (rc == 0)
		rc = classify(path, &kind, key);
	if (rc == -ENOENT && h && (h->kind == H_READ || h->kind == H_WRITE)) {
		setattr_gone(req, ino, path, h, attr, to_set);
		return;
	}
	if (rc < 0)
		goto out;
	if (fs.read_only) {
		rc = -EROFS;
		goto out;
	}
	if (kind == KIND_LEASE) {
		/* A truncation is the start of a write: nothing to do. */
		rc = lease_setattr(lease_name_of(path), attr, to_set);
		goto out;
	}
	if (kind == KIND_LEASES) {
		rc = to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
			       FUSE_SET_ATTR_GID)
			     ? -EPERM
			     : 0;
		goto out;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && kind != KIND_FILE &&
	    kind != KIND_VALUE) {
		rc = kind == KIND_DIR ? -EISDIR : -EINVAL;
		goto out;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && h && h->kind == H_WRITE) {
		rc = buffer_truncate(h, attr->st_size);
	} else if (to_set & FUSE_SET_ATTR_SIZE) {
		struct node *n = node_of(ino);

		if (n)
			node_writer(n, 1);
		rc = truncate_key(key, attr->st_size);
		if (n)
			node_writer(n, -1);
	}
	/*
	 * Mode, owner and times are kept (perm.c, times.c); the kernel
	 * checked who may change them.
	 */
	if (rc == 0)
		rc = meta_setattr(node_of(ino), path, kind, key, attr, to_set);
out:
	if (rc == 0)
		rc = fill_attr(ino, path, &st, &rev);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (h && h->kind == H_WRITE) {
		pthread_mutex_lock(&h->lock);
		st.st_size = (off_t)h->len;
		rev = 0;
		pthread_mutex_unlock(&h->lock);
	} else if (S_ISREG(st.st_mode) && own_size_of(req, ino, &size)) {
		st.st_size = size;
		rev = 0;
	}
	node_reply_begin(ino, rev);
	fuse_reply_attr(req, &st, node_attr_valid(ino, rev));
	node_reply_done(ino);
}

/* ---- namespace -------------------------------------------------------- */

/* Whether dir (not the root) has nothing below it but path. */
static int only_child(const char *dir, const char *path, bool *alone)
{
	ustate_dirent *d;
	size_t n;
	int rc;

	*alone = false;
	if (!strcmp(dir, "/"))
		return 0;
	rc = ustate_readdir(fs.store, dir, &d, &n);
	if (rc < 0)
		return rc;
	*alone = n == 0 ||
		 (n == 1 && !strcmp(d[0].name, path + strlen(dir) + 1));
	ustate_dirents_free(d, n);
	return 0;
}

/* The owner and mode of key, for its open files once it is gone. */
static void meta_gone(const char *key, ustate_meta *m)
{
	ustate_meta got;

	*m = (ustate_meta){.uid = fs.uid, .gid = fs.gid, .mode = 0644};
	if (meta_of(key, false, &got) == 0)
		*m = got;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char dir[FS_PATH_MAX], path[FS_PATH_MAX];
	char npath[FS_PATH_MAX];
	struct node *unlinking = NULL;
	bool alone, creating, open = false;
	ustate_meta gone;
	ustate_op ops[2];
	unsigned flags;
	size_t n = 0;
	int rc;

	rc = node_path(parent, dir);
	if (rc == 0 && replay_request(req)) {
		/* Gone from the store already: the replay has already ended
		 * the name of the writers that came before (node_deleted). */
		if (strcmp(name, ".value"))
			times_dir_changed(dir, false);
		fuse_reply_err(req, 0);
		return;
	}
	if (rc == 0)
		rc = fresh_reads();
	if (rc == 0 && !strcmp(dir, "/.leases")) {
		/*
		 * rm revokes: the keys go, their events come from the watch,
		 * delivered on this mount before the unlink returns (as a
		 * /.txn commit's are), so that the keys are gone for whatever
		 * the caller does next.
		 */
		rc = lease_revoke(name);
		if (rc == 0)
			replay_done(ustate_revision(fs.store));
		fuse_reply_err(req, -rc);
		return;
	}
	if (rc == 0 && !strcmp(dir, "/") &&
	    (!strcmp(name, ".txn") || !strcmp(name, ".leases")))
		rc = -EPERM;
	else if (rc == 0 && !strcmp(name, ".value"))
		strcpy(path, dir); /* the directory key's own value */
	else if (rc == 0)
		rc = child_path(dir, name, path);
	if (rc == 0 && fs.read_only)
		rc = -EROFS;
	if (rc < 0)
		goto out;
	rc = child_path(dir, name, npath);
	if (rc < 0)
		goto out;
	/*
	 * Waits for a commit under way, which the delete then removes; only
	 * after it is the creation known to be pending still (a landed one,
	 * deleted meanwhile through another mount, is ENOENT).
	 */
	unlinking = node_unlink_begin(npath, &creating);
	/* Its open files keep its owner and mode (see node_gone()). */
	open = unlinking && node_has_open(unlinking);
	if (open && !node_meta(unlinking, &gone))
		meta_gone(path, &gone);
	gone.ctime_ns = times_now(); /* the link count changes */
	rc = ustate_node(fs.store, path, &flags);
	if (rc < 0)
		goto out;
	if (strcmp(name, ".value") && flags_dir(flags)) {
		rc = -EISDIR;
		goto out;
	}
	if (!(flags & USTATE_NODE_VALUE)) {
		/* Created but not yet committed: the name is forgotten. */
		rc = creating ? 0 : -ENOENT;
		goto out;
	}
	ops[n++] = (ustate_op){.type = USTATE_OP_DELETE, .key = path};
	/* The last file of a directory leaves the directory, as in POSIX. */
	rc = strcmp(name, ".value") ? only_child(dir, path, &alone) : 0;
	if (rc < 0)
		goto out;
	if (strcmp(name, ".value") && alone)
		ops[n++] = (ustate_op){.type = USTATE_OP_MKDIR, .key = dir};
	else if (!strcmp(name, ".value") && !(flags & USTATE_NODE_CHILDREN))
		ops[n++] = (ustate_op){.type = USTATE_OP_MKDIR, .key = path};
	rc = own_transaction(ops, n);
out:
	if (rc == 0 && open)
		node_gone(unlinking, &gone);
	node_unlink_end(unlinking, rc == 0);
	if (rc == 0 && strcmp(name, ".value"))
		times_dir_changed(dir, true);
	fuse_reply_err(req, -rc);
}

/* The reply to a MKDIR or MKNOD of path in dir, made (rc 0) or not. */
static void reply_made(fuse_req_t req, int rc, const char *dir,
		       const char *path)
{
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	times_dir_changed(dir, true);
	reply_entry_for(req, path);
}

/* Whether a new file or directory may take path: 0, -EEXIST, -EROFS. */
static int name_is_free(const char *path)
{
	unsigned flags;
	int rc;

	rc = fs.read_only ? -EROFS : ustate_node(fs.store, path, &flags);
	if (rc == 0 && (flags || node_is_creating(path)))
		rc = -EEXIST;
	return rc;
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	char dir[FS_PATH_MAX], path[FS_PATH_MAX];
	ustate_meta m;
	ustate_op op;
	int rc;

	rc = node_path(parent, dir);
	if (rc == 0)
		rc = creatable(dir, name, path);
	if (rc == 0 && replay_request(req)) {
		/* The directory exists in the store already. */
		times_dir_changed(dir, false);
		synth_entry(req, path, KIND_DIR);
		return;
	}
	if (rc == 0)
		rc = name_is_free(path);
	if (rc == 0) {
		meta_new(req, dir, mode, true, &m);
		op = (ustate_op){.type = USTATE_OP_MKDIR,
				 .key = path,
				 .value = &m,
				 .value_len = sizeof(m)};
		rc = own_transaction(&op, 1);
	}
	reply_made(req, rc, dir, path);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char dir[FS_PATH_MAX], path[FS_PATH_MAX];
	ustate_op ops[2];
	unsigned flags;
	size_t n = 0;
	bool alone;
	int rc;

	rc = node_path(parent, dir);
	if (rc == 0 && replay_request(req)) {
		/* Already gone from the store. */
		if (child_path(dir, name, path) == 0)
			times_dir_gone(path);
		times_dir_changed(dir, false);
		fuse_reply_err(req, 0);
		return;
	}
	if (rc == 0)
		rc = fresh_reads();
	if (rc == 0)
		rc = child_path(dir, name, path);
	if (rc == 0 && (!strcmp(path, "/.leases") || lease_name_of(path)))
		rc = lease_name_of(path) ? -ENOTDIR : -EPERM;
	if (rc == 0 && fs.read_only)
		rc = -EROFS;
	if (rc == 0)
		rc = ustate_node(fs.store, path, &flags);
	if (rc < 0)
		goto out;
	if (!flags_dir(flags))
		rc = flags & USTATE_NODE_VALUE ? -ENOTDIR : -ENOENT;
	else if (flags & (USTATE_NODE_CHILDREN | USTATE_NODE_VALUE))
		rc = -ENOTEMPTY;
	if (rc < 0)
		goto out;
	ops[n++] = (ustate_op){.type = USTATE_OP_RMDIR, .key = path};
	rc = only_child(dir, path, &alone);
	if (rc < 0)
		goto out;
	if (alone)
		ops[n++] = (ustate_op){.type = USTATE_OP_MKDIR, .key = dir};
	rc = own_transaction(ops, n);
	if (rc == 0) {
		times_dir_gone(path);
		times_dir_changed(dir, true);
	}
out:
	fuse_reply_err(req, -rc);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	fuse_reply_err(req, EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	fuse_reply_err(req, EPERM);
}

/*
 * mknod of a regular file (tar --xattrs makes its files so, to set their
 * xattrs before the data) is a create of an empty key, committed at once
 * with its creator's owner and mode: -EEXIST when the name is taken.
 * FIFOs, sockets and device nodes have no place in a store: EPERM.
 */
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	char dir[FS_PATH_MAX], path[FS_PATH_MAX];
	ustate_op ops[2];
	ustate_meta m;
	int rc;

	rc = S_ISREG(mode) ? node_path(parent, dir) : -EPERM;
	if (rc == 0)
		rc = creatable(dir, name, path);
	if (rc == 0)
		rc = name_is_free(path);
	if (rc == 0) {
		meta_new(req, dir, mode, false, &m);
		ops[0] = (ustate_op){.type = USTATE_OP_CREATE,
				     .key = path,
				     .value = "",
				     .value_len = 0};
		ops[1] = (ustate_op){.type = USTATE_OP_META,
				     .key = path,
				     .value = &m,
				     .value_len = sizeof(m)};
		meta_lock(false);
		rc = own_transaction(ops, 2);
		meta_unlock();
	}
	reply_made(req, rc, dir, path);
}

/* A growing array of transaction ops that owns its strings and values. */
struct oplist {
	ustate_op *ops;
	size_t n, cap;
	char **owned;
	size_t nowned;
};

static int oplist_add(struct oplist *l, ustate_op op, char *own_key,
		      void *own_val)
{
	void *p;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		p = realloc(l->ops, l->cap * sizeof(*l->ops));
		if (!p)
			return -ENOMEM;
		l->ops = p;
		p = realloc(l->owned, 2 * l->cap * sizeof(*l->owned));
		if (!p)
			return -ENOMEM;
		l->owned = p;
	}
	l->ops[l->n++] = op;
	if (own_key)
		l->owned[l->nowned++] = own_key;
	if (own_val)
		l->owned[l->nowned++] = own_val;
	return 0;
}

static void oplist_free(struct oplist *l)
{
	size_t i;

	for (i = 0; i < l->nowned; i++)
		free(l->owned[i]);
	free(l->owned);
	free(l->ops);
	memset(l, 0, sizeof(*l));
}

/* to + (key without its from prefix), newly allocated. */
static char *rebase(const char *key, const char *from, const char *to)
{
	size_t flen = strlen(from), tlen = strlen(to);
	char *p = malloc(tlen + strlen(key + flen) + 1);

	if (p) {
		memcpy(p, to, tlen);
		strcpy(p + tlen, key + flen);
	}
	return p;
}

/* A copy of the metadata of path (see USTATE_META_*), or NULL: none. */
static int meta_dup(const char *path, unsigned which, ustate_meta **out)
{
	int rc;

	*out = malloc(sizeof(**out));
	if (!*out)
		return -ENOMEM;
	rc = ustate_meta_get(fs.store, path, which, *out);
	if (rc < 0) {
		free(*out);
		*out = NULL;
	}
	return rc == -ENOENT ? 0 : rc;
}

/*
 * The op that gives nk, just set by l's last op, the metadata of k (it
 * moves with the key): k's owner and mode (the default when it has
 * none), its mtime (updated_at, unless one was set by hand: a rename
 * changes no mtime) and a ctime of now.
 */
static int move_meta(struct oplist *l, const char *k, const char *nk,
		     int64_t updated_at)
{
	ustate_meta *m;
	int rc;

	m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	rc = meta_of(k, false, m);
	if (rc < 0) {
		free(m);
		return rc;
	}
	if (!(m->flags & USTATE_META_MTIME)) {
		m->flags |= USTATE_META_MTIME;
		m->mtime_ns = updated_at * 1000000000LL;
	}
	m->ctime_ns = times_now();
	rc = oplist_add(l,
			(ustate_op){.type = USTATE_OP_META,
				    .key = nk,
				    .value = m,
				    .value_len = sizeof(*m)},
			NULL, m);
	if (rc < 0)
		free(m);
	return rc;
}

/*
 * The ops that give nk (a key, or a record: which) the user xattrs of k,
 * after the op that sets or makes it: one XATTR per name of k, and a
 * removal of each name nk had that k lacks (a rename over an existing
 * file or record replaces it whole).
 */
static int move_xattrs(struct oplist *l, const char *k, const char *nk,
		       unsigned which)
{
	char **names = NULL, **old = NULL, *buf;
	size_t n = 0, nold = 0, i, j, len, nlen;
	void *v;
	int rc;

	rc = ustate_xattr_list(fs.store, k, which, &names, &n);
	if (rc == 0)
		rc = ustate_xattr_list(fs.store, nk, which, &old, &nold);
	for (i = 0; rc == 0 && i < n; i++) {
		rc = ustate_xattr_get(fs.store, k, which, names[i], &v, &len);
		if (rc < 0)
			break;
		nlen = strlen(names[i]) + 1;
		buf = malloc(nlen + len);
		rc = buf ? 0 : -ENOMEM;
		if (rc == 0) {
			memcpy(buf, names[i], nlen);
			memcpy(buf + nlen, v, len);
			rc = oplist_add(l,
					(ustate_op){.type = USTATE_OP_XATTR,
						    .key = nk,
						    .version = which,
						    .value = buf,
						    .value_len = nlen + len},
					NULL, buf);
			if (rc < 0)
				free(buf);
		}
		free(v);
	}
	for (j = 0; rc == 0 && j < nold; j++) {
		for (i = 0; i < n && strcmp(names[i], old[j]); i++)
			;
		if (i < n)
			continue;
		rc = oplist_add(
			l,
			(ustate_op){.type = USTATE_OP_XATTR,
				    .key = nk,
				    .version = which | USTATE_XATTR_REMOVE,
				    .value = old[j],
				    .value_len = strlen(old[j]) + 1},
			NULL, old[j]);
		if (rc == 0)
			old[j] = NULL; /* l owns it now */
	}
	ustate_list_free(names, n);
	for (j = 0; j < nold; j++)
		free(old[j]);
	free(old);
	return rc;
}

/*
 * The ops that move one key k to nk (owned by l from here on): a check
 * of its version, so a concurrent change makes the rename retry, a set
 * (a create with noreplace) of the new key with k's owner, and a delete
 * of the old one. -ENOENT when k has no value.
 */
static int move_key(struct oplist *l, const char *k, char *nk, bool noreplace)
{
	ustate_entry *e = NULL;
	char *lease = NULL;
	size_t llen = 0;
	void *val = NULL;
	int rc;

	rc = nk ? ustate_get(fs.store, k, &e) : -ENOMEM;
	if (rc == 0) {
		/* Its lease, if any, goes along (after the value): a set
		 * without one would detach the key. */
		llen = e->lease ? strlen(e->lease) + 1 : 0;
		val = malloc(e->value_len + 1 + llen);
		rc = val ? 0 : -ENOMEM;
	}
	if (rc < 0) {
		free(nk);
		ustate_entry_free(e);
		return rc;
	}
	memcpy(val, e->value, e->value_len);
	if (llen) {
		lease = (char *)val + e->value_len + 1;
		memcpy(lease, e->lease, llen);
	}
	rc = oplist_add(l,
			(ustate_op){.type = USTATE_OP_CHECK_VERSION,
				    .key = k,
				    .version = e->version},
			NULL, NULL);
	if (rc == 0)
		rc = oplist_add(l,
				(ustate_op){.type = noreplace ? USTATE_OP_CREATE
							      : USTATE_OP_SET,
					    .key = nk,
					    .value = val,
					    .value_len = e->value_len,
					    .lease = lease},
				nk, val);
	else
		free(nk), free(val);
	if (rc == 0)
		rc = move_meta(l, k, nk, e->updated_at);
	if (rc == 0)
		rc = move_xattrs(l, k, nk, USTATE_META_KEY);
	if (rc == 0)
		rc = oplist_add(l,
				(ustate_op){.type = USTATE_OP_DELETE, .key = k},
				NULL, NULL);
	ustate_entry_free(e);
	return rc;
}

/*
 * Build the ops that move every key and record at or below from to to:
 * a version check, a set and a delete per key (so a concurrent change
 * makes the whole rename retry), a record move per record.
 */
static int move_ops(struct oplist *l, const char *from, const char *to,
		    bool noreplace)
{
	char prefix[USTATE_KEY_MAX + 2], **keys = NULL, **recs = NULL;
	size_t nkeys = 0, nrecs = 0, i, flen = strlen(from);
	char *nk;
	int rc;

	memcpy(prefix, from, flen);
	memcpy(prefix + flen, "/", 2);
	rc = ustate_list(fs.store, prefix, &keys, &nkeys);
	if (rc == 0)
		rc = ustate_list_dirs(fs.store, prefix, &recs, &nrecs);
	/* A key created below from meanwhile makes the whole rename retry. */
	if (rc == 0)
		rc = oplist_add(l,
				(ustate_op){.type = USTATE_OP_CHECK_CHILDREN,
					    .key = from,
					    .version = nkeys},
				NULL, NULL);
	for (i = 0; rc == 0 && i <= nkeys; i++) {
		const char *k = i < nkeys ? keys[i] : from;

		rc = move_key(l, k, rebase(k, from, to), noreplace);
		/*
		 * The directory itself need not have a value; a key gone
		 * since the listing makes the rename retry.
		 */
		if (rc == -ENOENT)
			rc = i == nkeys ? 0 : -ECANCELED;
	}
	for (i = 0; rc == 0 && i <= nrecs; i++) {
		const char *r = i < nrecs ? recs[i] : from;
		ustate_meta *m = NULL;

		nk = rebase(r, from, to);
		rc = nk ? meta_dup(r, USTATE_META_DIR, &m) : -ENOMEM;
		if (m)
			m->ctime_ns = times_now();
		if (rc == 0)
			rc = oplist_add(
				l,
				(ustate_op){.type = USTATE_OP_RMDIR, .key = r},
				NULL, NULL);
		/* The record moves with its owner and xattrs. */
		if (rc == 0)
			rc = oplist_add(
				l,
				(ustate_op){.type = USTATE_OP_MKDIR,
					    .key = nk,
					    .value = m,
					    .value_len = m ? sizeof(*m) : 0},
				nk, m);
		if (rc < 0) {
			free(nk);
			free(m);
		} else {
			rc = move_xattrs(l, r, nk, USTATE_META_DIR);
		}
	}
	/* The key strings of keys/recs must outlive the ops: keep them. */
	for (i = 0; i < nkeys; i++)
		if (rc < 0 || oplist_add(l, (ustate_op){0}, keys[i], NULL))
			free(keys[i]);
		else
			l->n--;
	for (i = 0; i < nrecs; i++)
		if (rc < 0 || oplist_add(l, (ustate_op){0}, recs[i], NULL))
			free(recs[i]);
		else
			l->n--;
	free(keys);
	free(recs);
	return rc;
}

/*
 * The rename of a file created but not yet committed: the name moves and
 * the commit will land on the new one; a key there goes. Commits of from
 * wait meanwhile (node_unlink_begin()), so that one landing in the middle
 * cannot leave its key at the old name while the file moves. -EAGAIN: a
 * commit landed before, from is a key now and is renamed as one.
 */
static int move_creation(const char *from, const char *to, unsigned int flags)
{
	ustate_op del = {.type = USTATE_OP_DELETE, .key = to};
	unsigned fflags, tflags;
	struct node *c;
	bool creating;
	int rc;

	c = node_unlink_begin(from, &creating);
	rc = ustate_node(fs.store, from, &fflags);
	if (rc == 0 && fflags)
		rc = -EAGAIN;
	else if (rc == 0 && !creating)
		rc = -ENOENT;
	if (rc == 0)
		rc = ustate_node(fs.store, to, &tflags);
	if (rc == 0 && flags_dir(tflags))
		rc = -EISDIR;
	else if (rc == 0 && tflags && (flags & RENAME_NOREPLACE))
		rc = -EEXIST;
	else if (rc == 0 && tflags)
		rc = own_transaction(&del, 1);
	if (rc == 0)
		node_move(from, to);
	node_unlink_end(c, false);
	return rc;
}

static int do_rename(const char *from, const char *to, unsigned int flags)
{
	char fdir[FS_PATH_MAX], tdir[FS_PATH_MAX];
	unsigned fflags, tflags;
	struct oplist l = {0};
	bool fdir_is, tdir_is, alone;
	int rc, attempt;

	if (!strcmp(from, to))
		return 0;
	for (attempt = 0; attempt < RENAME_RETRIES; attempt++) {
		rc = ustate_node(fs.store, from, &fflags);
		if (rc == 0)
			rc = ustate_node(fs.store, to, &tflags);
		if (rc < 0)
			return rc;
		fdir_is = flags_dir(fflags);
		tdir_is = flags_dir(tflags);
		if (!fflags && !node_is_creating(from))
			return -ENOENT;
		if (!fflags) {
			rc = move_creation(from, to, flags);
			if (rc != -EAGAIN)
				return rc;
			continue; /* its commit landed: a key to rename */
		}
		if (tflags && (flags & RENAME_NOREPLACE))
			return -EEXIST;
		if (fdir_is && tflags && !tdir_is)
			return -ENOTDIR;
		if (!fdir_is && tdir_is)
			return -EISDIR;
		if (fdir_is &&
		    (tflags & (USTATE_NODE_CHILDREN | USTATE_NODE_VALUE)))
			return -ENOTEMPTY;
		if (fdir_is && !strncmp(to, from, strlen(from)) &&
		    to[strlen(from)] == '/')
			return -EINVAL;
		if (fdir_is && tdir_is)
			rc = oplist_add(
				&l,
				(ustate_op){.type = USTATE_OP_RMDIR, .key = to},
				NULL, NULL);
		if (rc == 0 && fdir_is)
			rc = move_ops(&l, from, to, flags & RENAME_NOREPLACE);
		/* Moving a file: only the key itself, not below it. */
		if (rc == 0 && !fdir_is)
			rc = move_key(&l, from, strdup(to),
				      flags & RENAME_NOREPLACE);
		/* The source directory keeps existing when it empties. */
		path_split(from, fdir);
		path_split(to, tdir);
		if (rc == 0 && strcmp(fdir, tdir))
			rc = only_child(fdir, from, &alone);
		if (rc == 0 && strcmp(fdir, tdir) && alone)
			rc = oplist_add(&l,
					(ustate_op){.type = USTATE_OP_MKDIR,
						    .key = fdir},
					NULL, NULL);
		if (rc == 0) {
			/* A replaced file's open writers lose their name. */
			struct node *t =
				(tflags & USTATE_NODE_VALUE) && !fdir_is
					? node_unlink_begin(to, NULL)
					: NULL;
			bool open = t && node_has_open(t);
			ustate_meta gone;

			if (open) {
				meta_gone(to, &gone);
				gone.ctime_ns = times_now(); /* no link left */
			}
			rc = own_transaction(l.ops, l.n);
			if (rc == 0 && open)
				node_gone(t, &gone);
			node_unlink_end(t, rc == 0);
		}
		oplist_free(&l);
		if (rc != -ECANCELED)
			break;
	}
	/* Still racing with other writers after every retry. */
	if (rc == -ECANCELED)
		rc = -EBUSY;
	if (rc == 0)
		node_move(from, to);
	return rc;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	char dir[FS_PATH_MAX], from[FS_PATH_MAX];
	char ndir[FS_PATH_MAX], to[FS_PATH_MAX];
	int rc;

	if (flags & RENAME_EXCHANGE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	rc = node_path(parent, dir);
	if (rc == 0)
		rc = node_path(newparent, ndir);
	if (rc == 0)
		rc = child_path(dir, name, from);
	if (rc == 0)
		rc = creatable(ndir, newname, to);
	if (rc == 0 && replay_request(req)) {
		/* Moved in the store already: the nodes move with the names. */
		node_move(from, to);
		times_dir_moved(from, to, dir, ndir, false);
		fuse_reply_err(req, 0);
		return;
	}
	if (rc == 0 && (!strcmp(name, ".txn") || !strcmp(name, ".value") ||
			is_lease_path(from)))
		rc = -EPERM;
	if (rc == 0 && fs.read_only)
		rc = -EROFS;
	if (rc == 0)
		rc = fresh_reads();
	if (rc == 0) {
		/* No chmod between reading the owners and moving them. */
		meta_lock(false);
		rc = do_rename(from, to, flags);
		meta_unlock();
	}
	if (rc == 0)
		times_dir_moved(from, to, dir, ndir, true);
	fuse_reply_err(req, -rc);
}

/* ---- directories ------------------------------------------------------ */

struct creating_acc {
	struct dir_handle *d;
	int rc;
};

static void add_creating(void *arg, const char *name)
{
	struct creating_acc *a = arg;
	ustate_dirent *grown;
	size_t i;

	for (i = 0; i < a->d->n; i++)
		if (!strcmp(a->d->ents[i].name, name))
			return;
	grown = realloc(a->d->ents, (a->d->n + 1) * sizeof(*grown));
	if (!grown) {
		a->rc = -ENOMEM;
		return;
	}
	a->d->ents = grown;
	grown[a->d->n].name = strdup(name);
	grown[a->d->n].flags = USTATE_NODE_VALUE;
	if (grown[a->d->n].name)
		a->d->n++;
	else
		a->rc = -ENOMEM;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct dir_handle *d;
	struct creating_acc acc;
	int rc;

	d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* A snapshot at opendir, so offsets stay meaningful. */
	rc = node_path(ino, d->path);
	if (rc == 0 && fs.barrier)
		rc = ustate_barrier(fs.store);
	if (rc == 0 && !strcmp(d->path, "/.leases"))
		rc = lease_list(&d->ents, &d->n);
	else if (rc == 0)
		rc = ustate_readdir(fs.store, d->path, &d->ents, &d->n);
	/* Whether it has a ".value" is part of the snapshot too. */
	if (rc == 0 && strcmp(d->path, "/") && strcmp(d->path, "/.leases")) {
		unsigned flags;

		d->value = ustate_node(fs.store, d->path, &flags) == 0 &&
			   (flags & USTATE_NODE_VALUE);
	}
	if (rc == 0 && strcmp(d->path, "/.leases")) {
		acc = (struct creating_acc){d, 0};
		node_each_creating(d->path, add_creating, &acc);
		rc = acc.rc;
	}
	if (rc < 0) {
		ustate_dirents_free(d->ents, d->n);
		free(d);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) != 0) {
		ustate_dirents_free(d->ents, d->n);
		free(d);
	}
}

/*
 * Entry number i of d: ".", "..", [".txn", ".leases"], [".value"], then
 * children.
 */
static bool dir_entry(struct dir_handle *d, size_t i, const char **name,
		      mode_t *mode, char *path)
{
	bool root = !strcmp(d->path, "/");
	size_t extra;

	if (i == 0 || i == 1) {
		*name = i ? ".." : ".";
		*mode = S_IFDIR;
		strcpy(path, d->path);
		return true;
	}
	i -= 2;
	if (root) {
		if (i == 0) {
			*name = ".txn";
			*mode = S_IFREG;
			strcpy(path, "/.txn");
			return true;
		}
		if (i == 1) {
			*name = ".leases";
			*mode = S_IFDIR;
			strcpy(path, "/.leases");
			return true;
		}
		i -= 2;
	} else if (strcmp(d->path, "/.leases")) {
		extra = d->value;
		if (extra && i == 0) {
			*name = ".value";
			*mode = S_IFREG;
			child_path(d->path, ".value", path);
			return true;
		}
		i -= extra;
	}
	if (i >= d->n)
		return false;
	*name = d->ents[i].name;
	*mode = flags_dir(d->ents[i].flags) ? S_IFDIR : S_IFREG;
	child_path(d->path, *name, path);
	return true;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	char path[FS_PATH_MAX];
	size_t used = 0, len;
	const char *name;
	struct stat st;
	char *buf;
	mode_t mode;

	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (; dir_entry(d, (size_t)off, &name, &mode, path); off++) {
		memset(&st, 0, sizeof(st));
		st.st_ino = node_ino_for(path);
		st.st_mode = mode;
		len = fuse_add_direntry(req, buf + used, size - used, name, &st,
					off + 1);
		if (len > size - used)
			break;
		used += len;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;

	ustate_dirents_free(d->ents, d->n);
	free(d);
	fuse_reply_err(req, 0);
}

/* ---- extended attributes ---------------------------------------------- */

static const char *const xattr_names[] = {
	"user.version",
	"user.created_at",
	"user.updated_at",
	"user.revision",
};
#define NXATTR (sizeof(xattr_names) / sizeof(xattr_names[0]))

static int xattr_index(const char *name)
{
	size_t i;

	for (i = 0; i < NXATTR; i++)
		if (!strcmp(name, xattr_names[i]))
			return (int)i;
	return -1;
}

/* What ino is (see classify()), once its path's changes have landed. */
static int ino_classify(fuse_ino_t ino, char *path, enum node_kind *kind,
			char *key)
{
	int rc = node_path(ino, path);

	if (rc == 0) {
		node_settle(path);
		rc = classify(path, kind, key);
	}
	return rc;
}

/* The entry behind a file node, for its xattrs; -ENODATA for others. */
static int xattr_entry(fuse_ino_t ino, ustate_entry **e)
{
	char path[FS_PATH_MAX], key[FS_PATH_MAX];
	enum node_kind kind;
	int rc;

	rc = ino_classify(ino, path, &kind, key);
	if (rc < 0)
		return rc;
	if (kind != KIND_FILE && kind != KIND_VALUE)
		return -ENODATA;
	rc = ustate_get(fs.store, key, e);
	return rc == -ENOENT ? -ENODATA : rc;
}

/* The text of xattr i of ino into buf (32 bytes); its length or -errno. */
static int xattr_value(fuse_ino_t ino, int i, char *buf)
{
	ustate_entry *e;
	uint64_t v = 0;
	int rc;

	rc = xattr_entry(ino, &e);
	if (rc < 0)
		return rc;
	switch (i) {
	case 0:
		v = e->version;
		break;
	case 1:
		v = (uint64_t)e->created_at;
		break;
	case 2:
		v = (uint64_t)e->updated_at;
		break;
	case 3:
		v = e->mod_revision;
		break;
	}
	ustate_entry_free(e);
	return snprintf(buf, 32, "%llu", (unsigned long long)v);
}

/*
 * user.lease: the key's lease (ENODATA when none), listed only when set.
 * Setting it attaches the key to a live lease, removing it detaches the
 * key: a set of the same value naming the lease, or none, checked
 * against the version read (retried on a race). The kernel checked write
 * permission on the file, as for any user.* attribute.
 */
#define XATTR_LEASE "user.lease"

/* The lease of ino's key into buf (USTATE_SEGMENT_MAX + 1 bytes). */
static int xattr_lease(fuse_ino_t ino, char *buf)
{
	ustate_entry *e;
	int rc;

	rc = xattr_entry(ino, &e);
	if (rc < 0)
		return rc;
	rc = -ENODATA;
	if (e->lease && strlen(e->lease) <= USTATE_SEGMENT_MAX) {
		strcpy(buf, e->lease);
		rc = (int)strlen(buf);
	}
	ustate_entry_free(e);
	return rc;
}

/* Attach ino's key to lease (NULL: detach it). */
static int xattr_lease_set(fuse_ino_t ino, const char *lease, int flags)
{
	char path[FS_PATH_MAX], key[FS_PATH_MAX];
	enum node_kind kind;
	ustate_op ops[2];
	ustate_entry *e;
	int rc, i;

	if (fs.read_only)
		return -EROFS;
	rc = ino_classify(ino, path, &kind, key);
	if (rc == 0 && kind != KIND_FILE && kind != KIND_VALUE)
		rc = -EPERM;
	for (i = 0; rc == 0 && i < RENAME_RETRIES; i++) {
		rc = ustate_get(fs.store, key, &e);
		if (rc < 0)
			break;
		if ((flags & XATTR_CREATE) && e->lease)
			rc = -EEXIST;
		else if (((flags & XATTR_REPLACE) || !lease) && !e->lease)
			rc = -ENODATA;
		if (rc == 0) {
			ops[0] = (ustate_op){.type = USTATE_OP_CHECK_VERSION,
					     .key = key,
					     .version = e->version};
			ops[1] = (ustate_op){.type = USTATE_OP_SET,
					     .key = key,
					     .value = e->value,
					     .value_len = e->value_len,
					     .lease = lease};
			rc = own_transaction(ops, 2);
		}
		ustate_entry_free(e);
		if (rc != -ECANCELED)
			return rc;
		rc = 0;
	}
	return rc ? rc : -EBUSY;
}

/*
 * user.connected, on the root only: "1" while the store reaches its
 * server, "0" while a remote store is cut off from it (ustate_connected():
 * at consistency=local, reads go on from the replica meanwhile). Read
 * only, as the others.
 */
#define XATTR_CONNECTED "user.connected"

/*
 * User xattrs (user.* but ours) are stored with the key, or with the
 * directory's record: where ino's live, into at (a key, or a directory's
 * path) and *which, and *n when its key is being created (they wait in
 * its node for the first commit); -EPERM for /.txn, /.leases and lease
 * files, which keep none.
 */
static int uxattr_at(fuse_ino_t ino, char *at, unsigned *which, struct node **n)
{
	char path[FS_PATH_MAX];
	enum node_kind kind;
	int rc;

	*n = NULL;
	rc = ino_classify(ino, path, &kind, at);
	if (rc < 0)
		return rc;
	if (kind == KIND_DIR) {
		strcpy(at, path);
		*which = USTATE_META_DIR;
		return 0;
	}
	if (kind != KIND_FILE && kind != KIND_VALUE)
		return -EPERM;
	*which = USTATE_META_KEY;
	if (node_is_creating(path) && ustate_exists(fs.store, at) == 0)
		*n = node_of(ino);
	return 0;
}

/* Whether name is one of ours on ino (computed, or the lease's). */
static bool xattr_ours(fuse_ino_t ino, const char *name)
{
	return xattr_index(name) >= 0 || !strcmp(name, XATTR_LEASE) ||
	       (ino == FUSE_ROOT_ID && !strcmp(name, XATTR_CONNECTED));
}

/* A stored user xattr of ino into *value (free it), or -ENODATA. */
static int uxattr_get(fuse_ino_t ino, const char *name, void **value,
		      size_t *len)
{
	char at[FS_PATH_MAX];
	struct node_xattr *x;
	struct node *n;
	unsigned which;
	size_t nx, i, nlen = strlen(name) + 1;
	int rc;

	rc = uxattr_at(ino, at, &which, &n);
	if (rc < 0)
		return rc == -EPERM ? -ENODATA : rc;
	if (!n || !node_xattrs(n, &x, &nx))
		return ustate_xattr_get(fs.store, at, which, name, value, len);
	rc = -ENODATA;
	for (i = 0; i < nx; i++)
		if (!strcmp(x[i].name, name)) {
			*len = x[i].len - nlen;
			*value = malloc(*len + 1);
			rc = *value ? 0 : -ENOMEM;
			if (rc == 0)
				memcpy(*value, x[i].name + nlen, *len);
			break;
		}
	node_xattrs_free(x, nx);
	return rc;
}

static void reply_xattr_value(fuse_req_t req, const char *v, size_t len,
			      size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, v, len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	char buf[USTATE_SEGMENT_MAX + 1];
	void *v = NULL;
	size_t vlen;
	int i, len;

	i = xattr_index(name);
	if (ino == FUSE_ROOT_ID && !strcmp(name, XATTR_CONNECTED))
		len = snprintf(buf, sizeof(buf), "%d",
			       ustate_connected(fs.store));
	else if (!strcmp(name, XATTR_LEASE))
		len = xattr_lease(ino, buf);
	else if (i >= 0)
		len = xattr_value(ino, i, buf);
	else if (strncmp(name, "user.", 5))
		len = -ENODATA;
	else
		len = uxattr_get(ino, name, &v, &vlen);
	if (len < 0)
		fuse_reply_err(req, -len);
	else if (v)
		reply_xattr_value(req, v, vlen, size);
	else
		reply_xattr_value(req, buf, (size_t)len, size);
	free(v);
}

/* Append the names of ino's stored user xattrs to *buf (*len, *cap). */
static int uxattr_names(fuse_ino_t ino, char **buf, size_t *len, size_t *cap)
{
	char at[FS_PATH_MAX], **names = NULL, *grown;
	struct node_xattr *x = NULL;
	size_t n = 0, i, need;
	struct node *nd;
	unsigned which;
	int rc;

	rc = uxattr_at(ino, at, &which, &nd);
	if (rc < 0)
		return rc == -EPERM ? 0 : rc;
	if (nd && node_xattrs(nd, &x, &n)) {
		names = calloc(n ? n : 1, sizeof(*names));
		for (i = 0; names && i < n; i++)
			names[i] = x[i].name;
		rc = names ? 0 : -ENOMEM;
	} else {
		rc = ustate_xattr_list(fs.store, at, which, &names, &n);
	}
	for (i = 0; rc == 0 && i < n; i++) {
		need = *len + strlen(names[i]) + 1;
		if (need > *cap) {
			grown = realloc(*buf, need * 2);
			if (!grown) {
				rc = -ENOMEM;
				break;
			}
			*buf = grown;
			*cap = need * 2;
		}
		memcpy(*buf + *len, names[i], strlen(names[i]) + 1);
		*len = need;
	}
	if (x) {
		free(names);
		node_xattrs_free(x, n);
	} else {
		ustate_list_free(names, n);
	}
	return rc;
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	size_t len = 0, cap = 256 + sizeof(XATTR_LEASE), i;
	char *buf = malloc(cap);
	ustate_entry *e;
	int rc;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = xattr_entry(ino, &e);
	if (rc == -ENODATA) {
		rc = 0; /* directories have none of ours, but the root this */
		if (ino == FUSE_ROOT_ID) {
			memcpy(buf, XATTR_CONNECTED, sizeof(XATTR_CONNECTED));
			len = sizeof(XATTR_CONNECTED);
		}
	} else if (rc == 0) {
		for (i = 0; i < NXATTR; i++) {
			memcpy(buf + len, xattr_names[i],
			       strlen(xattr_names[i]) + 1);
			len += strlen(xattr_names[i]) + 1;
		}
		if (e->lease) {
			memcpy(buf + len, XATTR_LEASE, sizeof(XATTR_LEASE));
			len += sizeof(XATTR_LEASE);
		}
		ustate_entry_free(e);
	}
	if (rc == 0)
		rc = uxattr_names(ino, &buf, &len, &cap);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_xattr_value(req, buf, len, size);
	free(buf);
}

/*
 * Set (value not NULL) or remove a stored user xattr of ino. A directory
 * that only existed through its keys becomes a record first, as a chmod
 * makes it: the record keeps them. setxattr(2)'s flags are checked
 * against a read just before.
 */
static int uxattr_set(fuse_ino_t ino, const char *name, const char *value,
		      size_t size, int flags)
{
	unsigned which, f = 0, nflags = 0;
	char at[FS_PATH_MAX], *buf;
	ustate_op ops[2];
	struct node *n;
	size_t nlen;
	int rc;

	if (strncmp(name, "user.", 5))
		return -ENOTSUP;
	if (fs.read_only)
		return -EROFS;
	if (strlen(name) > USTATE_XATTR_NAME_MAX)
		return -ERANGE;
	if (value && size > USTATE_XATTR_SIZE_MAX)
		return -E2BIG;
	if (flags & XATTR_CREATE)
		f |= USTATE_XATTR_CREATE;
	if (flags & XATTR_REPLACE)
		f |= USTATE_XATTR_REPLACE;
	rc = uxattr_at(ino, at, &which, &n);
	if (rc < 0)
		return rc;
	if (n) {
		rc = node_set_xattr(n, name, value, size, f);
		if (rc != -ENOENT)
			return rc;
		/* Committed meanwhile: the key has them now. */
	}
	if (which == USTATE_META_DIR && strcmp(at, "/")) {
		rc = ustate_node(fs.store, at, &nflags);
		if (rc < 0 || (nflags & USTATE_NODE_RECORD))
			goto set;
		/* Not a record: none to remove or replace, the set makes it
		 * one in the same step. */
		if (!value || (f & USTATE_XATTR_REPLACE))
			return -ENODATA;
		nlen = strlen(name) + 1;
		buf = malloc(nlen + size);
		if (!buf)
			return -ENOMEM;
		memcpy(buf, name, nlen);
		memcpy(buf + nlen, value, size);
		ops[0] = (ustate_op){.type = USTATE_OP_MKDIR, .key = at};
		ops[1] = (ustate_op){.type = USTATE_OP_XATTR,
				     .key = at,
				     .version = USTATE_META_DIR,
				     .value = buf,
				     .value_len = nlen + size};
		rc = own_transaction(ops, 2);
		free(buf);
		return rc;
	}
set:
	return ustate_xattr_set(fs.store, at, which, name, value,
				value ? size : 0, f);
}

/*
 * Ours describe the key, as st_mtime does, and are read-only: a set of
 * one succeeds and changes nothing (to its own value, XATTR_CREATE aside,
 * as before), so that rsync -aX and cp -a between two mounts, whose
 * versions differ, copy a tree; so does a removal (rsync -X removes the
 * names its source lacks). Other user.* names are stored (uxattr_set());
 * other namespaces (trusted, security) are not: ENOTSUP.
 */
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	char buf[USTATE_SEGMENT_MAX + 1];
	int i, len;

	if (!strcmp(name, XATTR_LEASE)) {
		len = size && size < sizeof(buf) ? 0 : -EINVAL;
		if (len == 0) {
			memcpy(buf, value, size);
			buf[size] = '\0';
			len = strlen(buf) == size ? 0 : -EINVAL;
		}
		if (len == 0)
			len = xattr_lease_set(ino, buf, flags);
		fuse_reply_err(req, len < 0 ? -len : 0);
		return;
	}
	if (!xattr_ours(ino, name)) {
		len = uxattr_set(ino, name, value, size, flags);
		fuse_reply_err(req, len < 0 ? -len : 0);
		return;
	}
	i = xattr_index(name);
	len = i < 0 ? 0 : xattr_value(ino, i, buf);
	if (len == -ENODATA)
		len = -EPERM; /* a directory has none of ours */
	else if (len >= 0 && (flags & XATTR_CREATE))
		len = -EEXIST;
	fuse_reply_err(req, len < 0 ? -len : 0);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	char buf[32];
	int i, len;

	if (!strcmp(name, XATTR_LEASE)) {
		len = xattr_lease_set(ino, NULL, 0);
		fuse_reply_err(req, len < 0 ? -len : 0);
		return;
	}
	if (!xattr_ours(ino, name)) {
		len = uxattr_set(ino, name, NULL, 0, 0);
		fuse_reply_err(req, len < 0 ? -len : 0);
		return;
	}
	i = xattr_index(name);
	len = i < 0 ? 0 : xattr_value(ino, i, buf);
	fuse_reply_err(req, len < 0 ? -len : 0);
}

/* ---- setup ------------------------------------------------------------ */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/*
	 * The kernel clears setuid and setgid bits on a chown or truncate:
	 * it then sends the new mode as a SETATTR. Not on a write of a
	 * direct-I/O file, nor an O_TRUNC open: the daemon does (perm.c).
	 */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	/*
	 * -o noopen: no OPEN at all (the first answer is ENOSYS). Never
	 * with atomic O_TRUNC, or an O_TRUNC open would reach nobody: the
	 * kernel sends a SETATTR of size 0 instead, which is refused.
	 */
	if (fs.noopen) {
		if (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT)
			conn->want |= FUSE_CAP_NO_OPEN_SUPPORT;
		conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
		return;
	}
	/* O_TRUNC comes with OPEN: one commit, no empty intermediate. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv = {0};

	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_namemax = USTATE_SEGMENT_MAX;
	fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops ustatefs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.fsync = op_fsync,
	.release = op_release,
	.unlink = op_unlink,
	.mkdir = op_mkdir,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.symlink = op_symlink,
	.link = op_link,
	.mknod = op_mknod,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
	.statfs = op_statfs,
};

void handles_shutdown(void)
{
	struct handle *h;

	/*
	 * The loop has ended: a RELEASE still on its way will never come.
	 * Commit what it would have committed (": > k", a creation), then
	 * free every open file.
	 */
	while ((h = open_files)) {
		if (h->kind == H_WRITE && (h->dirty || h->trunc || h->creating))
			commit(h);
		handle_free(h);
	}
}
