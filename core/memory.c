/* SPDX-License-Identifier: MIT */
/*
 * This file implements the in-memory backend: two ordered maps, one from
 * key to entry and one of directory records (paths without values), each
 * kept in a skip list so that a get costs O(log n) and a scan of either
 * set O(log n + names returned), and a ring buffer holding the changes of
 * the last opts->history revisions for watches that start in the past. One
 * reader-writer lock serialises transactions against each other and
 * against readers. A transaction stages its ops and allocates everything
 * the commit needs before it touches a map or the history, so that any
 * failure, a lack of memory included, leaves the store unchanged.
 * Directory records change with the keys of their transaction or not at
 * all; a record made or dropped is a change of the revision, in the
 * history like a key's. The metadata (owner and mode) that a node of
 * either map may carry, and the root's, change with their transaction
 * too, but make no revision and no history. Leases are a sorted array of
 * names with their TTL and deadline; a key's node points to its lease,
 * which ends only together with every key attached to it (one
 * transaction of deletes, found by a scan of the keys).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_i.h"

#define SL_MAX_LEVEL 32

/*
 * One name of a map: a key with its entry, or a directory record, whose
 * value stays empty (NULL) and metadata 0. Every field is protected by the
 * backend's lock.
 */
struct mem_node {
	char *key;   /* stored after next[], in the same block */
	void *value; /* value_len bytes */
	size_t value_len;
	uint64_t version;
	int64_t created_at;
	int64_t updated_at;
	uint64_t mod_revision;
	bool has_meta; /* owner and mode (USTATE_OP_META, MKDIR) */
	ustate_meta meta;
	uint64_t meta_pin; /* a key's version when meta.mtime_ns was
			    * set: it holds until the next write */
	char *xattrs;	   /* extended attributes, a blob of
			    * ustate_xattr_entry()'s, or NULL */
	size_t xattrs_len;
	struct mem_lease *lease; /* the key's lease, or NULL: a lease ends
				  * only with all its keys, so it outlives
				  * every node that points to it */
	int level;		 /* links in next[] */
	struct mem_node *next[];
};

/* An ordered map of names, a skip list. */
struct mem_map {
	struct mem_node *head; /* a sentinel with SL_MAX_LEVEL links */
	int level;	       /* levels in use, >= 1 */
};

/* A lease: its name, TTL (seconds), deadline (unix ms) and owner. */
struct mem_lease {
	int64_t ttl;
	int64_t deadline;
	bool owned;	   /* owner is kept */
	ustate_meta owner; /* uid, gid and mode */
	char name[];
};

struct mem_backend {
	pthread_rwlock_t lock;
	struct mem_lease **leases; /* nleases, by name, protected by m->lock */
	size_t nleases;		   /* protected by m->lock */
	uint64_t keep;		   /* revisions of history; constant */
	struct mem_map keys;	   /* protected by m->lock */
	struct mem_map dirs;	   /* protected by m->lock */
	uint64_t rng;		   /* protected by m->lock, for writing */
	uint64_t rev;		   /* protected by m->lock */
	bool has_root_meta;	   /* protected by m->lock */
	ustate_meta root_meta;	   /* protected by m->lock */
	char *root_xattrs;	   /* protected by m->lock */
	size_t root_xattrs_len;	   /* protected by m->lock */
	uint64_t compacted;	   /* protected by m->lock: history before it
				    * was dropped by ustate_compact() */
	/* A ring of hcap changes, hlen of them from hhead, by revision. */
	struct ustate_change *hist; /* protected by m->lock */
	size_t hcap;		    /* protected by m->lock */
	size_t hhead;		    /* protected by m->lock */
	size_t hlen;		    /* protected by m->lock */
};

/*
 * Draw a node level from 1 to SL_MAX_LEVEL, each level above the first
 * with odds 1/4: one 64-bit draw holds the 31 two-bit coins that the
 * highest level needs.
 */
static int random_level(uint64_t *rng)
{
	uint64_t x = *rng;
	int lvl = 1;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*rng = x;
	while (lvl < SL_MAX_LEVEL && (x & 3) == 0) {
		lvl++;
		x >>= 2;
	}
	return lvl;
}

/*
 * A new node for key, not linked and without value, its level drawn from
 * *rng; NULL on ENOMEM.
 */
static struct mem_node *node_new(uint64_t *rng, const char *key)
{
	int lvl = random_level(rng);
	size_t klen = strlen(key);
	struct mem_node *x;

	x = calloc(1, sizeof(*x) + lvl * sizeof(x->next[0]) + klen + 1);
	if (!x)
		return NULL;
	x->level = lvl;
	x->key = (char *)&x->next[lvl];
	memcpy(x->key, key, klen + 1);
	return x;
}

/* Make map empty; -ENOMEM. */
static int map_init(struct mem_map *map)
{
	map->head =
		calloc(1, sizeof(*map->head) +
				  SL_MAX_LEVEL * sizeof(map->head->next[0]));
	if (!map->head)
		return -ENOMEM;
	map->head->level = SL_MAX_LEVEL;
	map->level = 1;
	return 0;
}

/* Free a node that no map links (any more). */
static void node_free(struct mem_node *x)
{
	free(x->value);
	free(x->xattrs);
	free(x);
}

/* Free every node of map and its sentinel. */
static void map_destroy(struct mem_map *map)
{
	struct mem_node *x, *next;

	for (x = map->head->next[0]; x; x = next) {
		next = x->next[0];
		node_free(x);
	}
	free(map->head);
}

/*
 * The first node whose key is >= key, or NULL. If update is not NULL, it
 * receives at each level in use the last node whose key is < key.
 */
static struct mem_node *seek(struct mem_map *map, const char *key,
			     struct mem_node **update)
{
	struct mem_node *x = map->head;
	int i;

	for (i = map->level - 1; i >= 0; i--) {
		while (x->next[i] && strcmp(x->next[i]->key, key) < 0)
			x = x->next[i];
		if (update)
			update[i] = x;
	}
	return x->next[0];
}

static struct mem_node *find(struct mem_map *map, const char *key)
{
	struct mem_node *x = seek(map, key, NULL);

	return x && strcmp(x->key, key) == 0 ? x : NULL;
}

/* Link x, whose key must not be in map. */
static void node_link(struct mem_map *map, struct mem_node *x)
{
	struct mem_node *update[SL_MAX_LEVEL];
	int i;

	seek(map, x->key, update);
	for (i = map->level; i < x->level; i++)
		update[i] = map->head;
	if (x->level > map->level)
		map->level = x->level;
	for (i = 0; i < x->level; i++) {
		x->next[i] = update[i]->next[i];
		update[i]->next[i] = x;
	}
}

/* Unlink x from map and free it. */
static void node_unlink(struct mem_map *map, struct mem_node *x)
{
	struct mem_node *update[SL_MAX_LEVEL];
	int i;

	/* Names are unique, so x follows update[i] on each of its levels. */
	seek(map, x->key, update);
	for (i = 0; i < x->level; i++)
		update[i]->next[i] = x->next[i];
	while (map->level > 1 && !map->head->next[map->level - 1])
		map->level--;
	node_free(x);
}

/* The k-th oldest change in the history ring. */
static struct ustate_change *hist_at(struct mem_backend *m, size_t k)
{
	return &m->hist[(m->hhead + k) % m->hcap];
}

/* Make room for k more changes, so that appending them cannot fail. */
static int hist_reserve(struct mem_backend *m, size_t k)
{
	struct ustate_change *c;
	size_t cap = m->hcap ? m->hcap : 64;
	size_t i;

	if (m->hlen + k <= m->hcap)
		return 0;
	while (cap < m->hlen + k) {
		if (cap > SIZE_MAX / 2 / sizeof(*c))
			return -ENOMEM;
		cap *= 2;
	}
	c = malloc(cap * sizeof(*c));
	if (!c)
		return -ENOMEM;
	for (i = 0; i < m->hlen; i++)
		c[i] = *hist_at(m, i);
	free(m->hist);
	m->hist = c;
	m->hcap = cap;
	m->hhead = 0;
	return 0;
}

/*
 * The oldest revision whose changes the history holds: whole revisions are
 * kept or dropped, and every revision has at least one change, so this
 * follows from the current revision and the compaction point alone.
 */
static uint64_t hist_oldest(const struct mem_backend *m)
{
	uint64_t oldest;

	if (!m->keep)
		return m->rev + 1;
	oldest = m->rev < m->keep ? 1 : m->rev - m->keep + 1;
	return oldest > m->compacted ? oldest : m->compacted + 1;
}

/* Drop the changes of the revisions that left the window; how many. */
static uint64_t hist_trim(struct mem_backend *m)
{
	uint64_t oldest = hist_oldest(m), n = 0;

	while (m->hlen && hist_at(m, 0)->revision < oldest) {
		free(hist_at(m, 0)->key);
		m->hhead = (m->hhead + 1) % m->hcap;
		m->hlen--;
		n++;
	}
	return n;
}

