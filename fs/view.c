/* SPDX-License-Identifier: MIT */
/*
 * This file implements the replay's view of the key space: for every path
 * that exists, whether it holds a value, a directory record, and how many
 * names lie directly below it, as of the last change the replay applied.
 * The replay decides from it what each change did to the tree (which
 * directories appeared or vanished with a key, whether a transaction was
 * a rename), where the store itself can only say what the tree is now,
 * possibly many changes later.
 *
 * It is loaded once from the store (view_load()) and then follows every
 * change, this mount's own included. The changes of one revision can be
 * tried first (view_trial_*()): applied to copies of the entries they
 * touch, which then tell the states after them while the view keeps the
 * states before. Only the replayer's thread uses it.
 */
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

#define V_VALUE 0x1
#define V_RECORD 0x2

/*
 * One allocation an entry, its path inline: a store of a million keys
 * keeps a million of these (32 bytes for a path of 14), so no pointer or
 * field is here that most entries do not need. In a resync's table (revs)
 * the key's mod revision follows the path's NUL (entry_rev()).
 */
struct ventry {
	struct ventry *next;
	uint32_t nchild; /* names directly below that exist */
	uint8_t flags;	 /* V_VALUE, V_RECORD */
	char path[];
};

struct table {
	struct ventry **b;
	size_t nb, n;
	bool trial;	     /* copies of the view's entries, kept even
			      * when empty: the paths a batch touched */
	bool revs;	     /* each entry holds its mod revision */
	struct ventry **all; /* trial: every entry, in order of touch */
	size_t nall, call;
};

/* Chains of two entries on average: half the buckets of one each. */
#define LOAD_FACTOR 2

static struct table view;
static struct table trial = {.trial = true};

static void *rev_at(const struct ventry *e)
{
	return (char *)e->path + strlen(e->path) + 1;
}

static uint64_t entry_rev(const struct ventry *e)
{
	uint64_t rev;

	memcpy(&rev, rev_at(e), sizeof(rev));
	return rev;
}

static void entry_rev_set(struct ventry *e, uint64_t rev)
{
	memcpy(rev_at(e), &rev, sizeof(rev));
}

/* FNV-1a, as the inode numbers use. */
static uint64_t hash_str(const char *p)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	return h;
}

/* The entry of path, whose hash_str() is h, in t; or NULL. */
static struct ventry *find_h(const struct table *t, const char *path,
			     uint64_t h)
{
	struct ventry *e;

	if (!t->nb)
		return NULL;
	for (e = t->b[h & (t->nb - 1)]; e; e = e->next)
		if (!strcmp(e->path, path))
			return e;
	return NULL;
}

static struct ventry *find(const struct table *t, const char *path)
{
	return find_h(t, path, hash_str(path));
}

/* Rehash t into n buckets (a power of two). */
static void grow_to(struct table *t, size_t n)
{
	struct ventry **nb, *e, *next;
	size_t i, j;

	nb = calloc(n, sizeof(*nb));
	if (!nb)
		return; /* longer chains, still correct */
	for (i = 0; i < t->nb; i++) {
		for (e = t->b[i]; e; e = next) {
			next = e->next;
			j = hash_str(e->path) & (n - 1);
			e->next = nb[j];
			nb[j] = e;
		}
	}
	free(t->b);
	t->b = nb;
	t->nb = n;
}

static void grow(struct table *t)
{
	grow_to(t, t->nb ? t->nb * 2 : 1024);
}

/* Room for n entries at once, so that a load rehashes nothing. */
static void reserve(struct table *t, size_t n)
{
	size_t nb = 1024;

	while (nb * LOAD_FACTOR < n)
		nb *= 2;
	if (nb > t->nb)
		grow_to(t, nb);
}

/*
 * The entry of path in t, made when missing (in a trial, as a copy of the
 * view's); NULL on ENOMEM.
 */
