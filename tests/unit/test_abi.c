/* SPDX-License-Identifier: MIT */
/*
 * This file tests the shared library's promise to programs built against
 * an older ustate.h: one built with version 1 of ustate_options (libustate
 * 0.1) opens stores with its smaller struct and calls the USTATE_0.1
 * version of ustate_options_get(), which must write no byte past that
 * struct (and one built with version 2, 0.2 and 0.3, the USTATE_0.2
 * version, no byte past its struct); and one built with the ustate_op of before
 * leases calls the USTATE_0.1 version of ustate_transaction(), which reads its
 * shorter ops; and one built with the ustate_meta of before times calls the
 * USTATE_0.1 version of ustate_meta_get(). It links libustate.so, not the
 * static archive, since symbol versions exist only there.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ustate.h"

/* ustate_options as libustate 0.1 declared it. */
struct options_v1 {
	unsigned version;
	ustate_sync sync;
	size_t max_value_size;
	int read_only;
	uint64_t history;
	size_t max_txn_ops;
};

/* What a program built against 0.1 binds ustate_options_get() to. */
void options_get_0_1(const ustate *s, struct options_v1 *out);
__asm__(".symver options_get_0_1, ustate_options_get@USTATE_0.1");

static void test_options_get_v1(void **state)
{
	struct options_v1 in = {.version = 1,
				.sync = USTATE_SYNC_OFF,
				.max_value_size = 999,
				.history = 12,
				.max_txn_ops = 3};
	struct {
		struct options_v1 o;
		unsigned char after[64];
	} out;
	unsigned char canary[64];
	ustate *s;
	size_t i;

	assert_int_equal(ustate_open_memory(&s, (const ustate_options *)&in),
			 0);
	memset(&out, 0x5a, sizeof(out));
	memset(canary, 0x5a, sizeof(canary));
	options_get_0_1(s, &out.o);
	assert_int_equal(out.o.version, 1);
	assert_int_equal(out.o.sync, USTATE_SYNC_OFF);
	assert_int_equal(out.o.max_value_size, 999);
	assert_int_equal(out.o.read_only, 0);
	assert_int_equal(out.o.history, 12);
	assert_int_equal(out.o.max_txn_ops, 3);
	/* Not one byte past the version 1 struct, padding aside. */
	for (i = 0; i < sizeof(out.after); i++)
		assert_int_equal(out.after[i], canary[i]);
	ustate_close(s);
}

/* ustate_op as libustate 0.1 and 0.2 declared it, before lease. */
struct op_v1 {
	ustate_op_type type;
	const char *key;
	uint64_t version;
	const void *value;
	size_t value_len;
};

/* What a program built against 0.1 binds ustate_transaction() to. */
int transaction_0_1(ustate *s, const struct op_v1 *ops, size_t n,
		    ustate_txn_result *res);
__asm__(".symver transaction_0_1, ustate_transaction@USTATE_0.1");

/*
 * An array of the shorter ops reads as such: the second op is where the
 * old struct puts it, and no lease is read out of it.
 */
static void test_transaction_v1(void **state)
{
	struct op_v1 ops[3] = {
		{.type = USTATE_OP_SET,
		 .key = "/a",
		 .value = "1",
		 .value_len = 1},
		{.type = USTATE_OP_CREATE,
		 .key = "/b",
		 .value = "22",
		 .value_len = 2},
		{.type = USTATE_OP_CHECK_VERSION, .key = "/c", .version = 0},
	};
	uint64_t v[3] = {0, 0, 0};
	ustate_txn_result res = {.versions = v};
	ustate_entry *e = NULL;
	ustate *s;

	assert_int_equal(ustate_open_memory(&s, NULL), 0);
	assert_int_equal(transaction_0_1(s, ops, 3, &res), 0);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], 1);
	assert_int_equal(ustate_get(s, "/b", &e), 0);
	assert_int_equal(e->value_len, 2);
	assert_null(e->lease);
	ustate_entry_free(e);
	ops[2].version = 5;
	assert_int_equal(transaction_0_1(s, ops, 3, &res), -ECANCELED);
	assert_int_equal(res.failed, 2);
	ustate_close(s);
}

/* ustate_options as libustate 0.2 and 0.3 declared it (version 2). */
struct options_v2 {
	struct options_v1 v1;
	unsigned request_timeout;
	unsigned dial_timeout;
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
	const char *user;
	const char *password;
	ustate_log_fn log;
	void *log_arg;
};

/* What a program built against 0.2 or 0.3 binds ustate_options_get() to. */
void options_get_0_2(const ustate *s, struct options_v2 *out);
__asm__(".symver options_get_0_2, ustate_options_get@USTATE_0.2");

/*
 * A version 2 struct opens a store (the version 3 fields take their
 * defaults), and the USTATE_0.2 ustate_options_get() writes not one byte
 * past it.
 */