static void mem_close(void *b)
{
	struct mem_backend *m = b;
	size_t i;

	map_destroy(&m->keys);
	map_destroy(&m->dirs);
	free(m->root_xattrs);
	for (i = 0; i < m->nleases; i++)
		free(m->leases[i]);
	free(m->leases);
	for (i = 0; i < m->hlen; i++)
		free(hist_at(m, i)->key);
	free(m->hist);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

/* The entry of node x, or NULL when out of memory. Under the lock. */
static ustate_entry *entry_of(const struct mem_node *x)
{
	ustate_entry *e;

	e = ustate_entry_new_leased(x->key, x->value, x->value_len,
				    x->lease ? x->lease->name : NULL);
	if (e) {
		e->version = x->version;
		e->created_at = x->created_at;
		e->updated_at = x->updated_at;
		e->mod_revision = x->mod_revision;
	}
	return e;
}

static int mem_get(void *b, const char *key, ustate_entry **out)
{
	struct mem_backend *m = b;
	struct mem_node *x;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	x = find(&m->keys, key);
	if (!x)
		rc = -ENOENT;
	else if (!(*out = entry_of(x)))
		rc = -ENOMEM;
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

static int mem_get_many(void *b, const char *const *keys, size_t n,
			ustate_entry **out, uint64_t *revision)
{
	struct mem_backend *m = b;
	struct mem_node *x;
	size_t i;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	*revision = m->rev;
	for (i = 0; rc == 0 && i < n; i++) {
		x = find(&m->keys, keys[i]);
		if (x && !(out[i] = entry_of(x)))
			rc = -ENOMEM;
	}
	pthread_rwlock_unlock(&m->lock);
	for (i = 0; rc < 0 && i < n; i++) {
		ustate_entry_free(out[i]);
		out[i] = NULL;
	}
	return rc;
}

static int mem_version(void *b, const char *key, uint64_t *version)
{
	struct mem_backend *m = b;
	struct mem_node *x;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	x = find(&m->keys, key);
	*version = x ? x->version : 0;
	pthread_rwlock_unlock(&m->lock);
	return 0;
}

/* The map of a set of names; NULL for an unknown set. */
static struct mem_map *scan_map(struct mem_backend *m, int set)
{
	switch (set) {
	case USTATE_SCAN_KEYS:
		return &m->keys;
	case USTATE_SCAN_DIRS:
		return &m->dirs;
	}
	return NULL;
}

static int mem_scan(void *b, int set, const char *prefix, const char *after,
		    size_t max, char ***names, size_t *n)
{
	struct mem_backend *m = b;
	struct mem_map *map = scan_map(m, set);
	struct mem_node *first, *x;
	size_t plen = strlen(prefix);
	size_t cnt = 0, i = 0;
	char **v = NULL;
	int rc;

	if (!map)
		return -EINVAL;
	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	/*
	 * Names with the prefix sort together, from the first name >= it; an
	 * after that sorts at or past the prefix moves the start past itself.
	 */
	if (after && strcmp(after, prefix) >= 0) {
		first = seek(map, after, NULL);
		if (first && !strcmp(first->key, after))
			first = first->next[0];
	} else {
		first = seek(map, prefix, NULL);
	}
	for (x = first; x && cnt < max && !strncmp(x->key, prefix, plen);
	     x = x->next[0])
		cnt++;
	if (cnt) {
		v = malloc(cnt * sizeof(*v));
		if (!v) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (x = first; i < cnt; x = x->next[0], i++) {
		v[i] = strdup(x->key);
		if (!v[i]) {
			rc = -ENOMEM;
			goto out;
		}
	}
	*names = v;
	*n = cnt;
	v = NULL;
out:
	pthread_rwlock_unlock(&m->lock);
	if (v) {
		while (i > 0)
			free(v[--i]);
		free(v);
	}
	return rc;
}

/*
 * Whether an op records or removes a directory; the ops other than these
 * and the checks write keys, and only they make a revision.
 */
static int op_is_dir(ustate_op_type type)
{
	return type == USTATE_OP_MKDIR || type == USTATE_OP_RMDIR;
}

static int op_writes_key(ustate_op_type type)
{
	return ustate_op_writes_key(type);
}

/* Whether an XATTR op names a directory record (else a key). */
static bool xattr_of_dir(const ustate_op *op)
{
	return (op->version & ~(uint64_t)USTATE_XATTR_REMOVE) ==
	       USTATE_META_DIR;
}

/* Whether an op is played on a record: MKDIR, RMDIR, a record's XATTR. */
static bool op_on_dir(const ustate_op *op)
{
	return op_is_dir(op->type) ||
	       (op->type == USTATE_OP_XATTR && xattr_of_dir(op));
}

/* Whether an op is played on a key: a write, a META, a key's XATTR. */
static bool op_on_key(const ustate_op *op)
{
	return op_writes_key(op->type) || op->type == USTATE_OP_META ||
	       (op->type == USTATE_OP_XATTR && !xattr_of_dir(op));
}

/*
 * Apply an XATTR op to the blob *x of *len bytes: a new blob in its place
 * (NULL when empty), the old one freed; 0, -ENOMEM (unchanged) or -EIO.
 */
static int xattr_apply(char **x, size_t *len, const ustate_op *op)
{
	const char *name = op->value, *n;
	size_t nlen = strlen(name) + 1, off = 0, used = 0, cap = 0, vlen;
	bool rm = op->version & USTATE_XATTR_REMOVE, done = rm;
	char *out = NULL;
	const void *v;
	int rc, c;

	while ((rc = ustate_xattr_entry(*x, *len, &off, &n, &v, &vlen)) == 1) {
		c = strcmp(n, name);
		if (c > 0 && !done) {
			rc = ustate_xattr_append(&out, &used, &cap, name,
						 name + nlen,
						 op->value_len - nlen);
			done = true;
		}
		if (rc >= 0 && c)
			rc = ustate_xattr_append(&out, &used, &cap, n, v, vlen);
		if (rc < 0)
			break;
	}
	if (rc == 0 && !done)
		rc = ustate_xattr_append(&out, &used, &cap, name, name + nlen,
					 op->value_len - nlen);
	if (rc < 0) {
		free(out);
		return rc;
	}
	free(*x);
	*x = used ? out : NULL;
	*len = used;
	if (!used)
		free(out);
	return 0;
}

/* A copy of the blob x of len bytes into *out (NULL for none). */
static int xattr_dup(const char *x, size_t len, char **out)
{
	*out = NULL;
	if (!x)
		return 0;
	*out = malloc(len);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, x, len);
	return 0;
}

/* A write or directory op of a transaction, to sort such ops by key. */
struct txn_slot {
	const char *key;
	size_t idx; /* index in ops[] */
};

/* What a transaction does to one key. */
struct txn_key {
	struct mem_node *node; /* the key's node before the txn, or NULL */
	size_t last;	       /* index of the last op that writes the key */
	bool written;	       /* whether any op writes it (not only META) */
	uint64_t version;      /* after the transaction; 0 when absent */
	int64_t created_at;
	void *value;		/* copy of the value of ops[last] */
	struct mem_node *fresh; /* the node to link when the key is new */
	bool has_meta;		/* the metadata after the transaction */
	ustate_meta meta;
	uint64_t meta_pin;
	bool xset;    /* the xattrs below replace the node's */
	char *xattrs; /* the xattrs after the transaction */
	size_t xattrs_len;
	struct mem_lease *lease; /* the lease after the transaction */
};

/* What a transaction does to one directory record. */
struct txn_dir {
	const char *path;
	struct mem_node *node;	/* the record before the txn, or NULL */
	int present;		/* whether it is recorded after the txn */
	int root;		/* the path is "/": only metadata */
	struct mem_node *fresh; /* the node to link when it is new */
	bool has_meta;		/* the metadata after the transaction */
	ustate_meta meta;
	bool xset;    /* the xattrs below replace the record's */
	char *xattrs; /* the xattrs after the transaction */
	size_t xattrs_len;
};

/* Set *has and *m as an op's metadata (a ustate_meta, or NULL) says. */
static void meta_take(const ustate_op *op, bool *has, ustate_meta *m)
{
	*has = op->value != NULL;
	if (op->value)
		memcpy(m, op->value, sizeof(*m));
}

/* Order by key, then by position, so that each key's ops stay in order. */
static int slot_cmp(const void *a, const void *b)
{
	const struct txn_slot *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c)
		return c;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* The number of keys strictly below key (starting with key + "/"). */
static uint64_t count_below(struct mem_backend *m, const char *key)
{
	char below[USTATE_KEY_MAX + 2];
	size_t len = strlen(key);
	struct mem_node *x;
	uint64_t cnt = 0;

	memcpy(below, key, len);
	memcpy(below + len, "/", 2);
	for (x = seek(&m->keys, below, NULL);
	     x && !strncmp(x->key, below, len + 1); x = x->next[0])
		cnt++;
	return cnt;
}

/* Compare every check with the state before the transaction. */
static int txn_check(struct mem_backend *m, const ustate_op *ops, size_t n,
		     ustate_txn_result *res)
{
	struct mem_node *x;
	uint64_t v;
	size_t i;

	for (i = 0; i < n; i++) {
		if (ops[i].type == USTATE_OP_CHECK_CHILDREN) {
			v = count_below(m, ops[i].key);
		} else if (ops[i].type == USTATE_OP_CHECK_VERSION) {
			x = find(&m->keys, ops[i].key);
			v = x ? x->version : 0;
		} else {
			continue;
		}
		if (v != ops[i].version) {
			res->failed = i;
			res->found = v;
			return -ECANCELED;
		}
		res->versions[i] = v;
	}
	return 0;
}

/*
 * Apply the write op to a key at version *ver (0: absent) created at *created,
 * and describe the change in c; -EEXIST or -ENOENT leave them as they were.
 */
static int txn_step(const ustate_op *op, uint64_t *ver, int64_t *created,
		    int64_t now, struct ustate_change *c)
{
	if (op->type == USTATE_OP_DELETE) {
		if (!*ver)
			return -ENOENT;
		c->type = USTATE_EVENT_DELETED;
		*ver = 0;
	} else {
		if (op->type == USTATE_OP_CREATE && *ver)
			return -EEXIST;
		c->type = *ver ? USTATE_EVENT_UPDATED : USTATE_EVENT_CREATED;
		if (!*ver)
			*created = now;
		(*ver)++;
	}
	c->version = *ver;
	return 0;
}

/*
 * Play the write ops of each key, in op order, from the key's state before
 * the transaction, with slot[] sorted by slot_cmp(): this fills chg[] and
 * res->versions for every write op and keys[] (*nkeys of them) with the
 * outcome for each key. Keys do not affect each other, so the failure to
 * report, the first in op order, is the earliest first failure of a key.
 */
static int txn_stage(struct mem_backend *m, const ustate_op *ops,
		     const struct txn_slot *slot, size_t nw,
		     struct txn_key *keys, size_t *nkeys,
		     struct ustate_change *chg, ustate_txn_result *res,
		     int64_t now)
{
	size_t s, e, k, i, nk = 0;
	int rc = 0, err;

	for (s = 0; s < nw; s = e) {
		struct txn_key *t = &keys[nk++];
		int64_t created;
		uint64_t ver;

		e = s + 1;
		while (e < nw && !strcmp(slot[e].key, slot[s].key))
			e++;
		t->node = find(&m->keys, slot[s].key);
		ver = t->node ? t->node->version : 0;
		created = t->node ? t->node->created_at : now;
		t->has_meta = t->node && t->node->has_meta;
		if (t->has_meta) {
			t->meta = t->node->meta;
			t->meta_pin = t->node->meta_pin;
		}
		for (k = s; k < e; k++) {
			i = slot[k].idx;
			if (ops[i].type == USTATE_OP_XATTR && !t->xset) {
				err = xattr_dup(
					t->node ? t->node->xattrs : NULL,
					t->node ? t->node->xattrs_len : 0,
					&t->xattrs);
				t->xattrs_len =
					t->xattrs ? t->node->xattrs_len : 0;
				t->xset = err == 0;
				if (err < 0) {
					*nkeys = nk;
					return err;
				}
			}
			if (ops[i].type == USTATE_OP_META ||
			    ops[i].type == USTATE_OP_XATTR)
				err = ver ? 0 : -ENOENT;
			else
				err = txn_step(&ops[i], &ver, &created, now,
					       &chg[i]);
			if (err == 0 && ops[i].type == USTATE_OP_XATTR)
				err = xattr_apply(&t->xattrs, &t->xattrs_len,
						  &ops[i]);
			if (err < 0) {
				if (!rc || i < res->failed) {
					rc = err;
					res->failed = i;
					res->found = ver;
				}
				break;
			}
			res->versions[i] = ver;
			if (ops[i].type == USTATE_OP_META) {
				meta_take(&ops[i], &t->has_meta, &t->meta);
				t->meta_pin = ver;
				continue;
			}
			if (ops[i].type == USTATE_OP_XATTR)
				continue;
			/* A delete takes the owner and xattrs with the key. */
			if (ops[i].type == USTATE_OP_DELETE) {
				t->has_meta = false;
				free(t->xattrs);
				t->xattrs = NULL;
				t->xattrs_len = 0;
				t->xset = true;
			}
			t->written = true;
			t->last = i;
		}
		t->version = ver;
		t->created_at = created;
	}
	*nkeys = nk;
	return rc;
}

/* Allocate every value, node and history slot that txn_commit() needs. */
static int txn_prepare(struct mem_backend *m, const ustate_op *ops, size_t n,
		       size_t nw, struct txn_key *keys, size_t nk,
		       struct ustate_change *chg)
{
	const ustate_op *op;
	size_t k, i;

	for (k = 0; k < nk; k++) {
		if (!keys[k].version || !keys[k].written)
			continue;
		op = &ops[keys[k].last];
		/* + 1: a valid pointer even for an empty value */
		keys[k].value = malloc(op->value_len + 1);
		if (!keys[k].value)
			return -ENOMEM;
		if (op->value_len)
			memcpy(keys[k].value, op->value, op->value_len);
		if (!keys[k].node) {
			keys[k].fresh = node_new(&m->rng, op->key);
			if (!keys[k].fresh)
				return -ENOMEM;
		}
	}
	if (!m->keep)
		return 0;
	for (i = 0; i < n; i++) {
		if (!op_writes_key(ops[i].type))
			continue;
		chg[i].key = strdup(ops[i].key);
		if (!chg[i].key)
			return -ENOMEM;
	}
	return hist_reserve(m, nw);
}

/*
 * Put a name of map where a transaction leaves it: x, its node before,
 * is unlinked when the name is not present after; *fresh is linked (and
 * taken, leaving NULL) when the name is new. The node after, or NULL.
 */
static struct mem_node *node_place(struct mem_map *map, struct mem_node *x,
				   struct mem_node **fresh, bool present)
{
	if (!present) {
		if (x)
			node_unlink(map, x);
		return NULL;
	}
	if (!x) {
		x = *fresh;
		*fresh = NULL;
		node_link(map, x);
	}
	return x;
}

/* Give x the xattrs *xattrs (taken) of a transaction, if it *set any. */
static void xattrs_take(struct mem_node *x, bool *set, char **xattrs,
			size_t len)
{
	if (!*set)
		return;
	free(x->xattrs);
	x->xattrs = *xattrs;
	x->xattrs_len = len;
	*xattrs = NULL;
	*set = false;
}

/*
 * Make a prepared transaction the state of the store; this cannot fail. It
 * takes over the values and nodes it uses, leaving NULL in their place;
 * txn_history() then records the changes.
 */
static void txn_commit(struct mem_backend *m, const ustate_op *ops,
		       struct txn_key *keys, size_t nk, int64_t now)
{
	struct mem_node *x;
	size_t k;

	for (k = 0; k < nk; k++) {
		x = keys[k].node;
		if (!keys[k].written) {
			/* Only META and XATTR ops, which found the key: x
			 * exists. */
			x->has_meta = keys[k].has_meta;
			x->meta = keys[k].meta;
			x->meta_pin = keys[k].meta_pin;
			xattrs_take(x, &keys[k].xset, &keys[k].xattrs,
				    keys[k].xattrs_len);
			continue;
		}
		x = node_place(&m->keys, x, &keys[k].fresh, keys[k].version);
		if (!x)
			continue;
		xattrs_take(x, &keys[k].xset, &keys[k].xattrs,
			    keys[k].xattrs_len);
		free(x->value);
		x->value = keys[k].value;
		keys[k].value = NULL;
		x->value_len = ops[keys[k].last].value_len;
		x->version = keys[k].version;
		x->created_at = keys[k].created_at;
		x->updated_at = now;
		x->mod_revision = m->rev;
		x->has_meta = keys[k].has_meta;
		x->meta = keys[k].meta;
		x->meta_pin = keys[k].meta_pin;
		x->lease = keys[k].lease;
	}
}

/*
 * Play the directory ops, nd of them in slot[] sorted by slot_cmp(): they
 * cannot fail, and the last op on a path decides whether it is recorded
 * after the transaction. This fills dirs[] (*ndirs of them) and
 * res->versions for each op.
 */
static int txn_stage_dirs(struct mem_backend *m, const ustate_op *ops,
			  const struct txn_slot *slot, size_t nd,
			  struct txn_dir *dirs, size_t *ndirs,
			  struct ustate_change *chg, ustate_txn_result *res,
			  size_t *failed)
{
	size_t s, e, k, i, nn = 0;
	int rc = 0, err;

	for (s = 0; s < nd; s = e) {
		struct txn_dir *d = &dirs[nn++];

		e = s + 1;
		while (e < nd && !strcmp(slot[e].key, slot[s].key))
			e++;
		d->path = slot[s].key;
		d->root = !strcmp(d->path, "/");
		d->node = d->root ? NULL : find(&m->dirs, d->path);
		d->present = d->root || d->node;
		d->has_meta = d->root ? m->has_root_meta
				      : d->node && d->node->has_meta;
		if (d->has_meta)
			d->meta = d->root ? m->root_meta : d->node->meta;
		for (k = s; k < e; k++) {
			i = slot[k].idx;
			if (ops[i].type == USTATE_OP_XATTR) {
				err = d->present ? 0 : -ENOENT;
				if (err == 0 && !d->xset) {
					err = d->root ? xattr_dup(
								m->root_xattrs,
								m->root_xattrs_len,
								&d->xattrs)
						      : xattr_dup(
								d->node ? d->node->xattrs
									: NULL,
								d->node ? d->node->xattrs_len
									: 0,
								&d->xattrs);
					d->xattrs_len =
						!d->xattrs ? 0
						: d->root  ? m->root_xattrs_len
							  : d->node->xattrs_len;
					d->xset = err == 0;
				}
				if (err == 0)
					err = xattr_apply(&d->xattrs,
							  &d->xattrs_len,
							  &ops[i]);
				res->versions[i] = 0;
				if (err < 0) {
					if (!rc || i < *failed) {
						rc = err;
						*failed = i;
					}
					break;
				}
				continue;
			}
			/*
			 * Each op that makes or drops the record is a change
			 * (the root is no record: only its metadata changes).
			 */
			res->versions[i] =
				!d->root &&
				d->present != (ops[i].type == USTATE_OP_MKDIR);
			if (res->versions[i])
				chg[i].type =
					ops[i].type == USTATE_OP_MKDIR
						? USTATE_EVENT_DIR_CREATED
						: USTATE_EVENT_DIR_DELETED;
			if (ops[i].type == USTATE_OP_RMDIR) {
				/* The record takes its owner and xattrs along.
				 */
				d->present = 0;
				d->has_meta = false;
				free(d->xattrs);
				d->xattrs = NULL;
				d->xattrs_len = 0;
				d->xset = !d->root;
				continue;
			}
			d->present = 1;
			if (ops[i].value)
				meta_take(&ops[i], &d->has_meta, &d->meta);
		}
	}
	*ndirs = nn;
	return rc;
}

/*
 * Allocate the node of every record that txn_commit_dirs() adds, and the
 * history's copy of the path of every change of a record (*nchg of them).
 */
static int txn_prepare_dirs(struct mem_backend *m, const ustate_op *ops,
			    size_t n, struct txn_dir *dirs, size_t nd,
			    struct ustate_change *chg, size_t *nchg)
{
	size_t k, i;

	*nchg = 0;
	for (i = 0; i < n; i++) {
		if (!op_on_dir(&ops[i]) || !chg[i].type)
			continue;
		++*nchg;
		if (!m->keep)
			continue;
		chg[i].key = strdup(ops[i].key);
		if (!chg[i].key)
			return -ENOMEM;
	}
	for (k = 0; k < nd; k++) {
		if (!dirs[k].present || dirs[k].node || dirs[k].root)
			continue;
		dirs[k].fresh = node_new(&m->rng, dirs[k].path);
		if (!dirs[k].fresh)
			return -ENOMEM;
	}
	return 0;
}

/*
 * Make the prepared directory records the state of the store; this cannot
 * fail. It takes over the nodes it links, leaving NULL in their place.
 */
static void txn_commit_dirs(struct mem_backend *m, struct txn_dir *dirs,
			    size_t nd)
{
	struct mem_node *x;
	size_t k;

	for (k = 0; k < nd; k++) {
		if (dirs[k].root) {
			m->has_root_meta = dirs[k].has_meta;
			m->root_meta = dirs[k].meta;
			if (dirs[k].xset) {
				free(m->root_xattrs);
				m->root_xattrs = dirs[k].xattrs;
				m->root_xattrs_len = dirs[k].xattrs_len;
				dirs[k].xattrs = NULL;
			}
			continue;
		}
		x = node_place(&m->dirs, dirs[k].node, &dirs[k].fresh,
			       dirs[k].present);
		if (x) {
			x->has_meta = dirs[k].has_meta;
			x->meta = dirs[k].meta;
			xattrs_take(x, &dirs[k].xset, &dirs[k].xattrs,
				    dirs[k].xattrs_len);
		}
	}
}

/* Append the changes of a committed transaction, in op order. */
static void txn_history(struct mem_backend *m, const ustate_op *ops, size_t n,
			struct ustate_change *chg)
{
	size_t i;

	for (i = 0; m->keep && chg && i < n; i++) {
		if (!chg[i].key)
			continue;
		chg[i].revision = m->rev;
		*hist_at(m, m->hlen++) = chg[i];
		chg[i].key = NULL;
	}
}

static struct mem_lease *lease_live(struct mem_backend *m, const char *name,
				    int64_t now);
static size_t lease_index(struct mem_backend *m, const char *name, bool *found);
static int leases_due(struct mem_backend *m, int64_t now, unsigned *expired);
static void lease_own(struct mem_lease *l, const ustate_meta *owner);

/* The lease an op attaches its key to, or NULL. */
static const char *op_lease(const ustate_op *op)
{
	return op->type == USTATE_OP_SET || op->type == USTATE_OP_CREATE
		       ? op->lease
		       : NULL;
}

/*
 * Every op that names a lease must find it live, else -ENOENT for the
 * first that does not.
 */
static int txn_leases(struct mem_backend *m, const ustate_op *ops, size_t n,
		      ustate_txn_result *res, int64_t now_ms)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (op_lease(&ops[i]) && !lease_live(m, ops[i].lease, now_ms)) {
			res->failed = i;
			res->found = 0;
			return -ENOENT;
		}
	}
	return 0;
}

