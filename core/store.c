/* SPDX-License-Identifier: MIT */
/*
 * This file implements the store front: the public API of ustate.h over a
 * backend's table of operations. It enforces the rules a backend may rely
 * on (valid keys, value sizes, op counts, read-only), turns every write
 * into a transaction, and runs the watches.
 *
 * Watches read the backend's change history through a cursor of their
 * own, so a watch needs no queue and can never silently lose an event: it
 * either reads every change in revision order or learns that the history
 * it needed was trimmed (-EOVERFLOW). Each watch has an eventfd, made
 * readable when a change that matches it is committed. A local commit
 * that knows its revision signals the watches it concerns itself, before
 * it returns (dispatch_local()); a dispatcher thread, started by the first
 * watch, signals the rest: commits by other processes on the same file,
 * within USTATE_POLL_MS, and local commits that cannot tell their own
 * revision.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "script_i.h"
#include "store_i.h"

#define USTATE_POLL_MS 10   /* how often to look for other writers */
#define WATCH_BATCH 256	    /* changes a watch reads at once */
#define DISPATCH_BATCH 4096 /* changes the dispatcher looks at at once */

struct ustate {
	const struct ustate_backend_ops *ops;
	void *be;
	ustate_options opts; /* as the backend left them; their strings
			      * point into strings */
	char *strings;	     /* the copies of the caller's strings */
	size_t strings_len;

	pthread_mutex_t wlock;
	pthread_cond_t wcond;
	struct ustate_watch *watches; /* protected by wlock */
	bool dispatching;	      /* protected by wlock */
	bool stopping;		      /* protected by wlock */
	bool kicked;		      /* protected by wlock */
	uint64_t seen;		      /* revisions up to this one were
				       * signaled, protected by wlock */
	uint64_t ahead;		      /* bit i: revision seen + 2 + i was
				       * signaled too, protected by wlock */
	pthread_t dispatcher;

	/* lease expiry (see lease_thread()) */
	pthread_mutex_t llock;
	pthread_cond_t lcond; /* on the monotonic clock */
	bool leasing;	      /* the thread runs; set before it starts */
	bool lstop;	      /* protected by llock */
	pthread_t lease_thread;
};

struct ustate_watch {
	ustate *s;
	struct ustate_watch *next; /* protected by s->wlock */
	int efd;
	bool is_prefix;
	bool overflow;
	size_t plen;
	uint64_t rev; /* revision of the next change to read ... */
	size_t skip;  /* ... after this many of its changes */
	struct ustate_change *buf;
	size_t nbuf, pos;
	char prefix[USTATE_KEY_MAX + 1];
};

void ustate_entry_free(ustate_entry *e)
{
	free(e);
}

void ustate_list_free(char **keys, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

/* The bytes of version 1 of the options: the fields up to max_txn_ops. */
#define OPTIONS_V1_SIZE (offsetof(ustate_options, max_txn_ops) + sizeof(size_t))
/* ... of version 2: up to log_arg. */
#define OPTIONS_V2_SIZE (offsetof(ustate_options, log_arg) + sizeof(void *))

/*
 * Check the caller's options (NULL: the defaults) into *o, at the current
 * version: of a version 1 struct, only the version 1 fields are read (the
 * caller's struct may be no larger), the others keep their defaults.
 */
static int options_check(ustate_options *o, const ustate_options *in)
{
	static const ustate_options def = USTATE_OPTIONS_INIT;

	*o = def;
	if (in && in->version == 1)
		memcpy(o, in, OPTIONS_V1_SIZE);
	else if (in && in->version == 2)
		memcpy(o, in, OPTIONS_V2_SIZE);
	else if (in && in->version == USTATE_OPTIONS_VERSION)
		*o = *in;
	else if (in)
		return -EINVAL;
	o->version = USTATE_OPTIONS_VERSION;
	if (o->sync != USTATE_SYNC_FULL && o->sync != USTATE_SYNC_NORMAL &&
	    o->sync != USTATE_SYNC_OFF)
		return -EINVAL;
	/*
	 * SQLite stores at most 1 GB in one value; a live watch needs at
	 * least the revision it is reading to be kept; one revision holds at
	 * most USTATE_MAX_TXN_OPS changes (the SQLite history numbers them
	 * in 20 bits).
	 */
	if (o->max_value_size > (1u << 30) || o->max_txn_ops == 0 ||
	    o->max_txn_ops > USTATE_MAX_TXN_OPS || o->history == 0)
		return -EINVAL;
	/* Every request has a deadline: 0 would be none, or an instant. */
	if (o->request_timeout == 0 ||
	    o->request_timeout > USTATE_MAX_TIMEOUT_MS ||
	    o->dial_timeout == 0 || o->dial_timeout > USTATE_MAX_TIMEOUT_MS)
		return -EINVAL;
	if (o->consistency != USTATE_CONSISTENCY_LINEARIZABLE &&
	    o->consistency != USTATE_CONSISTENCY_LOCAL)
		return -EINVAL;
	return 0;
}

/*
 * Replace the strings of o by copies, all in one new block *block of
 * *len bytes (NULL when o has none), which strings_free() releases.
 */
static int options_own(ustate_options *o, char **block, size_t *len)
{
	const char **f[] = {&o->tls_ca, &o->tls_cert, &o->tls_key,
			    &o->user,	&o->password, &o->replica};
	size_t i, n = 0, l;
	char *p;

	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (*f[i])
			n += strlen(*f[i]) + 1;
	*block = NULL;
	*len = n;
	if (!n)
		return 0;
	p = malloc(n);
	if (!p)
		return -ENOMEM;
	*block = p;
	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (!*f[i])
			continue;
		l = strlen(*f[i]) + 1;
		memcpy(p, *f[i], l);
		*f[i] = p;
		p += l;
	}
	return 0;
}

/* Free a block of options_own(); wiped first, for the password in it. */
static void strings_free(char *block, size_t len)
{
	if (block)
		explicit_bzero(block, len);
	free(block);
}

