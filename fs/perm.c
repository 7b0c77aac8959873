/* SPDX-License-Identifier: MIT */
/*
 * This file implements ownership and permissions in ustatefs. The store
 * keeps an owner, a group and mode bits with each key and directory
 * record that has been given some (USTATE_OP_META, MKDIR with metadata);
 * what has none belongs to the mounting user, 0644 for a file and 0755
 * for a directory, as everything did before the store kept owners.
 * GETATTR reports them; SETATTR (chmod, chown, chgrp) stores them, a
 * directory that only existed through its keys then becomes a record;
 * CREATE and MKDIR give what they make the caller's ids and mode (the
 * kernel took the umask off it already); a rename moves them with the
 * keys, in the same transaction (ops.c). A key being created has no key
 * to keep its metadata until its first commit: it waits in its node
 * (node_set_meta()) and commits with the value (meta_create()).
 *
 * The kernel enforces them when others may come in: with allow_other (or
 * allow_root) the daemon mounts with default_permissions (main.c).
 * Without, FUSE lets in the mounting user alone; modes are kept and shown
 * but not checked, as on any FUSE mount without default_permissions.
 *
 * /.txn is the one way in that the kernel cannot check, since the keys
 * are inside what is written. When the kernel checks the paths, every op
 * of a transaction is checked here against the credentials of the process
 * whose write() runs it (its uid, gid and supplementary groups), as the
 * same operation through the path would be. Every existing directory on
 * the way needs search (x); a get or check of a key needs read; a set of
 * an existing key write; a set or create of a new key write and search on
 * the directory it goes in (the deepest one that exists: the others
 * appear with the key), or write on a file key in the way, which turns
 * into a directory; a delete write and search on the key's directory, and
 * with the sticky bit the caller must own the key or the directory. The
 * checks see the store as it is before the transaction. Keys a
 * transaction creates belong to the caller, mode 0644. Uid 0 passes every
 * check, as CAP_DAC_OVERRIDE does.
 *
 * Set-user-ID and set-group-ID bits go as on a local file system. A chown
 * (by anyone) clears them through the kernel, which sends the new mode
 * with the new owner in one SETATTR (FUSE_CAP_HANDLE_KILLPRIV is off). A
 * write clears them here: the kernel clears nothing on a write of a
 * direct-I/O file (all of ours), and the FUSE_WRITE_KILL_SUIDGID flag it
 * sends instead does not reach a file system through libfuse 3.14 (nor
 * does killpriv_v2 exist there), so the daemon applies the kernel's rule
 * to the caller of the WRITE itself (meta_write_kill()).
 */
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

#define PERM_R 4
#define PERM_W 2
#define PERM_X 1

static pthread_rwlock_t meta_rw = PTHREAD_RWLOCK_INITIALIZER;

void meta_lock(bool exclusive)
{
	if (exclusive)
		pthread_rwlock_wrlock(&meta_rw);
	else
		pthread_rwlock_rdlock(&meta_rw);
}

void meta_unlock(void)
{
	pthread_rwlock_unlock(&meta_rw);
}

static ustate_meta meta_default(bool dir)
{
	return (ustate_meta){
		.uid = fs.uid, .gid = fs.gid, .mode = dir ? 0755 : 0644};
}

int meta_of(const char *path, bool dir, ustate_meta *m)
{
	int rc;

	rc = ustate_meta_get(fs.store, path,
			     dir ? USTATE_META_DIR : USTATE_META_KEY, m);
	if (rc == -ENOENT) {
		*m = meta_default(dir);
		rc = 0;
	}
	return rc;
}

int meta_attr(const char *at, enum node_kind kind, struct node *n,
	      struct stat *st)
{
	ustate_meta m;
	int rc = 0;

	if (kind == KIND_TXN) {
		/* Anyone let in may run transactions: each op is checked. */
		m = (ustate_meta){.uid = fs.uid, .gid = fs.gid, .mode = 0666};
	} else if (n) {
		if (!node_meta(n, &m))
			m = meta_default(false);
	} else {
		rc = meta_of(at, kind == KIND_DIR, &m);
		if (rc < 0)
			return rc;
	}
	st->st_uid = m.uid;
	st->st_gid = m.gid;
	st->st_mode = (st->st_mode & S_IFMT) |
		      (m.mode & (fs.read_only ? 07555 : 07777));
	if (kind != KIND_TXN)
		times_attr(&m, kind == KIND_DIR ? at : NULL, st);
	return 0;
}