/* mem_txn() under the write lock, which the caller holds. */
static int txn_locked(struct mem_backend *m, const ustate_op *ops, size_t n,
		      ustate_txn_result *res)
{
	struct txn_slot *slot = NULL, *sl;
	struct txn_key *keys = NULL;
	struct txn_dir *dirs = NULL;
	struct ustate_change *chg = NULL;
	size_t nw = 0, nk = 0, nkw, nd = 0, ndirs = 0, ndc, kw, kd, i;
	size_t dfailed = 0;
	int64_t now, now_ms = ustate_clock_ms();
	int rc, drc;

	now = time(NULL);
	res->revision = m->rev;
	rc = txn_check(m, ops, n, res);
	if (rc == 0)
		rc = txn_leases(m, ops, n, res, now_ms);
	if (rc < 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (op_on_dir(&ops[i]))
			nd++;
		else if (op_on_key(&ops[i]))
			nw++;
	}
	if (!nw && !nd)
		goto out;
	slot = malloc((nw + nd) * sizeof(*slot));
	chg = calloc(n, sizeof(*chg));
	if (nw)
		keys = calloc(nw, sizeof(*keys));
	if (nd)
		dirs = calloc(nd, sizeof(*dirs));
	if (!slot || !chg || (nw && !keys) || (nd && !dirs)) {
		rc = -ENOMEM;
		goto out;
	}
	/*
	 * Sorting groups the ops of each key in O(n log n), where looking
	 * back through the earlier ops for each op would cost O(n^2). The
	 * key writes take slot[0..nw), the directory ops the rest.
	 */
	for (i = 0, kw = 0, kd = nw; i < n; i++) {
		if (ustate_op_is_check(ops[i].type))
			continue;
		sl = op_on_dir(&ops[i]) ? &slot[kd++] : &slot[kw++];
		sl->key = ops[i].key;
		sl->idx = i;
	}
	qsort(slot, nw, sizeof(*slot), slot_cmp);
	qsort(slot + nw, nd, sizeof(*slot), slot_cmp);
	rc = txn_stage(m, ops, slot, nw, keys, &nk, chg, res, now);
	/* Keys and records fail apart: the first failure in op order. */
	drc = txn_stage_dirs(m, ops, slot + nw, nd, dirs, &ndirs, chg, res,
			     &dfailed);
	if (drc < 0 && (!rc || (rc != -ENOMEM && dfailed < res->failed))) {
		rc = drc;
		res->failed = dfailed;
		res->found = 0;
	}
	if (rc < 0)
		goto out;
	for (i = 0; i < nk; i++)
		if (keys[i].written && keys[i].version &&
		    op_lease(&ops[keys[i].last]))
			keys[i].lease =
				lease_live(m, ops[keys[i].last].lease, now_ms);
	if (nk) {
		rc = txn_prepare(m, ops, n, nw, keys, nk, chg);
		if (rc < 0)
			goto out;
	}
	rc = txn_prepare_dirs(m, ops, n, dirs, ndirs, chg, &ndc);
	if (rc == 0 && m->keep)
		rc = hist_reserve(m, nw + ndc);
	if (rc < 0)
		goto out;
	/*
	 * Every change, of a key or of a record, makes the revision;
	 * metadata alone does not.
	 */
	for (i = 0, nkw = 0; i < nk; i++)
		nkw += keys[i].written;
	if (nkw || ndc)
		m->rev++;
	if (nk)
		txn_commit(m, ops, keys, nk, now);
	txn_commit_dirs(m, dirs, ndirs);
	txn_history(m, ops, n, chg);
	hist_trim(m);
	res->revision = m->rev;
out:
	for (i = 0; i < nk; i++) {
		free(keys[i].value);
		free(keys[i].fresh);
		free(keys[i].xattrs);
	}
	for (i = 0; i < ndirs; i++) {
		free(dirs[i].fresh);
		free(dirs[i].xattrs);
	}
	for (i = 0; chg && i < n; i++)
		free(chg[i].key);
	free(chg);
	free(dirs);
	free(keys);
	free(slot);
	return rc;
}