/* Takes over be, ops and strings on success only. */
static int store_new(ustate **out, const ustate_options *o, char *strings,
		     size_t strings_len, void *be,
		     const struct ustate_backend_ops *ops)
{
	pthread_condattr_t ca;
	ustate *s;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = (ustate){.ops = ops,
		      .be = be,
		      .opts = *o,
		      .strings = strings,
		      .strings_len = strings_len};
	pthread_mutex_init(&s->wlock, NULL);
	/* The dispatcher's deadlines are on the monotonic clock. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wcond, &ca);
	pthread_cond_init(&s->lcond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&s->llock, NULL);
	*out = s;
	return 0;
}

static int leases_start(ustate *s);

/* The backends a source may name. */
enum source_kind { SOURCE_SQLITE, SOURCE_MEMORY, SOURCE_ETCD };

/* Open the backend of kind for source, with o (which it may adjust). */
static int backend_open(enum source_kind kind, const char *source,
			ustate_options *o, void **be,
			const struct ustate_backend_ops **ops)
{
	switch (kind) {
	case SOURCE_SQLITE:
		return ustate_sqlite_backend_open(be, ops, source, o);
	case SOURCE_MEMORY:
		return ustate_memory_backend_open(be, ops, o);
	case SOURCE_ETCD:
		return ustate_etcd_backend_open(be, ops, source, o);
	}
	return -EINVAL;
}

/*
 * The one way every opener takes: check the options, copy their strings,
 * open the backend with them, then make the store with the options as
 * the backend left them.
 */
static int store_open(ustate **out, enum source_kind kind, const char *source,
		      const ustate_options *opts)
{
	const struct ustate_backend_ops *ops;
	char *strings = NULL;
	size_t strings_len = 0;
	ustate_options o;
	ustate *s;
	void *be;
	int rc;

	rc = options_check(&o, opts);
	if (rc < 0)
		return rc;
	if (kind != SOURCE_MEMORY && (!source || !*source))
		return -EINVAL;
	rc = options_own(&o, &strings, &strings_len);
	if (rc < 0)
		return rc;
	rc = backend_open(kind, source, &o, &be, &ops);
	if (rc < 0)
		goto out;
	rc = store_new(&s, &o, strings, strings_len, be, ops);
	if (rc < 0) {
		ops->close(be);
		goto out;
	}
	strings = NULL; /* the store's now */
	/* Leases that ran out while it was closed go before any write. */
	rc = leases_start(s);
	if (rc < 0)
		ustate_close(s);
	else
		*out = s;
out:
	strings_free(strings, strings_len);
	return rc;
}

int ustate_open_sqlite(ustate **out, const char *path,
		       const ustate_options *opts)
{
	return store_open(out, SOURCE_SQLITE, path, opts);
}

int ustate_open_memory(ustate **out, const ustate_options *opts)
{
	return store_open(out, SOURCE_MEMORY, NULL, opts);
}

int ustate_open(ustate **out, const char *source, const ustate_options *opts)
{
	ustate_options o;
	const char *sep;
	size_t len;
	int rc;

	/* Checked here too: its log is the one for the messages below. */
	rc = options_check(&o, opts);
	if (rc < 0)
		return rc;
	if (!source || !*source) {
		ustate_log(&o, LOG_ERR,
			   "no source given: a file, :memory: "
			   "or etcd://HOST:PORT/PREFIX");
		return -EINVAL;
	}
	if (!strcmp(source, ":memory:"))
		return store_open(out, SOURCE_MEMORY, source, opts);
	sep = strstr(source, "://");
	if (!sep)
		return store_open(out, SOURCE_SQLITE, source, opts);
	len = (size_t)(sep - source);
	if ((len == 4 && !strncmp(source, "etcd", 4)) ||
	    (len == 5 && !strncmp(source, "etcds", 5)))
		return store_open(out, SOURCE_ETCD, source, opts);
	ustate_log(&o, LOG_ERR,
		   "%s: unknown scheme \"%.*s\": a store is a file, :memory:, "
		   "etcd:// or etcds://",
		   source, len < 64 ? (int)len : 64, source);
	return -EINVAL;
}

int ustate_global_tune(unsigned flags)
{
	if (flags & ~(unsigned)USTATE_TUNE_NO_MEMSTATS)
		return -EINVAL;
	return ustate_sqlite_global_tune(flags);
}

void ustate_close(ustate *s)
{
	bool join;

	if (!s)
		return;
	pthread_mutex_lock(&s->wlock);
	join = s->dispatching;
	s->stopping = true;
	pthread_cond_signal(&s->wcond);
	pthread_mutex_unlock(&s->wlock);
	if (join)
		pthread_join(s->dispatcher, NULL);
	if (s->leasing) {
		pthread_mutex_lock(&s->llock);
		s->lstop = true;
		pthread_cond_signal(&s->lcond);
		pthread_mutex_unlock(&s->llock);
		pthread_join(s->lease_thread, NULL);
	}
	s->ops->close(s->be);
	strings_free(s->strings, s->strings_len);
	pthread_cond_destroy(&s->wcond);
	pthread_mutex_destroy(&s->wlock);
	pthread_cond_destroy(&s->lcond);
	pthread_mutex_destroy(&s->llock);
	free(s);
}

int ustate_get(ustate *s, const char *key, ustate_entry **out)
{
	int rc = ustate_key_valid(key);

	if (rc < 0)
		return rc;
	return s->ops->get(s->be, key, out);
}

int ustate_get_many(ustate *s, const char *const *keys, size_t n,
		    ustate_entry **out, uint64_t *revision)
{
	uint64_t rev;
	size_t i;
	int rc;

	for (i = 0; i < n; i++)
		out[i] = NULL;
	for (i = 0; i < n; i++) {
		rc = ustate_key_valid(keys[i]);
		if (rc < 0)
			return rc;
	}
	if (!s->ops->get_many)
		return -EOPNOTSUPP;
	rc = s->ops->get_many(s->be, keys, n, out, &rev);
	if (rc == 0 && revision)
		*revision = rev;
	return rc;
}

int ustate_version(ustate *s, const char *key, uint64_t *version)
{
	int rc = ustate_key_valid(key);

	if (rc < 0)
		return rc;
	return s->ops->key_version(s->be, key, version);
}

int ustate_exists(ustate *s, const char *key)
{
	uint64_t v;
	int rc;

	rc = ustate_version(s, key, &v);
	if (rc < 0)
		return rc;
	return v != 0;
}

int ustate_list(ustate *s, const char *prefix, char ***keys, size_t *n)
{
	int rc = ustate_prefix_valid(prefix);

	if (rc < 0)
		return rc;
	return s->ops->scan(s->be, USTATE_SCAN_KEYS, prefix, NULL, SIZE_MAX,
			    keys, n);
}

int ustate_list_dirs(ustate *s, const char *prefix, char ***paths, size_t *n)
{
	int rc = ustate_prefix_valid(prefix);

	if (rc < 0)
		return rc;
	return s->ops->scan(s->be, USTATE_SCAN_DIRS, prefix, NULL, SIZE_MAX,
			    paths, n);
}

/* Whether anything of a set lies at or below a prefix. */
static int any(ustate *s, int set, const char *prefix, const char *exact,
	       bool *found)
{
	char **v;
	size_t n;
	int rc;

	rc = s->ops->scan(s->be, set, prefix, NULL, 1, &v, &n);
	if (rc < 0)
		return rc;
	*found = n && (!exact || !strcmp(v[0], exact));
	ustate_list_free(v, n);
	return 0;
}

int ustate_node_get(ustate *s, const char *path, unsigned *flags,
		    uint64_t *revision, ustate_entry **entry)
{
	char below[USTATE_KEY_MAX + 2];
	ustate_entry *e = NULL;
	unsigned out;
	uint64_t v, rev = 0;
	bool found;
	size_t len;
	int rc;

	if (path && !strcmp(path, "/")) {
		rc = any(s, USTATE_SCAN_KEYS, "/", NULL, &found);
		if (rc == 0 && !found)
			rc = any(s, USTATE_SCAN_DIRS, "/", NULL, &found);
		if (rc == 0 && revision)
			rc = s->ops->revision(s->be, &rev);
		if (rc < 0)
			return rc;
		*flags =
			USTATE_NODE_RECORD | (found ? USTATE_NODE_CHILDREN : 0);
		if (revision)
			*revision = rev;
		if (entry)
			*entry = NULL;
		return 0;
	}
	rc = ustate_key_valid(path);
	if (rc < 0)
		return rc;
	if (s->ops->node)
		return s->ops->node(s->be, path, flags, revision, entry);
	/* Several reads: as exact for each part, not one snapshot. */
	if (revision) {
		rc = s->ops->revision(s->be, &rev);
		if (rc < 0)
			return rc;
	}
	rc = s->ops->key_version(s->be, path, &v);
	if (rc == 0 && v && entry) {
		rc = s->ops->get(s->be, path, &e);
		if (rc == -ENOENT) {
			v = 0;
			rc = 0;
		}
	}
	if (rc < 0)
		return rc;
	out = v ? USTATE_NODE_VALUE : 0;
	len = strlen(path);
	memcpy(below, path, len);
	memcpy(below + len, "/", 2);
	rc = any(s, USTATE_SCAN_KEYS, below, NULL, &found);
	if (rc == 0 && !found)
		rc = any(s, USTATE_SCAN_DIRS, below, NULL, &found);
	out |= found ? USTATE_NODE_CHILDREN : 0;
	/* The smallest name with a prefix is the prefix itself. */
	if (rc == 0)
		rc = any(s, USTATE_SCAN_DIRS, path, path, &found);
	if (rc < 0) {
		ustate_entry_free(e);
		return rc;
	}
	*flags = out | (found ? USTATE_NODE_RECORD : 0);
	if (revision)
		*revision = rev;
	if (entry)
		*entry = e;
	return 0;
}

int ustate_node(ustate *s, const char *path, unsigned *flags)
{
	return ustate_node_get(s, path, flags, NULL, NULL);
}

/*
 * ustate_meta_get() has two versions in the shared library: libustate 0.5
 * appended the times to ustate_meta, so a program built before calls
 * ustate_meta_get@USTATE_0.1, which fills the owner and mode alone
 * (USTATE_META_V1_SIZE bytes, all its struct has). Programs built since
 * call ustate_meta_get@@USTATE_0.5.
 */
int ustate_meta_get_v1(ustate *s, const char *path, unsigned which, void *out);
int ustate_meta_get_v5(ustate *s, const char *path, unsigned which,
		       ustate_meta *out);

__asm__(".symver ustate_meta_get_v1, ustate_meta_get@USTATE_0.1");
int ustate_meta_get_v1(ustate *s, const char *path, unsigned which, void *out)
{
	ustate_meta m;
	int rc;

	rc = ustate_meta_get_v5(s, path, which, &m);
	if (rc == 0)
		memcpy(out, &m, USTATE_META_V1_SIZE);
	return rc;
}

/* A key, or a record or "/" (which USTATE_META_DIR): 0 or -errno. */
static int meta_path_valid(const char *path, unsigned which)
{
	if (which != USTATE_META_KEY && which != USTATE_META_DIR)
		return -EINVAL;
	if (which == USTATE_META_DIR && path && !strcmp(path, "/"))
		return 0;
	return ustate_key_valid(path);
}

__asm__(".symver ustate_meta_get_v5, ustate_meta_get@@USTATE_0.5");
int ustate_meta_get_v5(ustate *s, const char *path, unsigned which,
		       ustate_meta *out)
{
	int rc;

	rc = meta_path_valid(path, which);
	if (rc < 0)
		return rc;
	/* A backend without metadata keeps none: the default applies. */
	if (!s->ops->meta_get)
		return -ENOENT;
	return s->ops->meta_get(s->be, path, which, out);
}

/* The name of an xattr: 1 to USTATE_XATTR_NAME_MAX bytes. */
static int xattr_name_check(const char *name)
{
	size_t n = name ? strnlen(name, USTATE_XATTR_NAME_MAX + 1) : 0;

	if (!n)
		return -EINVAL;
	return n > USTATE_XATTR_NAME_MAX ? -ERANGE : 0;
}

/* The xattrs of path as the backend keeps them: 0 with *blob (maybe NULL,
 * none), or an error. */
static int xattrs_read(ustate *s, const char *path, unsigned which, void **blob,
		       size_t *len)
{
	int rc;

	*blob = NULL;
	*len = 0;
	rc = meta_path_valid(path, which);
	if (rc < 0 || !s->ops->xattrs)
		return rc;
	rc = s->ops->xattrs(s->be, path, which, blob, len);
	return rc == -ENOENT ? 0 : rc;
}

/* Find name in blob: 1 with its value, 0 when absent, or -EIO. */
static int xattr_find(const void *blob, size_t len, const char *name,
		      const void **value, size_t *vlen)
{
	const char *n;
	size_t off = 0;
	int rc;

	while ((rc = ustate_xattr_entry(blob, len, &off, &n, value, vlen)) == 1)
		if (!strcmp(n, name))
			return 1;
	return rc;
}

int ustate_xattr_get(ustate *s, const char *path, unsigned which,
		     const char *name, void **value, size_t *len)
{
	const void *v;
	void *blob;
	size_t blen, vlen;
	int rc;

	rc = xattr_name_check(name);
	if (rc == 0)
		rc = xattrs_read(s, path, which, &blob, &blen);
	if (rc < 0)
		return rc;
	rc = blob ? xattr_find(blob, blen, name, &v, &vlen) : 0;
	if (rc == 0)
		rc = -ENODATA;
	if (rc == 1) {
		*value = malloc(vlen + 1);
		rc = *value ? 0 : -ENOMEM;
	}
	if (rc == 0) {
		memcpy(*value, v, vlen);
		((char *)*value)[vlen] = '\0';
		*len = vlen;
	}
	free(blob);
	return rc;
}

int ustate_xattr_list(ustate *s, const char *path, unsigned which,
		      char ***names, size_t *n)
{
	const char *name;
	const void *v;
	size_t blen, vlen, off = 0, k = 0;
	void *blob;
	int rc;

	*names = NULL;
	*n = 0;
	rc = xattrs_read(s, path, which, &blob, &blen);
	if (rc < 0)
		return rc;
	while ((rc = ustate_xattr_entry(blob, blen, &off, &name, &v, &vlen)) ==
	       1)
		k++;
	if (rc == 0 && k) {
		*names = calloc(k, sizeof(**names));
		rc = *names ? 0 : -ENOMEM;
	}
	for (off = 0; rc == 0 && *n < k; (*n)++) {
		ustate_xattr_entry(blob, blen, &off, &name, &v, &vlen);
		(*names)[*n] = strdup(name);
		if (!(*names)[*n])
			rc = -ENOMEM;
	}
	if (rc < 0) {
		ustate_list_free(*names, *n);
		*names = NULL;
		*n = 0;
	}
	free(blob);
	return rc;
}

static int txn_run(ustate *s, const ustate_op *ops, size_t n,
		   ustate_txn_result *res, unsigned flags);

/* Whether no key (which USTATE_META_KEY) or record is at path. */
static bool path_absent(ustate *s, const char *path, unsigned which)
{
	unsigned flags = 0;

	if (which == USTATE_META_KEY)
		return ustate_exists(s, path) == 0;
	if (!strcmp(path, "/"))
		return false;
	return ustate_node(s, path, &flags) == 0 &&
	       !(flags & USTATE_NODE_RECORD);
}

int ustate_xattr_set(ustate *s, const char *path, unsigned which,
		     const char *name, const void *value, size_t len,
		     unsigned flags)
{
	size_t blen, vlen, off = 0, total = 0, nlen;
	ustate_op op = {.type = USTATE_OP_XATTR, .key = path};
	const char *n;
	const void *v;
	char *buf = NULL;
	void *blob;
	int rc, found;

	if (flags & ~(unsigned)(USTATE_XATTR_CREATE | USTATE_XATTR_REPLACE) ||
	    flags == (USTATE_XATTR_CREATE | USTATE_XATTR_REPLACE))
		return -EINVAL;
	rc = xattr_name_check(name);
	if (rc == 0 && value && len > USTATE_XATTR_SIZE_MAX)
		rc = -E2BIG;
	if (rc == 0 && !s->ops->xattrs)
		rc = -EOPNOTSUPP;
	if (rc == 0 && s->opts.read_only)
		rc = -EROFS;
	if (rc == 0)
		rc = xattrs_read(s, path, which, &blob, &blen);
	if (rc < 0)
		return rc;
	found = blob ? xattr_find(blob, blen, name, &v, &vlen) : 0;
	/* Nothing there at all: the path's error, not the name's. */
	if (!found && !blob && (!value || (flags & USTATE_XATTR_REPLACE)))
		found = path_absent(s, path, which) ? -ENOENT : 0;
	if (found < 0)
		rc = found;
	else if (found && (flags & USTATE_XATTR_CREATE))
		rc = -EEXIST;
	else if (!found && (!value || (flags & USTATE_XATTR_REPLACE)))
		rc = -ENODATA;
	/* What the others take, and this one will. */
	while (rc == 0 &&
	       ustate_xattr_entry(blob, blen, &off, &n, &v, &vlen) == 1)
		if (strcmp(n, name))
			total += strlen(n) + 1 + vlen;
	nlen = strlen(name) + 1;
	if (rc == 0 && value && total + nlen + len > USTATE_XATTR_TOTAL_MAX)
		rc = -ENOSPC;
	free(blob);
	if (rc == 0) {
		buf = malloc(nlen + (value ? len : 0));
		rc = buf ? 0 : -ENOMEM;
	}
	if (rc == 0) {
		memcpy(buf, name, nlen);
		if (value && len)
			memcpy(buf + nlen, value, len);
		op.version = which | (value ? 0 : USTATE_XATTR_REMOVE);
		op.value = buf;
		op.value_len = nlen + (value ? len : 0);
		rc = txn_run(s, &op, 1, NULL, 0);
	}
	free(buf);
	return rc;
}

void ustate_dirents_free(ustate_dirent *d, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(d[i].name);
	free(d);
}

struct dirents {
	ustate_dirent *v;
	size_t n, cap;
};

static int dirent_add(struct dirents *d, const char *name, size_t len,
		      unsigned flags)
{
	ustate_dirent *grown;
	size_t cap;

	if (d->n && strlen(d->v[d->n - 1].name) == len &&
	    !memcmp(d->v[d->n - 1].name, name, len)) {
		d->v[d->n - 1].flags |= flags;
		return 0;
	}
	if (d->n == d->cap) {
		cap = d->cap ? d->cap * 2 : 32;
		grown = realloc(d->v, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		d->v = grown;
		d->cap = cap;
	}
	d->v[d->n].name = strndup(name, len);
	if (!d->v[d->n].name)
		return -ENOMEM;
	d->v[d->n++].flags = flags;
	return 0;
}

static int dirent_cmp(const void *a, const void *b)
{
	return strcmp(((const ustate_dirent *)a)->name,
		      ((const ustate_dirent *)b)->name);
}

#define READDIR_BATCH 64
#define READDIR_SEEK 4

/*
 * Walk one set below prefix, one child at a time: a name with no further
 * "/" is a child itself; a deeper one names a child with children, whose
 * whole subtree the next seek jumps over (to child + "/" + 0xff). A batch
 * that ended in such a jump asks the next for READDIR_SEEK names only:
 * in a directory of directories, most of a full batch would be names of
 * the subtree jumped over (10,000 subdirectories of 100 keys each: 64
 * names read for every one used).
 */
static int readdir_set(ustate *s, int set, const char *prefix,
		       struct dirents *d)
{
	char after[USTATE_KEY_MAX + 3], **v = NULL;
	size_t plen = strlen(prefix), n = 0, i, clen, batch = READDIR_BATCH;
	bool bounded = false, jumped = false;
	const char *rest, *slash;
	int rc;

	do {
		batch = jumped ? READDIR_SEEK : READDIR_BATCH;
		rc = s->ops->scan(s->be, set, prefix, bounded ? after : NULL,
				  batch, &v, &n);
		if (rc < 0)
			return rc;
		for (i = 0; i < n && rc == 0; i++) {
			if (bounded && strcmp(v[i], after) <= 0)
				continue;
			rest = v[i] + plen;
			slash = strchr(rest, '/');
			clen = slash ? (size_t)(slash - rest) : strlen(rest);
			rc = dirent_add(d, rest, clen,
					slash ? USTATE_NODE_CHILDREN
					: set == USTATE_SCAN_KEYS
						? USTATE_NODE_VALUE
						: USTATE_NODE_RECORD);
			memcpy(after, v[i], plen + clen);
			if (slash) {
				after[plen + clen] = '/';
				after[plen + clen + 1] = (char)0xff;
				after[plen + clen + 2] = '\0';
			} else {
				after[plen + clen] = '\0';
			}
			jumped = slash != NULL;
			bounded = true;
		}
		ustate_list_free(v, n);
	} while (rc == 0 && n == batch);
	return rc;
}

int ustate_readdir(ustate *s, const char *dir, ustate_dirent **out, size_t *n)
{
	char prefix[USTATE_KEY_MAX + 2];
	struct dirents d = {0};
	size_t len, i, j;
	int rc;

	if (!dir || strcmp(dir, "/")) {
		rc = ustate_key_valid(dir);
		if (rc < 0)
			return rc;
		len = strlen(dir);
		memcpy(prefix, dir, len);
		memcpy(prefix + len, "/", 2);
	} else {
		strcpy(prefix, "/");
	}
	rc = readdir_set(s, USTATE_SCAN_KEYS, prefix, &d);
	if (rc == 0)
		rc = readdir_set(s, USTATE_SCAN_DIRS, prefix, &d);
	if (rc < 0) {
		ustate_dirents_free(d.v, d.n);
		return rc;
	}
	/* A name can come from several walks: sort, then merge. */
	if (d.n)
		qsort(d.v, d.n, sizeof(*d.v), dirent_cmp);
	for (i = 0, j = 0; i < d.n; i++) {
		if (j && !strcmp(d.v[j - 1].name, d.v[i].name)) {
			d.v[j - 1].flags |= d.v[i].flags;
			free(d.v[i].name);
		} else {
			d.v[j++] = d.v[i];
		}
	}
	*out = j ? d.v : NULL;
	if (!j)
		free(d.v);
	*n = j;
	return 0;
}

/*
 * ustate_options_get() has two versions in the shared library. A program
 * built against libustate 0.1 has an ustate_options of the version 1 size
 * and calls ustate_options_get@USTATE_0.1, which writes that much only;
 * one built against 0.2 or 0.3 (version 2) calls @USTATE_0.2; programs
 * built since call the default, ustate_options_get@@USTATE_0.4. (A
 * static link takes the default too.)
 */
void ustate_options_get_v1(const ustate *s, ustate_options *out);
void ustate_options_get_v2(const ustate *s, ustate_options *out);
void ustate_options_get_v3(const ustate *s, ustate_options *out);

__asm__(".symver ustate_options_get_v1, ustate_options_get@USTATE_0.1");
void ustate_options_get_v1(const ustate *s, ustate_options *out)
{
	memcpy(out, &s->opts, OPTIONS_V1_SIZE);
	out->version = 1;
}

__asm__(".symver ustate_options_get_v2, ustate_options_get@USTATE_0.2");
void ustate_options_get_v2(const ustate *s, ustate_options *out)
{
	memcpy(out, &s->opts, OPTIONS_V2_SIZE);
	out->version = 2;
}

__asm__(".symver ustate_options_get_v3, ustate_options_get@@USTATE_0.4");
void ustate_options_get_v3(const ustate *s, ustate_options *out)
{
	*out = s->opts;
}

size_t ustate_max_value_size(const ustate *s)
{
	return s->opts.max_value_size;
}

size_t ustate_max_txn_ops(const ustate *s)
{
	return s->opts.max_txn_ops;
}

int ustate_connected(ustate *s)
{
	if (!s->ops->connected)
		return 1;
	return s->ops->connected(s->be) ? 1 : 0;
}

int ustate_barrier(ustate *s)
{
	if (!s->ops->barrier)
		return 0;
	return s->ops->barrier(s->be);
}

uint64_t ustate_revision(ustate *s)
{
	uint64_t rev = 0;

	if (s->ops->revision(s->be, &rev) < 0)
		return 0;
	return rev;
}

/* Wake the dispatcher to read what was committed, if there is one. */
static void kick(ustate *s)
{
	pthread_mutex_lock(&s->wlock);
	if (s->dispatching) {
		s->kicked = true;
		pthread_cond_signal(&s->wcond);
	}
	pthread_mutex_unlock(&s->wlock);
}

static void signal_watch(struct ustate_watch *w);

/*
 * Revisions up to rev were signaled (the dispatcher read them), or rev
 * alone (a local commit): advance s->seen over every revision signaled
 * without a gap. Under wlock.
 */
static void signaled(ustate *s, uint64_t rev, bool alone)
{
	uint64_t d;

	if (rev <= s->seen)
		return;
	if (alone && rev > s->seen + 1) {
		d = rev - s->seen - 2;
		if (d < 64)
			s->ahead |= (uint64_t)1 << d;
		return;
	}
	d = rev - s->seen - 1;
	s->ahead = d < 64 ? s->ahead >> d : 0;
	s->seen = rev;
	while (s->ahead & 1) {
		s->ahead >>= 1;
		s->seen++;
	}
	s->ahead >>= 1;
}

/*
 * After a local commit of ops at revision rev (0: unknown), signal the
 * watches that match one of its keys at once, before the commit returns:
 * a watch of this handle then reads its own writes at once. Each change a
 * commit records names the key or the record of one of its ops, so this
 * signals every watch that must hear of it. A revision is signaled once,
 * by its commit or by the dispatcher, never both: a watch's descriptor
 * polls readable only while an event is there.
 *
 * The dispatcher (two thread switches and two reads of the store later)
 * is then needed only for revisions no local commit signals: commits by
 * other processes, which it looks for every USTATE_POLL_MS anyway, and
 * local commits that cannot signal their own, which wake it: those whose
 * revision is unknown (a single write, which does not read it back), and
 * those with no key write, which may change nothing and be given the
 * current revision. Commits of one group land together and return in any
 * order: each marks its own revision, and the mark advances once the gap
 * before it is filled.
 */
static void dispatch_local(ustate *s, const ustate_op *ops, size_t n,
			   uint64_t rev)
{
	struct ustate_watch *w;
	bool owned = false;
	size_t i;

	for (i = 0; i < n; i++)
		owned |= ustate_op_writes_key(ops[i].type);
	if (!owned || !rev) {
		kick(s);
		return;
	}
	pthread_mutex_lock(&s->wlock);
	/* No watches, or the dispatcher signaled it already. */
	if (!s->dispatching || rev <= s->seen)
		goto out;
	for (w = s->watches; w; w = w->next)
		for (i = 0; i < n; i++)
			if (ustate_pattern_match(w->prefix, w->plen,
						 w->is_prefix, ops[i].key)) {
				signal_watch(w);
				break;
			}
	signaled(s, rev, true);
out:
	pthread_mutex_unlock(&s->wlock);
}

/*
 * The metadata an op carries (META, MKDIR): NULL, or one ustate_meta,
 * which the backend must be able to keep.
 */
static int meta_check(const ustate *s, const ustate_op *op)
{
	const ustate_meta *m = op->value;

	if (!m)
		return 0;
	if (!s->ops->meta_get)
		return -EOPNOTSUPP;
	if (op->value_len == USTATE_META_V1_SIZE)
		return m->mode & ~07777u ? -EINVAL : 0;
	if (op->value_len != sizeof(*m) || (m->mode & ~07777u) ||
	    (m->flags & ~(uint32_t)USTATE_META_MTIME))
		return -EINVAL;
	return 0;
}

/* Whether op carries the owner and mode of libustate 0.4 alone. */
static bool meta_short(const ustate_op *op)
{
	return (op->type == USTATE_OP_META || op->type == USTATE_OP_MKDIR) &&
	       op->value && op->value_len == USTATE_META_V1_SIZE;
}

/*
 * Backends take one size of metadata: a copy of ops in *cp (free it),
 * whose short metadata (USTATE_META_V1_SIZE) is widened into *wide (free
 * it too) with no times; both NULL when no op has any.
 */
static int meta_widen(const ustate_op *ops, size_t n, ustate_op **cp,
		      ustate_meta **wide)
{
	size_t i, k = 0;

	*cp = NULL;
	*wide = NULL;
	for (i = 0; i < n; i++)
		k += meta_short(&ops[i]);
	if (!k)
		return 0;
	*cp = malloc(n * sizeof(**cp));
	*wide = calloc(k, sizeof(**wide));
	if (!*cp || !*wide) {
		free(*cp);
		free(*wide);
		*cp = NULL;
		*wide = NULL;
		return -ENOMEM;
	}
	for (i = 0, k = 0; i < n; i++) {
		(*cp)[i] = ops[i];
		if (!meta_short(&ops[i]))
			continue;
		memcpy(&(*wide)[k], ops[i].value, USTATE_META_V1_SIZE);
		(*cp)[i].value = &(*wide)[k];
		(*cp)[i].value_len = sizeof(**wide);
		k++;
	}
	return 0;
}

/* USTATE_OP_XATTR: which, then "name\0value" (see ustate.h). */
static int xattr_op_check(const ustate *s, const ustate_op *op)
{
	unsigned which = op->version & ~(uint64_t)USTATE_XATTR_REMOVE;
	const char *v = op->value, *nul;
	int rc;

	if (op->version > (USTATE_META_DIR | USTATE_XATTR_REMOVE) ||
	    (which != USTATE_META_KEY && which != USTATE_META_DIR) || !v ||
	    !op->value_len)
		return -EINVAL;
	nul = memchr(v, '\0', op->value_len);
	if (!nul)
		return -EINVAL;
	rc = xattr_name_check(v);
	if (rc < 0)
		return rc;
	if ((op->version & USTATE_XATTR_REMOVE) &&
	    (size_t)(nul - v) + 1 != op->value_len)
		return -EINVAL;
	if (op->value_len - (size_t)(nul - v) - 1 > USTATE_XATTR_SIZE_MAX)
		return -E2BIG;
	return s->ops->xattrs ? 0 : -EOPNOTSUPP;
}

static int op_check(const ustate *s, const ustate_op *op)
{
	int rc;

	/* The root's metadata is kept with a MKDIR of "/" (see ustate.h). */
	if (op->type == USTATE_OP_MKDIR && op->key && !strcmp(op->key, "/"))
		return op->value ? meta_check(s, op) : -EINVAL;
	/* ... and its xattrs with an XATTR of "/" as a directory. */
	if (op->type == USTATE_OP_XATTR && op->key && !strcmp(op->key, "/"))
		return (op->version & ~(uint64_t)USTATE_XATTR_REMOVE) ==
				       USTATE_META_DIR
			       ? xattr_op_check(s, op)
			       : -EINVAL;
	rc = ustate_key_valid(op->key);
	if (rc < 0)
		return rc;
	switch (op->type) {
	case USTATE_OP_CHECK_VERSION:
	case USTATE_OP_CHECK_CHILDREN:
	case USTATE_OP_DELETE:
	case USTATE_OP_RMDIR:
		return 0;
	case USTATE_OP_META:
		if (!s->ops->meta_get)
			return -EOPNOTSUPP;
		return meta_check(s, op);
	case USTATE_OP_MKDIR:
		return meta_check(s, op);
	case USTATE_OP_XATTR:
		return xattr_op_check(s, op);
	case USTATE_OP_SET:
	case USTATE_OP_CREATE:
		if (op->value_len > s->opts.max_value_size)
			return -EFBIG;
		if (op->value_len && !op->value)
			return -EINVAL;
		if (!op->lease)
			return 0;
		rc = ustate_lease_name_valid(op->lease);
		if (rc == 0 && !s->ops->lease_grant)
			rc = -EOPNOTSUPP;
		return rc;
	}
	return -EINVAL;
}

/* ustate_transaction(), with backend flags (USTATE_TXN_*). */
static int txn_run(ustate *s, const ustate_op *ops, size_t n,
		   ustate_txn_result *res, unsigned flags)
{
	ustate_txn_result local = {0};
	uint64_t one, *heap = NULL;
	ustate_meta *wide;
	ustate_op *cp;
	bool writes = false;
	size_t i;
	int rc;

	if (!res)
		res = &local;
	res->failed = 0;
	res->found = 0;
	if (n > s->opts.max_txn_ops)
		return -E2BIG;
	if (n && !ops)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		rc = op_check(s, &ops[i]);
		if (rc < 0) {
			res->failed = i;
			return rc;
		}
		writes |= ops[i].type != USTATE_OP_CHECK_VERSION &&
			  ops[i].type != USTATE_OP_CHECK_CHILDREN;
	}
	if (writes && s->opts.read_only)
		return -EROFS;
	if (n == 0) {
		res->revision = ustate_revision(s);
		return 0;
	}

	if (!res->versions) {
		if (n == 1) {
			res->versions = &one;
		} else {
			heap = calloc(n, sizeof(*heap));
			if (!heap)
				return -ENOMEM;
			res->versions = heap;
		}
	}
	rc = meta_widen(ops, n, &cp, &wide);
	if (rc == 0)
		rc = s->ops->txn(s->be, cp ? cp : ops, n, res, flags);
	free(cp);
	free(wide);
	if (res->versions == &one || res->versions == heap)
		res->versions = NULL;
	free(heap);
	if (rc == 0 && writes)
		dispatch_local(s, ops, n,
			       flags & USTATE_TXN_NO_REVISION ? 0
							      : res->revision);
	return rc;
}

/*
 * ustate_transaction() has two versions in the shared library: libustate
 * 0.3 appended ustate_op.lease, so a program built before passes arrays of
 * the shorter op of struct ustate_op_v1 to ustate_transaction@USTATE_0.1,
 * which copies them into ops without a lease. Programs built since (and
 * static links) call ustate_transaction@@USTATE_0.3.
 */
struct ustate_op_v1 {
	ustate_op_type type;
	const char *key;
	uint64_t version;
	const void *value;
	size_t value_len;
};

int ustate_transaction_v1(ustate *s, const struct ustate_op_v1 *ops, size_t n,
			  ustate_txn_result *res);
int ustate_transaction_v3(ustate *s, const ustate_op *ops, size_t n,
			  ustate_txn_result *res);

__asm__(".symver ustate_transaction_v1, ustate_transaction@USTATE_0.1");
int ustate_transaction_v1(ustate *s, const struct ustate_op_v1 *ops, size_t n,
			  ustate_txn_result *res)
{
	ustate_op *cp;
	size_t i;
	int rc;

	if (n > s->opts.max_txn_ops || (n && !ops))
		return txn_run(s, NULL, n, res, 0);
	cp = calloc(n ? n : 1, sizeof(*cp));
	if (!cp)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		cp[i] = (ustate_op){.type = ops[i].type,
				    .key = ops[i].key,
				    .version = ops[i].version,
				    .value = ops[i].value,
				    .value_len = ops[i].value_len};
	rc = txn_run(s, cp, n, res, 0);
	free(cp);
	return rc;
}

__asm__(".symver ustate_transaction_v3, ustate_transaction@@USTATE_0.3");
int ustate_transaction_v3(ustate *s, const ustate_op *ops, size_t n,
			  ustate_txn_result *res)
{
	return txn_run(s, ops, n, res, 0);
}

/* One-op transactions: the single code path every write takes. */
static int write_one(ustate *s, const ustate_op *op, uint64_t *version,
		     bool found_on_error)
{
	ustate_txn_result res = {.versions = NULL};
	uint64_t v = 0;
	int rc;

	res.versions = &v;
	rc = txn_run(s, op, 1, &res, USTATE_TXN_NO_REVISION);
	if (version && rc == 0)
		*version = v;
	else if (version && found_on_error &&
		 (rc == -ECANCELED || rc == -EEXIST))
		*version = res.found;
	return rc;
}

int ustate_set_leased(ustate *s, const char *key, const void *val, size_t len,
		      const char *lease, uint64_t *version)
{
	ustate_op op = {.type = USTATE_OP_SET,
			.key = key,
			.value = val,
			.value_len = len,
			.lease = lease};

	return write_one(s, &op, version, false);
}

int ustate_set(ustate *s, const char *key, const void *val, size_t len,
	       uint64_t *version)
{
	ustate_op op = {.type = USTATE_OP_SET,
			.key = key,
			.value = val,
			.value_len = len};

	return write_one(s, &op, version, false);
}

int ustate_delete(ustate *s, const char *key)
{
	ustate_op op = {.type = USTATE_OP_DELETE, .key = key};

	return write_one(s, &op, NULL, false);
}

int ustate_create_if_not_exists(ustate *s, const char *key, const void *val,
				size_t len, uint64_t *version)
{
	ustate_op op = {.type = USTATE_OP_CREATE,
			.key = key,
			.value = val,
			.value_len = len};

	return write_one(s, &op, version, true);
}

int ustate_compare_and_set(ustate *s, const char *key, uint64_t expected,
			   const void *val, size_t len, uint64_t *version)
{
	ustate_op ops[2] = {
		{.type = USTATE_OP_CHECK_VERSION,
		 .key = key,
		 .version = expected},
		{.type = USTATE_OP_SET,
		 .key = key,
		 .value = val,
		 .value_len = len},
	};
	ustate_txn_result res = {0};
	uint64_t v[2] = {0, 0};
	int rc;

	res.versions = v;
	rc = ustate_transaction(s, ops, 2, &res);
	if (version && rc == 0)
		*version = v[1];
	else if (version && rc == -ECANCELED)
		*version = res.found;
	return rc;
}

/* ---- administration --------------------------------------------------- */

/*
 * The xattrs of path as records carry them: *x (free it, and *blob) of
 * *n, pointing into *blob.
 */
static int xattrs_of(ustate *s, const char *path, unsigned which,
		     ustate_xattr **x, size_t *n, void **blob)
{
	size_t len, off = 0, k = 0;
	const char *name;
	const void *v;
	size_t vlen;
	int rc;

	*x = NULL;
	*n = 0;
	rc = xattrs_read(s, path, which, blob, &len);
	if (rc < 0 || !*blob)
		return rc;
	while (ustate_xattr_entry(*blob, len, &off, &name, &v, &vlen) == 1)
		k++;
	*x = calloc(k ? k : 1, sizeof(**x));
	if (!*x)
		return -ENOMEM;
	for (off = 0; *n < k; (*n)++) {
		ustate_xattr_entry(*blob, len, &off, &name, &v, &vlen);
		(*x)[*n] = (ustate_xattr){
			.name = name, .value = v, .value_len = vlen};
	}
	return 0;
}

/* The root's DIR record, first in an export of "" or "/" when it has any. */
static int export_root(ustate *s, ustate_export_fn fn, void *arg)
{
	ustate_record r = {.type = USTATE_RECORD_DIR, .key = "/"};
	ustate_xattr *x = NULL;
	void *blob = NULL;
	ustate_meta m;
	int rc;

	rc = ustate_meta_get_v5(s, "/", USTATE_META_DIR, &m);
	if (rc == 0)
		r.meta = &m;
	else if (rc != -ENOENT)
		return rc;
	rc = xattrs_of(s, "/", USTATE_META_DIR, &x, &r.nxattrs, &blob);
	r.xattrs = x;
	if (rc == 0 && (r.meta || r.nxattrs))
		rc = fn(arg, &r);
	free(x);
	free(blob);
	return rc;
}

/*
 * ustate_export() has two versions in the shared library: libustate 0.6
 * added LEASE records, so a program built before calls
 * ustate_export@USTATE_0.1, which passes its function every record but
 * those. Programs built since call ustate_export@@USTATE_0.6.
 */
int ustate_export_v1(ustate *s, const char *prefix, ustate_export_fn fn,
		     void *arg);
int ustate_export_v6(ustate *s, const char *prefix, ustate_export_fn fn,
		     void *arg);

/* An old program's function, and its argument. */
struct export_v1 {
	ustate_export_fn fn;
	void *arg;
};

static int export_v1_record(void *arg, const ustate_record *r)
{
	const struct export_v1 *x = arg;

	return r->type == USTATE_RECORD_LEASE ? 0 : x->fn(x->arg, r);
}

__asm__(".symver ustate_export_v1, ustate_export@USTATE_0.1");
int ustate_export_v1(ustate *s, const char *prefix, ustate_export_fn fn,
		     void *arg)
{
	struct export_v1 x = {.fn = fn, .arg = arg};

	if (!fn)
		return -EINVAL;
	return ustate_export_v6(s, prefix, export_v1_record, &x);
}

__asm__(".symver ustate_export_v6, ustate_export@@USTATE_0.6");
int ustate_export_v6(ustate *s, const char *prefix, ustate_export_fn fn,
		     void *arg)
{
	int rc = ustate_prefix_valid(prefix);

	if (rc < 0)
		return rc;
	if (!fn)
		return -EINVAL;
	if (!s->ops->export)
		return -EOPNOTSUPP;
	if (!strcmp(prefix, "") || !strcmp(prefix, "/")) {
		rc = export_root(s, fn, arg);
		if (rc < 0)
			return rc;
	}
	return s->ops->export(s->be, prefix, fn, arg);
}

/* The caller's records, checked, on their way to a backend's restore. */
struct restore_feed {
	ustate *s;
	ustate_import_fn next;
	void *arg;
	ustate_restore_result *res;
};

/* A record's metadata and xattrs, as a META and XATTRs would be checked. */
static int record_meta_check(const ustate *s, const ustate_record *r)
{
	size_t i, total = 0, nlen;
	int rc;

	if (r->meta && ((r->meta->mode & ~07777u) ||
			(r->meta->flags & ~(uint32_t)USTATE_META_MTIME)))
		return -EINVAL;
	if (r->type == USTATE_RECORD_LEASE)
		return r->nxattrs ? -EINVAL : 0;
	if ((r->meta || r->nxattrs) && !s->ops->meta_get)
		return -EOPNOTSUPP;
	if (r->nxattrs && (!r->xattrs || !s->ops->xattrs))
		return r->xattrs ? -EOPNOTSUPP : -EINVAL;
	for (i = 0; i < r->nxattrs; i++) {
		rc = xattr_name_check(r->xattrs[i].name);
		if (rc < 0)
			return rc;
		if (r->xattrs[i].value_len > USTATE_XATTR_SIZE_MAX)
			return -E2BIG;
		if (r->xattrs[i].value_len && !r->xattrs[i].value)
			return -EINVAL;
		/* In byte order, each name once. */
		if (i && strcmp(r->xattrs[i - 1].name, r->xattrs[i].name) >= 0)
			return -EINVAL;
		nlen = strlen(r->xattrs[i].name) + 1;
		total += nlen + r->xattrs[i].value_len;
	}
	return total > USTATE_XATTR_TOTAL_MAX ? -ENOSPC : 0;
}

static int restore_next(void *arg, ustate_record *r)
{
	struct restore_feed *f = arg;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = f->next(f->arg, r);
	if (rc <= 0)
		return rc;
	rc = record_meta_check(f->s, r);
	if (rc < 0)
		return rc;
	/* The root's metadata comes as a DIR record of "/" (no record). */
	if (r->type == USTATE_RECORD_DIR && r->key && !strcmp(r->key, "/")) {
		f->res->dirs++;
		return 1;
	}
	if (r->type == USTATE_RECORD_LEASE) {
		rc = ustate_lease_name_valid(r->key);
		if (rc < 0)
			return rc;
		if (r->ttl < 1 || r->ttl > USTATE_LEASE_TTL_MAX)
			return -EINVAL;
		return f->s->ops->lease_grant ? 1 : -EOPNOTSUPP;
	}
	rc = ustate_key_valid(r->key);
	if (rc < 0)
		return rc;
	switch (r->type) {
	case USTATE_RECORD_KEY:
		if (r->version == 0 || r->version > INT64_MAX)
			return -EINVAL;
		if (r->lease) {
			rc = ustate_lease_name_valid(r->lease);
			if (rc < 0)
				return rc;
			if (!f->s->ops->lease_grant)
				return -EOPNOTSUPP;
		}
		if (r->value_len > f->s->opts.max_value_size)
			return -EFBIG;
		if (r->value_len && !r->value)
			return -EINVAL;
		f->res->keys++;
		return 1;
	case USTATE_RECORD_DIR:
		f->res->dirs++;
		return 1;
	case USTATE_RECORD_LEASE:
		break;
	}
	return -EINVAL;
}

int ustate_restore(ustate *s, ustate_import_fn next, void *arg, unsigned flags,
		   ustate_restore_result *res)
{
	ustate_restore_result local = {0};
	struct restore_feed f = {
		.s = s, .next = next, .arg = arg, .res = &local};
	int rc;

	if (!next ||
	    (flags & ~(USTATE_RESTORE_MERGE | USTATE_RESTORE_REPLACE)) ||
	    flags == (USTATE_RESTORE_MERGE | USTATE_RESTORE_REPLACE))
		return -EINVAL;
	if (s->opts.read_only)
		return -EROFS;
	if (!s->ops->restore)
		return -EOPNOTSUPP;
	rc = s->ops->restore(s->be, restore_next, &f, flags, &local);
	if (rc < 0)
		return rc;
	if (local.written || local.deleted)
		kick(s);
	if (res)
		*res = local;
	return 0;
}

/* fsync a file or directory by name. */
static int sync_path(const char *path, int flags)
{
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | flags);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Rename a finished copy to path, durably; replace a file only if force. */
static int put_in_place(const char *tmp, const char *path, bool force)
{
	char *dir;
	int rc = 0;

	if (force) {
		if (rename(tmp, path) < 0)
			return -errno;
	} else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) <
		   0) {
		/* A file system without RENAME_NOREPLACE: link() never
		 * replaces either. */
		if (errno != EINVAL)
			return -errno;
		if (link(tmp, path) < 0)
			return -errno;
		unlink(tmp);
	}
	dir = strdup(path);
	if (!dir)
		return -ENOMEM;
	rc = sync_path(dirname(dir), O_DIRECTORY);
	free(dir);
	return rc;
}

