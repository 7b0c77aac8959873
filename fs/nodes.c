/* SPDX-License-Identifier: MIT */
/*
 * This file implements the inode table of ustatefs: the live inodes the
 * kernel holds (those it looked up and has not forgotten), each with its
 * path, found by inode number or by path. An inode number is a hash of
 * the path, so it stays the same while the path lives, is forgotten and
 * looked up again, and readdir can tell it without creating a node; the
 * rare collision of two live paths falls back to a counter. A rename moves
 * live nodes to their new paths and they keep their numbers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fs_i.h"

#define FALLBACK_INO (1ull << 63) /* counter range for collisions */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t released = PTHREAD_COND_INITIALIZER;

#define SETTLE_MS 100	      /* longest wait for an expected release */
static struct node **by_ino;  /* protected by lock */
static struct node **by_path; /* protected by lock */
static size_t nbuckets;	      /* protected by lock */
static size_t count;	      /* protected by lock */
static size_t ncreating;      /* nodes with creating > 0, protected by lock */
static uint64_t next_fallback = FALLBACK_INO; /* protected by lock */

/* FNV-1a: cheap, and good enough to spread paths over 63 bits. */
static uint64_t hash_path(const char *p)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	return h;
}

fuse_ino_t node_ino_for(const char *path)
{
	uint64_t h;

	if (!strcmp(path, "/"))
		return FUSE_ROOT_ID;
	h = hash_path(path) & ~FALLBACK_INO;
	return h <= FUSE_ROOT_ID ? h + 2 : h;
}

static size_t slot_ino(fuse_ino_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 17) & (nbuckets - 1);
}

static size_t slot_path(const char *path)
{
	return (size_t)hash_path(path) & (nbuckets - 1);
}

static struct node *find_ino(fuse_ino_t ino)
{
	struct node *n;

	for (n = by_ino[slot_ino(ino)]; n; n = n->next_ino)
		if (n->ino == ino)
			return n;
	return NULL;
}

static struct node *find_path(const char *path)
{
	struct node *n;

	for (n = by_path[slot_path(path)]; n; n = n->next_path)
		if (!strcmp(n->path, path))
			return n;
	return NULL;
}

/* Into the indexes: by number, and by path unless it is an orphan. */
static void link_node(struct node *n)
{
	size_t i = slot_ino(n->ino), j = slot_path(n->path);

	n->next_ino = by_ino[i];
	by_ino[i] = n;
	if (n->orphan)
		return;
	n->next_path = by_path[j];
	by_path[j] = n;
}

static void unlink_path(struct node *n)
{
	struct node **pp;

	for (pp = &by_path[slot_path(n->path)]; *pp != n;
	     pp = &(*pp)->next_path)
		;
	*pp = n->next_path;
}

static void unlink_node(struct node *n)
{
	struct node **pp;

	for (pp = &by_ino[slot_ino(n->ino)]; *pp != n; pp = &(*pp)->next_ino)
		;
	*pp = n->next_ino;
	if (!n->orphan)
		unlink_path(n);
}

/* Double the buckets when the table is full; on ENOMEM keep the old ones. */
static void grow(void)
{
	struct node **oi, **op, *n, *next;
	size_t old = nbuckets, i;

	oi = by_ino;
	op = by_path;
	by_ino = calloc(old * 2, sizeof(*by_ino));
	by_path = calloc(old * 2, sizeof(*by_path));
	if (!by_ino || !by_path) {
		free(by_ino);
		free(by_path);
		by_ino = oi;
		by_path = op;
		return;
	}
	nbuckets = old * 2;
	for (i = 0; i < old; i++) {
		for (n = oi[i]; n; n = next) {
			next = n->next_ino;
			link_node(n);
		}
	}
	free(oi);
	free(op);
}

int nodes_init(void)
{
	struct node *root;

	nbuckets = 1024;
	by_ino = calloc(nbuckets, sizeof(*by_ino));
	by_path = calloc(nbuckets, sizeof(*by_path));
	root = calloc(1, sizeof(*root));
	if (!by_ino || !by_path || !root || !(root->path = strdup("/"))) {
		free(root);
		return -ENOMEM;
	}
	root->ino = FUSE_ROOT_ID;
	root->nlookup = 1; /* the root is never forgotten */
	link_node(root);
	count = 1;
	return 0;
}

