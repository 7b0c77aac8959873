/* SPDX-License-Identifier: MIT */
/*
 * This file implements transaction scripts, the text protocol of the
 * filesystem's /.txn file and of `ustate txn`: a parser fed in pieces of
 * any size, which turns lines into ustate_op's, runs them as one
 * ustate_transaction() at "commit" and writes a reply. The grammar:
 *
 *   check KEY VERSION   KEY must be at VERSION (0: must not exist)
 *   set KEY LEN [lease=NAME]
 *                       then exactly LEN raw bytes and a newline; with
 *                       lease=, the key is attached to lease NAME (a
 *                       script naming a lease that does not exist fails
 *                       whole with ENOENT and its line)
 *   create KEY LEN [lease=NAME]
 *                       like set; fails if KEY exists
 *   delete KEY          fails if KEY does not exist
 *   get KEY             reply with KEY's value and version as found
 *   commit              run everything above, all or nothing
 *   # ...               a comment; empty lines are ignored too
 *
 * KEY is the text between the command and the last space of the line (or
 * the end of the line for delete and get), so keys may hold spaces.
 * The gets are read from one snapshot (ustate_get_many()). A script that
 * writes nothing is answered from that snapshot, its checks included, so
 * it never fails for other writers. Otherwise each get is made consistent
 * with the commit by a version check on the key it read; when another
 * writer changes it in between, the script runs again (up to GET_RETRIES
 * times).
 *
 * Reply on success, one line per op in order, a get followed by its value
 * and a newline:
 *   ok REVISION
 *   check KEY VERSION | set KEY VERSION | create KEY VERSION |
 *   delete KEY 0 | get KEY VERSION LEN
 * Reply on failure:
 *   error LINE CODE KEY FOUND     (KEY is "-" where none applies)
 *   a sentence saying what happened
 *
 * A caller may vet each op before the script runs (a file system checks
 * the permissions of the writer: ustate_script_set_check()) and give the
 * keys the script creates an owner (ustate_script_set_owner()): those
 * take a META op each, after a check that the key is still absent, so
 * that a key another writer created meanwhile keeps its own.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script_i.h"
#include "store_i.h"

#define LINE_MAX_BYTES (USTATE_KEY_MAX + 64)
#define GET_RETRIES 16

enum sc_state { SC_LINE, SC_DATA, SC_DATA_END, SC_DONE };

struct sc_op {
	ustate_op op;
	bool is_get;
	size_t line;
	char *key;   /* owned */
	void *value; /* owned */
	char *lease; /* owned, or NULL */
};

struct ustate_script {
	ustate *s;
	size_t max_value; /* per value */
	size_t max_bytes; /* all values together */
	size_t max_ops;
	enum sc_state state;
	size_t lineno;
	char line[LINE_MAX_BYTES + 1];
	size_t line_len;
	struct sc_op *ops;
	size_t n, cap;
	size_t data_left;  /* bytes of the current value still to come */
	size_t bytes;	   /* value bytes buffered so far */
	int result;	   /* 1 committed, <0 failed, 0 not yet */
	uint64_t revision; /* of the commit, once committed */
	char *reply;
	size_t reply_len, reply_cap;
	ustate_script_check_fn check; /* may veto each op, or NULL */
	void *check_arg;
	bool has_owner; /* keys the script creates get owner */
	ustate_meta owner;
};

int ustate_script_new(ustate_script **out, ustate *s)
{
	ustate_script *sc;

	sc = calloc(1, sizeof(*sc));
	if (!sc)
		return -ENOMEM;
	sc->s = s;
	sc->max_value = ustate_max_value_size(s);
	sc->max_ops = ustate_max_txn_ops(s);
	/* A script buffers at most four maximum values' worth of data. */
	sc->max_bytes = 4 * sc->max_value + 4096;
	sc->lineno = 1;
	*out = sc;
	return 0;
}

void ustate_script_set_check(ustate_script *sc, ustate_script_check_fn fn,
			     void *arg)
{
	sc->check = fn;
	sc->check_arg = arg;
}

void ustate_script_set_owner(ustate_script *sc, const ustate_meta *m)
{
	sc->has_owner = m != NULL;
	/* The owner and mode alone: all that a struct of 0.4 has. */
	if (m)
		sc->owner = (ustate_meta){
			.uid = m->uid, .gid = m->gid, .mode = m->mode};
}