void meta_new(fuse_req_t req, const char *dir, mode_t mode, bool isdir,
	      ustate_meta *m)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	ustate_meta pm;

	*m = (ustate_meta){
		.uid = ctx->uid, .gid = ctx->gid, .mode = mode & 07777};
	/* A setgid directory hands down its group, and to directories its
	 * bit. */
	if (meta_of(dir, true, &pm) == 0 && (pm.mode & S_ISGID)) {
		m->gid = pm.gid;
		if (isdir)
			m->mode |= S_ISGID;
	}
}

int meta_setattr(struct node *n, const char *path, enum node_kind kind,
		 const char *key, const struct stat *attr, int to_set)
{
	bool dir = kind == KIND_DIR, creating;
	const char *at = dir ? path : key;
	bool mtime = false;
	ustate_meta m;
	ustate_op op;
	uint64_t v = 1;
	int rc;

	if (!(to_set &
	      (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
	       FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	       FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)))
		return 0;
	if (kind == KIND_TXN)
		return -EPERM;
	if (fs.read_only)
		return -EROFS;
	meta_lock(true);
	/* A key being created keeps its metadata in its node for now. */
	rc = dir || !n ? 0 : ustate_version(fs.store, key, &v);
	creating = rc == 0 && !v && n && node_meta(n, &m);
	if (rc == 0 && !creating)
		rc = meta_of(at, dir, &m);
	if (rc == 0) {
		if (to_set & FUSE_SET_ATTR_MODE)
			m.mode = attr->st_mode & 07777;
		if (to_set & FUSE_SET_ATTR_UID)
			m.uid = attr->st_uid;
		if (to_set & FUSE_SET_ATTR_GID)
			m.gid = attr->st_gid;
		mtime = times_setattr(&m, attr, to_set);
	}
	if (rc == 0 && creating) {
		node_set_meta(n, &m);
	} else if (rc == 0) {
		/* A directory of keys alone becomes a record: it keeps them. */
		op = (ustate_op){.type = dir ? USTATE_OP_MKDIR : USTATE_OP_META,
				 .key = at,
				 .value = &m,
				 .value_len = sizeof(m)};
		rc = own_transaction(&op, 1);
	}
	meta_unlock();
	/*
	 * The time set is the directory's from now on; a file's is set again
	 * by a commit of a write already pending (cp -p sets it before its
	 * close).
	 */
	if (rc == 0 && mtime && dir)
		times_dir_set(path);
	else if (rc == 0 && mtime && n && !creating)
		node_set_mtime(n, m.mtime_ns);
	return rc;
}

int meta_create(struct node *n, const char *key, const void *val, size_t len,
		bool excl, const char *lease)
{
	struct node_xattr *x;
	ustate_op *ops;
	ustate_meta m;
	size_t i = 0, nx, k;
	int rc;

	if (!node_meta(n, &m))
		return own_write_lease(key, val, len, excl, 0, lease);
	/* And its xattrs, set before this first commit (cp -a, rsync -X). */
	node_xattrs(n, &x, &nx);
	ops = calloc(3 + nx, sizeof(*ops));
	if (!ops) {
		node_xattrs_free(x, nx);
		return -ENOMEM;
	}
	if (!excl)
		ops[i++] = (ustate_op){.type = USTATE_OP_CHECK_VERSION,
				       .key = key};
	ops[i++] = (ustate_op){.type = excl ? USTATE_OP_CREATE : USTATE_OP_SET,
			       .key = key,
			       .value = val,
			       .value_len = len,
			       .lease = lease};
	ops[i++] = (ustate_op){.type = USTATE_OP_META,
			       .key = key,
			       .value = &m,
			       .value_len = sizeof(m)};
	for (k = 0; k < nx; k++)
		ops[i++] = (ustate_op){.type = USTATE_OP_XATTR,
				       .key = key,
				       .version = USTATE_META_KEY,
				       .value = x[k].name,
				       .value_len = x[k].len};
	meta_lock(false);
	rc = own_transaction(ops, i);
	meta_unlock();
	free(ops);
	node_xattrs_free(x, nx);
	/* Created by another writer meanwhile: it keeps its owner. */
	if (rc == -ECANCELED)
		rc = own_write(key, val, len, false, 0);
	return rc;
}