static int mem_txn(void *b, const ustate_op *ops, size_t n,
		   ustate_txn_result *res, unsigned flags)
{
	struct mem_backend *m = b;
	int rc;

	rc = -pthread_rwlock_wrlock(&m->lock);
	if (rc < 0)
		return rc;
	rc = txn_locked(m, ops, n, res);
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

static int mem_revision(void *b, uint64_t *rev)
{
	struct mem_backend *m = b;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	*rev = m->rev;
	pthread_rwlock_unlock(&m->lock);
	return 0;
}

static int mem_history(void *b, uint64_t from, size_t skip, size_t max,
		       struct ustate_change **out, size_t *n, uint64_t *oldest)
{
	struct mem_backend *m = b;
	struct ustate_change *c = NULL, *h;
	size_t lo = 0, hi, mid, cnt, i = 0;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	/* The ring is in revision order: find the first change >= from. */
	hi = m->hlen;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (hist_at(m, mid)->revision < from)
			lo = mid + 1;
		else
			hi = mid;
	}
	while (skip && lo < m->hlen && hist_at(m, lo)->revision == from) {
		lo++;
		skip--;
	}
	cnt = m->hlen - lo < max ? m->hlen - lo : max;
	if (cnt) {
		c = calloc(cnt, sizeof(*c));
		if (!c) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (i = 0; i < cnt; i++) {
		h = hist_at(m, lo + i);
		c[i] = *h;
		c[i].key = strdup(h->key);
		if (!c[i].key) {
			rc = -ENOMEM;
			goto out;
		}
	}
	*out = c;
	*n = cnt;
	*oldest = hist_oldest(m);
	c = NULL;
out:
	pthread_rwlock_unlock(&m->lock);
	if (c)
		ustate_changes_free(c, i);
	return rc;
}

/* ---- administration ---------------------------------------------------- */

/*
 * A seed that differs between maps keeps callers from learning the level
 * sequence and choosing an insertion order that unbalances a list; | 1
 * because xorshift never leaves the zero state.
 */
static uint64_t rng_seed(const void *p)
{
	return ((uintptr_t)p * 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL)) |
	       1;
}

/* Whether the store holds no key and no directory record. */
static bool mem_empty(struct mem_backend *m)
{
	return !m->keys.head->next[0] && !m->dirs.head->next[0];
}

static bool has_prefix(const struct mem_node *x, const char *prefix,
		       size_t plen)
{
	return x && !strncmp(x->key, prefix, plen);
}

/*
 * The metadata (into *meta) and xattrs (into *xs, grown to *cap) of node
 * x, a key when key, for its record r.
 */
