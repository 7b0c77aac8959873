/* SPDX-License-Identifier: MIT */
/*
 * This file implements the differential fuzz target of the two backends.
 * Each input decodes into a sequence of operations (set, delete,
 * compare-and-set, create, transactions of up to MAX_OPS + 1 ops of every
 * type, get, exists, version, list, node, readdir, list_dirs, a /.txn
 * script, a watch replay, a watch read while writes go on, a burst of
 * writes into one directory) on keys drawn mostly from a few segments, so
 * that they collide, nest and sort next to each other, and sometimes
 * invalid or at the length limits. Every operation runs on a fresh memory
 * store and on a fresh SQLite store (a file in a tmpfs directory); the
 * target aborts on any difference in a return code, an output (versions,
 * values, mod revisions, names, flags, the failing op and the version
 * found, the reply of a script, the events of a watch) or the store
 * revision, and at the end compares both stores whole and the change
 * history that both must still hold (the last HISTORY revisions; SQLite
 * trims in batches and may hold more). Times may differ by a second or
 * two (each store reads the clock itself). With FUZZ_TRACE=1 in the
 * environment it prints each operation and its outcome
 * (tests/fuzz/make_diff_seeds.py writes inputs from such sequences).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_i.h"

#define MAX_VALUE 48 /* small, so that -EFBIG is in reach */
#define MAX_OPS 6    /* small, so that -E2BIG is in reach */
#define HISTORY 64   /* small, so that inputs trim the history */
#define KEY_BUF (USTATE_KEY_MAX + 64)
#define VALUE_BUF (MAX_VALUE + 16)

enum op_code {
	OP_SET,
	OP_DELETE,
	OP_CAS,
	OP_CREATE,
	OP_GET,
	OP_EXISTS,
	OP_VERSION,
	OP_LIST,
	OP_TXN,
	OP_NODE,
	OP_READDIR,
	OP_LIST_DIRS,
	OP_REVISION,
	OP_SCRIPT,
	OP_WATCH,
	OP_FILL,
	OP_WATCH_OPEN,
	OP_WATCH_READ,
	OP_COUNT
};

struct stores {
	ustate *m;	       /* memory */
	ustate *q;	       /* SQLite */
	size_t step;	       /* index of the operation, for messages */
	bool trace;	       /* print each operation */
	ustate_watch *wm, *wq; /* a watch kept open across operations */
};

static const char *const op_names[OP_COUNT] = {
	[OP_SET] = "set",
	[OP_DELETE] = "delete",
	[OP_CAS] = "cas",
	[OP_CREATE] = "create",
	[OP_GET] = "get",
	[OP_EXISTS] = "exists",
	[OP_VERSION] = "version",
	[OP_LIST] = "list",
	[OP_TXN] = "txn",
	[OP_NODE] = "node",
	[OP_READDIR] = "readdir",
	[OP_LIST_DIRS] = "list_dirs",
	[OP_REVISION] = "revision",
	[OP_SCRIPT] = "script",
	[OP_WATCH] = "watch",
	[OP_FILL] = "fill",
	[OP_WATCH_OPEN] = "watch_open",
	[OP_WATCH_READ] = "watch_read",
};

/* Print what an operation did, when tracing. */
static void trace(const struct stores *st, enum op_code code, const char *arg,
		  int rc)
{
	if (st->trace)
		fprintf(stderr, "%zu %s \"%.80s\" -> %d (revision %llu)\n",
			st->step, op_names[code], arg, rc,
			(unsigned long long)ustate_revision(st->m));
}

/* Segments that collide, and sort around "/" ('-' '.' < '/' < '0'). */
static const char *const segs[] = {
	"a", "b", "c", "ab", "a b", "a.b", "a-", "a0", "\xc3\xa9", "*", "~",
};

