/* SPDX-License-Identifier: MIT */
/*
 * This file tests the key rules of ustate.h: a table of bad keys, each with
 * the exact code it must get (-EINVAL, or -ENAMETOOLONG for a length
 * limit), and a table of good keys. Each entry is one cmocka test that
 * checks the key with ustate_key_valid() and then through every call that
 * takes a key (get, set, delete, exists, version, compare-and-set,
 * create, each op type of a transaction, an exact watch pattern) on a
 * memory store and on a SQLite store: a bad key gets the same code
 * everywhere and leaves the store as it was, a good key works everywhere
 * and comes back byte for byte.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ustate.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Long keys, filled in by build_long_keys() before the tests run: the
 * tables below point at them.
 */
static char seg255[1 + 255 + 1];    /* "/" + 255 bytes: longest segment */
static char seg256[1 + 256 + 1];    /* one byte too many */
static char nested256[3 + 256 + 1]; /* "/a/" + 256 bytes */
static char key2048[2048 + 1];	    /* valid segments, 2048 bytes */
static char key2049[2049 + 1];	    /* valid segments, 2049 bytes */
static char key4096[4096 + 1];	    /* far too long, no NUL in reach */
static char utf8_255[1 + 255 + 1];  /* 85 three-byte characters */

/* A key of len bytes made of "/" + 200-byte segments, then a shorter one. */
static void fill_segments(char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = i % 201 == 0 ? '/' : 'a' + i % 26;
	buf[len] = '\0';
}

static void build_long_keys(void)
{
	size_t i;

	seg255[0] = '/';
	memset(seg255 + 1, 'x', 255);
	seg256[0] = '/';
	memset(seg256 + 1, 'x', 256);
	memcpy(nested256, "/a/", 3);
	memset(nested256 + 3, 'y', 256);
	fill_segments(key2048, 2048);
	fill_segments(key2049, 2049);
	fill_segments(key4096, 4096);
	utf8_255[0] = '/';
	for (i = 0; i < 85; i++)
		memcpy(utf8_255 + 1 + 3 * i, "\xe2\x82\xac", 3);
}

struct key_case {
	const char *what; /* the test's name */
	const char *key;
	int err; /* 0 for a good key */
};

static const struct key_case bad_keys[] = {
	{"bad: NULL", NULL, -EINVAL},
	{"bad: empty", "", -EINVAL},
	{"bad: no leading slash", "a", -EINVAL},
	{"bad: relative path", "a/b", -EINVAL},
	{"bad: leading space", " /a", -EINVAL},
	{"bad: root only", "/", -EINVAL},
	{"bad: trailing slash", "/a/", -EINVAL},
	{"bad: double slash only", "//", -EINVAL},
	{"bad: leading double slash", "//a", -EINVAL},
	{"bad: empty inner segment", "/a//b", -EINVAL},
	{"bad: dot", "/.", -EINVAL},
	{"bad: dot dot", "/..", -EINVAL},
	{"bad: trailing dot", "/a/.", -EINVAL},
	{"bad: trailing dot dot", "/a/..", -EINVAL},
	{"bad: inner dot", "/a/./b", -EINVAL},
	{"bad: inner dot dot", "/a/../b", -EINVAL},
	{"bad: reserved .value", "/.value", -EINVAL},
	{"bad: reserved .value inside", "/a/.value/b", -EINVAL},
	{"bad: reserved .txn", "/.txn", -EINVAL},
	{"bad: reserved .txn last", "/a/.txn", -EINVAL},
	{"bad: lone continuation byte", "/\x80", -EINVAL},
	{"bad: continuation byte inside",
	 "/a\xbf"
	 "b",
	 -EINVAL},
	{"bad: overlong slash c0 af", "/\xc0\xaf", -EINVAL},
	{"bad: overlong c1 bf", "/\xc1\xbf", -EINVAL},
	{"bad: overlong three bytes", "/\xe0\x80\xaf", -EINVAL},
	{"bad: overlong four bytes", "/\xf0\x80\x80\x80", -EINVAL},
	{"bad: surrogate d800", "/\xed\xa0\x80", -EINVAL},
	{"bad: surrogate dfff", "/\xed\xbf\xbf", -EINVAL},
	{"bad: above U+10FFFF", "/\xf4\x90\x80\x80", -EINVAL},
	{"bad: lead byte f5", "/\xf5\x80\x80\x80", -EINVAL},
	{"bad: byte ff", "/\xff", -EINVAL},
	{"bad: truncated at end", "/\xe2\x82", -EINVAL},
	{"bad: truncated before slash", "/\xe2\x82/b", -EINVAL},
	{"bad: truncated four bytes", "/a\xf0\x9f\x98", -EINVAL},
	{"bad: control 01", "/\x01", -EINVAL},
	{"bad: control 1f", "/a\x1f", -EINVAL},
	{"bad: tab", "/a\tb", -EINVAL},
	{"bad: newline", "/a\n", -EINVAL},
	{"bad: carriage return", "/a\r/b", -EINVAL},
	{"bad: DEL 7f", "/\x7f", -EINVAL},
	{"bad: C1 U+0085", "/\xc2\x85", -EINVAL},
	{"bad: C1 U+009F", "/a\xc2\x9f", -EINVAL},
	{"bad: 256-byte segment", seg256, -ENAMETOOLONG},
	{"bad: 256-byte inner segment", nested256, -ENAMETOOLONG},
	{"bad: 2049-byte key", key2049, -ENAMETOOLONG},
	{"bad: 4096-byte key", key4096, -ENAMETOOLONG},
};

