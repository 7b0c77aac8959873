/* SPDX-License-Identifier: MIT */
/*
 * This file implements the fuzz target of the key rules (core/keys.c): the
 * key validator, list prefixes and watch patterns. Each input is a key (or,
 * when its first byte has the high bit set, a unit repeated up to 256
 * times, so that keys over the length limits are in reach). The target
 * checks:
 *  - ustate_key_valid(), ustate_prefix_valid(), ustate_pattern_parse() and
 *    ustate_text_valid() give exactly the code of a second, independent
 *    implementation of the rules written from the header and RFC 3629
 *    (errors in the order: leading "/", total length, encoding, then each
 *    segment from left to right; a pattern's length comes first);
 *  - a valid key has the shape the header promises: at most
 *    USTATE_KEY_MAX bytes, no "//", no trailing "/", no "." , "..",
 *    ".value" or ".txn" segment, none over USTATE_SEGMENT_MAX, and every
 *    ancestor is a valid key too;
 *  - a valid key round-trips through every call of a memory store (set,
 *    get, exists, version, list, node, readdir, compare-and-set, create,
 *    a transaction with directory ops, delete), byte for byte;
 *  - an invalid key gets the validator's code from every call that takes a
 *    key and leaves the store untouched.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_i.h"
#include "store_i.h"

/*
 * Bytes of the UTF-8 character at p by RFC 3629's grammar (section 4), 0
 * when there is none; *cp receives its code point.
 */
static size_t ref_utf8(const unsigned char *p, size_t avail, unsigned *cp)
{
	static const struct {
		unsigned char lo, hi;	/* the first byte */
		unsigned char lo2, hi2; /* the second; the rest 80..bf */
		size_t len;
	} forms[] = {
		{0x00, 0x7f, 0, 0, 1},	     {0xc2, 0xdf, 0x80, 0xbf, 2},
		{0xe0, 0xe0, 0xa0, 0xbf, 3}, {0xe1, 0xec, 0x80, 0xbf, 3},
		{0xed, 0xed, 0x80, 0x9f, 3}, {0xee, 0xef, 0x80, 0xbf, 3},
		{0xf0, 0xf0, 0x90, 0xbf, 4}, {0xf1, 0xf3, 0x80, 0xbf, 4},
		{0xf4, 0xf4, 0x80, 0x8f, 4},
	};
	size_t f, i;

	for (f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
		if (p[0] < forms[f].lo || p[0] > forms[f].hi)
			continue;
		if (avail < forms[f].len)
			return 0;
		if (forms[f].len > 1 &&
		    (p[1] < forms[f].lo2 || p[1] > forms[f].hi2))
			return 0;
		*cp = p[0] & (0xffu >> (forms[f].len + (forms[f].len > 1)));
		for (i = 1; i < forms[f].len; i++) {
			if (p[i] < 0x80 || p[i] > 0xbf)
				return 0;
			*cp = (*cp << 6) | (p[i] & 0x3f);
		}
		return forms[f].len;
	}
	return 0;
}