static const char *const odd_keys[] = {
	"",	  "/",	   "//a",     "/a/",	   "/a//b", "/a/.value",
	"/.txn",  "a",	   "/a/../b", "/\xff",	   "/a\n",  " /a",
	"/a/./b", "/\xc3", "/a/..",   "/\xc2\x85",
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static void decode_key(struct fuzz_in *in, char *buf)
{
	unsigned b = fuzz_byte(in), depth, i, n, c;
	size_t len = 0;

	switch (b % 16) {
	case 13: /* raw bytes, NUL-free */
		n = fuzz_byte(in) % 24;
		for (i = 0; i < n; i++) {
			c = fuzz_byte(in);
			buf[len++] = c ? (char)c : '/';
		}
		buf[len] = '\0';
		return;
	case 14:
		strcpy(buf, odd_keys[fuzz_byte(in) % ARRAY_SIZE(odd_keys)]);
		return;
	case 15: /* at the limits: a segment of 250..259 bytes, or ... */
		c = fuzz_byte(in);
		if (c % 2 == 0) {
			n = 250 + (c >> 1) % 10;
			buf[len++] = '/';
			memset(buf + len, 'x', n);
			len += n;
		} else {
			/* ... 8 segments of 255 (2048 bytes), -1, +0 or +1 */
			for (i = 0; i < 8; i++) {
				buf[len++] = '/';
				memset(buf + len, 'a' + i, 255);
				len += 255;
			}
			if ((c >> 1) % 3 == 0)
				len--;
			else if ((c >> 1) % 3 == 2)
				buf[len++] = 'y';
		}
		buf[len] = '\0';
		return;
	}
	depth = 1 + (b >> 4) % 3;
	for (i = 0; i < depth; i++) {
		buf[len++] = '/';
		strcpy(buf + len, segs[fuzz_byte(in) % ARRAY_SIZE(segs)]);
		len += strlen(buf + len);
	}
}

/* A list prefix made from a key: "", "/", KEY, KEY/, KEY minus a byte. */
static void decode_prefix(struct fuzz_in *in, char *buf)
{
	unsigned b = fuzz_byte(in) % 6;
	size_t len;

	if (b < 2) {
		strcpy(buf, b ? "/" : "");
		return;
	}
	decode_key(in, buf);
	len = strlen(buf);
	if (b == 3 && len < KEY_BUF - 2)
		strcpy(buf + len, "/");
	else if (b == 4 && len)
		buf[len - 1] = '\0';
}

/* A path for node and readdir: the root or a key. */
static void decode_path(struct fuzz_in *in, char *buf)
{
	if (fuzz_byte(in) % 4 == 0)
		strcpy(buf, "/");
	else
		decode_key(in, buf);
}

/* A value of up to MAX_VALUE + 7 bytes: those over the maximum fail. */
static size_t decode_value(struct fuzz_in *in, char *buf)
{
	size_t len = fuzz_byte(in) % (MAX_VALUE + 8), i;

	for (i = 0; i < len; i++)
		buf[i] = (char)fuzz_byte(in);
	return len;
}

#define SAME(st, a, b, what)                                                   \
	FUZZ_CHECK((a) == (b), "step %zu, %s: memory %lld, sqlite %lld",       \
		   (st)->step, what, (long long)(a), (long long)(b))

static int near(int64_t a, int64_t b)
{
	return a - b <= 2 && b - a <= 2;
}

static void same_names(struct stores *st, char **a, size_t na, char **b,
		       size_t nb, const char *what)
{
	size_t i;

	SAME(st, na, nb, what);
	for (i = 0; i < na; i++)
		FUZZ_CHECK(!strcmp(a[i], b[i]), "step %zu, %s: %s against %s",
			   st->step, what, a[i], b[i]);
}

static void do_write(struct stores *st, enum op_code code, struct fuzz_in *in)
{
	char key[KEY_BUF], val[VALUE_BUF];
	uint64_t vm = 0, vq = 0, expected = 0;
	size_t len;
	int rm = 0, rq = 0;

	decode_key(in, key);
	if (code == OP_CAS)
		expected = fuzz_byte(in) % 5;
	len = code == OP_DELETE ? 0 : decode_value(in, val);
	switch (code) {
	case OP_SET:
		rm = ustate_set(st->m, key, val, len, &vm);
		rq = ustate_set(st->q, key, val, len, &vq);
		break;
	case OP_DELETE:
		rm = ustate_delete(st->m, key);
		rq = ustate_delete(st->q, key);
		break;
	case OP_CAS:
		rm = ustate_compare_and_set(st->m, key, expected, val, len,
					    &vm);
		rq = ustate_compare_and_set(st->q, key, expected, val, len,
					    &vq);
		break;
	case OP_CREATE:
		rm = ustate_create_if_not_exists(st->m, key, val, len, &vm);
		rq = ustate_create_if_not_exists(st->q, key, val, len, &vq);
		break;
	default:
		break;
	}
	trace(st, code, key, rm);
	SAME(st, rm, rq, "write");
	SAME(st, vm, vq, "version written or found");
}

static void do_get(struct stores *st, struct fuzz_in *in)
{
	ustate_entry *em = NULL, *eq = NULL;
	char key[KEY_BUF];
	int rm, rq;

	decode_key(in, key);
	rm = ustate_get(st->m, key, &em);
	rq = ustate_get(st->q, key, &eq);
	trace(st, OP_GET, key, rm);
	SAME(st, rm, rq, "get");
	if (rm < 0)
		return;
	FUZZ_CHECK(!strcmp(em->key, key) && !strcmp(eq->key, key),
		   "step %zu: get names another key", st->step);
	SAME(st, em->value_len, eq->value_len, "value length");
	FUZZ_CHECK(!memcmp(em->value, eq->value, em->value_len),
		   "step %zu: values of %s differ", st->step, key);
	SAME(st, em->version, eq->version, "get version");
	SAME(st, em->mod_revision, eq->mod_revision, "mod_revision");
	FUZZ_CHECK(near(em->created_at, eq->created_at) &&
			   near(em->updated_at, eq->updated_at),
		   "step %zu: times of %s differ", st->step, key);
	ustate_entry_free(em);
	ustate_entry_free(eq);
}

static void do_read(struct stores *st, enum op_code code, struct fuzz_in *in)
{
	char key[KEY_BUF], **km = NULL, **kq = NULL;
	ustate_dirent *dm = NULL, *dq = NULL;
	uint64_t vm = 0, vq = 0;
	unsigned fm = 0, fq = 0;
	size_t nm = 0, nq = 0, i;
	int rm = 0, rq = 0;

	switch (code) {
	case OP_EXISTS:
		decode_key(in, key);
		rm = ustate_exists(st->m, key);
		rq = ustate_exists(st->q, key);
		break;
	case OP_VERSION:
		decode_key(in, key);
		rm = ustate_version(st->m, key, &vm);
		rq = ustate_version(st->q, key, &vq);
		break;
	case OP_LIST:
	case OP_LIST_DIRS:
		decode_prefix(in, key);
		if (code == OP_LIST) {
			rm = ustate_list(st->m, key, &km, &nm);
			rq = ustate_list(st->q, key, &kq, &nq);
		} else {
			rm = ustate_list_dirs(st->m, key, &km, &nm);
			rq = ustate_list_dirs(st->q, key, &kq, &nq);
		}
		break;
	case OP_NODE:
		decode_path(in, key);
		rm = ustate_node(st->m, key, &fm);
		rq = ustate_node(st->q, key, &fq);
		break;
	case OP_READDIR:
		decode_path(in, key);
		rm = ustate_readdir(st->m, key, &dm, &nm);
		rq = ustate_readdir(st->q, key, &dq, &nq);
		break;
	default:
		return;
	}
	trace(st, code, key, rm);
	SAME(st, rm, rq, "read");
	if (rm < 0)
		return;
	SAME(st, vm, vq, "version");
	SAME(st, fm, fq, "node flags");
	if (code == OP_LIST || code == OP_LIST_DIRS) {
		same_names(st, km, nm, kq, nq, "names listed");
		for (i = 0; i < nm; i++)
			FUZZ_CHECK(!strncmp(km[i], key, strlen(key)),
				   "step %zu: %s listed for prefix %s",
				   st->step, km[i], key);
		ustate_list_free(km, nm);
		ustate_list_free(kq, nq);
	} else if (code == OP_READDIR) {
		SAME(st, nm, nq, "readdir count");
		for (i = 0; i < nm; i++) {
			FUZZ_CHECK(!strcmp(dm[i].name, dq[i].name),
				   "step %zu: readdir %s against %s", st->step,
				   dm[i].name, dq[i].name);
			SAME(st, dm[i].flags, dq[i].flags, "readdir flags");
			FUZZ_CHECK(!strchr(dm[i].name, '/') && dm[i].name[0] &&
					   (i == 0 || strcmp(dm[i - 1].name,
							     dm[i].name) < 0),
				   "step %zu: readdir name %s", st->step,
				   dm[i].name);
		}
		ustate_dirents_free(dm, nm);
		ustate_dirents_free(dq, nq);
	}
}

static void do_txn(struct stores *st, struct fuzz_in *in)
{
	static char keys[MAX_OPS + 1][KEY_BUF], vals[MAX_OPS + 1][VALUE_BUF];
	uint64_t vm[MAX_OPS + 1], vq[MAX_OPS + 1];
	ustate_txn_result resm = {0}, resq = {0};
	ustate_op ops[MAX_OPS + 1];
	size_t n = fuzz_byte(in) % (MAX_OPS + 2), i;
	unsigned t;
	int rm, rq;

	memset(ops, 0, sizeof(ops));
	for (i = 0; i < n; i++) {
		t = fuzz_byte(in) % 10;
		/* Two more chances of a set; one of an unknown type. */
		ops[i].type = t < 7   ? (ustate_op_type)(t + 1)
			      : t < 9 ? USTATE_OP_SET
				      : (ustate_op_type)42;
		decode_key(in, keys[i]);
		ops[i].key = keys[i];
		if (ops[i].type == USTATE_OP_CHECK_VERSION ||
		    ops[i].type == USTATE_OP_CHECK_CHILDREN)
			ops[i].version = fuzz_byte(in) % 4;
		if (ops[i].type == USTATE_OP_SET ||
		    ops[i].type == USTATE_OP_CREATE) {
			ops[i].value_len = decode_value(in, vals[i]);
			ops[i].value = vals[i];
		}
	}
	memset(vm, 0, sizeof(vm));
	memset(vq, 0, sizeof(vq));
	resm.versions = vm;
	resq.versions = vq;
	rm = ustate_transaction(st->m, ops, n, &resm);
	rq = ustate_transaction(st->q, ops, n, &resq);
	trace(st, OP_TXN, n ? ops[0].key : "", rm);
	SAME(st, rm, rq, "transaction");
	SAME(st, resm.revision, resq.revision, "transaction revision");
	SAME(st, resm.failed, resq.failed, "failed op");
	if (rm == -ECANCELED || rm == -EEXIST || rm == -ENOENT)
		SAME(st, resm.found, resq.found, "version found");
	if (rm == 0)
		for (i = 0; i < n; i++)
			SAME(st, vm[i], vq[i], "op version");
}

/* A script of up to 255 bytes of the input, fed whole to each store. */
static void do_script(struct stores *st, struct fuzz_in *in)
{
	size_t len = fuzz_byte(in), lm, lq;
	ustate_script *sm, *sq;
	const char *pm, *pq;
	char text[256];
	int rm, rq;

	len = len < in->n ? len : in->n;
	memcpy(text, in->p, len);
	in->p += len;
	in->n -= len;
	FUZZ_CHECK(ustate_script_new(&sm, st->m) == 0 &&
			   ustate_script_new(&sq, st->q) == 0,
		   "script_new");
	rm = ustate_script_feed(sm, text, len);
	rq = ustate_script_feed(sq, text, len);
	text[len < sizeof(text) ? len : sizeof(text) - 1] = '\0';
	trace(st, OP_SCRIPT, text, rm);
	SAME(st, rm, rq, "script feed");
	SAME(st, ustate_script_result(sm), ustate_script_result(sq),
	     "script result");
	pm = ustate_script_reply(sm, &lm);
	pq = ustate_script_reply(sq, &lq);
	FUZZ_CHECK(lm == lq && !memcmp(pm, pq, lm),
		   "step %zu: replies differ:\n%.*s\n--- against ---\n%.*s",
		   st->step, (int)lm, pm, (int)lq, pq);
	ustate_script_free(sm);
	ustate_script_free(sq);
}

static void same_event(const struct stores *st, const ustate_event *em,
		       const ustate_event *eq)
{
	SAME(st, em->type, eq->type, "event type");
	SAME(st, em->version, eq->version, "event version");
	SAME(st, em->revision, eq->revision, "event revision");
	FUZZ_CHECK(!strcmp(em->key, eq->key),
		   "step %zu: event on %s against %s", st->step, em->key,
		   eq->key);
	if (st->trace)
		fprintf(stderr, "  event %d %s v%llu r%llu\n", em->type,
			em->key, (unsigned long long)em->version,
			(unsigned long long)em->revision);
}

/*
 * Open a watch on each store and compare every event it has now. The
 * memory backend keeps exactly HISTORY revisions of history and SQLite
 * trims in batches, so a start that memory no longer holds may still
 * work on SQLite; the other way round is a bug.
 */
static void watch_compare(struct stores *st, const char *pattern,
			  uint64_t start)
{
	ustate_watch *wm = NULL, *wq = NULL;
	ustate_event em, eq;
	int rm, rq, i;

	rm = ustate_watch_open(&wm, st->m, pattern, start);
	rq = ustate_watch_open(&wq, st->q, pattern, start);
	trace(st, OP_WATCH, pattern, rm);
	if (rm == -ENODATA && rq == 0) {
		ustate_watch_close(wq);
		return;
	}
	SAME(st, rm, rq, "watch_open");
	if (rm < 0)
		return;
	for (i = 0; i < 100000; i++) {
		rm = ustate_watch_next(wm, &em, 0);
		rq = ustate_watch_next(wq, &eq, 0);
		SAME(st, rm, rq, "watch_next");
		if (rm < 0)
			break;
		same_event(st, &em, &eq);
	}
	ustate_watch_close(wm);
	ustate_watch_close(wq);
}

/*
 * A watch pattern ("*", a key, a prefix + "*") and a start revision: 0
 * (from now on), else from up to 254 revisions before the next.
 */
static uint64_t decode_watch(struct stores *st, struct fuzz_in *in,
			     char *pattern)
{
	unsigned b = fuzz_byte(in) % 3, back;
	uint64_t rev = ustate_revision(st->m);

	if (b == 0) {
		strcpy(pattern, "*");
	} else {
		decode_prefix(in, pattern);
		if (b == 2)
			strcat(pattern, "*");
	}
	back = fuzz_byte(in);
	if (!back)
		return 0;
	return rev + 1 >= back ? rev + 2 - back : 1;
}

static void do_watch(struct stores *st, struct fuzz_in *in)
{
	char pattern[KEY_BUF + 1];
	uint64_t start = decode_watch(st, in, pattern);

	watch_compare(st, pattern, start);
}

static void watch_close(struct stores *st)
{
	ustate_watch_close(st->wm);
	ustate_watch_close(st->wq);
	st->wm = st->wq = NULL;
}

/* Open the watch that later operations write under and do_watch_read reads. */
static void do_watch_open(struct stores *st, struct fuzz_in *in)
{
	char pattern[KEY_BUF + 1];
	uint64_t start = decode_watch(st, in, pattern);
	int rm, rq;

	watch_close(st);
	rm = ustate_watch_open(&st->wm, st->m, pattern, start);
	rq = ustate_watch_open(&st->wq, st->q, pattern, start);
	trace(st, OP_WATCH_OPEN, pattern, rm);
	if (rm == -ENODATA && rq == 0) {
		/* SQLite trims later: see watch_compare(). */
		ustate_watch_close(st->wq);
		st->wq = NULL;
		return;
	}
	SAME(st, rm, rq, "watch_open");
	if (rm < 0)
		st->wm = st->wq = NULL;
}

/* Read up to 64 events of the open watch from both stores. */
static void do_watch_read(struct stores *st, struct fuzz_in *in)
{
	unsigned n = fuzz_byte(in) % 64 + 1, i;
	ustate_event em, eq;
	int rm, rq;

	for (i = 0; st->wm && i < n; i++) {
		rm = ustate_watch_next(st->wm, &em, 0);
		rq = ustate_watch_next(st->wq, &eq, 0);
		trace(st, OP_WATCH_READ, rm == 0 ? em.key : "", rm);
		if (rm == -EOVERFLOW && rq != -EOVERFLOW) {
			/* Memory dropped history that SQLite still holds. */
			watch_close(st);
			return;
		}
		SAME(st, rm, rq, "watch_next");
		if (rm < 0)
			return;
		same_event(st, &em, &eq);
	}
}

/*
 * Write up to 129 keys below one key, some a level deeper, in an order
 * that is not theirs: enough names in one directory for readdir and list
 * to work in several batches, and revisions enough to trim the history.
 */
static void do_fill(struct stores *st, struct fuzz_in *in)
{
	char base[KEY_BUF], key[KEY_BUF + 32];
	unsigned n, i;
	uint64_t vm = 0, vq = 0;
	int rm, rq;

	decode_key(in, base);
	n = fuzz_byte(in) % 130;
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "%s/%u%s", base, i * 7 % 100,
			 i % 3 ? "" : "/x");
		rm = ustate_set(st->m, key, "f", 1, &vm);
		rq = ustate_set(st->q, key, "f", 1, &vq);
		SAME(st, rm, rq, "fill");
		SAME(st, vm, vq, "fill version");
	}
	trace(st, OP_FILL, base, (int)n);
}