static struct ventry *get_h(struct table *t, const char *path, uint64_t h)
{
	struct ventry *e = find_h(t, path, h), *v, **all;
	size_t i, len = strlen(path) + 1;

	if (e)
		return e;
	if (t->n >= t->nb * LOAD_FACTOR)
		grow(t);
	if (!t->nb)
		return NULL;
	if (t->trial && t->nall == t->call) {
		i = t->call ? t->call * 2 : 16;
		all = realloc(t->all, i * sizeof(*all));
		if (!all)
			return NULL;
		t->all = all;
		t->call = i;
	}
	e = malloc(offsetof(struct ventry, path) + len +
		   (t->revs ? sizeof(uint64_t) : 0));
	if (!e)
		return NULL;
	e->nchild = 0;
	e->flags = 0;
	memcpy(e->path, path, len);
	if (t->revs)
		entry_rev_set(e, 0);
	if (t->trial && (v = find(&view, path))) {
		e->flags = v->flags;
		e->nchild = v->nchild;
	}
	i = h & (t->nb - 1);
	e->next = t->b[i];
	t->b[i] = e;
	t->n++;
	if (t->trial)
		t->all[t->nall++] = e;
	return e;
}

static struct ventry *get(struct table *t, const char *path)
{
	return get_h(t, path, hash_str(path));
}

/* Drop e from the view when nothing is left of it (never the root). */
static void prune(struct table *t, struct ventry *e)
{
	struct ventry **pp;

	if (t->trial || e->flags || e->nchild || !strcmp(e->path, "/"))
		return;
	for (pp = &t->b[hash_str(e->path) & (t->nb - 1)]; *pp != e;
	     pp = &(*pp)->next)
		;
	*pp = e->next;
	t->n--;
	free(e);
}

static bool exists_e(const struct ventry *e)
{
	return e && (e->flags || e->nchild);
}

/* The parent of path into dir (FS_PATH_MAX bytes); false for the root. */
static bool parent_of(const char *path, char *dir)
{
	if (!strcmp(path, "/"))
		return false;
	path_split(path, dir);
	return true;
}

/* Set or clear flag on path in t, and count its name in its ancestors. */
static int set_flag(struct table *t, const char *path, uint8_t flag, bool on)
{
	char cur[FS_PATH_MAX], dir[FS_PATH_MAX];
	uint64_t h = hash_str(path);
	struct ventry *e;
	bool was, is;
	int delta;

	e = find_h(t, path, h);
	if (!e && !on && !t->trial)
		return 0;
	e = e ? e : get_h(t, path, h);
	if (!e)
		return -ENOMEM;
	was = exists_e(e);
	e->flags = on ? e->flags | flag : e->flags & ~flag;
	is = exists_e(e);
	prune(t, e);
	if (was == is)
		return 0;
	delta = is ? 1 : -1;
	strcpy(cur, path);
	/* Bounded by the depth of the path: one step up per segment. */
	while (parent_of(cur, dir)) {
		e = get(t, dir);
		if (!e)
			return -ENOMEM;
		if (delta < 0 && !e->nchild) {
			prune(t, e); /* a view out of step: never below 0 */
			break;
		}
		was = exists_e(e);
		e->nchild += delta;
		is = exists_e(e);
		prune(t, e);
		if (was == is || !strcmp(dir, "/"))
			break;
		strcpy(cur, dir);
	}
	return 0;
}

static int apply(struct table *t, ustate_event_type type, const char *key)
{
	switch (type) {
	case USTATE_EVENT_CREATED:
	case USTATE_EVENT_UPDATED:
		return set_flag(t, key, V_VALUE, true);
	case USTATE_EVENT_DELETED:
		return set_flag(t, key, V_VALUE, false);
	case USTATE_EVENT_DIR_CREATED:
		return set_flag(t, key, V_RECORD, true);
	case USTATE_EVENT_DIR_DELETED:
		return set_flag(t, key, V_RECORD, false);
	}
	return 0;
}