int ustate_backup(ustate *s, const char *path, unsigned flags,
		  ustate_progress_fn progress, void *arg)
{
	bool force = flags & USTATE_BACKUP_FORCE;
	struct stat st;
	char *tmp;
	int fd, rc;

	if (!path || !*path || (flags & ~USTATE_BACKUP_FORCE))
		return -EINVAL;
	if (!s->ops->backup)
		return -EOPNOTSUPP;
	/* Fail before the copy when we can; the rename decides for good. */
	if (!force && lstat(path, &st) == 0)
		return -EEXIST;
	if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600 */
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	/* Closed at once: closing it later would drop SQLite's locks. */
	close(fd);
	rc = s->ops->backup(s->be, tmp, progress, arg);
	if (rc == 0)
		rc = sync_path(tmp, 0);
	if (rc == 0)
		rc = put_in_place(tmp, path, force);
	if (rc < 0)
		unlink(tmp);
out:
	free(tmp);
	return rc;
}

/* Counts the problems of a check on their way to the caller's fn. */
struct problems {
	ustate_problem_fn fn;
	void *arg;
	int n;
};

static int count_problem(void *arg, const ustate_problem *p)
{
	struct problems *c = arg;

	if (c->n < INT_MAX)
		c->n++;
	return c->fn ? c->fn(c->arg, p) : 0;
}

