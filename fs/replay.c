/* SPDX-License-Identifier: MIT */
/*
 * This file implements how ustatefs keeps the kernel and inotify watchers
 * in step with changes it did not make through its own requests: commits
 * of /.txn, other processes writing the database, other mounts.
 *
 * Two threads follow every change of the store (a libustate watch on
 * "*"): the follower reads them as they are committed, and the replayer
 * replays them (see "following the store" below). The changes this mount
 * made through ordinary requests (close, unlink, rename, truncate) were
 * announced by the kernel already: their handlers note them as (key,
 * version) tokens, and the replayer drops the event that matches a
 * token. For every other change it first invalidates the kernel's caches
 * of the path, then performs the matching operation on the mount itself:
 * open for writing and close (updated), create and close (created),
 * unlink (deleted), mkdir and rmdir for directories that appear or vanish
 * with the key, rename (renamed). The kernel then sends every inotify
 * watcher the native events. Those requests carry the helper's process
 * id; the handlers recognise them (replay_request()) and answer them
 * without touching the store, seeing the path as the replay needs it
 * (absent before a create, present before an unlink).
 *
 * What a change did to the tree (which directories appeared or vanished
 * with it, whether the path was a directory) is decided from the view
 * (view.c): the key space as of the change before it, which the replayer
 * keeps by applying every change, its own included. The store itself may
 * be many changes ahead, and would tell the tree as it is now: a replay
 * that lags behind a quick sequence of changes then made directories
 * appear and vanish several times. The changes of one revision (one
 * commit) are replayed together, so that a rename is replayed as one
 * rename through the mount (see "renames" below).
 *
 * The operations on the mount are made by a helper process, not by a
 * thread of the daemon: a FUSE request that a daemon's own thread makes
 * on its own mount can never end if the daemon is killed (the kernel
 * waits for an answer that no thread is left to give, and the process
 * cannot finish dying), which would leave a mount that only an abort
 * through fusectl recovers. A killed daemon takes its connection with it,
 * and the helper's request then simply fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"

#define MAX_INTENT 64 /* path components a replay can touch */
/* How long the follower lets a burst of commits land before reading it. */
#define WATCH_SETTLE_US 1000
/* The version of the token of a directory record's change. */
#define DIR_TOKEN UINT64_MAX

struct token {
	char *key;
	uint64_t version;
	struct token *next;
};

/*
 * Own changes not yet seen by the replayer, oldest first: the replayer
 * meets them in the order they were committed, so it usually finds its
 * token at the head.
 */
static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
static struct token *tokens;		     /* protected by own_lock */
static struct token **tokens_tail = &tokens; /* protected by own_lock */

/* What the helper's lookups must see, set by the replayer thread only. */
static pthread_mutex_t intent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char *path;
	enum node_kind kind; /* KIND_NONE: absent */
} intent[MAX_INTENT];	     /* protected by intent_lock */
static size_t nintent;	     /* protected by intent_lock */
static pid_t replayer;	     /* the helper process, set before threads */
static uint64_t replaying;   /* the revision of the change replayed, set
			      * by the replayer thread only */
static int helper_fd = -1;   /* the daemon's end of the helper socket */

/*
 * Commits in progress, in two phases (as a grace period): a commit counts
 * itself in the current phase from before it lands until its tokens are
 * noted. A replayer that cannot tell whether a change was ours switches
 * the phase and waits for the old one to drain: the commit that made the
 * change, which it has read, started before the switch. Later commits go
 * on meanwhile; only the replayer switches.
 */
static pthread_mutex_t phase_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t phase_drained = PTHREAD_COND_INITIALIZER;
static unsigned phase;	     /* protected by phase_lock */
static unsigned in_phase[2]; /* protected by phase_lock */

static unsigned commit_enter(void)
{
	unsigned p;

	pthread_mutex_lock(&phase_lock);
	p = phase;
	in_phase[p]++;
	pthread_mutex_unlock(&phase_lock);
	return p;
}

static void commit_leave(unsigned p)
{
	pthread_mutex_lock(&phase_lock);
	if (--in_phase[p] == 0 && p != phase)
		pthread_cond_signal(&phase_drained);
	pthread_mutex_unlock(&phase_lock);
}

/* Wait for every commit in progress now to note its tokens. */
static void commits_settle(void)
{
	unsigned old;

	pthread_mutex_lock(&phase_lock);
	old = phase;
	phase ^= 1;
	while (in_phase[old])
		pthread_cond_wait(&phase_drained, &phase_lock);
	pthread_mutex_unlock(&phase_lock);
}

static void own_note(const char *key, uint64_t version)
{
	struct token *t = malloc(sizeof(*t));

	if (!t || !(t->key = strdup(key))) {
		free(t);
		return; /* at worst the kernel hears of it twice */
	}
	t->version = version;
	t->next = NULL;
	pthread_mutex_lock(&own_lock);
	*tokens_tail = t;
	tokens_tail = &t->next;
	pthread_mutex_unlock(&own_lock);
}

