/* SPDX-License-Identifier: MIT */
/*
 * This file implements bench_nullfs, the FUSE floor of scripts/bench: a
 * libfuse low-level daemon that answers the requests ustatefs gets on the
 * measured paths, the same way, and does no work at all. Whatever it
 * costs is the price of FUSE itself on this machine (the kernel, the
 * round trips, libfuse's threads), which no daemon can go below; the
 * bench compares ustatefs with it in the same run.
 *
 *   bench_nullfs [-f] [-o OPTS] [-o commit=DB[,sync=LEVEL]] MOUNTPOINT
 *
 * Every name is there: a name that starts with "k" or holds "-k" is a
 * file of 100 bytes, any other a directory (so /hot/k, /own/w00/k000 and
 * /shared/w00-k000 all exist). It answers as ustatefs does:
 *   - entries and attributes are cached for 1 s;
 *   - an open for reading keeps the page cache and needs no FLUSH
 *     (keep_cache, noflush): a hot read is one OPEN and one RELEASE;
 *   - an open for writing is direct I/O, with O_TRUNC in the OPEN
 *     (atomic_o_trunc): a write is OPEN, GETXATTR (the kernel's
 *     security.capability probe), WRITE, FLUSH, RELEASE;
 *   - the same multi-threaded loop, with the same defaults.
 * Writes are accepted and forgotten.
 *
 * With -o commit=DB (and sync=FULL|NORMAL|OFF, FULL unless said), it is
 * the floor of a durable write instead: the FLUSH of a file opened for
 * writing commits one write to the SQLite file DB (bench_floor.c: the
 * upsert of the reference table and the three rows the store keeps with
 * it) and answers once it is durable, with a group commit: the flushes
 * that arrive while a commit syncs share the next one. What the bench
 * compares with it is ustatefs's own work on top of FUSE and SQLite.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <pthread.h>

#include "bench_floor.h"

#define VALUE_LEN 100
#define TIMEOUT 1.0

/* ---- the durable floor (-o commit=DB) ---------------------------------- */

/* A flush waiting for its commit; on the stack of its request's thread. */
struct flush_wait {
	fuse_ino_t ino;
	bool done;
	pthread_cond_t wake;
	struct flush_wait *next;
};

static struct bench_floor *floor_db;
static pthread_mutex_t glock = PTHREAD_MUTEX_INITIALIZER;
static struct flush_wait *queue, **qtail = &queue; /* under glock */
static bool leading;				   /* under glock */

/*
 * The store's group commit, as core/sqlite.c's sq_txn() does it: the first
 * flush to find no commit under way leads and commits everything queued
 * in one transaction, then wakes exactly those it committed and the next
 * in the queue to lead.
 */
static void floor_flush(fuse_ino_t ino)
{
	struct flush_wait me = {ino, false, PTHREAD_COND_INITIALIZER, NULL};
	struct flush_wait *g, *r, *next;
	static const char value[VALUE_LEN] = {'v'};
	char key[32];

	pthread_mutex_lock(&glock);
	*qtail = &me;
	qtail = &me.next;
	while (!me.done) {
		if (leading) {
			pthread_cond_wait(&me.wake, &glock);
			continue;
		}
		leading = true;
		g = queue;
		queue = NULL;
		qtail = &queue;
		pthread_mutex_unlock(&glock);

		bench_floor_begin(floor_db);
		for (r = g; r; r = r->next) {
			snprintf(key, sizeof(key), "/k%llx",
				 (unsigned long long)r->ino);
			bench_floor_write(floor_db, key, value, VALUE_LEN);
		}
		bench_floor_commit(floor_db);

		pthread_mutex_lock(&glock);
		for (r = g; r; r = next) {
			next = r->next; /* once done, r may leave its stack */
			r->done = true;
			if (r != &me)
				pthread_cond_signal(&r->wake);
		}
		leading = false;
		if (queue)
			pthread_cond_signal(&queue->wake);
	}
	pthread_mutex_unlock(&glock);
	pthread_cond_destroy(&me.wake);
}

/* File inodes are odd, directory inodes even; the root is 1. */
static fuse_ino_t ino_of(fuse_ino_t parent, const char *name)
{
	uint64_t h = 14695981039346656037ull ^ parent;
	bool file = name[0] == 'k' || strstr(name, "-k");

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	h &= ~(uint64_t)1;
	if (h < 4)
		h += 4;
	return file ? h | 1 : h;
}

static bool is_file(fuse_ino_t ino)
{
	return ino != FUSE_ROOT_ID && (ino & 1);
}