void ustate_script_free(ustate_script *sc)
{
	size_t i;

	if (!sc)
		return;
	for (i = 0; i < sc->n; i++) {
		free(sc->ops[i].key);
		free(sc->ops[i].value);
		free(sc->ops[i].lease);
	}
	free(sc->ops);
	free(sc->reply);
	free(sc);
}

/* Append to the reply; on ENOMEM the reply is cut short, never wrong. */
static void reply_add(ustate_script *sc, const void *data, size_t len)
{
	size_t cap;
	char *p;

	if (sc->reply_len + len + 1 > sc->reply_cap) {
		cap = (sc->reply_len + len + 1) * 2;
		p = realloc(sc->reply, cap);
		if (!p)
			return;
		sc->reply = p;
		sc->reply_cap = cap;
	}
	memcpy(sc->reply + sc->reply_len, data, len);
	sc->reply_len += len;
	sc->reply[sc->reply_len] = '\0';
}

__attribute__((format(printf, 2, 3))) static void
reply_printf(ustate_script *sc, const char *fmt, ...)
{
	char buf[LINE_MAX_BYTES + 256];
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (len > 0)
		reply_add(sc, buf,
			  (size_t)len < sizeof(buf) ? (size_t)len
						    : sizeof(buf) - 1);
}

static const char *errname(int rc)
{
	switch (-rc) {
	case ECANCELED:
		return "ECANCELED";
	case EEXIST:
		return "EEXIST";
	case ENOENT:
		return "ENOENT";
	case EINVAL:
		return "EINVAL";
	case ENAMETOOLONG:
		return "ENAMETOOLONG";
	case EFBIG:
		return "EFBIG";
	case E2BIG:
		return "E2BIG";
	case EROFS:
		return "EROFS";
	case ENOSPC:
		return "ENOSPC";
	case ENOMEM:
		return "ENOMEM";
	case EBUSY:
		return "EBUSY";
	case EACCES:
		return "EACCES";
	case EPERM:
		return "EPERM";
	default:
		return "EIO";
	}
}