/* Take the token of (key, version) if it was noted. */
static bool own_find(const char *key, uint64_t version)
{
	struct token **pp, *t;
	bool found = false;

	pthread_mutex_lock(&own_lock);
	for (pp = &tokens; *pp; pp = &(*pp)->next) {
		t = *pp;
		if (t->version == version && !strcmp(t->key, key)) {
			*pp = t->next;
			if (tokens_tail == &t->next)
				tokens_tail = pp;
			free(t->key);
			free(t);
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&own_lock);
	return found;
}

/*
 * Whether the change (key, version) was ours; consumes its token. A
 * commit notes its tokens just after it lands: one that is not there yet
 * may be on its way, so before calling the change another's, wait for
 * the commits in progress to note theirs, and look again.
 */
static bool own_take(const char *key, uint64_t version)
{
	if (own_find(key, version))
		return true;
	commits_settle();
	return own_find(key, version);
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
	tokens_tail = &tokens;
	pthread_mutex_unlock(&own_lock);
}

/*
 * The kernel must not trust the size it caches of key (and of its
 * DIR/.value) once this mount committed a change of it. Only the
 * attributes: dropping pages would take locks the request that made the
 * change may hold. Pages are checked against the revision at each open.
 */
static void own_forget_node(fuse_ino_t ino, uint64_t rev)
{
	if (ino && node_notify_begin(ino, rev)) {
		node_attr_drop(ino);
		kernel_forget_inode(ino, -1, 0);
		node_notify_done(ino);
	}
}

static void own_forget_attrs(const char *key, uint64_t rev)
{
	char vpath[FS_PATH_MAX];

	own_forget_node(node_find(key), rev);
	if (snprintf(vpath, sizeof(vpath), "%s/.value", key) <
	    (int)sizeof(vpath))
		own_forget_node(node_find(vpath), rev);
}

int own_transaction(const ustate_op *ops, size_t n)
{
	ustate_txn_result res = {0};
	uint64_t *v;
	unsigned p;
	size_t i;
	int rc;

	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	res.versions = v;
	p = commit_enter();
	rc = ustate_transaction(fs.store, ops, n, &res);
	for (i = 0; rc == 0 && i < n; i++) {
		if (ops[i].type == USTATE_OP_SET ||
		    ops[i].type == USTATE_OP_CREATE ||
		    ops[i].type == USTATE_OP_DELETE)
			own_note(ops[i].key, v[i]);
		/* A record made or dropped (v 1) is an event of its own. */
		else if ((ops[i].type == USTATE_OP_MKDIR ||
			  ops[i].type == USTATE_OP_RMDIR) &&
			 v[i])
			own_note(ops[i].key, DIR_TOKEN);
	}
	commit_leave(p);
	for (i = 0; rc == 0 && i < n; i++)
		if (ops[i].type == USTATE_OP_SET ||
		    ops[i].type == USTATE_OP_CREATE ||
		    ops[i].type == USTATE_OP_DELETE)
			own_forget_attrs(ops[i].key, res.revision);
	free(v);
	return rc;
}

int own_write(const char *key, const void *val, size_t len, bool create,
	      uint64_t expected)
{
	return own_write_lease(key, val, len, create, expected, NULL);
}

int own_write_lease(const char *key, const void *val, size_t len, bool create,
		    uint64_t expected, const char *lease)
{
	ustate_op ops[2];
	size_t n = 0;

	if (expected)
		ops[n++] = (ustate_op){.type = USTATE_OP_CHECK_VERSION,
				       .key = key,
				       .version = expected};
	ops[n++] =
		(ustate_op){.type = create ? USTATE_OP_CREATE : USTATE_OP_SET,
			    .key = key,
			    .value = val,
			    .value_len = len,
			    .lease = lease};
	return own_transaction(ops, n);
}

/* ---- the replayer's view ---------------------------------------------- */

bool replay_request(fuse_req_t req)
{
	return replayer > 0 && fuse_req_ctx(req)->pid == replayer;
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

/* A change read from the store, queued for its replay. */
struct change {
	struct change *next;
	ustate_event_type type;
	uint64_t version, revision;
	bool own; /* this mount's: the kernel has it already */
	char key[];
};

/* Drop the kernel's dentry of path and its cached attributes and data. */
static void forget_path(const char *path)
{
	char dir[FS_PATH_MAX];
	fuse_ino_t ino, pino;
	const char *name;

	if (!strcmp(path, "/"))
		return;
	ino = node_find(path);
	/* (Readers of the page cache at this revision need nothing.) */
	if (ino && node_notify_begin(ino, replaying)) {
		node_attr_drop(ino);
		kernel_forget_inode(ino, 0, 0);
		node_notify_done(ino);
	}
	name = path_split(path, dir);
	pino = node_find(dir);
	if (pino)
		kernel_forget_entry(pino, name);
}

enum helper_op {
	H_CREATE = 'c',
	H_MKDIR = 'm',
	H_UNLINK = 'u',
	H_RMDIR = 'r',
	H_TOUCH = 'w',
	H_RENAME = 'n', /* two paths, each ended by a NUL */
};

/* The helper's loop: one operation per message, its errno as the reply. */
static void helper_main(int fd)
{
	/* Room for the mountpoint and paths (the kernel stops at PATH_MAX). */
	char msg[2 * FS_PATH_MAX + 2], path[PATH_MAX + sizeof(msg)];
	char to[PATH_MAX + sizeof(msg)];
	ssize_t len;
	int rc, f;

	while ((len = recv(fd, msg, sizeof(msg) - 1, 0)) > 1) {
		msg[len] = '\0';
		snprintf(path, sizeof(path), "%s%s", fs.mountpoint, msg + 1);
		rc = 0;
		switch (msg[0]) {
		case H_CREATE:
		case H_TOUCH:
			f = open(path,
				 msg[0] == H_CREATE ? O_WRONLY | O_CREAT |
							      O_EXCL | O_CLOEXEC
						    : O_WRONLY | O_CLOEXEC,
				 0644);
			rc = f < 0 ? errno : close(f) < 0 ? errno : 0;
			break;
		case H_MKDIR:
			rc = mkdir(path, 0755) < 0 ? errno : 0;
			break;
		case H_UNLINK:
			rc = unlink(path) < 0 ? errno : 0;
			break;
		case H_RMDIR:
			rc = rmdir(path) < 0 ? errno : 0;
			break;
		case H_RENAME:
			snprintf(to, sizeof(to), "%s%s", fs.mountpoint,
				 msg + 2 + strlen(msg + 1));
			rc = rename(path, to) < 0 ? errno : 0;
			break;
		default:
			rc = EINVAL;
		}
		if (send(fd, &rc, sizeof(rc), MSG_NOSIGNAL) != sizeof(rc))
			break;
	}
	_exit(0);
}

int replay_init(void)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -errno;
	}
	if (pid == 0) {
		/* Dies with the daemon; holds nothing of it but the socket. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		if (fs.background)
			log_detach();
		helper_main(sv[1]);
	}
	close(sv[1]);
	helper_fd = sv[0];
	replayer = pid;
	return 0;
}

void replay_exit(void)
{
	if (helper_fd < 0)
		return;
	close(helper_fd);
	helper_fd = -1;
	waitpid(replayer, NULL, 0);
}

/*
 * Have the helper perform op on path (and to, for a rename); its errno,
 * or -1 when it is gone.
 */
static int helper_do2(enum helper_op op, const char *path, const char *to)
{
	char msg[2 * FS_PATH_MAX + 2];
	size_t len = strlen(path), tlen = to ? strlen(to) + 1 : 0;
	int rc;

	msg[0] = (char)op;
	memcpy(msg + 1, path, len + 1);
	if (to)
		memcpy(msg + len + 2, to, tlen);
	len += 1 + (to ? 1 + tlen : 0);
	if (send(helper_fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len ||
	    recv(helper_fd, &rc, sizeof(rc), 0) != sizeof(rc))
		return -1;
	if (rc)
		log_msg(LOG_DEBUG, "replay %c %s%s%s: %s", op, path,
			to ? " " : "", to ? to : "", strerror(rc));
	return rc;
}

static int helper_do(enum helper_op op, const char *path)
{
	return helper_do2(op, path, NULL);
}

/*
 * The operations a change comes down to on the mount. Each first makes
 * the kernel forget what it caches of the path (a name another process
 * here looked up from the store, a change or more ahead of the replay),
 * so that it asks, and the replayer's lookups see the path as the change
 * had it (absent before a create, present before a removal).
 */
static void k_create(const char *path, bool dir)
{
	forget_path(path);
	intent_set(path, KIND_NONE);
	helper_do(dir ? H_MKDIR : H_CREATE, path);
	intent_set(path, dir ? KIND_DIR : KIND_FILE);
}

static void k_remove(const char *path, bool dir)
{
	forget_path(path);
	intent_set(path, dir ? KIND_DIR : KIND_FILE);
	helper_do(dir ? H_RMDIR : H_UNLINK, path);
	intent_set(path, KIND_NONE);
}

static void k_update(const char *path)
{
	forget_path(path);
	intent_set(path, KIND_FILE);
	helper_do(H_TOUCH, path);
}

/* path + "/.value" into out (FS_PATH_MAX bytes; a key always fits). */
static void value_path(const char *path, char *out)
{
	size_t len = strnlen(path, USTATE_KEY_MAX);

	memcpy(out, path, len);
	memcpy(out + len, "/.value", 8);
}

/* The ancestors of path (not the root), top down; their number. */
static size_t ancestors(const char *path, char (*anc)[FS_PATH_MAX])
{
	const char *p;
	size_t n = 0, len;

	for (p = strchr(path + 1, '/'); p && n < MAX_INTENT - 4;
	     p = strchr(p + 1, '/')) {
		len = (size_t)(p - path);
		memcpy(anc[n], path, len);
		anc[n][len] = '\0';
		n++;
	}
	return n;
}

/*
 * Directories that appear with a change below them, as the view had them
 * before the change: every ancestor of path that was no directory yet
 * (below the first one, none was anything). anc[] holds them top down
 * (ancestors()); their first index into *first; valued[] whether each
 * was a file, which turns into a directory with its value as DIR/.value.
 */
static void appearing(char (*anc)[FS_PATH_MAX], size_t n, size_t *first,
		      bool *valued)
{
	struct view_state st;
	size_t i;

	*first = n;
	for (i = n; i-- > 0;) {
		view_state(anc[i], &st);
		if (st.dir)
			break;
		valued[i] = st.value;
		*first = i;
	}
}

static void ancestors_appear(char (*anc)[FS_PATH_MAX], size_t n, size_t first,
			     const bool *valued)
{
	char vpath[FS_PATH_MAX];
	size_t i;

	for (i = first; i < n; i++) {
		if (valued[i])
			k_remove(anc[i], false);
		k_create(anc[i], true);
		if (valued[i]) {
			value_path(anc[i], vpath);
			k_create(vpath, false);
		}
	}
}

/*
 * Directories that vanished with a change below them, bottom up, by the
 * view after the change; one left with only its own value turns back
 * into a file.
 */
static void ancestors_vanish(char (*anc)[FS_PATH_MAX], size_t n)
{
	char vpath[FS_PATH_MAX];
	struct view_state st;
	size_t i;

	for (i = n; i-- > 0;) {
		view_state(anc[i], &st);
		if (st.dir)
			break;
		if (st.value) {
			value_path(anc[i], vpath);
			k_remove(vpath, false);
		}
		k_remove(anc[i], true);
		if (st.value) {
			k_create(anc[i], false);
			break;
		}
	}
}

/* Replay one change that the kernel has not seen, and apply it. */
static void replay_one(const struct change *c)
{
	char anc[MAX_INTENT][FS_PATH_MAX];
	char vpath[FS_PATH_MAX];
	bool valued[MAX_INTENT];
	struct view_state was, is;
	size_t n, i, first;

	replaying = c->revision;
	n = ancestors(c->key, anc);
	value_path(c->key, vpath);
	view_state(c->key, &was);
	appearing(anc, n, &first, valued);
	view_apply(c->type, c->key);
	view_state(c->key, &is);
	/*
	 * The store may be changes ahead: the replayer sees every ancestor
	 * as a directory, which it was before or is after this change.
	 */
	for (i = 0; i < n; i++)
		intent_set(anc[i], KIND_DIR);
	switch (c->type) {
	case USTATE_EVENT_CREATED:
		if (was.dir) {
			intent_set(c->key, KIND_DIR);
			k_create(vpath, false);
			break;
		}
		ancestors_appear(anc, n, first, valued);
		k_create(c->key, false);
		break;
	case USTATE_EVENT_UPDATED:
		intent_set(c->key, was.dir ? KIND_DIR : KIND_FILE);
		k_update(was.dir ? vpath : c->key);
		break;
	case USTATE_EVENT_DELETED:
		/*
		 * First of all, writers opened before the delete lose the
		 * name: no resurrection. Those opened since keep it.
		 */
		node_deleted(c->key, c->revision);
		node_deleted(vpath, c->revision);
		if (!was.value)
			break;
		if (is.dir) {
			intent_set(c->key, KIND_DIR);
			k_remove(vpath, false);
			break;
		}
		k_remove(c->key, false);
		ancestors_vanish(anc, n);
		break;
	case USTATE_EVENT_DIR_CREATED:
		/* A directory already (keys below it): nothing to see. */
		if (was.dir)
			break;
		ancestors_appear(anc, n, first, valued);
		if (was.value)
			k_remove(c->key, false);
		k_create(c->key, true);
		if (was.value)
			k_create(vpath, false);
		break;
	case USTATE_EVENT_DIR_DELETED:
		/* Still a directory while keys lie below it. */
		if (!was.dir || is.dir)
			break;
		intent_set(c->key, KIND_DIR);
		if (is.value)
			k_remove(vpath, false);
		k_remove(c->key, true);
		if (is.value)
			k_create(c->key, false);
		else
			ancestors_vanish(anc, n);
		break;
	}
	intent_clear();
}

/* ---- renames ---------------------------------------------------------- */

/*
 * A rename is one transaction that removes every key and record at or
 * below one path and makes the same ones, with the same relative paths,
 * below another: what ops.c's do_rename() commits, and what another
 * mount's rename (or any client's transaction of that shape) looks like
 * in the history. The kernel can be told of it only by a rename through
 * the mount: that alone gives watchers IN_MOVED_FROM and IN_MOVED_TO
 * with one cookie, and moves the names at one instant.
 *
 * The changes of the revision are first applied to a trial copy of the
 * view (view_trial_*()): the paths whose names vanished and appeared are
 * grouped under their highest such path, and a group that vanished is
 * paired with one that appeared (or an empty directory that the revision
 * dropped and made again) whose paths and kinds below it are the same,
 * compared by a count and a sum of hashes.
 */
#define MAX_TOPS 32 /* groups looked at in one revision; more: no rename */

struct group {
	char *path;
	size_t count; /* paths that exist at and below it */
	uint64_t sum; /* of their hashes */
	bool file;    /* the top: a value and nothing below */
	bool taken;   /* paired */
};

struct renames {
	struct group gone[MAX_TOPS], made[MAX_TOPS];
	size_t ngone, nmade;
	bool overflow;
};

/* A pair found: the changes at or below from are the rename to to. */
struct rename {
	const char *from, *to;
	bool tried, ok;
};

static void states(const char *path, struct view_state *b, struct view_state *a)
{
	view_state(path, b);
	view_trial_state(path, a);
}

static bool vanished(const char *path)
{
	struct view_state b, a;

	states(path, &b, &a);
	return b.exists && !a.exists;
}

/* The records the revision dropped (a rename onto an empty directory). */
static const char *dropped[MAX_TOPS];
static size_t ndropped;

/*
 * Whether path is new with the revision, or an empty directory that a
 * directory was renamed onto: dropped and made again, with names below.
 */
static bool arrived(const char *path)
{
	struct view_state b, a;
	size_t i;

	states(path, &b, &a);
	if (!b.exists && a.exists)
		return true;
	if (!(b.record && !b.nchild && !b.value && a.nchild))
		return false;
	for (i = 0; i < ndropped; i++)
		if (!strcmp(dropped[i], path))
			return true;
	return false;
}

/* The highest path at or above path that test() holds for, into top. */
static bool group_top(const char *path, bool (*test)(const char *), char *top)
{
	char cur[FS_PATH_MAX], dir[FS_PATH_MAX];
	bool found = false;

	strcpy(cur, path);
	/* Bounded by the depth of path: one step up per segment. */
	while (strcmp(cur, "/") && test(cur)) {
		strcpy(top, cur);
		found = true;
		path_split(cur, dir);
		strcpy(cur, dir);
	}
	return found;
}

static struct group *group_of(struct group *g, size_t *n, const char *top,
			      bool *overflow)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (!strcmp(g[i].path, top))
			return &g[i];
	if (*n == MAX_TOPS || !(g[*n].path = strdup(top))) {
		*overflow = true;
		return NULL;
	}
	g[*n].count = 0;
	g[*n].sum = 0;
	g[*n].file = false;
	g[*n].taken = false;
	return &g[(*n)++];
}

static uint64_t path_hash(const char *rel, bool value, bool record)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *rel; rel++)
		h = (h ^ (unsigned char)*rel) * 0x100000001b3ull;
	return h ^ ((uint64_t)value << 62) ^ ((uint64_t)record << 61);
}

