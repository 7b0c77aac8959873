/* SPDX-License-Identifier: MIT */
/*
 * This file implements how ustatefs keeps the kernel and inotify watchers
 * in step with changes it did not make through its own requests: commits
 * of /.txn, other processes writing the database, other mounts.
 *
 * The watcher thread follows every change of the store (a libustate
 * watch on "*"). The changes this mount made through ordinary requests
 * (close, unlink, rename, truncate) were announced by the kernel already:
 * their handlers note them as (key, version) tokens, and the watcher
 * drops the event that matches a token. For every other change it first
 * invalidates the kernel's caches of the path, then performs the matching
 * operation on the mount itself: open for writing and close (updated),
 * create and close (created), unlink (deleted), mkdir and rmdir for
 * directories that appear or vanish with the key. The kernel then sends
 * every inotify watcher the native events. Those requests carry the
 * watcher's thread id; the handlers recognise them (replay_request())
 * and answer them without touching the store, seeing the path as the
 * replay needs it (absent before a create, present before an unlink).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_i.h"

#define MAX_INTENT 64		/* path components a replay can touch */

struct token {
	char *key;
	uint64_t version;
	struct token *next;
};

/* Own changes not yet seen by the watcher. */
static pthread_rwlock_t own_rw;		/* read: a commit in progress */
static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
static struct token *tokens;		/* protected by own_lock */

/* What the replayer's lookups must see, set by the watcher thread only. */
static pthread_mutex_t intent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char *path;
	enum node_kind kind;	/* KIND_NONE: absent */
} intent[MAX_INTENT];		/* protected by intent_lock */
static size_t nintent;		/* protected by intent_lock */
static pid_t replayer;		/* the watcher's thread id, set at start */

void own_init(void)
{
	pthread_rwlockattr_t a;

	/* The watcher must not starve behind a stream of commits. */
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&own_rw, &a);
	pthread_rwlockattr_destroy(&a);
}

static void own_note(const char *key, uint64_t version)
{
	struct token *t = malloc(sizeof(*t));

	if (!t || !(t->key = strdup(key))) {
		free(t);
		return;	/* at worst the kernel hears of it twice */
	}
	t->version = version;
	pthread_mutex_lock(&own_lock);
	t->next = tokens;
	tokens = t;
	pthread_mutex_unlock(&own_lock);
}