static const struct key_case good_keys[] = {
	{"good: one segment", "/a", 0},
	{"good: nested", "/a/b/c", 0},
	{"good: UTF-8 e acute", "/caf\xc3\xa9", 0},
	{"good: UTF-8 euro sign", "/price/\xe2\x82\xac", 0},
	{"good: emoji", "/\xf0\x9f\x98\x80/x", 0},
	{"good: U+10FFFF", "/\xf4\x8f\xbf\xbf", 0},
	{"good: no-break space U+00A0",
	 "/a\xc2\xa0"
	 "b",
	 0},
	{"good: spaces", "/my key/with spaces ", 0},
	{"good: dot inside", "/a.b", 0},
	{"good: starts with two dots", "/..a", 0},
	{"good: three dots", "/...", 0},
	{"good: hidden", "/.hidden", 0},
	{"good: ends with dots", "/a..", 0},
	{"good: .values is not .value", "/.values/.txn2", 0},
	{"good: star", "/*", 0},
	{"good: star inside", "/a*b/?", 0},
	{"good: punctuation", "/a:b;c=d&e%20\\f'\"g", 0},
	{"good: 255-byte segment", seg255, 0},
	{"good: 255 bytes of euro signs", utf8_255, 0},
	{"good: 2048-byte key", key2048, 0},
};

/* The stores one test runs against, both fresh. */
struct fixture {
	const struct key_case *kc;
	char dir[64];
	ustate *stores[2];
};

static void remove_dir(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *d;
	DIR *dp;

	dp = opendir(dir);
	if (!dp)
		return;
	while ((d = readdir(dp))) {
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		unlink(path);
	}
	closedir(dp);
	rmdir(dir);
}