static void state_of(const struct ventry *e, const char *path,
		     struct view_state *st)
{
	bool root = !strcmp(path, "/");

	st->value = e && (e->flags & V_VALUE);
	st->record = root || (e && (e->flags & V_RECORD));
	st->nchild = e ? e->nchild : 0;
	st->dir = st->record || st->nchild;
	st->exists = st->value || st->dir;
}

static void table_free(struct table *t)
{
	struct ventry *e, *next;
	bool is_trial = t->trial, revs = t->revs;
	size_t i;

	for (i = 0; i < t->nb; i++) {
		for (e = t->b[i]; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(t->b);
	free(t->all);
	*t = (struct table){.trial = is_trial, .revs = revs};
}

int view_apply(ustate_event_type type, const char *key)
{
	return apply(&view, type, key);
}

void view_state(const char *path, struct view_state *st)
{
	state_of(find(&view, path), path, st);
}

void view_clear(void)
{
	table_free(&view);
}

/* An export's record into the table arg (a key with its revision). */
static int load_record(void *arg, const ustate_record *r)
{
	struct table *t = arg;
	struct ventry *e;
	int rc;

	if (r->type == USTATE_RECORD_DIR)
		return strcmp(r->key, "/") ? set_flag(t, r->key, V_RECORD, true)
					   : 0;
	rc = set_flag(t, r->key, V_VALUE, true);
	if (rc == 0 && (e = find(t, r->key)))
		entry_rev_set(e, r->mod_revision);
	return rc;
}

/*
 * The store into t, with each key's mod revision (an export: it reads
 * the values too, so only a resync does it), between revisions *first
 * and *last.
 */
static int load_revs(struct table *t, uint64_t *first, uint64_t *last)
{
	unsigned flags;
	int rc;

	rc = ustate_node_get(fs.store, "/", &flags, first, NULL);
	if (rc == 0)
		rc = ustate_export(fs.store, "/", load_record, t);
	if (rc == 0)
		rc = ustate_node_get(fs.store, "/", &flags, last, NULL);
	if (rc < 0)
		table_free(t);
	return rc;
}

int view_load(uint64_t *first, uint64_t *last)
{
	char **keys = NULL, **dirs = NULL;
	size_t nkeys = 0, ndirs = 0, i;
	unsigned flags;
	int rc;

	view_clear();
	rc = ustate_node_get(fs.store, "/", &flags, first, NULL);
	if (rc == 0)
		rc = ustate_list(fs.store, "/", &keys, &nkeys);
	if (rc == 0)
		rc = ustate_list_dirs(fs.store, "/", &dirs, &ndirs);
	/* The keys' directories too: most hold many keys, so a 64th more. */
	if (rc == 0)
		reserve(&view, nkeys + nkeys / 64 + ndirs);
	for (i = 0; rc == 0 && i < nkeys; i++)
		rc = set_flag(&view, keys[i], V_VALUE, true);
	for (i = 0; rc == 0 && i < ndirs; i++)
		if (strcmp(dirs[i], "/"))
			rc = set_flag(&view, dirs[i], V_RECORD, true);
	if (rc == 0)
		rc = ustate_node_get(fs.store, "/", &flags, last, NULL);
	ustate_list_free(keys, nkeys);
	ustate_list_free(dirs, ndirs);
	if (rc < 0)
		view_clear();
	/* The lists were as big as the view: give their pages back. */
	malloc_trim(0);
	return rc;
}

struct diff {
	char **path;
	uint8_t *kind;
	size_t n, cap;
};

enum { D_DIR_MADE, D_MADE, D_CHANGED, D_GONE, D_DIR_GONE };

static int diff_add(struct diff *d, const char *path, uint8_t kind)
{
	char **np;
	uint8_t *nk;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;

		np = realloc(d->path, cap * sizeof(*np));
		if (np)
			d->path = np;
		nk = realloc(d->kind, cap * sizeof(*nk));
		if (nk)
			d->kind = nk;
		if (!np || !nk)
			return -ENOMEM;
		d->cap = cap;
	}
	d->path[d->n] = strdup(path);
	if (!d->path[d->n])
		return -ENOMEM;
	d->kind[d->n++] = kind;
	return 0;
}

/*
 * Differences of a's entries against b's: made, or changed after since
 * (a's revisions); or, with gone, what of a is gone from b.
 */
static int diff_table(struct diff *d, const struct table *a,
		      const struct table *b, bool gone, uint64_t since)
{
	const struct ventry *e, *o;
	size_t i;
	int rc = 0;

	for (i = 0; rc == 0 && i < a->nb; i++)
		for (e = a->b[i]; rc == 0 && e; e = e->next) {
			o = find(b, e->path);
			if ((e->flags & V_RECORD) &&
			    !(o && (o->flags & V_RECORD)))
				rc = diff_add(d, e->path,
					      gone ? D_DIR_GONE : D_DIR_MADE);
			if (rc || !(e->flags & V_VALUE))
				continue;
			if (!(o && (o->flags & V_VALUE)))
				rc = diff_add(d, e->path,
					      gone ? D_GONE : D_MADE);
			else if (!gone && entry_rev(e) > since)
				rc = diff_add(d, e->path, D_CHANGED);
		}
	return rc;
}

static const struct diff *sorting;

/*
 * Made before changed before gone, records made first and dropped last;
 * what is made goes parents first, what goes children first.
 */
static int diff_cmp(const void *x, const void *y)
{
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	int c = sorting->kind[i] - sorting->kind[j];

	if (c)
		return c;
	c = strcmp(sorting->path[i], sorting->path[j]);
	return sorting->kind[i] >= D_GONE ? -c : c;
}

int view_resync(uint64_t since, uint64_t *first, uint64_t *last,
		void (*fn)(void *arg, ustate_event_type type, const char *path),
		void *arg)
{
	static const ustate_event_type type[] = {
		[D_DIR_MADE] = USTATE_EVENT_DIR_CREATED,
		[D_MADE] = USTATE_EVENT_CREATED,
		[D_CHANGED] = USTATE_EVENT_UPDATED,
		[D_GONE] = USTATE_EVENT_DELETED,
		[D_DIR_GONE] = USTATE_EVENT_DIR_DELETED,
	};
	struct table fresh = {.revs = true};
	struct diff d = {0};
	size_t *order = NULL, i;
	int rc;

	rc = load_revs(&fresh, first, last);
	if (rc == 0)
		rc = diff_table(&d, &fresh, &view, false, since);
	if (rc == 0)
		rc = diff_table(&d, &view, &fresh, true, since);
	if (rc == 0 && d.n && !(order = malloc(d.n * sizeof(*order))))
		rc = -ENOMEM;
	if (rc == 0) {
		for (i = 0; i < d.n; i++)
			order[i] = i;
		sorting = &d;
		qsort(order, d.n, sizeof(*order), diff_cmp);
		for (i = 0; i < d.n; i++)
			fn(arg, type[d.kind[order[i]]], d.path[order[i]]);
	}
	for (i = 0; i < d.n; i++)
		free(d.path[i]);
	free(d.path);
	free(d.kind);
	free(order);
	table_free(&fresh);
	return rc;
}

/* ---- trials ----------------------------------------------------------- */

int view_trial_apply(ustate_event_type type, const char *key)
{
	return apply(&trial, type, key);
}

void view_trial_state(const char *path, struct view_state *st)
{
	struct ventry *e = find(&trial, path);

	state_of(e ? e : find(&view, path), path, st);
}

void view_trial_each(void (*fn)(void *arg, const char *path), void *arg)
{
	size_t i;

	for (i = 0; i < trial.nall; i++)
		fn(arg, trial.all[i]->path);
}

void view_trial_end(void)
{
	table_free(&trial);
}