static int export_meta(const struct mem_node *x, bool key, ustate_record *r,
		       ustate_meta *meta, ustate_xattr **xs, size_t *cap)
{
	const char *name;
	const void *v;
	size_t off = 0, vlen, n = 0;
	ustate_xattr *grown;

	if (x->has_meta) {
		*meta = x->meta;
		if (key && x->meta_pin != x->version)
			meta->flags &= ~(uint32_t)USTATE_META_MTIME;
		r->meta = meta;
	}
	while (ustate_xattr_entry(x->xattrs, x->xattrs_len, &off, &name, &v,
				  &vlen) == 1) {
		if (n == *cap) {
			grown = realloc(*xs, (*cap * 2 + 4) * sizeof(**xs));
			if (!grown)
				return -ENOMEM;
			*xs = grown;
			*cap = *cap * 2 + 4;
		}
		(*xs)[n++] = (ustate_xattr){
			.name = name, .value = v, .value_len = vlen};
	}
	r->xattrs = *xs;
	r->nxattrs = n;
	return 0;
}

/* Walk the keys and the records in step, merging them by path. */
/*
 * The LEASE records of an export under the lock: the live leases, only
 * those with a key under prefix unless it is all.
 */
static int export_leases(struct mem_backend *m, const char *prefix, int64_t now,
			 ustate_export_fn fn, void *arg)
{
	bool all = !strcmp(prefix, "") || !strcmp(prefix, "/");
	size_t plen = strlen(prefix), i;
	struct mem_lease *l;
	bool *used = NULL;
	struct mem_node *k;
	ustate_record r;
	int rc = 0;

	if (!m->nleases)
		return 0;
	if (!all) {
		used = calloc(m->nleases, sizeof(*used));
		if (!used)
			return -ENOMEM;
		for (k = seek(&m->keys, prefix, NULL);
		     has_prefix(k, prefix, plen); k = k->next[0])
			if (k->lease)
				used[lease_index(m, k->lease->name, &all)] =
					true;
		all = false;
	}
	for (i = 0; rc == 0 && i < m->nleases; i++) {
		l = m->leases[i];
		if (l->deadline <= now || (used && !used[i]))
			continue;
		r = (ustate_record){.type = USTATE_RECORD_LEASE,
				    .key = l->name,
				    .ttl = l->ttl,
				    .meta = l->owned ? &l->owner : NULL};
		rc = fn(arg, &r);
	}
	free(used);
	return rc;
}

static int mem_export(void *b, const char *prefix, ustate_export_fn fn,
		      void *arg)
{
	struct mem_backend *m = b;
	int64_t now = ustate_clock_ms();
	size_t plen = strlen(prefix), xcap = 0;
	struct mem_node *k, *d, *x;
	ustate_xattr *xs = NULL;
	ustate_meta meta;
	ustate_record r;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	rc = export_leases(m, prefix, now, fn, arg);
	k = seek(&m->keys, prefix, NULL);
	d = seek(&m->dirs, prefix, NULL);
	while (rc == 0 &&
	       (has_prefix(k, prefix, plen) || has_prefix(d, prefix, plen))) {
		if (has_prefix(k, prefix, plen) &&
		    (!has_prefix(d, prefix, plen) ||
		     strcmp(k->key, d->key) <= 0)) {
			r = (ustate_record){
				.type = USTATE_RECORD_KEY,
				.key = k->key,
				.value = k->value ? k->value : "",
				.value_len = k->value_len,
				.version = k->version,
				.created_at = k->created_at,
				.updated_at = k->updated_at,
				.mod_revision = k->mod_revision,
				.lease = k->lease && k->lease->deadline > now
						 ? k->lease->name
						 : NULL,
			};
			x = k;
			k = k->next[0];
		} else {
			r = (ustate_record){.type = USTATE_RECORD_DIR,
					    .key = d->key};
			x = d;
			d = d->next[0];
		}
		rc = export_meta(x, r.type == USTATE_RECORD_KEY, &r, &meta, &xs,
				 &xcap);
		if (rc == 0)
			rc = fn(arg, &r);
	}
	pthread_rwlock_unlock(&m->lock);
	free(xs);
	return rc;
}

/*
 * The records of a restore, staged before the store's lock is taken: two
 * maps of nodes that are not in the store, then the same nodes in arrays,
 * in order (linking a node into the store rewrites its links, so once the
 * commit starts the maps are no longer walked).
 */
struct staged {
	struct mem_map keys, dirs;
	uint64_t rng;
	size_t nkeys, ndirs;
	struct mem_node **key, **dir; /* NULL once the store owns the node */
	struct mem_node *root;	   /* the root's record: its metadata alone */
	struct mem_map lease_of;   /* a staged key's lease: its name as value */
	struct mem_lease **leases; /* LEASE records, by name */
	size_t nleases;
	struct mem_lease **made; /* restore_plan(): those the store lacks */
	size_t nmade;
};

/* Stage a LEASE record, in name order; -EEXIST for a name given twice. */
static int stage_lease(struct staged *st, const ustate_record *r)
{
	struct mem_lease *l, **nl;
	size_t i;

	for (i = 0; i < st->nleases; i++) {
		int c = strcmp(st->leases[i]->name, r->key);

		if (!c)
			return -EEXIST;
		if (c > 0)
			break;
	}
	l = calloc(1, sizeof(*l) + strlen(r->key) + 1);
	nl = realloc(st->leases, (st->nleases + 1) * sizeof(*nl));
	if (nl)
		st->leases = nl;
	if (!l || !nl) {
		free(l);
		return -ENOMEM;
	}
	strcpy(l->name, r->key);
	l->ttl = r->ttl;
	if (r->meta)
		lease_own(l, r->meta);
	memmove(&st->leases[i + 1], &st->leases[i],
		(st->nleases - i) * sizeof(*st->leases));
	st->leases[i] = l;
	st->nleases++;
	return 0;
}

/* The staged lease named name, or NULL. */
static struct mem_lease *staged_lease(const struct staged *st, const char *name)
{
	size_t i;

	for (i = 0; i < st->nleases; i++)
		if (!strcmp(st->leases[i]->name, name))
			return st->leases[i];
	return NULL;
}

/* Note the lease a staged KEY record names. */
static int stage_key_lease(struct staged *st, const ustate_record *r)
{
	struct mem_node *x;

	if (!r->lease)
		return 0;
	x = node_new(&st->rng, r->key);
	if (!x)
		return -ENOMEM;
	x->value = strdup(r->lease);
	if (!x->value) {
		node_free(x);
		return -ENOMEM;
	}
	node_link(&st->lease_of, x);
	return 0;
}

/* Copy one record into the staged maps; -EEXIST when its path came before. */
static int stage_record(struct staged *st, const ustate_record *r)
{
	bool is_key = r->type == USTATE_RECORD_KEY;
	struct mem_map *map = is_key ? &st->keys : &st->dirs;
	struct mem_node *x;
	size_t i, cap = 0;

	if (r->type == USTATE_RECORD_LEASE)
		return stage_lease(st, r);

	if (!is_key && !strcmp(r->key, "/") && st->root)
		return -EEXIST;
	if (find(map, r->key))
		return -EEXIST;
	x = node_new(&st->rng, r->key);
	if (!x)
		return -ENOMEM;
	/* Its metadata and xattrs, the restored key's from its version on. */
	x->has_meta = r->meta != NULL;
	if (r->meta)
		x->meta = *r->meta;
	x->meta_pin = r->version;
	for (i = 0; i < r->nxattrs; i++)
		if (ustate_xattr_append(&x->xattrs, &x->xattrs_len, &cap,
					r->xattrs[i].name, r->xattrs[i].value,
					r->xattrs[i].value_len) < 0) {
			node_free(x);
			return -ENOMEM;
		}
	if (is_key) {
		/* + 1: a valid pointer even for an empty value */
		x->value = malloc(r->value_len + 1);
		if (!x->value) {
			node_free(x);
			return -ENOMEM;
		}
		if (r->value_len)
			memcpy(x->value, r->value, r->value_len);
		x->value_len = r->value_len;
		x->version = r->version;
		x->created_at = r->created_at;
		x->updated_at = r->updated_at;
		if (stage_key_lease(st, r) < 0) {
			node_free(x);
			return -ENOMEM;
		}
	}
	/* The root is no record: its metadata waits apart. */
	if (!is_key && !strcmp(r->key, "/")) {
		st->root = x;
		return 0;
	}
	node_link(map, x);
	if (is_key)
		st->nkeys++;
	else
		st->ndirs++;
	return 0;
}

/* Fill the arrays from the staged maps. */
static int stage_arrays(struct staged *st)
{
	struct mem_node *x;
	size_t i;

	st->key = calloc(st->nkeys + 1, sizeof(*st->key));
	st->dir = calloc(st->ndirs + 1, sizeof(*st->dir));
	if (!st->key || !st->dir)
		return -ENOMEM;
	for (x = st->keys.head->next[0], i = 0; x; x = x->next[0])
		st->key[i++] = x;
	for (x = st->dirs.head->next[0], i = 0; x; x = x->next[0])
		st->dir[i++] = x;
	return 0;
}

static void stage_free(struct staged *st)
{
	size_t i;

	if (st->root)
		node_free(st->root);
	if (!st->key || !st->dir) {
		/* The maps still hold every node. */
		if (st->keys.head)
			map_destroy(&st->keys);
		if (st->dirs.head)
			map_destroy(&st->dirs);
	} else {
		for (i = 0; i < st->nkeys; i++)
			if (st->key[i])
				node_free(st->key[i]);
		for (i = 0; i < st->ndirs; i++)
			if (st->dir[i])
				node_free(st->dir[i]);
		free(st->keys.head);
		free(st->dirs.head);
	}
	free(st->key);
	free(st->dir);
	if (st->lease_of.head)
		map_destroy(&st->lease_of);
	for (i = 0; i < st->nleases; i++)
		free(st->leases[i]);
	free(st->leases);
	for (i = 0; i < st->nmade; i++)
		free(st->made[i]);
	free(st->made);
}