static void test_options_get_v2(void **state)
{
	struct options_v2 in = {.v1 = {.version = 2,
				       .sync = USTATE_SYNC_OFF,
				       .max_value_size = 999,
				       .history = 12,
				       .max_txn_ops = 3},
				.request_timeout = 1234,
				.dial_timeout = 99,
				.user = "u"};
	struct {
		struct options_v2 o;
		unsigned char after[64];
	} out;
	unsigned char canary[64];
	ustate_options got;
	ustate *s;
	size_t i;

	assert_int_equal(ustate_open_memory(&s, (const ustate_options *)&in),
			 0);
	memset(&out, 0x5a, sizeof(out));
	memset(canary, 0x5a, sizeof(canary));
	options_get_0_2(s, &out.o);
	assert_int_equal(out.o.v1.version, 2);
	assert_int_equal(out.o.v1.max_txn_ops, 3);
	assert_int_equal(out.o.request_timeout, 1234);
	assert_int_equal(out.o.dial_timeout, 99);
	assert_string_equal(out.o.user, "u");
	for (i = 0; i < sizeof(out.after); i++)
		assert_int_equal(out.after[i], canary[i]);
	/* The newer fields got their defaults. */
	ustate_options_get(s, &got);
	assert_null(got.replica);
	assert_int_equal(got.consistency, USTATE_CONSISTENCY_LINEARIZABLE);
	ustate_close(s);
}

/* The default version, which this program's own calls bind to. */
static void test_options_get_v3(void **state)
{
	ustate_options in = USTATE_OPTIONS_INIT, got;
	ustate *s;

	in.request_timeout = 1234;
	in.user = "u";
	in.replica = "/nowhere";
	in.consistency = USTATE_CONSISTENCY_LOCAL;
	assert_int_equal(ustate_open_memory(&s, &in), 0);
	memset(&got, 0, sizeof(got));
	ustate_options_get(s, &got);
	assert_int_equal(got.version, USTATE_OPTIONS_VERSION);
	assert_int_equal(got.request_timeout, 1234);
	assert_string_equal(got.user, "u");
	assert_string_equal(got.replica, "/nowhere");
	assert_int_equal(got.consistency, USTATE_CONSISTENCY_LOCAL);
	ustate_close(s);
}

/* ustate_meta as libustate 0.1 to 0.4 declared it, before the times. */
struct meta_v1 {
	uint32_t uid;
	uint32_t gid;
	uint32_t mode;
};

/* What a program built against 0.1 to 0.4 binds ustate_meta_get() to. */
int meta_get_0_1(ustate *s, const char *path, unsigned which,
		 struct meta_v1 *out);
__asm__(".symver meta_get_0_1, ustate_meta_get@USTATE_0.1");

/*
 * The shorter metadata: a META of USTATE_META_V1_SIZE bytes sets the owner
 * and mode and drops the times, and the USTATE_0.1 ustate_meta_get()
 * writes not one byte past its struct; this program's own call sees the
 * times of a full one.
 */
static void test_meta_v1(void **state)
{
	struct meta_v1 in = {.uid = 7, .gid = 8, .mode = 0640};
	ustate_meta full = {.uid = 1,
			    .gid = 2,
			    .mode = 0600,
			    .flags = USTATE_META_MTIME,
			    .mtime_ns = -5,
			    .ctime_ns = 9},
		    got;
	ustate_op op = {.type = USTATE_OP_META,
			.key = "/k",
			.value = &full,
			.value_len = sizeof(full)};
	struct {
		struct meta_v1 m;
		unsigned char after[32];
	} out;
	unsigned char canary[32];
	ustate *s;
	size_t i;

	assert_int_equal(ustate_open_memory(&s, NULL), 0);
	assert_int_equal(ustate_set(s, "/k", "v", 1, NULL), 0);
	assert_int_equal(ustate_transaction(s, &op, 1, NULL), 0);
	assert_int_equal(ustate_meta_get(s, "/k", USTATE_META_KEY, &got), 0);
	assert_int_equal(got.flags, USTATE_META_MTIME);
	assert_int_equal(got.mtime_ns, -5);
	assert_int_equal(got.ctime_ns, 9);
	memset(&out, 0x5a, sizeof(out));
	memset(canary, 0x5a, sizeof(canary));
	assert_int_equal(meta_get_0_1(s, "/k", USTATE_META_KEY, &out.m), 0);
	assert_int_equal(out.m.uid, 1);
	assert_int_equal(out.m.mode, 0600);
	for (i = 0; i < sizeof(out.after); i++)
		assert_int_equal(out.after[i], canary[i]);
	op.value = &in;
	op.value_len = sizeof(in);
	assert_int_equal(ustate_transaction(s, &op, 1, NULL), 0);
	assert_int_equal(ustate_meta_get(s, "/k", USTATE_META_KEY, &got), 0);
	assert_int_equal(got.uid, 7);
	assert_int_equal(got.gid, 8);
	assert_int_equal(got.mode, 0640);
	assert_int_equal(got.flags, 0);
	assert_int_equal(got.ctime_ns, 0);
	/* Nor any other length. */
	op.value_len = sizeof(in) + 4;
	assert_int_equal(ustate_transaction(s, &op, 1, NULL), -EINVAL);
	ustate_close(s);
}

int main(void)
{
	static const struct CMUnitTest cases[] = {
		cmocka_unit_test(test_options_get_v1),
		cmocka_unit_test(test_options_get_v2),
		cmocka_unit_test(test_options_get_v3),
		cmocka_unit_test(test_transaction_v1),
		cmocka_unit_test(test_meta_v1),
	};

	return cmocka_run_group_tests_name("abi", cases, NULL, NULL);
}