/* Count path, by its state st, into g, its group. */
static void group_add(struct group *g, const char *path,
		      const struct view_state *st)
{
	const char *rel = path + strlen(g->path);

	if (!st->exists)
		return;
	g->count++;
	/* A rename gives its target a record even where none was. */
	g->sum += path_hash(rel, st->value, *rel && st->record);
	if (!*rel)
		g->file = st->value && !st->dir;
}

static void group_path(void *arg, const char *path)
{
	struct renames *r = arg;
	char top[FS_PATH_MAX];
	struct view_state b, a;
	struct group *g;

	states(path, &b, &a);
	if (group_top(path, vanished, top)) {
		g = group_of(r->gone, &r->ngone, top, &r->overflow);
		if (g)
			group_add(g, path, &b);
	}
	if (group_top(path, arrived, top)) {
		g = group_of(r->made, &r->nmade, top, &r->overflow);
		if (g)
			group_add(g, path, &a);
	}
}

/* Whether the parent of path is a directory before and after. */
static bool parent_stays(const char *path)
{
	char dir[FS_PATH_MAX];
	struct view_state b, a;

	path_split(path, dir);
	states(dir, &b, &a);
	return b.dir && a.dir;
}

static bool under(const char *path, const char *top)
{
	size_t len = strlen(top);

	return !strcmp(path, top) ||
	       (!strncmp(path, top, len) && path[len] == '/');
}