/* Valid UTF-8 without C0, DEL or C1 control characters. */
static bool ref_text(const unsigned char *p, size_t len)
{
	size_t i = 0, n;
	unsigned cp;

	while (i < len) {
		n = ref_utf8(p + i, len - i, &cp);
		if (!n || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
			return false;
		i += n;
	}
	return true;
}

static int ref_key(const char *k)
{
	static const char *const reserved[] = {".", "..", ".value", ".txn"};
	size_t len = strlen(k), start, end, seg, r;
	const char *slash;

	if (k[0] != '/')
		return -EINVAL;
	if (len > USTATE_KEY_MAX)
		return -ENAMETOOLONG;
	if (!ref_text((const unsigned char *)k, len))
		return -EINVAL;
	for (start = 1;; start = end + 1) {
		slash = memchr(k + start, '/', len - start);
		end = slash ? (size_t)(slash - k) : len;
		seg = end - start;
		if (seg == 0)
			return -EINVAL;
		if (seg > USTATE_SEGMENT_MAX)
			return -ENAMETOOLONG;
		for (r = 0; r < sizeof(reserved) / sizeof(reserved[0]); r++)
			if (strlen(reserved[r]) == seg &&
			    !memcmp(k + start, reserved[r], seg))
				return -EINVAL;
		if (!slash)
			return 0;
	}
}

static int ref_prefix(const char *p)
{
	size_t len = strlen(p);

	if (len > USTATE_KEY_MAX)
		return -ENAMETOOLONG;
	return ref_text((const unsigned char *)p, len) ? 0 : -EINVAL;
}

static int ref_pattern(const char *p)
{
	size_t len = strlen(p);
	char *prefix;
	int rc;

	if (len > USTATE_KEY_MAX + 1)
		return -ENAMETOOLONG;
	if (!len || p[len - 1] != '*')
		return ref_key(p);
	prefix = strndup(p, len - 1);
	FUZZ_CHECK(prefix, "out of memory");
	rc = strchr(prefix, '*') ? -EINVAL : ref_prefix(prefix);
	free(prefix);
	return rc;
}

/* The input as a C string: itself, or a unit repeated (see the top). */
static char *make_key(const uint8_t *data, size_t size)
{
	size_t reps = 1, i, unit = size;
	const uint8_t *from = data;
	char *k;

	if (size && data[0] & 0x80) {
		reps = (size_t)(data[0] & 0x7f) * 2 + 2;
		from = data + 1;
		unit = size - 1;
	}
	/* Exactly the bytes needed: ASan sees any read past the NUL. */
	k = malloc(unit * reps + 1);
	FUZZ_CHECK(k, "out of memory");
	for (i = 0; i < reps; i++)
		memcpy(k + i * unit, from, unit);
	k[unit * reps] = '\0';
	return k;
}

/* The shape a valid key must have, checked directly. */
static void check_shape(const char *key)
{
	static const char *const reserved[] = {"/./", "/../", "/.value/",
					       "/.txn/"};
	size_t len = strlen(key), i, seg = 0;
	char *wrapped;

	FUZZ_CHECK(len <= USTATE_KEY_MAX, "valid key of %zu bytes", len);
	FUZZ_CHECK(key[0] == '/' && key[len - 1] != '/',
		   "valid key \"%s\" has a bad end", key);
	FUZZ_CHECK(!strstr(key, "//"), "valid key \"%s\" has //", key);
	for (i = 1; i <= len; i++) {
		if (i < len && key[i] != '/') {
			seg++;
			continue;
		}
		FUZZ_CHECK(seg >= 1 && seg <= USTATE_SEGMENT_MAX,
			   "valid key with a segment of %zu bytes", seg);
		seg = 0;
		/* Every ancestor is itself a valid key. */
		if (i < len) {
			wrapped = strndup(key, i);
			FUZZ_CHECK(wrapped, "out of memory");
			FUZZ_CHECK(ustate_key_valid(wrapped) == 0,
				   "valid key \"%s\", invalid ancestor", key);
			free(wrapped);
		}
	}
	/* Reserved segments, wherever they are: look at "KEY/". */
	wrapped = malloc(len + 2);
	FUZZ_CHECK(wrapped, "out of memory");
	memcpy(wrapped, key, len);
	memcpy(wrapped + len, "/", 2);
	for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		FUZZ_CHECK(!strstr(wrapped, reserved[i]),
			   "valid key \"%s\" has segment %s", key, reserved[i]);
	free(wrapped);
}

/* Whether the names from readdir include name with the flag. */
static bool dir_has(ustate *s, const char *dir, const char *name, unsigned flag)
{
	ustate_dirent *d;
	bool found = false;
	size_t n, i;

	FUZZ_CHECK(ustate_readdir(s, dir, &d, &n) == 0, "readdir %s", dir);
	for (i = 0; i < n; i++)
		if (!strcmp(d[i].name, name) && (d[i].flags & flag))
			found = true;
	ustate_dirents_free(d, n);
	return found;
}

/* A valid key works through every call; the store is empty again after. */
static void round_trip(ustate *s, const char *key)
{
	size_t len = strlen(key), n;
	uint64_t rev = ustate_revision(s), v = 0;
	ustate_txn_result res = {0};
	char *parent, *child;
	const char *name;
	ustate_entry *e;
	unsigned flags;
	char **keys;
	ustate_op ops[3];
	int rc;

	rc = ustate_set(s, key, key, len, &v);
	FUZZ_CHECK(rc == 0 && v == 1, "set \"%s\": %d, version %llu", key, rc,
		   (unsigned long long)v);
	rc = ustate_get(s, key, &e);
	FUZZ_CHECK(rc == 0, "get \"%s\": %d", key, rc);
	FUZZ_CHECK(!strcmp(e->key, key) && e->value_len == len &&
			   !memcmp(e->value, key, len) && e->version == 1 &&
			   e->mod_revision == rev + 1,
		   "get \"%s\" gave back something else", key);
	ustate_entry_free(e);
	FUZZ_CHECK(ustate_exists(s, key) == 1, "exists \"%s\"", key);
	FUZZ_CHECK(ustate_version(s, key, &v) == 0 && v == 1, "version");
	FUZZ_CHECK(ustate_list(s, key, &keys, &n) == 0 && n == 1 &&
			   !strcmp(keys[0], key),
		   "list \"%s\"", key);
	ustate_list_free(keys, n);
	FUZZ_CHECK(ustate_node(s, key, &flags) == 0 &&
			   flags == USTATE_NODE_VALUE,
		   "node \"%s\": %#x", key, flags);

	/* The parent directory lists the last segment as a value. */
	name = strrchr(key, '/') + 1;
	parent = strndup(key, name - key > 1 ? (size_t)(name - key - 1) : 1);
	FUZZ_CHECK(parent, "out of memory");
	FUZZ_CHECK(dir_has(s, parent, name, USTATE_NODE_VALUE),
		   "readdir \"%s\" lacks \"%s\"", parent, name);
	free(parent);

	rc = ustate_compare_and_set(s, key, 2, "x", 1, &v);
	FUZZ_CHECK(rc == -ECANCELED && v == 1, "stale cas: %d", rc);
	rc = ustate_compare_and_set(s, key, 1, "x", 1, &v);
	FUZZ_CHECK(rc == 0 && v == 2, "cas: %d", rc);
	rc = ustate_create_if_not_exists(s, key, "y", 1, &v);
	FUZZ_CHECK(rc == -EEXIST && v == 2, "create: %d", rc);

	/* A child turns the key into a directory with a value. */
	if (len + 2 <= USTATE_KEY_MAX) {
		child = malloc(len + 3);
		FUZZ_CHECK(child, "out of memory");
		memcpy(child, key, len);
		memcpy(child + len, "/c", 3);
		FUZZ_CHECK(ustate_set(s, child, "", 0, NULL) == 0, "child");
		FUZZ_CHECK(ustate_node(s, key, &flags) == 0 &&
				   flags == (USTATE_NODE_VALUE |
					     USTATE_NODE_CHILDREN),
			   "node with a child: %#x", flags);
		FUZZ_CHECK(dir_has(s, key, "c", USTATE_NODE_VALUE),
			   "readdir \"%s\" lacks its child", key);
		FUZZ_CHECK(ustate_delete(s, child) == 0, "delete child");
		free(child);
	}

	memset(ops, 0, sizeof(ops));
	ops[0] = (ustate_op){
		.type = USTATE_OP_CHECK_VERSION, .key = key, .version = 2};
	ops[1] = (ustate_op){.type = USTATE_OP_CHECK_CHILDREN, .key = key};
	ops[2] = (ustate_op){.type = USTATE_OP_MKDIR, .key = key};
	rc = ustate_transaction(s, ops, 3, &res);
	FUZZ_CHECK(rc == 0, "transaction with mkdir: %d", rc);
	FUZZ_CHECK(ustate_node(s, key, &flags) == 0 &&
			   flags == (USTATE_NODE_VALUE | USTATE_NODE_RECORD),
		   "node with a record: %#x", flags);
	ops[0] = (ustate_op){.type = USTATE_OP_RMDIR, .key = key};
	ops[1] = (ustate_op){.type = USTATE_OP_DELETE, .key = key};
	rc = ustate_transaction(s, ops, 2, &res);
	FUZZ_CHECK(rc == 0, "transaction with rmdir, delete: %d", rc);

	FUZZ_CHECK(ustate_exists(s, key) == 0, "exists after delete");
	FUZZ_CHECK(ustate_get(s, key, &e) == -ENOENT, "get after delete");
	FUZZ_CHECK(ustate_delete(s, key) == -ENOENT, "second delete");
	FUZZ_CHECK(ustate_node(s, key, &flags) == 0 && flags == 0,
		   "node after delete: %#x", flags);
	FUZZ_CHECK(ustate_list(s, "", &keys, &n) == 0 && n == 0,
		   "store not empty");
	FUZZ_CHECK(ustate_list_dirs(s, "", &keys, &n) == 0 && n == 0,
		   "records left");
}

/* An invalid key gets err from every call, and nothing changes. */
static void refused(ustate *s, const char *key, int err)
{
	uint64_t rev = ustate_revision(s), v = 7;
	ustate_txn_result res = {0};
	ustate_entry *e = NULL;
	ustate_dirent *d = NULL;
	unsigned flags = 9;
	ustate_op op = {.key = key, .value = "v", .value_len = 1};
	ustate_op_type t;
	size_t n;

	FUZZ_CHECK(ustate_set(s, key, "v", 1, &v) == err && v == 7, "set");
	FUZZ_CHECK(ustate_get(s, key, &e) == err && !e, "get");
	FUZZ_CHECK(ustate_delete(s, key) == err, "delete");
	FUZZ_CHECK(ustate_exists(s, key) == err, "exists");
	FUZZ_CHECK(ustate_version(s, key, &v) == err && v == 7, "version");
	FUZZ_CHECK(ustate_compare_and_set(s, key, 0, "v", 1, &v) == err, "cas");
	FUZZ_CHECK(ustate_create_if_not_exists(s, key, "v", 1, &v) == err,
		   "create");
	if (strcmp(key, "/")) {
		FUZZ_CHECK(ustate_node(s, key, &flags) == err && flags == 9,
			   "node");
		FUZZ_CHECK(ustate_readdir(s, key, &d, &n) == err && !d,
			   "readdir");
	}
	for (t = USTATE_OP_CHECK_VERSION; t <= USTATE_OP_CHECK_CHILDREN; t++) {
		op.type = t;
		FUZZ_CHECK(ustate_transaction(s, &op, 1, &res) == err &&
				   res.failed == 0,
			   "transaction op %d", t);
	}
	FUZZ_CHECK(ustate_revision(s) == rev,
		   "a refused key changed the store");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char prefix[USTATE_KEY_MAX + 1];
	bool is_prefix = false;
	char **keys;
	int rc, ref;
	size_t n;
	ustate *s;
	char *key;

	/* A store of its own: no input depends on those before it. */
	FUZZ_CHECK(ustate_open_memory(&s, NULL) == 0, "open");
	FUZZ_CHECK(ustate_text_valid((const char *)data, size) ==
			   (ref_text(data, size) ? 0 : -EINVAL),
		   "text_valid disagrees");
	key = make_key(data, size);

	rc = ustate_key_valid(key);
	ref = ref_key(key);
	FUZZ_CHECK(rc == ref, "key_valid(\"%s\") = %d, the rules say %d", key,
		   rc, ref);
	if (rc == 0) {
		check_shape(key);
		round_trip(s, key);
	} else {
		FUZZ_CHECK(rc == -EINVAL || rc == -ENAMETOOLONG, "code %d", rc);
		refused(s, key, rc);
	}

	rc = ustate_prefix_valid(key);
	ref = ref_prefix(key);
	FUZZ_CHECK(rc == ref, "prefix_valid = %d, the rules say %d", rc, ref);
	rc = ustate_list(s, key, &keys, &n);
	FUZZ_CHECK(rc == ref && (rc < 0 || n == 0), "list: %d", rc);
	if (rc == 0)
		ustate_list_free(keys, n);

	rc = ustate_pattern_parse(key, prefix, &is_prefix);
	ref = ref_pattern(key);
	FUZZ_CHECK(rc == ref, "pattern_parse = %d, the rules say %d", rc, ref);
	if (rc == 0) {
		n = strlen(key);
		FUZZ_CHECK(is_prefix == (key[n - 1] == '*'), "is_prefix");
		FUZZ_CHECK(strlen(prefix) == n - is_prefix &&
				   !memcmp(prefix, key, n - is_prefix),
			   "pattern prefix");
		FUZZ_CHECK(is_prefix ||
				   ustate_pattern_match(prefix, n, false, key),
			   "an exact pattern misses its key");
		if (is_prefix)
			FUZZ_CHECK(ustate_pattern_match(prefix, n - 1, true,
							prefix),
				   "a prefix pattern misses its prefix");
	}
	free(key);
	ustate_close(s);
	return 0;
}
