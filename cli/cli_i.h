/* SPDX-License-Identifier: MIT */
/*
 * This file declares what the two parts of the `ustate` command share: its
 * exit codes, the options parsed from the command line, error reporting
 * and JSON output (ustate.c), the operator commands (admin.c) and the
 * lease commands (lease.c).
 */
#ifndef USTATE_CLI_I_H
#define USTATE_CLI_I_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <ustate.h>

#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define EXIT_MISSING 3
#define EXIT_CONFLICT 4
#define EXIT_PROBLEMS 5 /* check found problems */

/* The options of one run, as main() parsed them. */
struct cli_opts {
	int json;      /* --json */
	uint64_t from; /* watch --from */
	int merge;     /* restore --merge */
	int replace;   /* restore --replace */
	int force;     /* backup --force */
	int keep_set;  /* compact --keep */
	uint64_t keep;
	int revision_set; /* compact --revision */
	uint64_t revision;
	const char *lease; /* set, create --lease */
	int64_t ttl;	   /* lease run --ttl */
};

extern struct cli_opts cli;
extern volatile sig_atomic_t interrupted;

/* Print "ustate: what: <error>" and return the exit code for rc. */
int fail(const char *what, int rc);

/* Print v as one compact line, take over its reference; 0 or EXIT_ERROR. */
int print_json(json_t *v);

int cmd_dump(ustate *s, int argc, char **argv);
int cmd_restore(ustate *s, int argc, char **argv);
int cmd_backup(ustate *s, int argc, char **argv);
int cmd_check(ustate *s, int argc, char **argv);
int cmd_compact(ustate *s, int argc, char **argv);
int cmd_lease(ustate *s, int argc, char **argv); /* lease.c */

/*
 * What check says, and its exit code, when the store does not open; -1
 * when it has nothing to add to the usual message.
 */
int check_unopened(const char *db, int rc);

#endif /* USTATE_CLI_I_H */