/*
 * A file is renamed by a set of the new key right before the delete of
 * the old one (do_rename()'s order): without it, a transaction that sets
 * one key and deletes another is no rename.
 */
static bool adjacent(struct change **b, size_t n, const char *to,
		     const char *from)
{
	size_t i;

	for (i = 0; i + 1 < n; i++)
		if ((b[i]->type == USTATE_EVENT_CREATED ||
		     b[i]->type == USTATE_EVENT_UPDATED) &&
		    b[i + 1]->type == USTATE_EVENT_DELETED &&
		    !strcmp(b[i]->key, to) && !strcmp(b[i + 1]->key, from))
			return true;
	return false;
}

/*
 * The renames among the n changes of one revision, into out (at most
 * MAX_TOPS); their number. The view is left as it was.
 */
static size_t find_renames(struct change **b, size_t n, struct rename *out)
{
	struct renames r = {0};
	struct group *g, *m;
	size_t i, j, k = 0;
	bool ok = true;

	ndropped = 0;
	for (i = 0; ok && i < n; i++) {
		ok = view_trial_apply(b[i]->type, b[i]->key) == 0;
		if (b[i]->type == USTATE_EVENT_DIR_DELETED &&
		    ndropped < MAX_TOPS)
			dropped[ndropped++] = b[i]->key;
	}
	if (ok)
		view_trial_each(group_path, &r);
	ndropped = 0;
	for (i = 0; ok && !r.overflow && i < r.ngone; i++) {
		g = &r.gone[i];
		for (j = 0; j < r.nmade; j++) {
			m = &r.made[j];
			if (m->taken || m->count != g->count ||
			    m->sum != g->sum || m->file != g->file ||
			    under(m->path, g->path) ||
			    under(g->path, m->path) || !parent_stays(g->path) ||
			    !parent_stays(m->path) ||
			    (g->file && !adjacent(b, n, m->path, g->path)))
				continue;
			m->taken = true;
			out[k].from = g->path;
			out[k].to = m->path;
			out[k].tried = out[k].ok = false;
			g->path = NULL; /* now the pair's */
			m->path = NULL;
			k++;
			break;
		}
	}
	for (i = 0; i < r.ngone; i++)
		free(r.gone[i].path);
	for (i = 0; i < r.nmade; i++)
		free(r.made[i].path);
	view_trial_end();
	return k;
}