static void sqlite_remove(const char *db)
{
	static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
	char path[4096];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(suffix); i++) {
		snprintf(path, sizeof(path), "%s%s", db, suffix[i]);
		unlink(path);
	}
}

/*
 * Make db a new, empty store. Creating the schema costs milliseconds, so
 * the first call has the library create a store and close it, and every
 * call writes a copy of that file: the same bytes a fresh open leaves.
 */
static void sqlite_fresh(const char *db, const ustate_options *o)
{
	static char *image;
	static ssize_t size;
	ustate *s;
	int fd, rc;

	sqlite_remove(db);
	if (!image) {
		rc = ustate_open_sqlite(&s, db, o);
		FUZZ_CHECK(rc == 0, "open %s: %d", db, rc);
		ustate_close(s);
		fd = open(db, O_RDONLY | O_CLOEXEC);
		FUZZ_CHECK(fd >= 0, "open %s: %s", db, strerror(errno));
		image = malloc(1 << 20);
		FUZZ_CHECK(image, "out of memory");
		size = read(fd, image, 1 << 20);
		FUZZ_CHECK(size > 0 && size < 1 << 20, "read %s", db);
		close(fd);
		sqlite_remove(db);
	}
	fd = open(db, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	FUZZ_CHECK(fd >= 0 && write(fd, image, (size_t)size) == size,
		   "write %s: %s", db, strerror(errno));
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {.p = data, .n = size};
	ustate_options o = USTATE_OPTIONS_INIT;
	struct stores st = {0};
	char db[4096];
	enum op_code code;
	uint64_t rev;
	int rc;

	st.trace = getenv("FUZZ_TRACE") != NULL;
	o.sync = USTATE_SYNC_OFF;
	o.max_value_size = MAX_VALUE;
	o.max_txn_ops = MAX_OPS;
	o.history = HISTORY;
	snprintf(db, sizeof(db), "%s/diff.db", fuzz_tmpdir());
	sqlite_fresh(db, &o);
	rc = ustate_open_memory(&st.m, &o);
	FUZZ_CHECK(rc == 0, "open memory: %d", rc);
	rc = ustate_open_sqlite(&st.q, db, &o);
	FUZZ_CHECK(rc == 0, "open %s: %d", db, rc);

	for (st.step = 0; in.n; st.step++) {
		code = (enum op_code)(fuzz_byte(&in) % OP_COUNT);
		switch (code) {
		case OP_SET:
		case OP_DELETE:
		case OP_CAS:
		case OP_CREATE:
			do_write(&st, code, &in);
			break;
		case OP_GET:
			do_get(&st, &in);
			break;
		case OP_TXN:
			do_txn(&st, &in);
			break;
		case OP_SCRIPT:
			do_script(&st, &in);
			break;
		case OP_WATCH:
			do_watch(&st, &in);
			break;
		case OP_FILL:
			do_fill(&st, &in);
			break;
		case OP_WATCH_OPEN:
			do_watch_open(&st, &in);
			break;
		case OP_WATCH_READ:
			do_watch_read(&st, &in);
			break;
		case OP_REVISION:
		case OP_COUNT:
			break;
		default:
			do_read(&st, code, &in);
		}
		SAME(&st, ustate_revision(st.m), ustate_revision(st.q),
		     "revision");
	}
	fuzz_same_state(st.m, st.q, "memory against sqlite");
	/* The whole history that both must still hold. */
	rev = ustate_revision(st.m);
	if (rev)
		watch_compare(&st, "*", rev > HISTORY ? rev - HISTORY + 1 : 1);
	watch_close(&st);
	ustate_close(st.m);
	ustate_close(st.q);
	sqlite_remove(db);
	return 0;
}
