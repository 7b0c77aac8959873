/* SPDX-License-Identifier: MIT */
/*
 * This file implements times in ustatefs, as a local file system keeps
 * them, on the metadata the store keeps with a key or record (see
 * ustate_meta in ustate.h). It touches the store only through perm.c's
 * meta_of() and own_transaction().
 *
 *  - A file's mtime is its key's updated_at, unless a time was set by hand
 *    (utimensat(): touch -d, cp -p, rsync -t, tar x): that one is kept
 *    with the key's metadata until the key's value is next written, by
 *    whatever program, and a rename keeps it (ops.c moves the file's
 *    mtime with its key, so a mv changes no mtime). A time set while the
 *    file has a write of its own pending (cp -p sets it before its
 *    close) is set again with that write's commit, as the last change.
 *  - atime is the mtime (as with noatime, and atime set alone is not
 *    kept): a read changes nothing in the store.
 *  - ctime is the latest of the key's updated_at and the time its
 *    metadata last changed (chmod, chown, utimensat, rename, kept as
 *    ustate_meta.ctime_ns).
 *  - A directory's mtime and ctime move to the present when an entry is
 *    created, removed or renamed in it, through this mount or replayed
 *    from elsewhere (the replay's own requests come through the same
 *    handlers). This mount keeps those moves in memory, in a table of
 *    directory paths; a time set by hand is kept in the record's
 *    metadata, and a later change of an entry through this mount keeps
 *    its time there instead, so that a new mount shows that. Without
 *    either, a directory shows the time the mount started.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_i.h"

#define NS 1000000000LL
#define DIR_BUCKETS 1024

struct dir_time {
	char *path;
	int64_t at; /* unix ns of the last change of an entry */
	struct dir_time *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct dir_time *dirs[DIR_BUCKETS]; /* protected by lock */

int64_t times_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static struct timespec ts_of(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / NS, .tv_nsec = ns % NS};

	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += NS;
	}
	return ts;
}

static int64_t ns_of(struct timespec ts)
{
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static size_t bucket(const char *path)
{
	size_t h = 5381;

	while (*path)
		h = h * 33 + (unsigned char)*path++;
	return h % DIR_BUCKETS;
}

/* When an entry of dir last changed through this mount, or 0. */
static int64_t dir_changed_at(const char *dir)
{
	struct dir_time *d;
	int64_t at = 0;

	pthread_mutex_lock(&lock);
	for (d = dirs[bucket(dir)]; d; d = d->next)
		if (!strcmp(d->path, dir)) {
			at = d->at;
			break;
		}
	pthread_mutex_unlock(&lock);
	return at;
}

void times_attr(const ustate_meta *m, const char *dir, struct stat *st)
{
	int64_t at;

	if (m->flags & USTATE_META_MTIME)
		st->st_mtim = st->st_atim = ts_of(m->mtime_ns);
	if (m->ctime_ns > ns_of(st->st_ctim))
		st->st_ctim = ts_of(m->ctime_ns);
	if (!dir)
		return;
	at = dir_changed_at(dir);
	if (at) {
		st->st_mtim = st->st_atim = ts_of(at);
		if (at > ns_of(st->st_ctim))
			st->st_ctim = ts_of(at);
	}
}

bool times_setattr(ustate_meta *m, const struct stat *attr, int to_set)
{
	int64_t now = times_now();

	if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
		m->flags |= USTATE_META_MTIME;
		m->mtime_ns = now;
	} else if (to_set & FUSE_SET_ATTR_MTIME) {
		m->flags |= USTATE_META_MTIME;
		m->mtime_ns = ns_of(attr->st_mtim);
	}
	m->ctime_ns = now;
	return to_set & (FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_MTIME);
}

/* Forget what this mount noted of dir (and, with below, of its tree). */
static void dir_forget(const char *dir, bool below)
{
	size_t len = strlen(dir), i;
	struct dir_time **p, *d;

	pthread_mutex_lock(&lock);
	for (i = 0; i < DIR_BUCKETS; i++) {
		if (!below && i != bucket(dir))
			continue;
		for (p = &dirs[i]; (d = *p);) {
			if (!strcmp(d->path, dir) ||
			    (below && !strncmp(d->path, dir, len) &&
			     (d->path[len] == '/' || len == 1))) {
				*p = d->next;
				free(d->path);
				free(d);
			} else {
				p = &d->next;
			}
		}
	}
	pthread_mutex_unlock(&lock);
}

void times_dir_set(const char *dir)
{
	dir_forget(dir, false);
}

void times_dir_gone(const char *dir)
{
	dir_forget(dir, true);
}

/*
 * A time set by hand on dir would come back at the next mount: the
 * record keeps now instead, if it is still one (an rmdir between the
 * check and the write would make it again, an empty directory: a small
 * window the store has no op to close, ustate.h's MKDIR being the one
 * way to set a record's metadata).
 */
static void dir_keep_now(const char *dir, int64_t now)
{
	ustate_op op = {.type = USTATE_OP_MKDIR, .key = dir};
	unsigned flags = 0;
	ustate_meta m;

	if (meta_of(dir, true, &m) < 0 || !(m.flags & USTATE_META_MTIME))
		return;
	if (strcmp(dir, "/") && (ustate_node(fs.store, dir, &flags) < 0 ||
				 !(flags & USTATE_NODE_RECORD)))
		return;
	m.mtime_ns = now;
	m.ctime_ns = now;
	op.value = &m;
	op.value_len = sizeof(m);
	meta_lock(true);
	own_transaction(&op, 1);
	meta_unlock();
}

void times_dir_changed(const char *dir, bool own)
{
	size_t b = bucket(dir);
	int64_t now = times_now();
	struct dir_time *d;

	pthread_mutex_lock(&lock);
	for (d = dirs[b]; d; d = d->next)
		if (!strcmp(d->path, dir))
			break;
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (d)
			d->path = strdup(dir);
		if (d && !d->path) {
			free(d);
			d = NULL;
		}
		if (d) {
			d->next = dirs[b];
			dirs[b] = d;
		}
	}
	if (d)
		d->at = now;
	pthread_mutex_unlock(&lock);
	if (own)
		dir_keep_now(dir, now);
}

void times_dir_moved(const char *from, const char *to, const char *dir,
		     const char *ndir, bool own)
{
	size_t flen = strlen(from), i;
	struct dir_time **p, *d, *moved = NULL;
	char *np;

	pthread_mutex_lock(&lock);
	for (i = 0; i < DIR_BUCKETS; i++)
		for (p = &dirs[i]; (d = *p);) {
			if (strncmp(d->path, from, flen) ||
			    (d->path[flen] && d->path[flen] != '/')) {
				p = &d->next;
				continue;
			}
			*p = d->next;
			d->next = moved;
			moved = d;
		}
	while ((d = moved)) {
		moved = d->next;
		np = malloc(strlen(to) + strlen(d->path + flen) + 1);
		if (!np) {
			free(d->path);
			free(d);
			continue;
		}
		strcpy(np, to);
		strcat(np, d->path + flen);
		free(d->path);
		d->path = np;
		d->next = dirs[bucket(np)];
		dirs[bucket(np)] = d;
	}
	pthread_mutex_unlock(&lock);
	times_dir_changed(dir, own);
	if (strcmp(dir, ndir))
		times_dir_changed(ndir, own);
}

void times_free(void)
{
	dir_forget("/", true);
}