/*
 * Replay the rename of the changes b[] (of revision rev) at or below
 * p->from to p->to, as one rename through the mount; false when the
 * kernel refused it (the changes are then replayed one by one).
 */
static bool replay_rename(struct rename *p, struct change **b, size_t n,
			  uint64_t rev)
{
	char anc[MAX_INTENT][FS_PATH_MAX], vpath[FS_PATH_MAX];
	struct view_state f, t;
	size_t na, i;
	int rc;

	replaying = rev;
	view_state(p->from, &f);
	view_state(p->to, &t);
	/* Writers of the keys moved and of a file replaced lose the name. */
	for (i = 0; i < n; i++) {
		if (b[i]->type != USTATE_EVENT_DELETED ||
		    !under(b[i]->key, p->from))
			continue;
		value_path(b[i]->key, vpath);
		node_deleted(b[i]->key, rev);
		node_deleted(vpath, rev);
	}
	if (t.value)
		node_deleted(p->to, rev);
	na = ancestors(p->from, anc);
	for (i = 0; i < na; i++)
		intent_set(anc[i], KIND_DIR);
	na = ancestors(p->to, anc);
	for (i = 0; i < na; i++)
		intent_set(anc[i], KIND_DIR);
	intent_set(p->from, f.dir ? KIND_DIR : KIND_FILE);
	intent_set(p->to, !t.exists ? KIND_NONE : t.dir ? KIND_DIR : KIND_FILE);
	forget_path(p->from);
	forget_path(p->to);
	rc = helper_do2(H_RENAME, p->from, p->to);
	intent_clear();
	if (rc) {
		log_msg(LOG_NOTICE, "replay of rename %s to %s: %s", p->from,
			p->to, rc < 0 ? "no helper" : strerror(rc));
		return false;
	}
	/* A file's value has a new revision: its size may not be trusted. */
	if (!f.dir)
		own_forget_attrs(p->to, rev);
	return true;
}