static void xattrs_drop(struct node *n)
{
	size_t i;

	for (i = 0; i < n->nxattrs; i++)
		free(n->xattrs[i].name);
	free(n->xattrs);
	n->xattrs = NULL;
	n->nxattrs = 0;
}

/* Free n, out of both indexes. */
static void node_release(struct node *n)
{
	xattrs_drop(n);
	free(n->path);
	free(n);
}

void nodes_destroy(void)
{
	struct node *n, *next;
	size_t i;

	for (i = 0; i < nbuckets; i++) {
		for (n = by_ino[i]; n; n = next) {
			next = n->next_ino;
			node_release(n);
		}
	}
	free(by_ino);
	free(by_path);
}

struct node *node_lookup(const char *path)
{
	struct node *n;

	pthread_mutex_lock(&lock);
	n = find_path(path);
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (n && !(n->path = strdup(path))) {
			free(n);
			n = NULL;
		}
		if (!n)
			goto out;
		n->ino = node_ino_for(path);
		if (find_ino(n->ino))
			n->ino = next_fallback++;
		if (count >= nbuckets)
			grow();
		link_node(n);
		count++;
	}
	n->nlookup++;
out:
	pthread_mutex_unlock(&lock);
	return n;
}

struct node *node_ghost(const char *path)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n || !(n->path = strdup(path))) {
		free(n);
		return NULL;
	}
	n->orphan = true;
	n->ghost = true;
	n->nlookup = 1;
	pthread_mutex_lock(&lock);
	/* A number no path has or will have: from the counter. */
	n->ino = next_fallback++;
	if (count >= nbuckets)
		grow();
	link_node(n);
	count++;
	pthread_mutex_unlock(&lock);
	return n;
}

bool node_is_ghost(fuse_ino_t ino)
{
	struct node *n;
	bool yes;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	yes = n && n->ghost;
	pthread_mutex_unlock(&lock);
	return yes;
}

struct node *node_of(fuse_ino_t ino)
{
	struct node *n;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	pthread_mutex_unlock(&lock);
	return n;
}