/* End the script with an error at line; the reply explains it. */
__attribute__((format(printf, 6, 7))) static int
fail_found(ustate_script *sc, int rc, size_t line, const char *key,
	   uint64_t found, const char *fmt, ...)
{
	char msg[LINE_MAX_BYTES + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sc->reply_len = 0;
	reply_printf(sc, "error %zu %s %s %llu\n%s\n", line, errname(rc),
		     key ? key : "-", (unsigned long long)found, msg);
	sc->state = SC_DONE;
	sc->result = rc;
	return rc;
}

#define fail(sc, rc, line, key, ...)                                           \
	fail_found(sc, rc, line, key, 0, __VA_ARGS__)

/* A strict decimal: digits only, no sign, no overflow. */
static bool parse_u64(const char *p, uint64_t *out)
{
	uint64_t v = 0;

	if (!*p)
		return false;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*out = v;
	return true;
}

static int op_add(ustate_script *sc, ustate_op_type type, const char *key,
		  size_t klen, bool is_get, struct sc_op **out)
{
	struct sc_op *o, *grown;
	size_t cap;

	if (sc->n >= sc->max_ops)
		return fail(sc, -E2BIG, sc->lineno, NULL,
			    "more than %zu operations in one transaction",
			    sc->max_ops);
	if (sc->n == sc->cap) {
		cap = sc->cap ? sc->cap * 2 : 8;
		grown = realloc(sc->ops, cap * sizeof(*grown));
		if (!grown)
			return fail(sc, -ENOMEM, sc->lineno, NULL,
				    "out of memory");
		sc->ops = grown;
		sc->cap = cap;
	}
	o = &sc->ops[sc->n];
	memset(o, 0, sizeof(*o));
	o->key = strndup(key, klen);
	if (!o->key)
		return fail(sc, -ENOMEM, sc->lineno, NULL, "out of memory");
	sc->n++;
	o->op.type = type;
	o->op.key = o->key;
	o->is_get = is_get;
	o->line = sc->lineno;
	*out = o;
	return 0;
}

static int run(ustate_script *sc);

/* Parse one complete line (without its newline). */
static int parse_line(ustate_script *sc, char *line)
{
	static const struct {
		const char *name;
		ustate_op_type type;
		bool number, get;
	} cmds[] = {
		{"check", USTATE_OP_CHECK_VERSION, true, false},
		{"set", USTATE_OP_SET, true, false},
		{"create", USTATE_OP_CREATE, true, false},
		{"delete", USTATE_OP_DELETE, false, false},
		{"get", USTATE_OP_CHECK_VERSION, false, true},
	};
	char *arg, *num = NULL, *key, *lease = NULL;
	struct sc_op *o = NULL;
	uint64_t v = 0;
	size_t i, klen;
	int rc;

	if (!*line || *line == '#')
		return 0;
	if (!strcmp(line, "commit"))
		return run(sc);
	arg = strchr(line, ' ');
	if (arg)
		*arg++ = '\0';
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(line, cmds[i].name))
			break;
	if (i == sizeof(cmds) / sizeof(cmds[0]))
		return fail(sc, -EINVAL, sc->lineno, NULL,
			    "line %zu: unknown command \"%.64s\"", sc->lineno,
			    line);
	if (!arg || !*arg)
		return fail(sc, -EINVAL, sc->lineno, NULL,
			    "line %zu: %s needs a key", sc->lineno, line);
	key = arg;
	klen = strlen(arg);
	/* set and create: an optional last word names a lease. */
	if (cmds[i].type == USTATE_OP_SET || cmds[i].type == USTATE_OP_CREATE) {
		num = strrchr(arg, ' ');
		if (num && !strncmp(num + 1, "lease=", 6)) {
			lease = num + 7;
			*num = '\0';
			if (!*lease)
				return fail(sc, -EINVAL, sc->lineno, NULL,
					    "line %zu: lease= needs a name",
					    sc->lineno);
		}
	}
	if (cmds[i].number) {
		num = strrchr(arg, ' ');
		if (!num || !parse_u64(num + 1, &v))
			return fail(sc, -EINVAL, sc->lineno, NULL,
				    "line %zu: %s needs a key and a number",
				    sc->lineno, line);
		klen = (size_t)(num - arg);
		*num = '\0';
	}
	rc = ustate_key_valid(key);
	if (rc < 0)
		return fail(sc, rc, sc->lineno, NULL, "line %zu: bad key: %s",
			    sc->lineno, ustate_strerror(rc));
	rc = op_add(sc, cmds[i].type, key, klen, cmds[i].get, &o);
	if (rc < 0)
		return rc;
	if (lease) {
		o->lease = strdup(lease);
		if (!o->lease)
			return fail(sc, -ENOMEM, sc->lineno, NULL,
				    "out of memory");
		o->op.lease = o->lease;
	}
	if (cmds[i].type == USTATE_OP_CHECK_VERSION) {
		o->op.version = v;
	} else if (cmds[i].number) {
		if (v > sc->max_value || sc->bytes + v > sc->max_bytes)
			return fail(sc, -EFBIG, sc->lineno, o->key,
				    "line %zu: value of %llu bytes is over the "
				    "limit",
				    sc->lineno, (unsigned long long)v);
		/* One more byte, so an empty value is not a NULL pointer. */
		o->value = malloc(v + 1);
		if (!o->value)
			return fail(sc, -ENOMEM, sc->lineno, NULL,
				    "out of memory");
		o->op.value = o->value;
		sc->data_left = v;
		sc->bytes += v;
		sc->state = v ? SC_DATA : SC_DATA_END;
	}
	return 0;
}

static bool only_newlines(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != '\n')
			return false;
	return true;
}