static int setup(void **state)
{
	ustate_options o = USTATE_OPTIONS_INIT;
	char path[PATH_MAX];
	struct fixture *f;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->kc = *state;
	strcpy(f->dir, "/tmp/ustate-keys-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	o.sync = USTATE_SYNC_OFF;
	snprintf(path, sizeof(path), "%s/store.db", f->dir);
	if (ustate_open_memory(&f->stores[0], &o) < 0 ||
	    ustate_open_sqlite(&f->stores[1], path, &o) < 0) {
		ustate_close(f->stores[0]);
		remove_dir(f->dir);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ustate_close(f->stores[0]);
	ustate_close(f->stores[1]);
	remove_dir(f->dir);
	free(f);
	return 0;
}

/* The store holds nothing and has never changed. */
static void assert_untouched(ustate *s)
{
	char **keys = (char **)1;
	size_t n = 99;

	assert_int_equal(ustate_revision(s), 0);
	assert_int_equal(ustate_list(s, "", &keys, &n), 0);
	assert_int_equal(n, 0);
	assert_null(keys);
}

/* A bad key gets its code from every call that takes a key. */
static void check_bad_key(ustate *s, const char *key, int err)
{
	static const ustate_op_type types[] = {
		USTATE_OP_SET,
		USTATE_OP_CREATE,
		USTATE_OP_DELETE,
		USTATE_OP_CHECK_VERSION,
	};
	ustate_entry *e = (ustate_entry *)1;
	ustate_watch *w = (ustate_watch *)1;
	uint64_t v = 77, versions[3];
	ustate_txn_result res;
	ustate_op ops[3];
	size_t i;

	assert_int_equal(ustate_set(s, key, "v", 1, &v), err);
	assert_int_equal(v, 77);
	assert_int_equal(ustate_get(s, key, &e), err);
	assert_ptr_equal(e, (ustate_entry *)1);
	assert_int_equal(ustate_delete(s, key), err);
	assert_int_equal(ustate_exists(s, key), err);
	assert_int_equal(ustate_version(s, key, &v), err);
	assert_int_equal(v, 77);
	assert_int_equal(ustate_compare_and_set(s, key, 0, "v", 1, &v), err);
	assert_int_equal(v, 77);
	assert_int_equal(ustate_create_if_not_exists(s, key, "v", 1, &v), err);
	assert_int_equal(v, 77);
	assert_int_equal(ustate_watch_open(&w, s, key, 0), err);
	assert_ptr_equal(w, (ustate_watch *)1);

	/* Valid ops before the bad one must not be applied either. */
	for (i = 0; i < ARRAY_SIZE(types); i++) {
		memset(ops, 0, sizeof(ops));
		ops[0] = (ustate_op){.type = USTATE_OP_SET,
				     .key = "/ok",
				     .value = "1",
				     .value_len = 1};
		ops[1] = (ustate_op){.type = USTATE_OP_CHECK_VERSION,
				     .key = "/other",
				     .version = 0};
		ops[2] = (ustate_op){.type = types[i],
				     .key = key,
				     .value = "2",
				     .value_len = 1};
		memset(&res, 0, sizeof(res));
		res.versions = versions;
		assert_int_equal(ustate_transaction(s, ops, 3, &res), err);
		assert_int_equal(res.failed, 2);

		memset(&res, 0, sizeof(res));
		assert_int_equal(ustate_transaction(s, &ops[2], 1, &res), err);
		assert_int_equal(res.failed, 0);
	}
	assert_untouched(s);
}

static void test_bad_key(void **state)
{
	struct fixture *f = *state;
	size_t i;

	assert_int_equal(ustate_key_valid(f->kc->key), f->kc->err);
	for (i = 0; i < ARRAY_SIZE(f->stores); i++)
		check_bad_key(f->stores[i], f->kc->key, f->kc->err);
}

/* A good key works through every call and comes back byte for byte. */
static void check_good_key(ustate *s, const char *key)
{
	ustate_txn_result res = {0};
	ustate_event ev;
	ustate_watch *w;
	ustate_entry *e;
	uint64_t v = 0;
	char **keys;
	size_t n;
	ustate_op ops[2] = {
		{.type = USTATE_OP_CHECK_VERSION, .key = key, .version = 2},
		{.type = USTATE_OP_SET,
		 .key = key,
		 .value = "three",
		 .value_len = 5},
	};

	assert_int_equal(ustate_watch_open(&w, s, key, 0), 0);
	assert_int_equal(ustate_exists(s, key), 0);
	assert_int_equal(ustate_set(s, key, "one", 3, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(ustate_exists(s, key), 1);
	assert_int_equal(ustate_get(s, key, &e), 0);
	assert_string_equal(e->key, key);
	assert_int_equal(e->value_len, 3);
	assert_memory_equal(e->value, "one", 4);
	ustate_entry_free(e);

	assert_int_equal(ustate_list(s, "", &keys, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(keys[0], key);
	ustate_list_free(keys, n);
	assert_int_equal(ustate_list(s, key, &keys, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(keys[0], key);
	ustate_list_free(keys, n);

	assert_int_equal(ustate_create_if_not_exists(s, key, "x", 1, &v),
			 -EEXIST);
	assert_int_equal(v, 1);
	assert_int_equal(ustate_compare_and_set(s, key, 1, "two", 3, &v), 0);
	assert_int_equal(v, 2);
	assert_int_equal(ustate_transaction(s, ops, 2, &res), 0);
	assert_int_equal(ustate_version(s, key, &v), 0);
	assert_int_equal(v, 3);

	/* The watch reports the key as it was written. */
	assert_int_equal(ustate_watch_next(w, &ev, 1000), 0);
	assert_int_equal(ev.type, USTATE_EVENT_CREATED);
	assert_string_equal(ev.key, key);

	assert_int_equal(ustate_delete(s, key), 0);
	assert_int_equal(ustate_exists(s, key), 0);
	assert_int_equal(ustate_get(s, key, &e), -ENOENT);
	ustate_watch_close(w);
}

static void test_good_key(void **state)
{
	struct fixture *f = *state;
	size_t i;

	assert_int_equal(ustate_key_valid(f->kc->key), 0);
	for (i = 0; i < ARRAY_SIZE(f->stores); i++)
		check_good_key(f->stores[i], f->kc->key);
}

/* The limits sit exactly where the header puts them. */
static void test_limits(void **state)
{
	(void)state;
	assert_int_equal(strlen(seg255), USTATE_SEGMENT_MAX + 1);
	assert_int_equal(strlen(seg256), USTATE_SEGMENT_MAX + 2);
	assert_int_equal(strlen(key2048), USTATE_KEY_MAX);
	assert_int_equal(strlen(key2049), USTATE_KEY_MAX + 1);
	assert_int_equal(strlen(utf8_255), USTATE_SEGMENT_MAX + 1);
	assert_true(ARRAY_SIZE(bad_keys) >= 30);
}

int main(void)
{
	struct CMUnitTest
		tests[1 + ARRAY_SIZE(bad_keys) + ARRAY_SIZE(good_keys)];
	size_t i, n = 0;

	build_long_keys();
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_limits);
	for (i = 0; i < ARRAY_SIZE(bad_keys); i++)
		tests[n++] = (struct CMUnitTest){
			.name = bad_keys[i].what,
			.test_func = test_bad_key,
			.setup_func = setup,
			.teardown_func = teardown,
			.initial_state = (void *)&bad_keys[i],
		};
	for (i = 0; i < ARRAY_SIZE(good_keys); i++)
		tests[n++] = (struct CMUnitTest){
			.name = good_keys[i].what,
			.test_func = test_good_key,
			.setup_func = setup,
			.teardown_func = teardown,
			.initial_state = (void *)&good_keys[i],
		};
	return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}