int ustate_check(ustate *s, ustate_problem_fn fn, void *arg)
{
	struct problems c = {fn, arg, 0};
	int rc;

	if (!s->ops->check)
		return -EOPNOTSUPP;
	rc = s->ops->check(s->be, count_problem, &c);
	return rc < 0 ? rc : c.n;
}

int ustate_compact(ustate *s, uint64_t revision, uint64_t *removed)
{
	if (revision == 0)
		return -EINVAL;
	if (s->opts.read_only)
		return -EROFS;
	if (!s->ops->compact)
		return -EOPNOTSUPP;
	return s->ops->compact(s->be, revision, removed);
}

/* ---- watches ---------------------------------------------------------- */

/* Make w's descriptor readable. */
static void signal_watch(struct ustate_watch *w)
{
	static const uint64_t one = 1;

	if (write(w->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: already readable */
	}
}

/* Whether revision rev was signaled already (by its commit). Under wlock. */
static bool was_signaled(const ustate *s, uint64_t rev)
{
	uint64_t d;

	if (rev <= s->seen)
		return true;
	if (rev == s->seen + 1)
		return false;
	d = rev - s->seen - 2;
	return d < 64 && (s->ahead & ((uint64_t)1 << d));
}

/*
 * Signal the watches that changes c concern, but for revisions signaled
 * already; every watch when all. Under wlock.
 */
static void signal_matching(ustate *s, const struct ustate_change *c, size_t n,
			    bool all)
{
	struct ustate_watch *w;
	size_t i;

	for (w = s->watches; w; w = w->next) {
		for (i = 0; i < n && !all; i++)
			if (!was_signaled(s, c[i].revision) &&
			    ustate_pattern_match(w->prefix, w->plen,
						 w->is_prefix, c[i].key))
				break;
		if (all || i < n)
			signal_watch(w);
	}
}

/*
 * The dispatcher: reads the changes after the last revision signaled,
 * when kicked or every USTATE_POLL_MS, and signals the watches they
 * concern. When the changes are too many to look at, or trimmed, it
 * wakes every watch and lets each find out.
 */
static void *dispatch(void *arg)
{
	ustate *s = arg;
	uint64_t from, oldest, last;
	struct ustate_change *c;
	struct timespec until;
	size_t n;
	bool all;

	pthread_mutex_lock(&s->wlock);
	while (!s->stopping) {
		if (!s->kicked) {
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_nsec += USTATE_POLL_MS * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&s->wcond, &s->wlock, &until);
			if (s->stopping)
				break;
		}
		s->kicked = false;
		from = s->seen;
		pthread_mutex_unlock(&s->wlock);

		c = NULL;
		n = 0;
		/*
		 * Nothing new, unless the history was trimmed past from with
		 * nothing kept after it (etcd compacted while its watch was
		 * cut off): the watches reading there must still hear of it,
		 * and from must move on, or it stays stuck there for good.
		 */
		if (s->ops->history(s->be, from + 1, 0, DISPATCH_BATCH, &c, &n,
				    &oldest) < 0 ||
		    (!n && oldest <= from + 1)) {
			pthread_mutex_lock(&s->wlock);
			continue;
		}
		/*
		 * A full batch may end inside a revision: every watch is
		 * woken then, so going on after it loses nothing.
		 */
		all = n == DISPATCH_BATCH || oldest > from + 1;
		last = n ? c[n - 1].revision : oldest - 1;
		pthread_mutex_lock(&s->wlock);
		signal_matching(s, c, n, all);
		ustate_changes_free(c, n);
		signaled(s, last, false);
	}
	pthread_mutex_unlock(&s->wlock);
	return NULL;
}