/* ---- the changes of one revision -------------------------------------- */

/*
 * Replay a revision's changes b[0..n) (silent: only apply them to the
 * view, for changes the kernel already has).
 */
static void replay_batch(struct change **b, size_t n, bool silent)
{
	struct rename ren[MAX_TOPS], *p;
	size_t i, j, nren = 0;
	bool others = false;

	for (i = 0; i < n; i++) {
		/* Silent: the view as loaded has it, and no token can. */
		b[i]->own = silent ||
			    own_take(b[i]->key,
				     b[i]->type >= USTATE_EVENT_DIR_CREATED
					     ? DIR_TOKEN
					     : b[i]->version);
		others = others || !b[i]->own;
	}
	/* A revision is one commit: another's whole, or this mount's. */
	if (others && n > 1) {
		for (i = 0; i < n && !b[i]->own; i++)
			;
		if (i == n)
			nren = find_renames(b, n, ren);
	}
	for (i = 0; i < n; i++) {
		if (b[i]->own) {
			view_apply(b[i]->type, b[i]->key);
			continue;
		}
		for (p = NULL, j = 0; j < nren && !p; j++)
			if (under(b[i]->key, ren[j].from) ||
			    under(b[i]->key, ren[j].to))
				p = &ren[j];
		if (p && !p->tried) {
			p->tried = true;
			p->ok = replay_rename(p, b, n, b[i]->revision);
		}
		if (p && p->ok)
			view_apply(b[i]->type, b[i]->key);
		else
			replay_one(b[i]);
	}
	for (j = 0; j < nren; j++) {
		free((char *)ren[j].from);
		free((char *)ren[j].to);
	}
}

/* ---- following the store ---------------------------------------------- */

/*
 * Two threads. The follower reads the store's changes as soon as they
 * are committed, makes the kernel forget at once the names they remove
 * (pre_forget()), and queues them; the replayer takes each revision
 * whole from the queue and replays it, which takes requests through the
 * mount and may wait. So a name another writer removed is gone from this
 * mount's dentries a moment after the commit, not only once the replay
 * reaches it, and replay_seen() can wait for that moment.
 */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_more = PTHREAD_COND_INITIALIZER;
static pthread_cond_t q_seen_cond = PTHREAD_COND_INITIALIZER;
static struct change *q_head;		 /* protected by q_lock */
static struct change **q_tail = &q_head; /* protected by q_lock */
static uint64_t q_seen; /* every change up to it is queued (or was
			 * replayed), protected by q_lock */
static pthread_cond_t q_done_cond = PTHREAD_COND_INITIALIZER;
static uint64_t q_done;	   /* every change up to it was replayed (or was
			    * in the view as loaded), protected by q_lock */
static unsigned q_waiters; /* in wait_revision(), protected by q_lock */
static bool q_reset;	   /* the follower lost track: the replayer
			    * loads its view again, protected by q_lock */
static int kick_fd = -1;   /* wakes the follower for a waiter */
static pthread_t follower;
static uint64_t silent_until; /* replayer only: changes up to it are in
			       * the view as loaded */

#define SEEN_WAIT_MS 250  /* longest wait of replay_seen() */
#define DONE_WAIT_MS 1000 /* longest wait of replay_done() */

static void queue_push(const ustate_event *ev)
{
	size_t len = strlen(ev->key) + 1;
	struct change *c = malloc(sizeof(*c) + len);

	if (!c) {
		log_msg(LOG_WARNING, "replay of %s: out of memory", ev->key);
		return;
	}
	c->next = NULL;
	c->own = false;
	c->type = ev->type;
	c->version = ev->version;
	c->revision = ev->revision;
	memcpy(c->key, ev->key, len);
	pthread_mutex_lock(&q_lock);
	*q_tail = c;
	q_tail = &c->next;
	pthread_mutex_unlock(&q_lock);
}

/* Every change up to rev is queued: tell the replayer and the waiters. */
static void publish_seen(uint64_t rev)
{
	pthread_mutex_lock(&q_lock);
	if (rev > q_seen) {
		q_seen = rev;
		pthread_cond_broadcast(&q_seen_cond);
		pthread_cond_signal(&q_more);
	}
	pthread_mutex_unlock(&q_lock);
}

static void queue_drop(void)
{
	struct change *c;

	while ((c = q_head)) {
		q_head = c->next;
		free(c);
	}
	q_tail = &q_head;
}

/* Whether (key, version) is a token of this mount's own, not taken. */
static bool own_peek(const char *key, uint64_t version)
{
	struct token *t;
	bool found = false;

	pthread_mutex_lock(&own_lock);
	for (t = tokens; t && !found; t = t->next)
		found = t->version == version && !strcmp(t->key, key);
	pthread_mutex_unlock(&own_lock);
	return found;
}

/* The kernel forgets the dentry of path (and every one below it). */
static void forget_name(const char *path)
{
	char dir[FS_PATH_MAX];
	const char *name;
	fuse_ino_t pino;

	name = path_split(path, dir);
	pino = node_find(dir);
	if (pino)
		kernel_forget_entry(pino, name);
}

/*
 * At once, before its replay: the kernel forgets the name that a delete
 * by another writer removed, by the store as it is now: the highest path
 * that nothing is left at (a directory may go with its last key), or the
 * DIR/.value of a key that keeps children. Nothing else is changed; the
 * replay then makes the events. last holds the name last forgotten in
 * this revision (a tree's keys go together).
 */