int node_path(fuse_ino_t ino, char *buf)
{
	struct node *n;
	int rc = -ESTALE;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	if (n && strlen(n->path) < FS_PATH_MAX) {
		strcpy(buf, n->path);
		rc = 0;
	} else if (n) {
		rc = -ENAMETOOLONG; /* node_move() never makes one */
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

fuse_ino_t node_find(const char *path)
{
	struct node *n;
	fuse_ino_t ino;

	pthread_mutex_lock(&lock);
	n = find_path(path);
	ino = n ? n->ino : 0;
	pthread_mutex_unlock(&lock);
	return ino;
}

void node_forget(fuse_ino_t ino, uint64_t k)
{
	struct node *n;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	if (n && ino != FUSE_ROOT_ID) {
		n->nlookup = n->nlookup > k ? n->nlookup - k : 0;
		if (!n->nlookup && !n->creating && !n->committing &&
		    !n->expecting && !n->unlinking) {
			unlink_node(n);
			count--;
			node_release(n);
		}
	}
	pthread_mutex_unlock(&lock);
}

void node_move(const char *from, const char *to)
{
	size_t flen = strlen(from), tlen = strlen(to), i;
	struct node *n, *moved = NULL, *next;
	char *p;

	pthread_mutex_lock(&lock);
	/* Take the nodes out first: their new paths hash elsewhere. */
	for (i = 0; i < nbuckets; i++) {
		for (n = by_ino[i]; n; n = n->next_ino) {
			/*
			 * A replaced node is out of the path index and keeps
			 * its path: its open files are no longer that name's.
			 */
			if (n->orphan || strncmp(n->path, from, flen) ||
			    (n->path[flen] && n->path[flen] != '/'))
				continue;
			/* Too long to be a path any more: it stays behind. */
			if (tlen + strlen(n->path + flen) >= FS_PATH_MAX)
				continue;
			p = malloc(tlen + strlen(n->path + flen) + 1);
			if (!p)
				continue;
			strcpy(p, to);
			strcat(p, n->path + flen);
			unlink_path(n);
			free(n->path);
			n->path = p;
			n->next_path = moved;
			moved = n;
		}
	}
	for (n = moved; n; n = next) {
		struct node *old = find_path(n->path);

		/*
		 * A node already at the new path was replaced: it keeps its
		 * path for the kernel's open files, but lookups find the
		 * moved one.
		 */
		if (old) {
			unlink_path(old);
			old->orphan = true;
		}
		next = n->next_path;
		i = slot_path(n->path);
		n->next_path = by_path[i];
		by_path[i] = n;
	}
	pthread_mutex_unlock(&lock);
}

void node_creating(struct node *n, int delta)
{
	pthread_mutex_lock(&lock);
	if (delta > 0 && n->creating++ == 0) {
		ncreating++;
	} else if (delta < 0 && n->creating && --n->creating == 0) {
		ncreating--;
		xattrs_drop(n); /* committed with the key, or forgotten */
	}
	pthread_mutex_unlock(&lock);
}

bool node_is_creating(const char *path)
{
	struct node *n;
	bool yes;

	pthread_mutex_lock(&lock);
	n = ncreating ? find_path(path) : NULL;
	yes = n && n->creating;
	pthread_mutex_unlock(&lock);
	return yes;
}

void node_each_creating(const char *dir,
			void (*fn)(void *arg, const char *name), void *arg)
{
	size_t dlen = strlen(dir), i;
	const char *name;
	struct node *n;

	pthread_mutex_lock(&lock);
	for (i = 0; ncreating && i < nbuckets; i++) {
		for (n = by_ino[i]; n; n = n->next_ino) {
			if (!n->creating || strncmp(n->path, dir, dlen))
				continue;
			name = n->path + dlen;
			if (dlen > 1) {
				if (*name != '/')
					continue;
				name++;
			}
			if (!strchr(name, '/'))
				fn(arg, name);
		}
	}
	pthread_mutex_unlock(&lock);
}

enum cache_use node_cache_open(struct node *n, uint64_t rev)
{
	enum cache_use use = CACHE_DIRECT;

	pthread_mutex_lock(&lock);
	if (n->writers || n->notifying ||
	    (n->replying && (n->reply_mixed || n->reply_rev != rev))) {
		/*
		 * A size of another revision is on its way to the kernel, or
		 * a notification that would make it drop the reply that
		 * tells this reader's size.
		 */
		use = CACHE_DIRECT;
	} else if (!n->pc_users) {
		n->pc_users = 1;
		if (n->cached != rev)
			use = CACHE_INVAL;
		else
			use = n->attr_rev == rev ? CACHE_KEEP : CACHE_ATTRS;
		/* Pages of no known revision until the caller dropped them. */
		if (use == CACHE_INVAL)
			n->cached = 0;
	} else if (n->cached == rev) {
		/*
		 * The first reader of rev dropped the kernel's attributes,
		 * and no reply has told it another size as valid since: this
		 * one asks for rev's size when it reads. Dropping them again
		 * here would make the kernel drop the replies under way to
		 * the others' refreshes, and keep the size they replace.
		 */
		n->pc_users++;
		use = CACHE_KEEP;
	}
	pthread_mutex_unlock(&lock);
	return use;
}

void node_cache_ready(struct node *n, uint64_t rev)
{
	pthread_mutex_lock(&lock);
	n->cached = rev;
	pthread_mutex_unlock(&lock);
}

void node_cache_close(struct node *n)
{
	pthread_mutex_lock(&lock);
	if (!--n->pc_users)
		pthread_cond_broadcast(&released);
	pthread_mutex_unlock(&lock);
}

/* CLOCK_REALTIME ms from now, for pthread_cond_timedwait(). */
static void deadline(struct timespec *until, long ms)
{
	clock_gettime(CLOCK_REALTIME, until);
	until->tv_nsec += ms * 1000000L;
	if (until->tv_nsec >= 1000000000L) {
		until->tv_sec++;
		until->tv_nsec -= 1000000000L;
	}
}

void node_writer(struct node *n, int delta)
{
	struct timespec until;

	deadline(&until, SETTLE_MS);
	pthread_mutex_lock(&lock);
	n->writers += delta;
	/*
	 * A writer changes the kernel's i_size (an O_TRUNC open sets it to
	 * 0, a write past the end raises it) under readers of the page
	 * cache, who would then see their value end early: let them finish.
	 */
	while (delta > 0 && n->pc_users)
		if (pthread_cond_timedwait(&released, &lock, &until) ==
		    ETIMEDOUT)
			break;
	pthread_mutex_unlock(&lock);
}

void node_reply_begin(fuse_ino_t ino, uint64_t rev)
{
	struct timespec until;
	struct node *n;

	deadline(&until, SETTLE_MS);
	pthread_mutex_lock(&lock);
	while ((n = find_ino(ino)) && n->pc_users && n->cached != rev)
		if (pthread_cond_timedwait(&released, &lock, &until) ==
		    ETIMEDOUT) {
			log_msg(LOG_DEBUG,
				"attributes of %s: readers of the "
				"page cache still open",
				n->path);
			break;
		}
	n = find_ino(ino);
	if (n && !n->replying++) {
		n->reply_rev = rev;
		n->reply_mixed = false;
	} else if (n && n->reply_rev != rev) {
		n->reply_mixed = true;
	}
	pthread_mutex_unlock(&lock);
}

bool node_notify_begin(fuse_ino_t ino, uint64_t rev)
{
	struct timespec until;
	struct node *n;
	bool go = true;

	deadline(&until, SETTLE_MS);
	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	if (n && n->pc_users && n->cached >= rev) {
		go = false;
	} else if (n) {
		/* New readers read directly; older ones finish first. */
		n->notifying++;
		while ((n = find_ino(ino)) && n->pc_users && n->cached < rev)
			if (pthread_cond_timedwait(&released, &lock, &until) ==
			    ETIMEDOUT)
				break;
	}
	pthread_mutex_unlock(&lock);
	return go;
}

void node_notify_done(fuse_ino_t ino)
{
	struct node *n;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	if (n && n->notifying)
		n->notifying--;
	pthread_mutex_unlock(&lock);
}

void node_reply_done(fuse_ino_t ino)
{
	struct node *n;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	if (n && n->replying)
		n->replying--;
	pthread_mutex_unlock(&lock);
}

double node_attr_valid(fuse_ino_t ino, uint64_t rev)
{
	double valid = fs.attr_timeout;
	struct node *n;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	/*
	 * Nor while a writer has it open: a writer's stat tells its own
	 * edits, everyone else's the committed value, and the kernel keeps
	 * one size for all (see own_size_of() in ops.c).
	 */
	if (n && (!rev || n->writers || (n->pc_users && n->cached != rev)))
		valid = 0;
	if (n)
		n->attr_rev = valid > 0 ? rev : 0;
	pthread_mutex_unlock(&lock);
	return valid;
}

void node_set_type(fuse_ino_t ino, mode_t mode)
{
	struct node *n;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	if (n)
		n->type = mode & S_IFMT;
	pthread_mutex_unlock(&lock);
}

bool node_type_is(fuse_ino_t ino, mode_t mode)
{
	struct node *n;
	bool yes;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	yes = !n || !n->type || n->type == (mode & S_IFMT);
	pthread_mutex_unlock(&lock);
	return yes;
}

void node_set_mtime(struct node *n, int64_t ns)
{
	pthread_mutex_lock(&lock);
	if (n->writers) {
		n->has_mtime = true;
		n->mtime = ns;
	}
	pthread_mutex_unlock(&lock);
}

bool node_take_mtime(struct node *n, int64_t *ns)
{
	bool yes;

	pthread_mutex_lock(&lock);
	yes = n->has_mtime;
	*ns = n->mtime;
	n->has_mtime = false;
	pthread_mutex_unlock(&lock);
	return yes;
}

void node_wrote(struct node *n)
{
	pthread_mutex_lock(&lock);
	n->has_mtime = false;
	n->meta.flags &= ~(uint32_t)USTATE_META_MTIME;
	pthread_mutex_unlock(&lock);
}

/* The index of name among n's pending xattrs, or n->nxattrs. */
static size_t xattr_find(const struct node *n, const char *name)
{
	size_t i;

	for (i = 0; i < n->nxattrs; i++)
		if (!strcmp(n->xattrs[i].name, name))
			break;
	return i;
}

int node_set_xattr(struct node *n, const char *name, const void *value,
		   size_t len, unsigned flags)
{
	size_t nlen = strlen(name) + 1, i, total = 0;
	struct node_xattr *grown;
	char *buf = NULL;
	int rc = 0;

	pthread_mutex_lock(&lock);
	i = xattr_find(n, name);
	for (size_t k = 0; k < n->nxattrs; k++)
		if (k != i)
			total += n->xattrs[k].len;
	if (!n->creating)
		rc = -ENOENT;
	else if (i < n->nxattrs && (flags & USTATE_XATTR_CREATE))
		rc = -EEXIST;
	else if (i == n->nxattrs && (!value || (flags & USTATE_XATTR_REPLACE)))
		rc = -ENODATA;
	else if (value && total + nlen + len > USTATE_XATTR_TOTAL_MAX)
		rc = -ENOSPC;
	if (rc < 0 || !value)
		goto out;
	/* One block: the name, its NUL, the value (an op's value). */
	buf = malloc(nlen + len);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(buf, name, nlen);
	if (len)
		memcpy(buf + nlen, value, len);
	if (i == n->nxattrs) {
		grown = realloc(n->xattrs, (i + 1) * sizeof(*grown));
		if (!grown) {
			free(buf);
			rc = -ENOMEM;
			goto out;
		}
		n->xattrs = grown;
		n->nxattrs++;
	} else {
		free(n->xattrs[i].name);
	}
	n->xattrs[i] = (struct node_xattr){.name = buf, .len = nlen + len};
out:
	/* A removal. */
	if (rc == 0 && !value) {
		free(n->xattrs[i].name);
		n->xattrs[i] = n->xattrs[--n->nxattrs];
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

bool node_xattrs(struct node *n, struct node_xattr **copy, size_t *nx)
{
	size_t i;
	bool yes;

	*copy = NULL;
	*nx = 0;
	pthread_mutex_lock(&lock);
	yes = n->creating;
	if (yes && n->nxattrs)
		*copy = calloc(n->nxattrs, sizeof(**copy));
	for (i = 0; *copy && i < n->nxattrs; i++) {
		(*copy)[i].len = n->xattrs[i].len;
		(*copy)[i].name = malloc(n->xattrs[i].len);
		if (!(*copy)[i].name)
			break;
		memcpy((*copy)[i].name, n->xattrs[i].name, n->xattrs[i].len);
		*nx = i + 1;
	}
	pthread_mutex_unlock(&lock);
	return yes;
}

void node_xattrs_free(struct node_xattr *x, size_t nx)
{
	size_t i;

	for (i = 0; i < nx; i++)
		free(x[i].name);
	free(x);
}

void node_set_meta(struct node *n, const ustate_meta *m)
{
	pthread_mutex_lock(&lock);
	n->meta = *m;
	n->has_meta = true;
	pthread_mutex_unlock(&lock);
}

bool node_meta(struct node *n, ustate_meta *m)
{
	bool yes;

	pthread_mutex_lock(&lock);
	yes = n->creating && n->has_meta;
	if (yes)
		*m = n->meta;
	pthread_mutex_unlock(&lock);
	return yes;
}

void node_gone(struct node *n, const ustate_meta *m)
{
	pthread_mutex_lock(&lock);
	if (!n->orphan) {
		unlink_path(n);
		n->orphan = true;
	}
	n->gone = true;
	n->last = *m;
	pthread_mutex_unlock(&lock);
}

bool node_unlinked(fuse_ino_t ino, ustate_meta *m)
{
	struct node *n;
	bool yes;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	/* A directory renamed over keeps its old answers (no snapshot). */
	yes = n && n->orphan && !n->ghost && n->type != S_IFDIR;
	if (yes && n->gone)
		*m = n->last;
	pthread_mutex_unlock(&lock);
	return yes;
}

void node_attr_drop(fuse_ino_t ino)
{
	struct node *n;

	pthread_mutex_lock(&lock);
	n = find_ino(ino);
	if (n)
		n->attr_rev = 0;
	pthread_mutex_unlock(&lock);
}

bool node_commit_begin(struct node *n, uint64_t gen, uint64_t rev)
{
	bool ok;

	pthread_mutex_lock(&lock);
	/* Whether an unlink under way ends the name is not known yet. */
	while (n->unlinking)
		pthread_cond_wait(&released, &lock);
	ok = n->generation == gen && rev >= n->deleted;
	if (ok)
		n->committing++;
	pthread_mutex_unlock(&lock);
	return ok;
}

void node_commit_end(struct node *n, bool created)
{
	pthread_mutex_lock(&lock);
	/* Before the unlink it held back looks: the key is no longer to be. */
	if (created && n->creating && --n->creating == 0) {
		ncreating--;
		xattrs_drop(n); /* committed with the key */
	}
	if (!--n->committing)
		pthread_cond_broadcast(&released);
	pthread_mutex_unlock(&lock);
}

void node_expect(struct node *n, int delta)
{
	pthread_mutex_lock(&lock);
	n->expecting += delta;
	if (!n->expecting)
		pthread_cond_broadcast(&released);
	pthread_mutex_unlock(&lock);
}

void node_settle(const char *path)
{
	struct timespec until;
	struct node *n;

	/*
	 * A commit under way is always waited for; an expected release
	 * only for SETTLE_MS, since its file may stay open for long.
	 */
	deadline(&until, SETTLE_MS);
	pthread_mutex_lock(&lock);
	while ((n = find_path(path)) && (n->committing || n->expecting)) {
		if (!n->committing &&
		    pthread_cond_timedwait(&released, &lock, &until) ==
			    ETIMEDOUT)
			break;
		if (n->committing)
			pthread_cond_wait(&released, &lock);
	}
	pthread_mutex_unlock(&lock);
}

struct node *node_unlink_begin(const char *path, bool *creating)
{
	struct node *n;

	pthread_mutex_lock(&lock);
	/* A commit under way lands first; the unlink then removes it. */
	while ((n = find_path(path)) && n->committing)
		pthread_cond_wait(&released, &lock);
	if (n)
		n->unlinking++;
	/* Only now: a creation whose commit landed is a key, even if
	 * another mount deleted it since. */
	if (creating)
		*creating = n && n->creating;
	pthread_mutex_unlock(&lock);
	return n;
}

void node_unlink_end(struct node *n, bool done)
{
	if (!n)
		return;
	pthread_mutex_lock(&lock);
	if (done) {
		n->generation++;
		/* Its creators will never commit: it is no longer pending. */
		if (n->creating) {
			n->creating = 0;
			ncreating--;
			xattrs_drop(n);
		}
	}
	if (!--n->unlinking)
		pthread_cond_broadcast(&released);
	pthread_mutex_unlock(&lock);
}

void node_deleted(const char *path, uint64_t rev)
{
	struct node *n;

	pthread_mutex_lock(&lock);
	/* A commit under way lands first; the delete then removes it. */
	while ((n = find_path(path)) && n->committing)
		pthread_cond_wait(&released, &lock);
	if (n && rev > n->deleted)
		n->deleted = rev;
	pthread_mutex_unlock(&lock);
}

uint64_t node_generation(struct node *n)
{
	uint64_t g;

	pthread_mutex_lock(&lock);
	g = n->generation;
	pthread_mutex_unlock(&lock);
	return g;
}

const char *path_split(const char *path, char *dir)
{
	const char *slash = strrchr(path, '/');

	if (slash == path) {
		strcpy(dir, "/");
	} else {
		memcpy(dir, path, slash - path);
		dir[slash - path] = '\0';
	}
	return slash + 1;
}