int ustate_watch_open(ustate_watch **out, ustate *s, const char *pattern,
		      uint64_t start_revision)
{
	struct ustate_change *c = NULL;
	ustate_watch *w, **pp;
	uint64_t oldest, rev;
	size_t n = 0;
	int rc;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->s = s;
	rc = ustate_pattern_parse(pattern, w->prefix, &w->is_prefix);
	if (rc < 0)
		goto fail_free;
	w->plen = strlen(w->prefix);
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		rc = -errno;
		goto fail_free;
	}

	/*
	 * Join the list first, so no commit after the cursor is unsignaled;
	 * the dispatcher starts from a revision read before the watch's own.
	 */
	pthread_mutex_lock(&s->wlock);
	if (!s->dispatching) {
		rc = s->ops->revision(s->be, &s->seen);
		if (rc == 0 && s->ops->watch_from)
			rc = s->ops->watch_from(s->be, s->seen + 1);
		if (rc == 0)
			rc = -pthread_create(&s->dispatcher, NULL, dispatch, s);
		if (rc < 0) {
			pthread_mutex_unlock(&s->wlock);
			goto fail_fd;
		}
		s->dispatching = true;
	}
	w->next = s->watches;
	s->watches = w;
	pthread_mutex_unlock(&s->wlock);

	rc = s->ops->revision(s->be, &rev);
	if (rc < 0)
		goto fail_unlink;
	if (start_revision == 0) {
		w->rev = rev + 1;
	} else {
		rc = s->ops->history(s->be, start_revision, 0, 0, &c, &n,
				     &oldest);
		ustate_changes_free(c, n);
		if (rc < 0)
			goto fail_unlink;
		if (start_revision < oldest && start_revision <= rev) {
			rc = -ENODATA;
			goto fail_unlink;
		}
		w->rev = start_revision;
		/* History to replay: readable at once. */
		if (start_revision <= rev)
			eventfd_write(w->efd, 1);
	}
	*out = w;
	return 0;