static void pre_forget(const ustate_event *ev, char *last)
{
	char cur[FS_PATH_MAX], dir[FS_PATH_MAX];
	unsigned flags;

	if (ev->type != USTATE_EVENT_DELETED &&
	    ev->type != USTATE_EVENT_DIR_DELETED)
		return;
	if (*last && under(ev->key, last))
		return;
	if (own_peek(ev->key,
		     ev->type == USTATE_EVENT_DIR_DELETED ? DIR_TOKEN : 0))
		return;
	if (ustate_node(fs.store, ev->key, &flags) < 0)
		return;
	if (flags_dir(flags) && ev->type == USTATE_EVENT_DELETED &&
	    !(flags & USTATE_NODE_VALUE)) {
		value_path(ev->key, cur);
		forget_name(cur);
	}
	if (flags)
		return; /* still there (or there again): the replay's */
	strcpy(cur, ev->key);
	/* Bounded by the depth of the key: one step up per segment. */
	for (;;) {
		path_split(cur, dir);
		if (!strcmp(dir, "/") ||
		    ustate_node(fs.store, dir, &flags) < 0 || flags)
			break;
		strcpy(cur, dir);
	}
	forget_name(cur);
	strcpy(last, cur);
}

/* (Re)open the watch from the store's revision now; 0 or -errno. */
static int follow_from_now(void)
{
	uint64_t rev;
	unsigned flags;
	int rc;

	rc = ustate_node_get(fs.store, "/", &flags, &rev, NULL);
	if (rc == 0)
		rc = ustate_watch_open(&fs.watch, fs.store, "*", rev + 1);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&q_lock);
	q_seen = rev;
	pthread_cond_broadcast(&q_seen_cond);
	pthread_mutex_unlock(&q_lock);
	return 0;
}

/* Lost track (history trimmed, store errors): start again from now. */
static void follow_again(int rc)
{
	if (rc == -EOVERFLOW)
		log_msg(LOG_WARNING, "watch fell behind the history; "
				     "following from now");
	else
		log_msg(LOG_ERR, "watch: %s; retrying", ustate_strerror(rc));
	ustate_watch_close(fs.watch);
	fs.watch = NULL;
	pthread_mutex_lock(&q_lock);
	queue_drop();
	q_reset = true;
	pthread_cond_signal(&q_more);
	pthread_mutex_unlock(&q_lock);
	/* The kernel's caches time out meanwhile. */
	while (fs.watching && follow_from_now() < 0)
		sleep(1);
}

static void *follower_main(void *arg)
{
	char last[FS_PATH_MAX] = "";
	struct pollfd pfd[2];
	uint64_t cur = 0, drain;
	ustate_event ev;
	unsigned waiters;
	int rc;

	while (fs.watching) {
		rc = fs.watch ? ustate_watch_next(fs.watch, &ev, 0) : -EIO;
		if (rc == -EAGAIN) {
			/* All of revision cur is read. */
			if (cur)
				publish_seen(cur);
			pfd[0] =
				(struct pollfd){.fd = ustate_watch_fd(fs.watch),
						.events = POLLIN};
			pfd[1] = (struct pollfd){.fd = kick_fd,
						 .events = POLLIN};
			if (poll(pfd, 2, 200) <= 0)
				continue;
			if (pfd[1].revents &&
			    read(kick_fd, &drain, sizeof(drain)) < 0) {
				/* EAGAIN: another read took it */
			}
			pthread_mutex_lock(&q_lock);
			waiters = q_waiters;
			pthread_mutex_unlock(&q_lock);
			/*
			 * Nobody waiting: let the burst the signal may start
			 * land, and read it in one go.
			 */
			if (!waiters)
				usleep(WATCH_SETTLE_US);
			continue;
		}
		if (rc == -EINTR)
			continue;
		if (rc < 0) {
			if (rc != -EOVERFLOW)
				sleep(1);
			follow_again(rc);
			cur = 0;
			continue;
		}
		if (ev.revision != cur) {
			if (cur)
				publish_seen(cur);
			cur = ev.revision;
			last[0] = '\0';
		}
		pre_forget(&ev, last);
		queue_push(&ev);
	}
	return NULL;
}

/*
 * Wait, ms at most, until *upto (q_seen or q_done, signalled by cond)
 * reaches rev; the follower is woken to read at once.
 */
static void wait_revision(const uint64_t *upto, pthread_cond_t *cond,
			  uint64_t rev, long ms, const char *what)
{
	struct timespec until;
	uint64_t one = 1;

	pthread_mutex_lock(&q_lock);
	if (*upto >= rev || !fs.watching) {
		pthread_mutex_unlock(&q_lock);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += ms % 1000 * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	q_waiters++;
	if (write(kick_fd, &one, sizeof(one)) < 0) {
		/* the counter is full: the follower is awake anyway */
	}
	while (*upto < rev && fs.watching)
		if (pthread_cond_timedwait(cond, &q_lock, &until) ==
		    ETIMEDOUT) {
			log_msg(LOG_DEBUG,
				"replay: revision %llu not %s in time",
				(unsigned long long)rev, what);
			break;
		}
	q_waiters--;
	pthread_mutex_unlock(&q_lock);
}

void replay_seen(uint64_t rev)
{
	wait_revision(&q_seen, &q_seen_cond, rev, SEEN_WAIT_MS, "read");
}

void replay_done(uint64_t rev)
{
	wait_revision(&q_done, &q_done_cond, rev, DONE_WAIT_MS, "replayed");
}

/* The replayer has replayed (or loaded) every change up to rev. */
static void set_done(uint64_t rev)
{
	pthread_mutex_lock(&q_lock);
	if (rev > q_done) {
		q_done = rev;
		pthread_cond_broadcast(&q_done_cond);
	}
	pthread_mutex_unlock(&q_lock);
}

/* Take the next whole revision from the queue into *b (n of them). */
static int take_revision(struct change ***b, size_t *n)
{
	struct change *c, **v = NULL, **grown;
	size_t cnt = 0, cap = 0;
	uint64_t rev;

	rev = q_head->revision;
	while ((c = q_head) && c->revision == rev) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(v, cap * sizeof(*v));
			if (!grown)
				break; /* the rest comes as another batch */
			v = grown;
		}
		q_head = c->next;
		if (!q_head)
			q_tail = &q_head;
		v[cnt++] = c;
	}
	*b = v;
	*n = cnt;
	return cnt ? 0 : -ENOMEM;
}

