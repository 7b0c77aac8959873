/* SPDX-License-Identifier: MIT */
/*
 * The history each fixture of this folder holds, written by the libustate
 * of the version that names the fixture (make-fixtures builds it): keys
 * set, created, compare-and-set, deleted, transactions with directory
 * records, and writes by a program outside libustate (the sqlite3 API on
 * the same file), so that a migration has every kind of change to keep.
 * Only calls that every shipped version has.
 *   scenario DB
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ustate.h"

static void ok(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "scenario: %s: %s\n", what, strerror(-rc));
		exit(1);
	}
}

static void outside(const char *path, const char *sql)
{
	sqlite3 *db;

	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "scenario: %s: %s\n", sql, sqlite3_errmsg(db));
		exit(1);
	}
	sqlite3_close(db);
}

int main(int argc, char **argv)
{
	ustate_options o = USTATE_OPTIONS_INIT;
	ustate_op ops[4];
	uint64_t v;
	ustate *s;

	if (argc != 2)
		return 2;
	ok(ustate_open_sqlite(&s, argv[1], &o), "open");
	ok(ustate_set(s, "/app/a", "1", 1, &v), "set");
	ok(ustate_set(s, "/app/a", "22", 2, &v), "set");
	ok(ustate_set(s, "/app/b", "x", 1, &v), "set");
	ok(ustate_create_if_not_exists(s, "/app/c", "c", 1, &v), "create");
	ok(ustate_compare_and_set(s, "/app/a", 2, "333", 3, &v), "cas");
	ok(ustate_delete(s, "/app/b"), "delete");
	ops[0] = (ustate_op){.type = USTATE_OP_SET,
			     .key = "/t/1",
			     .value = "one",
			     .value_len = 3};
	ops[1] = (ustate_op){.type = USTATE_OP_SET,
			     .key = "/t/2",
			     .value = "two",
			     .value_len = 3};
	ops[2] = (ustate_op){.type = USTATE_OP_MKDIR, .key = "/d"};
	ops[3] = (ustate_op){.type = USTATE_OP_DELETE, .key = "/app/c"};
	ok(ustate_transaction(s, ops, 4, NULL), "transaction");
	ops[0] = (ustate_op){.type = USTATE_OP_MKDIR, .key = "/empty"};
	ok(ustate_transaction(s, ops, 1, NULL), "mkdir");
	ustate_close(s);
	/* The Rust crate's way: plain rows, one statement each. */
	outside(argv[1], "INSERT INTO kv_store VALUES ('/ext', x'6869', 1, "
			 "1700000000, 1700000000)");
	outside(argv[1], "UPDATE kv_store SET value = x'21', version = "
			 "version + 1 WHERE key = '/ext'");
	ok(ustate_open_sqlite(&s, argv[1], &o), "reopen");
	ok(ustate_set(s, "/t/1", "uno", 3, &v), "set");
	ustate_close(s);
	return 0;
}