fail_unlink:
	pthread_mutex_lock(&s->wlock);
	for (pp = &s->watches; *pp != w; pp = &(*pp)->next)
		;
	*pp = w->next;
	pthread_mutex_unlock(&s->wlock);
fail_fd:
	close(w->efd);
fail_free:
	free(w);
	return rc;
}

int ustate_watch_fd(ustate_watch *w)
{
	return w->efd;
}

void ustate_watch_close(ustate_watch *w)
{
	ustate_watch **pp;
	ustate *s;

	if (!w)
		return;
	s = w->s;
	pthread_mutex_lock(&s->wlock);
	for (pp = &s->watches; *pp && *pp != w; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = w->next;
	pthread_mutex_unlock(&s->wlock);
	ustate_changes_free(w->buf, w->nbuf);
	close(w->efd);
	free(w);
}

/* Take the next buffered change that matches; false when the batch is out. */
static bool next_buffered(ustate_watch *w, ustate_event *ev)
{
	struct ustate_change *c;

	while (w->pos < w->nbuf) {
		c = &w->buf[w->pos++];
		if (c->revision == w->rev) {
			w->skip++;
		} else {
			w->rev = c->revision;
			w->skip = 1;
		}
		if (!ustate_pattern_match(w->prefix, w->plen, w->is_prefix,
					  c->key))
			continue;
		ev->type = c->type;
		ev->version = c->version;
		ev->revision = c->revision;
		strcpy(ev->key, c->key);
		return true;
	}
	return false;
}

/* Refill the batch from the history; -EOVERFLOW if it was trimmed. */
static int refill(ustate_watch *w)
{
	uint64_t oldest;
	int rc;

	/*
	 * A revision is committed whole, so a short batch held all of every
	 * revision in it: resume after the last one, which also keeps the
	 * cursor clear of a later trim of revisions already read.
	 */
	if (w->nbuf && w->nbuf < WATCH_BATCH) {
		w->rev = w->buf[w->nbuf - 1].revision + 1;
		w->skip = 0;
	}
	ustate_changes_free(w->buf, w->nbuf);
	w->buf = NULL;
	w->nbuf = w->pos = 0;
	rc = w->s->ops->history(w->s->be, w->rev, w->skip, WATCH_BATCH, &w->buf,
				&w->nbuf, &oldest);
	if (rc < 0)
		return rc;
	if (w->rev < oldest) {
		w->overflow = true;
		return -EOVERFLOW;
	}
	return 0;
}

int ustate_watch_next(ustate_watch *w, ustate_event *ev, int timeout_ms)
{
	struct timespec start, now;
	struct pollfd pfd;
	uint64_t drain;
	long waited;
	int rc;

	if (w->overflow)
		return -EOVERFLOW;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (next_buffered(w, ev))
			return 0;
		/* Clear the fd before reading, so no later signal is lost. */
		if (read(w->efd, &drain, sizeof(drain)) < 0) {
			/* EAGAIN: nothing was signalled */
		}
		rc = refill(w);
		if (rc < 0)
			return rc;
		if (w->nbuf)
			continue;
		if (timeout_ms == 0)
			return -EAGAIN;
		waited = 0;
		if (timeout_ms > 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			waited = (now.tv_sec - start.tv_sec) * 1000 +
				 (now.tv_nsec - start.tv_nsec) / 1000000;
			if (waited >= timeout_ms)
				return -EAGAIN;
		}
		pfd = (struct pollfd){.fd = w->efd, .events = POLLIN};
		rc = poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms - waited);
		if (rc < 0 && errno == EINTR)
			return -EINTR;
	}
}