/*
 * Check the leases a restore names (each staged, or live in the store
 * and, but for REPLACE, kept) and allocate what their commit needs.
 */
static int lease_plan(struct mem_backend *m, struct staged *st, unsigned flags,
		      int64_t now)
{
	struct mem_lease **nl;
	struct mem_node *x;
	bool found;
	size_t i;

	for (x = st->lease_of.head->next[0]; x; x = x->next[0])
		if (!staged_lease(st, x->value) &&
		    ((flags & USTATE_RESTORE_REPLACE) ||
		     !lease_live(m, x->value, now)))
			return -ENOENT;
	st->made = calloc(st->nleases + 1, sizeof(*st->made));
	if (!st->made)
		return -ENOMEM;
	for (i = 0; i < st->nleases; i++) {
		lease_index(m, st->leases[i]->name, &found);
		if (found)
			continue;
		st->made[st->nmade] =
			calloc(1, sizeof(struct mem_lease) +
					  strlen(st->leases[i]->name) + 1);
		if (!st->made[st->nmade])
			return -ENOMEM;
		strcpy(st->made[st->nmade]->name, st->leases[i]->name);
		st->nmade++;
	}
	nl = realloc(m->leases, (m->nleases + st->nmade + 1) * sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	m->leases = nl;
	return 0;
}

/*
 * Commit the leases of a restore (this cannot fail): the staged ones made
 * or refreshed, a TTL from now; REPLACE ends the others (whose keys not
 * among the records are gone by now); then every restored key takes its
 * record's lease.
 */
static void lease_commit(struct mem_backend *m, struct staged *st,
			 unsigned flags, int64_t now)
{
	struct mem_lease *l, *from;
	struct mem_node *x, *k;
	size_t i, j, made = 0;
	bool found;

	for (i = 0; i < st->nleases; i++) {
		from = st->leases[i];
		j = lease_index(m, from->name, &found);
		if (!found) {
			memmove(&m->leases[j + 1], &m->leases[j],
				(m->nleases - j) * sizeof(*m->leases));
			m->leases[j] = st->made[made];
			st->made[made++] = NULL;
			m->nleases++;
		}
		l = m->leases[j];
		l->ttl = from->ttl;
		l->deadline = now + from->ttl * 1000;
		l->owned = from->owned;
		l->owner = from->owner;
	}
	for (i = 0; (flags & USTATE_RESTORE_REPLACE) && i < m->nleases;) {
		if (staged_lease(st, m->leases[i]->name)) {
			i++;
			continue;
		}
		for (k = m->keys.head->next[0]; k; k = k->next[0])
			if (k->lease == m->leases[i])
				k->lease = NULL;
		free(m->leases[i]);
		memmove(&m->leases[i], &m->leases[i + 1],
			(m->nleases - i - 1) * sizeof(*m->leases));
		m->nleases--;
	}
	/* Keys already there lose theirs; new ones have none yet. */
	for (i = 0; i < st->nkeys; i++)
		if (st->key[i] && (k = find(&m->keys, st->key[i]->key)))
			k->lease = NULL;
	for (x = st->lease_of.head->next[0]; x; x = x->next[0]) {
		k = find(&m->keys, x->key);
		j = lease_index(m, x->value, &found);
		if (k)
			k->lease = found ? m->leases[j] : NULL;
	}
}

/* One change of a restore: a staged key written, or an old key deleted. */
struct restore_step {
	size_t staged; /* index in st->key, or SIZE_MAX for a delete */
	struct mem_node *old;
};

static bool same_entry(const struct mem_node *a, const struct mem_node *b)
{
	return a->version == b->version && a->created_at == b->created_at &&
	       a->updated_at == b->updated_at && a->value_len == b->value_len &&
	       (!a->value_len || !memcmp(a->value, b->value, a->value_len));
}

/*
 * Decide every change a restore makes, in key order, deletes last, and
 * allocate what the commit needs (the history's copies of the keys, room
 * in the ring), so that the commit cannot fail.
 */
static int restore_plan(struct mem_backend *m, struct staged *st,
			unsigned flags, struct restore_step **out, size_t *n,
			size_t *nd, struct ustate_change **chg)
{
	struct restore_step *steps;
	struct mem_node *x;
	size_t cap = st->nkeys, cnt = 0, dcnt = 0, i;

	if (flags & USTATE_RESTORE_REPLACE)
		for (x = m->keys.head->next[0]; x; x = x->next[0])
			cap++;
	/* Room for the directory records' changes after the keys'. */
	cap += st->ndirs;
	if (flags & USTATE_RESTORE_REPLACE)
		for (x = m->dirs.head->next[0]; x; x = x->next[0])
			cap++;
	steps = malloc((cap + 1) * sizeof(*steps));
	*chg = calloc(cap + 1, sizeof(**chg));
	*out = steps;
	if (!steps || !*chg)
		return -ENOMEM;
	for (i = 0; i < st->nkeys; i++) {
		x = find(&m->keys, st->key[i]->key);
		if (!x || !same_entry(x, st->key[i]))
			steps[cnt++] = (struct restore_step){i, x};
	}
	if (flags & USTATE_RESTORE_REPLACE)
		for (x = m->keys.head->next[0]; x; x = x->next[0])
			if (!find(&st->keys, x->key))
				steps[cnt++] =
					(struct restore_step){SIZE_MAX, x};
	*n = cnt;
	/* Records made, then (REPLACE) records dropped: changes too. */
	for (i = 0; i < st->ndirs; i++)
		if (!find(&m->dirs, st->dir[i]->key))
			(*chg)[cnt + dcnt++] = (struct ustate_change){
				.type = USTATE_EVENT_DIR_CREATED,
				.key = st->dir[i]->key};
	if (flags & USTATE_RESTORE_REPLACE)
		for (x = m->dirs.head->next[0]; x; x = x->next[0])
			if (!find(&st->dirs, x->key))
				(*chg)[cnt + dcnt++] = (struct ustate_change){
					.type = USTATE_EVENT_DIR_DELETED,
					.key = x->key};
	*nd = dcnt;
	/* Borrowed until now: the history keeps copies (or none). */
	for (i = cnt; i < cnt + dcnt; i++) {
		(*chg)[i].key = m->keep ? strdup((*chg)[i].key) : NULL;
		if (m->keep && !(*chg)[i].key) {
			while (++i < cnt + dcnt)
				(*chg)[i].key = NULL;
			return -ENOMEM;
		}
	}
	if (!m->keep)
		return 0;
	for (i = 0; i < cnt; i++) {
		x = steps[i].old ? steps[i].old : st->key[steps[i].staged];
		(*chg)[i].key = strdup(x->key);
		if (!(*chg)[i].key)
			return -ENOMEM;
	}
	return hist_reserve(m, cnt + dcnt);
}

/* Give x the metadata and xattrs of staged node from (which keeps none). */
static void meta_move(struct mem_node *x, struct mem_node *from)
{
	x->has_meta = from->has_meta;
	x->meta = from->meta;
	x->meta_pin = from->meta_pin;
	free(x->xattrs);
	x->xattrs = from->xattrs;
	x->xattrs_len = from->xattrs_len;
	from->xattrs = NULL;
	from->xattrs_len = 0;
}

/* Apply a planned restore, as one revision; this cannot fail. */
static void restore_commit(struct mem_backend *m, struct staged *st,
			   unsigned flags, struct restore_step *steps, size_t n,
			   size_t nd, struct ustate_change *chg,
			   ustate_restore_result *res)
{
	struct mem_node *x, *old, *nx;
	size_t i;

	if (n || nd)
		m->rev++;
	for (i = 0; i < n; i++) {
		old = steps[i].old;
		x = steps[i].staged == SIZE_MAX ? NULL
						: st->key[steps[i].staged];
		chg[i].revision = m->rev;
		if (!x) {
			chg[i].type = USTATE_EVENT_DELETED;
			chg[i].version = 0;
			node_unlink(&m->keys, old);
			res->deleted++;
			continue;
		}
		chg[i].type = old ? USTATE_EVENT_UPDATED : USTATE_EVENT_CREATED;
		chg[i].version = x->version;
		res->written++;
		if (!old) {
			x->mod_revision = m->rev;
			node_link(&m->keys, x);
			st->key[steps[i].staged] = NULL;
			continue;
		}
		free(old->value);
		old->value = x->value;
		x->value = NULL;
		old->lease = NULL; /* its record's: see lease_commit() */
		old->value_len = x->value_len;
		old->version = x->version;
		old->created_at = x->created_at;
		old->updated_at = x->updated_at;
		old->mod_revision = m->rev;
	}
	/* Records to drop first: finding them needs the staged map intact. */
	if (flags & USTATE_RESTORE_REPLACE) {
		for (x = m->dirs.head->next[0]; x; x = nx) {
			nx = x->next[0];
			if (!find(&st->dirs, x->key))
				node_unlink(&m->dirs, x);
		}
	}
	if (st->root) {
		m->has_root_meta = st->root->has_meta;
		m->root_meta = st->root->meta;
		free(m->root_xattrs);
		m->root_xattrs = st->root->xattrs;
		m->root_xattrs_len = st->root->xattrs_len;
		st->root->xattrs = NULL;
	}
	/*
	 * Every key already there, changed or left as it was, takes its
	 * record's metadata (a new one was linked with its own).
	 */
	for (i = 0; i < st->nkeys; i++)
		if (st->key[i] && (old = find(&m->keys, st->key[i]->key)))
			meta_move(old, st->key[i]);
	for (i = 0; i < st->ndirs; i++) {
		old = find(&m->dirs, st->dir[i]->key);
		if (old) {
			meta_move(old, st->dir[i]);
			continue;
		}
		node_link(&m->dirs, st->dir[i]);
		st->dir[i] = NULL;
	}
	for (i = 0; m->keep && i < n + nd; i++) {
		chg[i].revision = m->rev;
		*hist_at(m, m->hlen++) = chg[i];
		chg[i].key = NULL;
	}
	hist_trim(m);
	res->revision = m->rev;
}

static int mem_restore(void *b, ustate_import_fn next, void *arg,
		       unsigned flags, ustate_restore_result *res)
{
	struct mem_backend *m = b;
	struct staged st = {.rng = rng_seed(&st)};
	struct restore_step *steps = NULL;
	struct ustate_change *chg = NULL;
	int64_t now = ustate_clock_ms();
	size_t n = 0, nd = 0, i;
	unsigned expired = 0;
	ustate_record r;
	int rc, more = 0;

	/* Refuse at once, before reading the records, and again below. */
	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	if (!flags && !mem_empty(m))
		rc = -ENOTEMPTY;
	pthread_rwlock_unlock(&m->lock);
	if (rc < 0)
		return rc;
	rc = map_init(&st.keys);
	if (rc == 0)
		rc = map_init(&st.dirs);
	if (rc == 0)
		rc = map_init(&st.lease_of);
	while (rc == 0 && (more = next(arg, &r)) > 0)
		rc = stage_record(&st, &r);
	if (rc == 0 && more < 0)
		rc = more;
	if (rc == 0)
		rc = stage_arrays(&st);
	if (rc < 0)
		goto out;

	rc = -pthread_rwlock_wrlock(&m->lock);
	if (rc < 0)
		goto out;
	/* Overdue leases end first, each in a revision of its own. */
	if (rc == 0)
		rc = leases_due(m, now, &expired);
	if (rc == 0 && !flags && !mem_empty(m))
		rc = -ENOTEMPTY;
	if (rc == 0)
		rc = lease_plan(m, &st, flags, now);
	if (rc == 0)
		rc = restore_plan(m, &st, flags, &steps, &n, &nd, &chg);
	if (rc == 0) {
		restore_commit(m, &st, flags, steps, n, nd, chg, res);
		lease_commit(m, &st, flags, now);
	}
	pthread_rwlock_unlock(&m->lock);
out:
	for (i = 0; chg && i < n + nd; i++)
		free(chg[i].key);
	free(chg);
	free(steps);
	stage_free(&st);
	return rc;
}

/* The order, links and fields of one map. */
static int check_map(struct mem_backend *m, struct mem_map *map, bool keys,
		     ustate_problem_fn fn, void *arg)
{
	struct mem_node *x, *prev;
	int i, rc = 0;

	for (i = 0; i < SL_MAX_LEVEL && rc == 0; i++) {
		prev = NULL;
		if (i >= map->level && map->head->next[i])
			rc = ustate_report(fn, arg, "memory-links", NULL,
					   "level %d is linked, past the %d in "
					   "use",
					   i, map->level);
		for (x = map->head->next[i]; x && rc == 0 && i < map->level;
		     prev = x, x = x->next[i]) {
			if (x->level <= i)
				rc = ustate_report(fn, arg, "memory-links",
						   x->key,
						   "linked at level %d of %d",
						   i, x->level);
			else if (prev && strcmp(prev->key, x->key) >= 0)
				rc = ustate_report(
					fn, arg, "memory-order", x->key,
					"out of order at level %d", i);
			if (rc < 0 || i)
				continue;
			if (ustate_key_valid(x->key) < 0)
				rc = ustate_report(
					fn, arg,
					keys ? "key-invalid" : "dir-invalid",
					x->key,
					"the path breaks the key rules");
			else if (keys && x->version < 1)
				rc = ustate_report(fn, arg, "version", x->key,
						   "version 0");
			else if (keys && x->created_at > x->updated_at)
				rc = ustate_report(
					fn, arg, "timestamps", x->key,
					"created at %lld, after its update "
					"at %lld",
					(long long)x->created_at,
					(long long)x->updated_at);
			else if (keys && (x->mod_revision < 1 ||
					  x->mod_revision > m->rev))
				rc = ustate_report(
					fn, arg, "keyrev-range", x->key,
					"modified at revision %llu, outside "
					"1..%llu",
					(unsigned long long)x->mod_revision,
					(unsigned long long)m->rev);
		}
	}
	return rc;
}

/* The history ring: in order, in the retained window, without gaps. */
static int check_history(struct mem_backend *m, ustate_problem_fn fn, void *arg)
{
	uint64_t oldest = hist_oldest(m), last = oldest - 1;
	struct ustate_change *c;
	size_t k;
	int rc = 0;

	for (k = 0; k < m->hlen && rc == 0; k++) {
		c = hist_at(m, k);
		if (c->revision < oldest || c->revision > m->rev)
			rc = ustate_report(fn, arg, "history-range", c->key,
					   "a change at revision %llu, outside "
					   "the retained %llu..%llu",
					   (unsigned long long)c->revision,
					   (unsigned long long)oldest,
					   (unsigned long long)m->rev);
		else if (c->revision < last)
			rc = ustate_report(fn, arg, "history-order", c->key,
					   "revision %llu after %llu",
					   (unsigned long long)c->revision,
					   (unsigned long long)last);
		else if (c->revision > last + 1)
			rc = ustate_report(
				fn, arg, "history-gap", NULL,
				"revisions %llu..%llu have no change",
				(unsigned long long)last + 1,
				(unsigned long long)c->revision - 1);
		if (rc == 0 && c->revision > last)
			last = c->revision;
		if (rc == 0 &&
		    (c->type == USTATE_EVENT_DELETED ||
		     c->type >= USTATE_EVENT_DIR_CREATED) != (c->version == 0))
			rc = ustate_report(fn, arg, "history-version", c->key,
					   "a change of type %d at revision "
					   "%llu has version %llu",
					   c->type,
					   (unsigned long long)c->revision,
					   (unsigned long long)c->version);
	}
	if (rc == 0 && m->keep && m->rev > last)
		rc = ustate_report(fn, arg, "history-gap", NULL,
				   "revisions %llu..%llu have no change",
				   (unsigned long long)last + 1,
				   (unsigned long long)m->rev);
	return rc;
}

static int mem_check(void *b, ustate_problem_fn fn, void *arg)
{
	struct mem_backend *m = b;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	rc = check_map(m, &m->keys, true, fn, arg);
	if (rc == 0)
		rc = check_map(m, &m->dirs, false, fn, arg);
	if (rc == 0)
		rc = check_history(m, fn, arg);
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

static int mem_compact(void *b, uint64_t revision, uint64_t *removed)
{
	struct mem_backend *m = b;
	uint64_t n = 0;
	int rc;

	rc = -pthread_rwlock_wrlock(&m->lock);
	if (rc < 0)
		return rc;
	if (revision > m->rev + 1) {
		rc = -EINVAL;
	} else {
		if (revision - 1 > m->compacted)
			m->compacted = revision - 1;
		n = hist_trim(m);
	}
	pthread_rwlock_unlock(&m->lock);
	if (rc == 0 && removed)
		*removed = n;
	return rc;
}

static int mem_meta_get(void *b, const char *path, unsigned which,
			ustate_meta *out)
{
	struct mem_backend *m = b;
	struct mem_node *x = NULL;
	bool has;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	if (which == USTATE_META_DIR && !strcmp(path, "/")) {
		has = m->has_root_meta;
		if (has)
			*out = m->root_meta;
	} else {
		x = find(which == USTATE_META_DIR ? &m->dirs : &m->keys, path);
		has = x && x->has_meta;
		if (has)
			*out = x->meta;
		/* A key's time holds until its next write. */
		if (has && which == USTATE_META_KEY &&
		    x->meta_pin != x->version)
			out->flags &= ~(uint32_t)USTATE_META_MTIME;
	}
	pthread_rwlock_unlock(&m->lock);
	return has ? 0 : -ENOENT;
}

static int mem_xattrs(void *b, const char *path, unsigned which, void **blob,
		      size_t *len)
{
	struct mem_backend *m = b;
	struct mem_node *x;
	const char *src = NULL;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	if (which == USTATE_META_DIR && !strcmp(path, "/")) {
		src = m->root_xattrs;
		*len = m->root_xattrs_len;
	} else {
		x = find(which == USTATE_META_DIR ? &m->dirs : &m->keys, path);
		if (x) {
			src = x->xattrs;
			*len = x->xattrs_len;
		}
	}
	rc = src ? xattr_dup(src, *len, (char **)blob) : -ENOENT;
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

/* ---- leases ------------------------------------------------------------ */

/* The index of name in m->leases, or where it would go (*found false). */
static size_t lease_index(struct mem_backend *m, const char *name, bool *found)
{
	size_t lo = 0, hi = m->nleases, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = strcmp(m->leases[mid]->name, name);
		if (!c) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* Lease name if it is live at now (deadline after it), else NULL. */
static struct mem_lease *lease_live(struct mem_backend *m, const char *name,
				    int64_t now)
{
	bool found;
	size_t i = lease_index(m, name, &found);

	return found && m->leases[i]->deadline > now ? m->leases[i] : NULL;
}

/*
 * The keys attached to l, in order (a scan of every key: O(N)). The
 * array borrows the nodes' keys, valid while the lock is held.
 */
static int lease_keys(struct mem_backend *m, const struct mem_lease *l,
		      const char ***out, size_t *n)
{
	const char **v = NULL, **nv;
	size_t len = 0, cap = 0;
	struct mem_node *x;

	for (x = m->keys.head->next[0]; x; x = x->next[0]) {
		if (x->lease != l)
			continue;
		if (len == cap) {
			cap = cap ? 2 * cap : 8;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		v[len++] = x->key;
	}
	*out = v;
	*n = len;
	return 0;
}

/*
 * End lease i under the write lock: its keys deleted in one transaction
 * (one revision; *rev receives it, 0 when it had no keys), then the lease.
 * On an error (ENOMEM) nothing changed.
 */
static int lease_end(struct mem_backend *m, size_t i, uint64_t *rev)
{
	ustate_txn_result res = {0};
	struct mem_lease *l = m->leases[i];
	ustate_op *ops = NULL;
	const char **keys = NULL;
	size_t n = 0, k;
	int rc;

	*rev = 0;
	rc = lease_keys(m, l, &keys, &n);
	if (rc < 0 || !n)
		goto drop;
	ops = calloc(n, sizeof(*ops));
	res.versions = calloc(n, sizeof(*res.versions));
	if (!ops || !res.versions) {
		rc = -ENOMEM;
		goto drop;
	}
	for (k = 0; k < n; k++)
		ops[k] = (ustate_op){.type = USTATE_OP_DELETE, .key = keys[k]};
	rc = txn_locked(m, ops, n, &res);
	if (rc == 0)
		*rev = res.revision;
drop:
	if (rc == 0) {
		memmove(&m->leases[i], &m->leases[i + 1],
			(m->nleases - i - 1) * sizeof(*m->leases));
		m->nleases--;
		free(l);
	}
	free(res.versions);
	free(ops);
	free(keys);
	return rc;
}

/* End every lease overdue at now, under the write lock. */
static int leases_due(struct mem_backend *m, int64_t now, unsigned *expired)
{
	uint64_t rev;
	size_t i = 0;
	int rc;

	while (i < m->nleases) {
		if (m->leases[i]->deadline > now) {
			i++;
			continue;
		}
		rc = lease_end(m, i, &rev);
		if (rc < 0)
			return rc;
		++*expired;
	}
	return 0;
}

/* A description of l, keys aside. */
static int lease_info(const struct mem_lease *l, int64_t now,
		      ustate_lease_info **out)
{
	ustate_lease_info *li;

	if (!out)
		return 0;
	li = ustate_lease_info_new(l->name, l->ttl, l->deadline, now);
	if (!li)
		return -ENOMEM;
	ustate_lease_info_owner(li, l->owned ? &l->owner : NULL);
	*out = li;
	return 0;
}

/* Give l the owner owner (uid, gid, mode). */
static void lease_own(struct mem_lease *l, const ustate_meta *owner)
{
	l->owned = true;
	l->owner.uid = owner->uid;
	l->owner.gid = owner->gid;
	l->owner.mode = owner->mode;
}

static int mem_lease_grant(void *b, const char *name, int64_t ttl,
			   const ustate_meta *owner, int64_t now,
			   ustate_lease_info **out)
{
	struct mem_backend *m = b;
	struct mem_lease *l, **nl;
	unsigned expired = 0;
	bool found;
	size_t i;
	int rc;

	rc = -pthread_rwlock_wrlock(&m->lock);
	if (rc < 0)
		return rc;
	rc = leases_due(m, now, &expired);
	if (rc < 0)
		goto out;
	i = lease_index(m, name, &found);
	if (!found) {
		l = calloc(1, sizeof(*l) + strlen(name) + 1);
		nl = realloc(m->leases, (m->nleases + 1) * sizeof(*nl));
		if (nl)
			m->leases = nl;
		if (!l || !nl) {
			free(l);
			rc = -ENOMEM;
			goto out;
		}
		strcpy(l->name, name);
		if (owner)
			lease_own(l, owner);
		memmove(&m->leases[i + 1], &m->leases[i],
			(m->nleases - i) * sizeof(*m->leases));
		m->leases[i] = l;
		m->nleases++;
	}
	l = m->leases[i];
	l->ttl = ttl;
	l->deadline = now + ttl * 1000;
	rc = lease_info(l, now, out);
out:
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

/*
 * Under the write lock, with the overdue leases ended: give the live
 * lease name the owner owner, or (owner NULL) keep it alive and describe
 * it into *out. -ENOENT when it is not live.
 */
static int lease_change(struct mem_backend *m, const char *name, int64_t now,
			const ustate_meta *owner, ustate_lease_info **out)
{
	unsigned expired = 0;
	struct mem_lease *l;
	int rc;

	rc = -pthread_rwlock_wrlock(&m->lock);
	if (rc < 0)
		return rc;
	rc = leases_due(m, now, &expired);
	l = rc < 0 ? NULL : lease_live(m, name, now);
	if (l && owner) {
		lease_own(l, owner);
	} else if (l) {
		l->deadline = now + l->ttl * 1000;
		rc = lease_info(l, now, out);
	} else if (rc == 0) {
		rc = -ENOENT;
	}
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

static int mem_lease_keepalive(void *b, const char *name, int64_t now,
			       ustate_lease_info **out)
{
	return lease_change(b, name, now, NULL, out);
}

static int mem_lease_owner(void *b, const char *name, const ustate_meta *owner,
			   int64_t now)
{
	return lease_change(b, name, now, owner, NULL);
}

static int mem_lease_revoke(void *b, const char *name, int64_t now,
			    uint64_t *revision)
{
	struct mem_backend *m = b;
	unsigned expired = 0;
	bool found;
	size_t i;
	int rc;

	*revision = 0;
	rc = -pthread_rwlock_wrlock(&m->lock);
	if (rc < 0)
		return rc;
	rc = leases_due(m, now, &expired);
	if (rc == 0) {
		i = lease_index(m, name, &found);
		rc = found ? lease_end(m, i, revision) : -ENOENT;
	}
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

static int mem_lease_get(void *b, const char *name, int64_t now,
			 ustate_lease_info **out)
{
	struct mem_backend *m = b;
	ustate_lease_info *li = NULL;
	const char **keys = NULL;
	struct mem_lease *l;
	size_t n = 0, k;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	l = lease_live(m, name, now);
	rc = l ? lease_info(l, now, &li) : -ENOENT;
	if (rc == 0)
		rc = lease_keys(m, l, &keys, &n);
	if (rc == 0 && n) {
		li->keys = calloc(n, sizeof(*li->keys));
		rc = li->keys ? 0 : -ENOMEM;
		for (k = 0; rc == 0 && k < n; k++) {
			li->keys[k] = strdup(keys[k]);
			if (!li->keys[k])
				rc = -ENOMEM;
			else
				li->nkeys++;
		}
	}
	pthread_rwlock_unlock(&m->lock);
	free(keys);
	if (rc < 0) {
		ustate_lease_info_free(li);
		return rc;
	}
	*out = li;
	return 0;
}

static int mem_lease_list(void *b, int64_t now, char ***names, size_t *n)
{
	struct mem_backend *m = b;
	char **v = NULL;
	size_t i, len = 0;
	int rc;

	rc = -pthread_rwlock_rdlock(&m->lock);
	if (rc < 0)
		return rc;
	if (m->nleases) {
		v = calloc(m->nleases, sizeof(*v));
		if (!v)
			rc = -ENOMEM;
	}
	for (i = 0; rc == 0 && i < m->nleases; i++) {
		if (m->leases[i]->deadline <= now)
			continue;
		v[len] = strdup(m->leases[i]->name);
		if (!v[len])
			rc = -ENOMEM;
		else
			len++;
	}
	pthread_rwlock_unlock(&m->lock);
	if (rc < 0) {
		ustate_list_free(v, len);
		return rc;
	}
	if (!len) {
		free(v);
		v = NULL;
	}
	*names = v;
	*n = len;
	return 0;
}

static int mem_lease_expire(void *b, int64_t now, unsigned *expired,
			    int64_t *next)
{
	struct mem_backend *m = b;
	size_t i;
	int rc;

	*expired = 0;
	*next = INT64_MAX;
	rc = -pthread_rwlock_wrlock(&m->lock);
	if (rc < 0)
		return rc;
	rc = leases_due(m, now, expired);
	for (i = 0; i < m->nleases; i++)
		if (m->leases[i]->deadline < *next)
			*next = m->leases[i]->deadline;
	pthread_rwlock_unlock(&m->lock);
	return rc;
}

static const struct ustate_backend_ops mem_ops = {
	.version = USTATE_BACKEND_VERSION,
	.name = "memory",
	.close = mem_close,
	.get = mem_get,
	.key_version = mem_version,
	.scan = mem_scan,
	.txn = mem_txn,
	.revision = mem_revision,
	.history = mem_history,
	.export = mem_export,
	.restore = mem_restore,
	.check = mem_check,
	.compact = mem_compact,
	.meta_get = mem_meta_get,
	.xattrs = mem_xattrs,
	.lease_grant = mem_lease_grant,
	.lease_owner = mem_lease_owner,
	.get_many = mem_get_many,
	.lease_keepalive = mem_lease_keepalive,
	.lease_revoke = mem_lease_revoke,
	.lease_get = mem_lease_get,
	.lease_list = mem_lease_list,
	.lease_expire = mem_lease_expire,
};

int ustate_memory_backend_open(void **b, const struct ustate_backend_ops **ops,
			       ustate_options *opts)
{
	struct mem_backend *m;
	int rc;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	rc = map_init(&m->keys);
	if (rc < 0)
		goto out_free;
	rc = map_init(&m->dirs);
	if (rc < 0)
		goto out_keys;
	m->keep = opts->history;
	m->rng = rng_seed(m);
	rc = -pthread_rwlock_init(&m->lock, NULL);
	if (rc < 0)
		goto out_dirs;
	*b = m;
	*ops = &mem_ops;
	return 0;
out_dirs:
	map_destroy(&m->dirs);
out_keys:
	map_destroy(&m->keys);
out_free:
	free(m);
	return rc;
}