/* ---- /.txn ------------------------------------------------------------- */

/* The caller's ids and groups; none of the groups when /proc fails. */
static void caller_load(struct txn_caller *c)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(c->req);
	int n;

	c->loaded = true;
	c->uid = ctx->uid;
	c->gid = ctx->gid;
	c->groups = c->small;
	c->ngroups = 0;
	if (c->uid == 0)
		return;
	n = fuse_req_getgroups(c->req,
			       (int)(sizeof(c->small) / sizeof(c->small[0])),
			       c->small);
	if (n > (int)(sizeof(c->small) / sizeof(c->small[0]))) {
		c->groups = malloc((size_t)n * sizeof(*c->groups));
		if (c->groups)
			n = fuse_req_getgroups(c->req, n, c->groups);
		else
			c->groups = c->small;
		if (c->groups == c->small)
			n = 0;
	}
	c->ngroups = n < 0 ? 0 : n;
}

static bool in_group(const struct txn_caller *c, gid_t gid)
{
	int i;

	if (c->gid == gid)
		return true;
	for (i = 0; i < c->ngroups; i++)
		if (c->groups[i] == gid)
			return true;
	return false;
}

/* Whether c may do want (PERM_* bits) to something of metadata m. */
static bool allowed(const struct txn_caller *c, const ustate_meta *m,
		    unsigned want)
{
	unsigned bits;

	if (c->uid == 0)
		return true;
	if (c->uid == m->uid)
		bits = m->mode >> 6;
	else if (in_group(c, m->gid))
		bits = m->mode >> 3;
	else
		bits = m->mode;
	return (bits & want) == want;
}

/* -EACCES unless c may do want to the key (dir false) or directory. */
static int need(const struct txn_caller *c, const char *path, bool dir,
		unsigned want)
{
	ustate_meta m;
	int rc;

	rc = meta_of(path, dir, &m);
	if (rc == 0 && !allowed(c, &m, want))
		rc = -EACCES;
	return rc;
}

/*
 * Search on every directory from the root down to dir, as far as they
 * exist. end receives the deepest path that exists (FS_PATH_MAX bytes):
 * a directory or, when *file, a file key in the way, which a new key
 * below it would turn into a directory.
 */
static int walk(const struct txn_caller *c, const char *dir, char *end,
		bool *file)
{
	char path[FS_PATH_MAX];
	const char *p = dir;
	unsigned flags;
	size_t len;
	int rc;

	strcpy(end, "/");
	*file = false;
	rc = need(c, "/", true, PERM_X);
	while (rc == 0 && strcmp(dir, "/") && p) {
		p = strchr(p + 1, '/');
		len = p ? (size_t)(p - dir) : strlen(dir);
		memcpy(path, dir, len);
		path[len] = '\0';
		rc = ustate_node(fs.store, path, &flags);
		if (rc < 0)
			break;
		if (!flags_dir(flags)) {
			if (flags & USTATE_NODE_VALUE) {
				strcpy(end, path);
				*file = true;
			}
			break;
		}
		rc = need(c, path, true, PERM_X);
		strcpy(end, path);
	}
	return rc;
}

/* A new key whose deepest existing ancestor is end (see walk()). */
static int may_create(const struct txn_caller *c, const char *end, bool file)
{
	return file ? need(c, end, false, PERM_W)
		    : need(c, end, true, PERM_W | PERM_X);
}

/* Removing key, whose value is a file in directory dir. */
static int may_delete(const struct txn_caller *c, const char *dir,
		      const char *key)
{
	ustate_meta dm, km;
	int rc;

	rc = meta_of(dir, true, &dm);
	if (rc == 0 && !allowed(c, &dm, PERM_W | PERM_X))
		rc = -EACCES;
	/* The sticky bit: only the key's owner or the directory's. */
	if (rc == 0 && (dm.mode & S_ISVTX) && c->uid != dm.uid) {
		rc = meta_of(key, false, &km);
		if (rc == 0 && c->uid != km.uid)
			rc = -EPERM;
	}
	return rc;
}