int ustate_script_feed(ustate_script *sc, const void *buf, size_t len)
{
	const char *p = buf, *end = p + len, *nl;
	struct sc_op *o;
	size_t take;
	int rc;

	if (sc->state == SC_DONE) {
		/*
		 * A commit ignores the newlines after it in its own piece; so
		 * in later pieces too, or the outcome would depend on how the
		 * writer cut its input.
		 */
		if (sc->result == 1 && only_newlines(p, end))
			return 1;
		return sc->result < 0 ? sc->result : -EINVAL;
	}
	while (p < end) {
		switch (sc->state) {
		case SC_LINE:
			nl = memchr(p, '\n', end - p);
			take = nl ? (size_t)(nl - p) : (size_t)(end - p);
			if (sc->line_len + take > LINE_MAX_BYTES)
				return fail(sc, -EINVAL, sc->lineno, NULL,
					    "line %zu: longer than %d bytes",
					    sc->lineno, LINE_MAX_BYTES);
			memcpy(sc->line + sc->line_len, p, take);
			sc->line_len += take;
			p += take;
			if (!nl)
				break;
			p++;
			sc->line[sc->line_len] = '\0';
			take = sc->line_len;
			sc->line_len = 0;
			if (strlen(sc->line) != take)
				return fail(sc, -EINVAL, sc->lineno, NULL,
					    "line %zu: NUL byte in a command",
					    sc->lineno);
			/* Nothing may follow a commit: it could not be undone.
			 */
			if (!strcmp(sc->line, "commit") &&
			    !only_newlines(p, end))
				return fail(sc, -EINVAL, sc->lineno, NULL,
					    "line %zu: input after commit",
					    sc->lineno);
			rc = parse_line(sc, sc->line);
			if (rc != 0 || sc->state == SC_DONE)
				return rc;
			sc->lineno++;
			break;
		case SC_DATA:
			o = &sc->ops[sc->n - 1];
			take = (size_t)(end - p) < sc->data_left
				       ? (size_t)(end - p)
				       : sc->data_left;
			memcpy((char *)o->value + o->op.value_len, p, take);
			/* Line numbers count every newline of the text. */
			for (nl = p; (nl = memchr(nl, '\n', p + take - nl));
			     nl++)
				sc->lineno++;
			o->op.value_len += take;
			sc->data_left -= take;
			p += take;
			if (!sc->data_left)
				sc->state = SC_DATA_END;
			break;
		case SC_DATA_END:
			if (*p != '\n')
				return fail(sc, -EINVAL,
					    sc->ops[sc->n - 1].line,
					    sc->ops[sc->n - 1].key,
					    "line %zu: value is longer than "
					    "its length",
					    sc->ops[sc->n - 1].line);
			p++;
			sc->state = SC_LINE;
			sc->lineno++;
			break;
		case SC_DONE:
			return -EINVAL;
		}
	}
	return 0;
}

/* The reply of a successful commit. */
static void reply_ok(ustate_script *sc, uint64_t rev, const uint64_t *vers,
		     ustate_entry **got)
{
	static const char *const names[] = {
		[USTATE_OP_CHECK_VERSION] = "check",
		[USTATE_OP_SET] = "set",
		[USTATE_OP_DELETE] = "delete",
		[USTATE_OP_CREATE] = "create",
	};
	struct sc_op *o;
	size_t i;

	sc->reply_len = 0;
	reply_printf(sc, "ok %llu\n", (unsigned long long)rev);
	for (i = 0; i < sc->n; i++) {
		o = &sc->ops[i];
		if (!o->is_get) {
			reply_printf(sc, "%s %s %llu\n", names[o->op.type],
				     o->key, (unsigned long long)vers[i]);
			continue;
		}
		reply_printf(sc, "get %s %llu %zu\n", o->key,
			     (unsigned long long)vers[i],
			     got[i] ? got[i]->value_len : 0);
		if (got[i])
			reply_add(sc, got[i]->value, got[i]->value_len);
		reply_add(sc, "\n", 1);
	}
}

/* Ask the caller's check about every op; the first refusal ends it. */
static int vet(ustate_script *sc)
{
	struct sc_op *o;
	size_t i;
	int rc;

	for (i = 0; sc->check && i < sc->n; i++) {
		o = &sc->ops[i];
		rc = sc->check(sc->check_arg, &o->op);
		if (rc < 0)
			return fail_found(sc, rc, o->line, o->key, 0, "%s: %s",
					  o->key, ustate_strerror(rc));
	}
	return 0;
}

/* Order write ops by key, then by position. */
static int by_key(const void *a, const void *b)
{
	const struct sc_op *x = *(struct sc_op *const *)a;
	const struct sc_op *y = *(struct sc_op *const *)b;
	int c = strcmp(x->key, y->key);

	return c ? c : (x > y) - (x < y);
}