static void attr_of(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	if (is_file(ino)) {
		st->st_mode = S_IFREG | 0644;
		st->st_nlink = 1;
		st->st_size = VALUE_LEN;
	} else {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	}
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e = {0};

	e.ino = ino;
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	attr_of(ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void nop_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_HANDLE_KILLPRIV);
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

static void nop_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (is_file(parent))
		fuse_reply_err(req, ENOTDIR);
	else
		reply_entry(req, ino_of(parent, name));
}

static void nop_getattr(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct stat st;

	attr_of(ino, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
}

static void nop_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			int to_set, struct fuse_file_info *fi)
{
	nop_getattr(req, ino, fi);
}

static void nop_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode)
{
	reply_entry(req, ino_of(parent, name) & ~(fuse_ino_t)1);
}

static void open_flags(struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) == O_RDONLY) {
		fi->keep_cache = 1;
		fi->noflush = 1;
	} else {
		fi->direct_io = 1;
		fi->fh = 1; /* a writer: its flush commits */
	}
}

static void nop_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (!is_file(ino)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	open_flags(fi);
	fuse_reply_open(req, fi);
}

static void nop_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		       mode_t mode, struct fuse_file_info *fi)
{
	struct fuse_entry_param e = {0};

	e.ino = ino_of(parent, name) | 1;
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	attr_of(e.ino, &e.attr);
	open_flags(fi);
	fuse_reply_create(req, &e, fi);
}

static void nop_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	static const char value[VALUE_LEN] = {'x'};
	size_t left = off < VALUE_LEN ? VALUE_LEN - (size_t)off : 0;

	fuse_reply_buf(req, value + (left ? off : 0),
		       left < size ? left : size);
}

static void nop_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		      size_t size, off_t off, struct fuse_file_info *fi)
{
	fuse_reply_write(req, size);
}

static void nop_ok(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void nop_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (floor_db && fi->fh)
		floor_flush(ino);
	fuse_reply_err(req, 0);
}

static void nop_opendir(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	fuse_reply_open(req, fi);
}

static void nop_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	fuse_reply_buf(req, NULL, 0);
}

static void nop_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			 size_t size)
{
	fuse_reply_err(req, ENODATA);
}

static const struct fuse_lowlevel_ops nop_ops = {
	.init = nop_init,
	.lookup = nop_lookup,
	.getattr = nop_getattr,
	.setattr = nop_setattr,
	.mkdir = nop_mkdir,
	.open = nop_open,
	.create = nop_create,
	.read = nop_read,
	.write = nop_write,
	.flush = nop_flush,
	.release = nop_ok,
	.opendir = nop_opendir,
	.readdir = nop_readdir,
	.releasedir = nop_ok,
	.getxattr = nop_getxattr,
};

struct floor_opts {
	char *commit, *sync;
};

static const struct fuse_opt floor_spec[] = {
	{"commit=%s", offsetof(struct floor_opts, commit), 0},
	{"sync=%s", offsetof(struct floor_opts, sync), 0},
	FUSE_OPT_END,
};

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_loop_config *lcfg = NULL;
	struct fuse_cmdline_opts o = {0};
	struct fuse_session *se = NULL;
	struct floor_opts fo = {0};
	int rc = 1;

	if (fuse_opt_parse(&args, &fo, floor_spec, NULL) != 0 ||
	    fuse_parse_cmdline(&args, &o) != 0 || !o.mountpoint) {
		fprintf(stderr, "usage: bench_nullfs [-f] [-o OPTS] "
				"[-o commit=DB[,sync=LEVEL]] MOUNTPOINT\n");
		goto out;
	}
	if (fo.commit)
		floor_db =
			bench_floor_open(fo.commit, fo.sync ? fo.sync : "FULL");
	se = fuse_session_new(&args, &nop_ops, sizeof(nop_ops), NULL);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, o.mountpoint) != 0)
		goto out_signals;
	fuse_daemonize(o.foreground);
	/* The loop of ustatefs (fs/main.c), with the same defaults. */
	lcfg = fuse_loop_cfg_create();
	if (lcfg) {
		fuse_loop_cfg_set_clone_fd(lcfg, o.clone_fd);
		fuse_loop_cfg_set_max_threads(lcfg, o.max_threads);
		if (o.max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(lcfg,
						       o.max_idle_threads);
		rc = fuse_session_loop_mt(se, lcfg) < 0;
		fuse_loop_cfg_destroy(lcfg);
	}
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out:
	bench_floor_close(floor_db);
	free(fo.commit);
	free(fo.sync);
	free(o.mountpoint);
	fuse_opt_free_args(&args);
	return rc;
}