/* The ustate_script_check_fn of /.txn: op as its path would be checked. */
static int txn_check(void *arg, const ustate_op *op)
{
	char dir[FS_PATH_MAX], end[FS_PATH_MAX];
	struct txn_caller *c = arg;
	unsigned flags;
	bool file;
	int rc;

	if (!c->loaded)
		caller_load(c);
	if (c->uid == 0)
		return 0;
	rc = ustate_node(fs.store, op->key, &flags);
	if (rc < 0)
		return rc;
	/* The value is the file key, or DIR/.value inside the directory. */
	if (flags_dir(flags))
		strcpy(dir, op->key);
	else
		path_split(op->key, dir);
	rc = walk(c, dir, end, &file);
	if (rc < 0)
		return rc;
	switch (op->type) {
	case USTATE_OP_CHECK_VERSION:
		/* Of a missing key, only what a lookup tells. */
		if (!(flags & USTATE_NODE_VALUE))
			return 0;
		return need(c, op->key, false, PERM_R);
	case USTATE_OP_SET:
		if (flags & USTATE_NODE_VALUE)
			return need(c, op->key, false, PERM_W);
		return may_create(c, end, file);
	case USTATE_OP_CREATE:
		/* An existing key makes the create fail (EEXIST) anyway. */
		if (flags & USTATE_NODE_VALUE)
			return 0;
		return may_create(c, end, file);
	case USTATE_OP_DELETE:
		/* A missing one makes the delete fail (ENOENT). */
		if (!(flags & USTATE_NODE_VALUE))
			return 0;
		return may_delete(c, dir, op->key);
	default:
		return -EPERM;
	}
}

void txn_caller_begin(struct txn_caller *c, ustate_script *sc, fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	ustate_meta owner = {.uid = ctx->uid, .gid = ctx->gid, .mode = 0644};

	memset(c, 0, sizeof(*c));
	c->req = req;
	/* Checked as the paths are: when the kernel checks those. */
	if (fs.permissions)
		ustate_script_set_check(sc, txn_check, c);
	/* The default owner needs no metadata of its own. */
	ustate_script_set_owner(
		sc, ctx->uid == fs.uid && ctx->gid == fs.gid ? NULL : &owner);
}

void txn_caller_end(struct txn_caller *c, ustate_script *sc)
{
	ustate_script_set_check(sc, NULL, NULL);
	if (c->groups != c->small)
		free(c->groups);
}

/* ---- set-ID bits at a write -------------------------------------------- */

/*
 * Whether req's caller has CAP_FSETID (in its effective set, as /proc
 * tells); when /proc cannot say (a process gone, another pid namespace):
 * whether it is root.
 */
static bool caller_fsetid(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	unsigned long long caps;
	char path[64], line[256];
	bool yes = ctx->uid == 0;
	FILE *f;

	if (ctx->pid <= 0)
		return yes;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)ctx->pid);
	f = fopen(path, "re");
	if (!f)
		return yes;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "CapEff: %llx", &caps) == 1) {
			yes = caps & (1ull << CAP_FSETID);
			break;
		}
	}
	fclose(f);
	return yes;
}

int meta_write_kill(fuse_req_t req, struct node *n, const char *key,
		    bool *changed)
{
	struct txn_caller c = {.req = req};
	bool creating;
	ustate_meta m;
	ustate_op op;
	uint32_t kill;
	int rc;

	*changed = false;
	/* Root writes as it likes, without a look at /proc or the store. */
	if (fuse_req_ctx(req)->uid == 0 || fs.read_only)
		return 0;
	meta_lock(true);
	creating = node_meta(n, &m);
	rc = creating ? 0 : meta_of(key, false, &m);
	kill = rc == 0 ? m.mode & S_ISUID : 0;
	/*
	 * A set-group-ID file the group cannot execute is a mark of
	 * mandatory locking, kept unless the writer is not of its group.
	 */
	if (rc == 0 && (m.mode & S_ISGID)) {
		if (m.mode & S_IXGRP) {
			kill |= S_ISGID;
		} else {
			caller_load(&c);
			if (!in_group(&c, m.gid))
				kill |= S_ISGID;
			if (c.groups != c.small)
				free(c.groups);
		}
	}
	/* CAP_FSETID keeps them: /proc is read for a set-ID file alone. */
	if (kill && caller_fsetid(req))
		kill = 0;
	if (kill) {
		m.mode &= ~kill;
		if (creating) {
			node_set_meta(n, &m);
		} else {
			op = (ustate_op){.type = USTATE_OP_META,
					 .key = key,
					 .value = &m,
					 .value_len = sizeof(m)};
			rc = own_transaction(&op, 1);
		}
		*changed = rc == 0;
	}
	meta_unlock();
	return rc;
}