/*
 * Append to ops[*n..] what gives the keys the script creates its owner:
 * for each key whose last write is a set or create and that is new
 * (absent now, or deleted by the script before), a META, preceded by a
 * check that the key is still absent when it is. ops has room for 2
 * more per op of the script.
 */
static int owner_ops(ustate_script *sc, ustate_op *ops, size_t *n)
{
	struct sc_op **w, *last;
	bool deleted;
	size_t nw = 0, s, e, k;
	uint64_t v;
	int rc = 0;

	if (!sc->has_owner)
		return 0;
	w = malloc((sc->n + 1) * sizeof(*w));
	if (!w)
		return -ENOMEM;
	for (k = 0; k < sc->n; k++)
		if (!ustate_op_is_check(sc->ops[k].op.type))
			w[nw++] = &sc->ops[k];
	qsort(w, nw, sizeof(*w), by_key);
	for (s = 0; s < nw && rc == 0; s = e) {
		deleted = false;
		for (e = s; e < nw && !strcmp(w[e]->key, w[s]->key); e++)
			deleted |= e + 1 < nw &&
				   !strcmp(w[e + 1]->key, w[s]->key) &&
				   w[e]->op.type == USTATE_OP_DELETE;
		last = w[e - 1];
		if (last->op.type == USTATE_OP_DELETE)
			continue;
		rc = ustate_version(sc->s, last->key, &v);
		if (rc < 0 || (v && !deleted))
			continue;
		if (!v)
			ops[(*n)++] =
				(ustate_op){.type = USTATE_OP_CHECK_VERSION,
					    .key = last->key};
		ops[(*n)++] = (ustate_op){.type = USTATE_OP_META,
					  .key = last->key,
					  .value = &sc->owner,
					  .value_len = sizeof(sc->owner)};
	}
	free(w);
	return rc;
}

/*
 * Read the gets into got[] (by op), from one snapshot of revision *rev
 * (ustate_get_many()); with all, the checks' keys too. 1 when so, 0 when
 * the store could not read them at once (an etcd store over its
 * max_txn_ops) and they were read one by one instead, or a negative
 * errno.
 */
static int read_gets(ustate_script *sc, ustate_entry **got, bool all,
		     uint64_t *rev)
{
	const char **keys;
	ustate_entry **out;
	size_t i, m = 0;
	int rc;

	for (i = 0; i < sc->n; i++) {
		ustate_entry_free(got[i]);
		got[i] = NULL;
	}
	keys = malloc((sc->n + 1) * sizeof(*keys));
	out = malloc((sc->n + 1) * sizeof(*out));
	if (!keys || !out) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < sc->n; i++)
		if (sc->ops[i].is_get || all)
			keys[m++] = sc->ops[i].key;
	/* Nothing to read before the commit: no request either. */
	if (!m && !all) {
		rc = 1;
		goto out;
	}
	rc = ustate_get_many(sc->s, keys, m, out, rev);
	if (rc == 0) {
		for (i = 0, m = 0; i < sc->n; i++)
			if (sc->ops[i].is_get || all)
				got[i] = out[m++];
		rc = 1;
	} else if (rc == -E2BIG || rc == -EOPNOTSUPP) {
		for (i = 0, rc = 0; i < sc->n && rc >= 0; i++) {
			if (!sc->ops[i].is_get)
				continue;
			rc = ustate_get(sc->s, sc->ops[i].key, &got[i]);
			if (rc == -ENOENT)
				rc = 0;
		}
	}
out:
	free(keys);
	free(out);
	return rc;
}

/*
 * The checks of a script that writes nothing, against the snapshot its
 * gets came from: no transaction, and so no retry.
 */
static int check_read(ustate_script *sc, ustate_entry **got, uint64_t *vers,
		      ustate_txn_result *res)
{
	size_t i;

	for (i = 0; i < sc->n; i++) {
		vers[i] = got[i] ? got[i]->version : 0;
		if (!sc->ops[i].is_get && vers[i] != sc->ops[i].op.version) {
			res->failed = i;
			res->found = vers[i];
			return -ECANCELED;
		}
	}
	return 0;
}