struct resync {
	struct change **b;
	size_t n, cap;
	uint64_t rev;
	bool failed;
};

static void resync_add(void *arg, ustate_event_type type, const char *path)
{
	struct resync *r = arg;
	size_t len = strlen(path) + 1;
	struct change *c, **grown;

	if (r->failed)
		return;
	if (r->n == r->cap) {
		grown = realloc(r->b,
				(r->cap ? r->cap * 2 : 64) * sizeof(*grown));
		if (!grown) {
			r->failed = true;
			return;
		}
		r->b = grown;
		r->cap = r->cap ? r->cap * 2 : 64;
	}
	c = calloc(1, sizeof(*c) + len);
	if (!c) {
		r->failed = true;
		return;
	}
	c->type = type;
	c->revision = r->rev;
	memcpy(c->key, path, len);
	r->b[r->n++] = c;
}

/*
 * The follower lost track of the changes (etcd compacted the revisions
 * it had not read, or the history was trimmed): read the store again and
 * replay what differs from the view as one change, so that watchers see
 * the net difference (a key changed twice meanwhile: one update with its
 * last value; deleted: one delete), and follow from there. A key changed
 * is one whose mod revision is past the last revision replayed.
 */
static void resync(uint64_t *first)
{
	struct resync r = {0};
	uint64_t since;
	size_t i;
	int rc;

	own_clear();
	r.rev = ~0ull; /* set below, before any change is replayed */
	pthread_mutex_lock(&q_lock);
	since = q_done;
	pthread_mutex_unlock(&q_lock);
	rc = view_resync(since, first, &silent_until, resync_add, &r);
	if (rc < 0 || r.failed) {
		log_msg(LOG_ERR, "replay: cannot read the store again: %s",
			ustate_strerror(rc < 0 ? rc : -ENOMEM));
		/* Without a view nothing can be told apart: start afresh. */
		if (view_load(first, &silent_until) == 0)
			set_done(silent_until);
	} else {
		for (i = 0; i < r.n; i++)
			r.b[i]->revision = silent_until;
		log_msg(LOG_NOTICE,
			"replay: read the store again at revision %llu: "
			"%zu changes since the last one followed",
			(unsigned long long)silent_until, r.n);
		if (r.n)
			replay_batch(r.b, r.n, false);
		set_done(silent_until);
	}
	for (i = 0; i < r.n; i++)
		free(r.b[i]);
	free(r.b);
}

static void *replayer_main(void *arg)
{
	struct change **b;
	struct timespec until;
	uint64_t first;
	size_t n, i;
	bool reset;

	while (fs.watching) {
		pthread_mutex_lock(&q_lock);
		while (fs.watching && !q_reset &&
		       !(q_head && q_head->revision <= q_seen)) {
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec++;
			pthread_cond_timedwait(&q_more, &q_lock, &until);
		}
		reset = q_reset;
		q_reset = false;
		if (!fs.watching || reset || take_revision(&b, &n) < 0) {
			pthread_mutex_unlock(&q_lock);
			if (reset)
				resync(&first);
			continue;
		}
		pthread_mutex_unlock(&q_lock);
		replay_batch(b, n, b[0]->revision <= silent_until);
		set_done(b[0]->revision);
		for (i = 0; i < n; i++)
			free(b[i]);
		free(b);
	}
	return NULL;
}

int watcher_start(void)
{
	uint64_t first;
	int rc;

	kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (kick_fd < 0)
		return -errno;
	/*
	 * The view from one moment between first and silent_until; the
	 * changes after first make it exact up to silent_until, and are
	 * replayed after it.
	 */
	rc = view_load(&first, &silent_until);
	if (rc == 0)
		rc = ustate_watch_open(&fs.watch, fs.store, "*", first + 1);
	if (rc < 0)
		goto fail_view;
	q_seen = first;
	q_done = silent_until;
	fs.watching = true;
	rc = -pthread_create(&follower, NULL, follower_main, NULL);
	if (rc < 0)
		goto fail_watch;
	rc = -pthread_create(&fs.watcher, NULL, replayer_main, NULL);
	if (rc < 0) {
		fs.watching = false;
		pthread_join(follower, NULL);
		goto fail_watch;
	}
	return 0;

fail_watch:
	fs.watching = false;
	ustate_watch_close(fs.watch);
	fs.watch = NULL;
fail_view:
	view_clear();
	close(kick_fd);
	kick_fd = -1;
	return rc;
}

void watcher_stop(void)
{
	if (!fs.watching)
		return;
	pthread_mutex_lock(&q_lock);
	fs.watching = false;
	pthread_cond_broadcast(&q_more);
	pthread_cond_broadcast(&q_seen_cond);
	pthread_cond_broadcast(&q_done_cond);
	pthread_mutex_unlock(&q_lock);
	pthread_join(fs.watcher, NULL);
	pthread_join(follower, NULL);
	ustate_watch_close(fs.watch);
	fs.watch = NULL;
	pthread_mutex_lock(&q_lock);
	queue_drop();
	pthread_mutex_unlock(&q_lock);
	own_clear();
	view_clear();
	close(kick_fd);
	kick_fd = -1;
}