/* ---- leases ------------------------------------------------------------ */

#define LEASE_POLL_MS 500 /* how often to look for deadlines others set */

int ustate_lease_name_valid(const char *name)
{
	char key[USTATE_SEGMENT_MAX + 3];
	size_t len;

	if (!name || strchr(name, '/'))
		return -EINVAL;
	len = strnlen(name, USTATE_SEGMENT_MAX + 1);
	if (len > USTATE_SEGMENT_MAX)
		return -ENAMETOOLONG;
	key[0] = '/';
	memcpy(key + 1, name, len + 1);
	return ustate_key_valid(key);
}

/*
 * Expire what is overdue now and wake the watches' dispatcher, which
 * reads the deletions like any commit. *next gets the next deadline.
 */
static int leases_expire(ustate *s, int64_t *next)
{
	unsigned expired = 0;
	int rc;

	rc = s->ops->lease_expire(s->be, ustate_clock_ms(), &expired, next);
	if (expired)
		kick(s);
	return rc;
}

int ustate_lease_expire_now(ustate *s)
{
	int64_t next;

	if (s->opts.read_only || !s->ops->lease_expire)
		return 0;
	return leases_expire(s, &next);
}

/*
 * The expiry thread of a writable store: it expires each lease within
 * LEASE_POLL_MS of its deadline (or of the time another process set it)
 * until ustate_close() stops it. An error (a busy database, a file
 * deleted underneath) is logged when it first happens and tried again at
 * every turn.
 */