/*
 * Run the script. Its gets are read from one snapshot. A script that
 * writes nothing has its checks read in the same snapshot and is done;
 * otherwise everything is committed with a check of each get's version,
 * and when another writer changed one in between, the script runs again.
 */
static int run(ustate_script *sc)
{
	ustate_txn_result res = {0};
	ustate_entry **got = NULL;
	ustate_op *ops = NULL;
	uint64_t *vers = NULL, rev = 0;
	bool reads_only = true;
	int rc = 0, attempt;
	struct sc_op *o;
	size_t i, n;

	sc->state = SC_DONE;
	got = calloc(sc->n + 1, sizeof(*got));
	/* Room for the owner's ops too: see owner_ops(). */
	vers = calloc(3 * sc->n + 1, sizeof(*vers));
	ops = calloc(3 * sc->n + 1, sizeof(*ops));
	if (!got || !vers || !ops) {
		rc = fail(sc, -ENOMEM, sc->lineno, NULL, "out of memory");
		goto out;
	}
	for (i = 0; i < sc->n; i++)
		reads_only &= ustate_op_is_check(sc->ops[i].op.type);
	for (attempt = 0; attempt < GET_RETRIES; attempt++) {
		rc = vet(sc);
		if (rc < 0)
			goto out;
		rc = read_gets(sc, got, reads_only, &rev);
		if (rc < 0)
			break;
		for (i = 0; i < sc->n; i++)
			if (sc->ops[i].is_get)
				sc->ops[i].op.version =
					got[i] ? got[i]->version : 0;
		if (rc == 1 && reads_only) {
			res.revision = rev;
			rc = check_read(sc, got, vers, &res);
			break;
		}
		for (n = 0; n < sc->n; n++)
			ops[n] = sc->ops[n].op;
		rc = owner_ops(sc, ops, &n);
		if (rc < 0)
			break;
		res.versions = vers;
		rc = ustate_transaction(sc->s, ops, n, &res);
		/* A get, or a key to own, changed meanwhile: again. */
		if (rc != -ECANCELED ||
		    (res.failed < sc->n && !sc->ops[res.failed].is_get))
			break;
	}
	if (rc == 0) {
		reply_ok(sc, res.revision, vers, got);
		sc->result = 1;
		for (i = 0; i < sc->n; i++)
			if (sc->ops[i].op.type == USTATE_OP_SET ||
			    sc->ops[i].op.type == USTATE_OP_CREATE ||
			    sc->ops[i].op.type == USTATE_OP_DELETE)
				sc->revision = res.revision;
		rc = 1;
		goto out;
	}
	o = res.failed < sc->n ? &sc->ops[res.failed] : NULL;
	if (!o || (rc != -ECANCELED && rc != -EEXIST && rc != -ENOENT &&
		   rc != -EINVAL && rc != -ENAMETOOLONG && rc != -EFBIG)) {
		fail(sc, rc, sc->lineno, NULL, "commit failed: %s",
		     ustate_strerror(rc));
	} else if (o->is_get) {
		fail_found(sc, rc, o->line, o->key, res.found,
			   "%s kept changing under the transaction", o->key);
	} else if (rc == -ENOENT && o->lease) {
		fail_found(sc, rc, o->line, o->key, res.found,
			   "line %zu: no such lease: %s", o->line, o->lease);
	} else if (rc == -ECANCELED) {
		fail_found(sc, rc, o->line, o->key, res.found,
			   "version conflict: %s is at version %llu, not %llu",
			   o->key, (unsigned long long)res.found,
			   (unsigned long long)o->op.version);
	} else {
		fail_found(sc, rc, o->line, o->key, res.found, "%s: %s", o->key,
			   ustate_strerror(rc));
	}
out:
	for (i = 0; got && i < sc->n; i++)
		ustate_entry_free(got[i]);
	free(got);
	free(vers);
	free(ops);
	return rc;
}

const char *ustate_script_reply(ustate_script *sc, size_t *len)
{
	*len = sc->reply_len;
	return sc->reply ? sc->reply : "";
}

int ustate_script_result(ustate_script *sc)
{
	return sc->result;
}

uint64_t ustate_script_revision(ustate_script *sc)
{
	return sc->result == 1 ? sc->revision : 0;
}