/* Whether the change (key, version) was ours; consumes its token. */
static bool own_take(const char *key, uint64_t version)
{
	struct token **pp, *t;
	bool found = false;

	/* Wait for commits in progress to note their tokens. */
	pthread_rwlock_wrlock(&own_rw);
	pthread_rwlock_unlock(&own_rw);
	pthread_mutex_lock(&own_lock);
	for (pp = &tokens; *pp; pp = &(*pp)->next) {
		t = *pp;
		if (t->version == version && !strcmp(t->key, key)) {
			*pp = t->next;
			free(t->key);
			free(t);
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&own_lock);
	return found;
}

static void own_clear(void)
{
	struct token *t;

	pthread_mutex_lock(&own_lock);
	while ((t = tokens)) {
		tokens = t->next;
		free(t->key);
		free(t);
	}
	pthread_mutex_unlock(&own_lock);
}

int own_transaction(const ustate_op *ops, size_t n)
{
	ustate_txn_result res = { 0 };
	uint64_t *v;
	size_t i;
	int rc;

	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	res.versions = v;
	pthread_rwlock_rdlock(&own_rw);
	rc = ustate_transaction(fs.store, ops, n, &res);
	for (i = 0; rc == 0 && i < n; i++)
		if (ops[i].type == USTATE_OP_SET ||
		    ops[i].type == USTATE_OP_CREATE ||
		    ops[i].type == USTATE_OP_DELETE)
			own_note(ops[i].key, v[i]);
	pthread_rwlock_unlock(&own_rw);
	free(v);
	return rc;
}

int own_write(const char *key, const void *val, size_t len, bool create,
	      uint64_t expected)
{
	ustate_op ops[2];
	size_t n = 0;

	if (expected)
		ops[n++] = (ustate_op){ .type = USTATE_OP_CHECK_VERSION,
					.key = key, .version = expected };
	ops[n++] = (ustate_op){ .type = create ? USTATE_OP_CREATE :
						 USTATE_OP_SET,
				.key = key, .value = val, .value_len = len };
	return own_transaction(ops, n);
}

/* ---- the replayer's view ---------------------------------------------- */

bool replay_request(fuse_req_t req)
{
	return replayer && fuse_req_ctx(req)->pid == replayer;
}

bool replay_intent(const char *path, enum node_kind *kind)
{
	bool found = false;
	size_t i;

	pthread_mutex_lock(&intent_lock);
	for (i = 0; i < nintent; i++) {
		if (!strcmp(intent[i].path, path)) {
			*kind = intent[i].kind;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&intent_lock);
	return found;
}

static void intent_set(const char *path, enum node_kind kind)
{
	size_t i;

	pthread_mutex_lock(&intent_lock);
	for (i = 0; i < nintent; i++)
		if (!strcmp(intent[i].path, path))
			break;
	if (i == nintent && nintent < MAX_INTENT) {
		intent[i].path = strdup(path);
		if (intent[i].path)
			nintent++;
	}
	if (i < nintent)
		intent[i].kind = kind;
	pthread_mutex_unlock(&intent_lock);
}

static void intent_clear(void)
{
	size_t i;

	pthread_mutex_lock(&intent_lock);
	for (i = 0; i < nintent; i++)
		free(intent[i].path);
	nintent = 0;
	pthread_mutex_unlock(&intent_lock);
}

/* ---- replaying -------------------------------------------------------- */

static void split(const char *path, char *dir, const char **name)
{
	const char *slash = strrchr(path, '/');

	if (slash == path) {
		strcpy(dir, "/");
	} else {
		memcpy(dir, path, slash - path);
		dir[slash - path] = '\0';
	}
	*name = slash + 1;
}

/* Drop the kernel's dentry of path and its cached attributes and data. */
static void forget_path(const char *path)
{
	char dir[FS_PATH_MAX];
	fuse_ino_t ino, pino;
	const char *name;

	if (!strcmp(path, "/"))
		return;
	ino = node_find(path);
	if (ino)
		fuse_lowlevel_notify_inval_inode(fs.se, ino, 0, 0);
	split(path, dir, &name);
	pino = node_find(dir);
	if (pino)
		fuse_lowlevel_notify_inval_entry(fs.se, pino, name,
						 strlen(name));
}

/* The mount's path of a key path. */
static void mnt_path(const char *path, char *out, size_t size)
{
	snprintf(out, size, "%s%s", fs.mountpoint, path);
}

static void replay_create(const char *path, bool dir)
{
	char m[PATH_MAX];
	int fd;

	forget_path(path);
	intent_set(path, KIND_NONE);
	mnt_path(path, m, sizeof(m));
	if (dir) {
		if (mkdir(m, 0755) < 0 && fs.debug)
			fprintf(stderr, "replay mkdir %s: %m\n", path);
	} else {
		fd = open(m, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
		else if (fs.debug)
			fprintf(stderr, "replay create %s: %m\n", path);
	}
	intent_set(path, dir ? KIND_DIR : KIND_FILE);
}

static void replay_remove(const char *path, bool dir)
{
	char m[PATH_MAX];
	int rc;

	forget_path(path);
	intent_set(path, dir ? KIND_DIR : KIND_FILE);
	mnt_path(path, m, sizeof(m));
	rc = dir ? rmdir(m) : unlink(m);
	if (rc < 0 && fs.debug)
		fprintf(stderr, "replay remove %s: %m\n", path);
	intent_set(path, KIND_NONE);
}

static void replay_update(const char *path)
{
	char m[PATH_MAX];
	int fd;

	forget_path(path);
	mnt_path(path, m, sizeof(m));
	fd = open(m, O_WRONLY | O_CLOEXEC);
	if (fd >= 0)
		close(fd);
	else if (fs.debug)
		fprintf(stderr, "replay update %s: %m\n", path);
}

/*
 * The ancestors of key, top down, each with whether it is now a directory
 * that holds nothing but the way to key (so it appeared, or vanishes,
 * with key), and whether it has a value of its own.
 */
static int lonely_ancestors(const char *key, char (*anc)[FS_PATH_MAX],
			    bool *lonely, bool *valued, size_t *n)
{
	ustate_dirent *d;
	const char *p;
	unsigned flags;
	size_t cnt = 0, len, i;
	int rc;

	for (p = strchr(key + 1, '/'); p && cnt < MAX_INTENT - 2;
	     p = strchr(p + 1, '/')) {
		len = (size_t)(p - key);
		memcpy(anc[cnt], key, len);
		anc[cnt][len] = '\0';
		rc = ustate_readdir(fs.store, anc[cnt], &d, &i);
		if (rc < 0)
			return rc;
		lonely[cnt] = i == 0 ||
			      (i == 1 && !strncmp(d[0].name, p + 1,
						  strcspn(p + 1, "/")) &&
			       strlen(d[0].name) == strcspn(p + 1, "/"));
		ustate_dirents_free(d, i);
		rc = ustate_node(fs.store, anc[cnt], &flags);
		if (rc < 0)
			return rc;
		valued[cnt] = flags & USTATE_NODE_VALUE;
		lonely[cnt] = lonely[cnt] && !(flags & USTATE_NODE_RECORD);
		cnt++;
	}
	*n = cnt;
	return 0;
}

/* path + "/.value" into out (FS_PATH_MAX bytes; a key always fits). */
static void value_path(const char *path, char *out)
{
	size_t len = strnlen(path, USTATE_KEY_MAX);

	memcpy(out, path, len);
	memcpy(out + len, "/.value", 8);
}

/* Replay one change that the kernel has not seen. */
static void replay(const ustate_event *ev)
{
	char anc[MAX_INTENT][FS_PATH_MAX];
	char vpath[FS_PATH_MAX];
	bool lonely[MAX_INTENT], valued[MAX_INTENT];
	unsigned flags = 0;
	size_t n = 0, i;
	bool isdir;

	if (lonely_ancestors(ev->key, anc, lonely, valued, &n) < 0 ||
	    ustate_node(fs.store, ev->key, &flags) < 0)
		return;
	/* An ancestor is new (or gone) only if everything below it is. */
	for (i = n; i-- > 1;)
		if (!lonely[i])
			lonely[i - 1] = false;
	isdir = flags & (USTATE_NODE_CHILDREN | USTATE_NODE_RECORD);
	/*
	 * Later changes may already be in the store (the key or its
	 * directories gone again): the replayer sees the path as it was at
	 * this event, whatever the store says now.
	 */
	for (i = 0; i < n; i++)
		intent_set(anc[i], KIND_DIR);
	if (ev->type != USTATE_EVENT_CREATED)
		intent_set(ev->key, isdir ? KIND_DIR : KIND_FILE);
	switch (ev->type) {
	case USTATE_EVENT_CREATED:
		/*
		 * Directories that appeared with the key, top down; a file
		 * that gained its first child turns into a directory whose
		 * own value is DIR/.value.
		 */
		for (i = 0; i < n; i++) {
			if (!lonely[i])
				continue;
			if (valued[i])
				replay_remove(anc[i], false);
			replay_create(anc[i], true);
			if (valued[i]) {
				value_path(anc[i], vpath);
				replay_create(vpath, false);
			}
		}
		if (isdir) {
			value_path(ev->key, vpath);
			replay_create(vpath, false);
		} else {
			replay_create(ev->key, false);
		}
		break;
	case USTATE_EVENT_UPDATED:
		if (isdir) {
			value_path(ev->key, vpath);
			intent_set(vpath, KIND_FILE);
			replay_update(vpath);
		} else {
			replay_update(ev->key);
		}
		break;
	case USTATE_EVENT_DELETED:
		/* First of all, open writers lose the name: no resurrection. */
		value_path(ev->key, vpath);
		node_unlinked(ev->key);
		node_unlinked(vpath);
		if (isdir) {
			replay_remove(vpath, false);
			break;
		}
		replay_remove(ev->key, false);
		/*
		 * Directories that vanished with the key, bottom up; one left
		 * with only its own value turns back into a file.
		 */
		for (i = n; i-- > 0;) {
			if (!lonely[i] ||
			    ustate_node(fs.store, anc[i], &flags) < 0 ||
			    (flags & (USTATE_NODE_CHILDREN |
				      USTATE_NODE_RECORD)))
				break;
			if (flags & USTATE_NODE_VALUE) {
				value_path(anc[i], vpath);
				replay_remove(vpath, false);
			}
			replay_remove(anc[i], true);
			if (flags & USTATE_NODE_VALUE)
				replay_create(anc[i], false);
		}
		break;
	}
	intent_clear();
}

static void *watcher_main(void *arg)
{
	ustate_event ev;
	int rc;

	replayer = gettid();
	while (fs.watching) {
		rc = ustate_watch_next(fs.watch, &ev, 200);
		if (rc == -EAGAIN || rc == -EINTR)
			continue;
		if (rc == -EOVERFLOW) {
			/* Lost track: start again from now; drop old tokens. */
			ustate_watch_close(fs.watch);
			own_clear();
			fs.watch = NULL;
			if (ustate_watch_open(&fs.watch, fs.store, "*", 0) < 0)
				rc = -EIO;
			else
				continue;
		}
		if (rc < 0) {
			/*
			 * The store failed us (a lock held too long, an I/O
			 * error): say so, wait, and follow it again from now;
			 * the kernel's caches time out meanwhile.
			 */
			fprintf(stderr, "ustatefs: watch: %s; retrying\n",
				ustate_strerror(rc));
			sleep(1);
			ustate_watch_close(fs.watch);
			own_clear();
			fs.watch = NULL;
			while (fs.watching &&
			       ustate_watch_open(&fs.watch, fs.store, "*", 0) < 0)
				sleep(1);
			if (!fs.watch)
				break;
			continue;
		}
		if (own_take(ev.key, ev.version))
			continue;
		if (fs.read_only) {
			forget_path(ev.key);
			continue;
		}
		replay(&ev);
	}
	return NULL;
}

int watcher_start(void)
{
	int rc;

	rc = ustate_watch_open(&fs.watch, fs.store, "*", 0);
	if (rc < 0)
		return rc;
	fs.watching = true;
	rc = -pthread_create(&fs.watcher, NULL, watcher_main, NULL);
	if (rc < 0) {
		fs.watching = false;
		ustate_watch_close(fs.watch);
	}
	return rc;
}

void watcher_stop(void)
{
	if (!fs.watching)
		return;
	fs.watching = false;
	pthread_join(fs.watcher, NULL);
	ustate_watch_close(fs.watch);
	own_clear();
}