static void *lease_thread(void *arg)
{
	ustate *s = arg;
	struct timespec ts;
	int64_t next, now, wait;
	int rc, last = 0;

	pthread_mutex_lock(&s->llock);
	while (!s->lstop) {
		pthread_mutex_unlock(&s->llock);
		next = INT64_MAX;
		rc = ustate_expiry_paused() ? 0 : leases_expire(s, &next);
		/* Once per kind of failure, not twice a second. */
		if (rc < 0 && rc != last)
			ustate_log(&s->opts, LOG_WARNING,
				   "lease expiry: %s (tried again)",
				   ustate_strerror(rc));
		last = rc;
		now = ustate_clock_ms();
		wait = next > now ? next - now : 0;
		if (wait > LEASE_POLL_MS || rc < 0)
			wait = LEASE_POLL_MS;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += wait / 1000;
		ts.tv_nsec += (wait % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&s->llock);
		if (!s->lstop)
			pthread_cond_timedwait(&s->lcond, &s->llock, &ts);
	}
	pthread_mutex_unlock(&s->llock);
	return NULL;
}

/*
 * At the open of a writable store whose backend has leases: expire what
 * ran out while it was closed, before the opener can write, then start
 * the thread that expires the rest.
 */
static int leases_start(ustate *s)
{
	int64_t next;
	int rc;

	if (s->opts.read_only || !s->ops->lease_expire)
		return 0;
	rc = leases_expire(s, &next);
	if (rc < 0)
		return rc;
	rc = -pthread_create(&s->lease_thread, NULL, lease_thread, s);
	if (rc == 0)
		s->leasing = true;
	return rc;
}

/* The checks every lease call makes, name and backend. */
static int lease_check(ustate *s, const char *name, bool writes)
{
	int rc = ustate_lease_name_valid(name);

	if (rc < 0)
		return rc;
	if (!s->ops->lease_grant)
		return -EOPNOTSUPP;
	if (writes && s->opts.read_only)
		return -EROFS;
	return 0;
}

int ustate_lease_grant_owned(ustate *s, const char *name, int64_t ttl,
			     const ustate_meta *owner, ustate_lease_info **out)
{
	int rc = lease_check(s, name, true);

	if (rc < 0)
		return rc;
	if (ttl < 1 || ttl > USTATE_LEASE_TTL_MAX)
		return -EINVAL;
	if (owner && owner->mode > 07777)
		return -EINVAL;
	rc = s->ops->lease_grant(s->be, name, ttl, owner, ustate_clock_ms(),
				 out);
	/* Leases it found overdue may have taken keys with them. */
	kick(s);
	return rc;
}

int ustate_lease_grant(ustate *s, const char *name, int64_t ttl,
		       ustate_lease_info **out)
{
	return ustate_lease_grant_owned(s, name, ttl, NULL, out);
}

int ustate_lease_set_owner(ustate *s, const char *name,
			   const ustate_meta *owner)
{
	int rc = lease_check(s, name, true);

	if (rc < 0)
		return rc;
	if (!owner || owner->mode > 07777)
		return -EINVAL;
	if (!s->ops->lease_owner)
		return -EOPNOTSUPP;
	rc = s->ops->lease_owner(s->be, name, owner, ustate_clock_ms());
	kick(s);
	return rc;
}

int ustate_lease_keepalive(ustate *s, const char *name, ustate_lease_info **out)
{
	int rc = lease_check(s, name, true);

	if (rc < 0)
		return rc;
	rc = s->ops->lease_keepalive(s->be, name, ustate_clock_ms(), out);
	kick(s);
	return rc;
}

int ustate_lease_revoke(ustate *s, const char *name)
{
	uint64_t rev = 0;
	int rc = lease_check(s, name, true);

	if (rc < 0)
		return rc;
	rc = s->ops->lease_revoke(s->be, name, ustate_clock_ms(), &rev);
	kick(s);
	return rc;
}

int ustate_lease_get(ustate *s, const char *name, ustate_lease_info **out)
{
	int rc = lease_check(s, name, false);

	if (rc < 0)
		return rc;
	if (!out)
		return -EINVAL;
	return s->ops->lease_get(s->be, name, ustate_clock_ms(), out);
}

int ustate_lease_list(ustate *s, char ***names, size_t *n)
{
	if (!names || !n)
		return -EINVAL;
	if (!s->ops->lease_list)
		return -EOPNOTSUPP;
	return s->ops->lease_list(s->be, ustate_clock_ms(), names, n);
}
