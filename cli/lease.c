/* SPDX-License-Identifier: MIT */
/*
 * This file implements `ustate lease`: grant, keepalive, revoke, get and
 * list of the store's leases (see ustate_lease_grant()), and `lease run`,
 * which holds a lease for as long as a command runs: it grants the lease,
 * keeps it alive at a third of its TTL, and revokes it when the command
 * exits, whose exit status it then passes on. Killed itself (SIGKILL, a
 * crash), it leaves the lease to expire after its TTL: the keys the
 * command attached to it go then.
 *
 * A lease that grant or run makes belongs to the caller, as a file it
 * created would: its effective uid and gid, mode 0666 without the umask
 * (what the mount shows for /.leases/NAME).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <ustate.h>

#include "cli_i.h"

#define RUN_TICK_MS 100 /* how often `lease run` looks at its command */

/* Report a failed call on lease name: fail(), in a lease's words. */
static int lease_fail(const char *name, int rc)
{
	char what[USTATE_SEGMENT_MAX + 8];

	if (rc == -ENOENT) {
		fprintf(stderr,
			"ustate: lease %s: no such lease (or it "
			"expired)\n",
			name);
		return EXIT_MISSING;
	}
	if (rc == -EINVAL || rc == -ENAMETOOLONG) {
		fprintf(stderr,
			"ustate: lease \"%s\": bad name (one key "
			"segment)\n",
			name);
		return EXIT_USAGE;
	}
	snprintf(what, sizeof(what), "lease %s", name);
	return fail(what, rc);
}

/*
 * Print a lease: TTL, time left, deadline, its owner if it has one and,
 * from a get, its keys.
 */
static int print_lease(const ustate_lease_info *li, bool keys)
{
	bool owned = li->flags & USTATE_LEASE_OWNED;
	json_t *arr, *own = NULL;
	char mode[8];
	size_t i;

	snprintf(mode, sizeof(mode), "%04o", (unsigned)li->mode & 07777);
	if (cli.json) {
		arr = json_array();
		for (i = 0; arr && i < li->nkeys; i++)
			json_array_append_new(arr, json_string(li->keys[i]));
		if (owned)
			own = json_pack("{s:I, s:I, s:s}", "uid",
					(json_int_t)li->uid, "gid",
					(json_int_t)li->gid, "mode", mode);
		return print_json(json_pack(
			"{s:s, s:I, s:I, s:I, s:o*, s:o*}", "name", li->name,
			"ttl", (json_int_t)li->ttl, "remaining_ms",
			(json_int_t)li->remaining_ms, "deadline_ms",
			(json_int_t)li->deadline, "owner", own, "keys",
			keys ? arr : (json_decref(arr), NULL)));
	}
	printf("ttl %lld\nremaining_ms %lld\n", (long long)li->ttl,
	       (long long)li->remaining_ms);
	if (owned)
		printf("owner %lu:%lu %s\n", (unsigned long)li->uid,
		       (unsigned long)li->gid, mode);
	for (i = 0; keys && i < li->nkeys; i++)
		printf("key %s\n", li->keys[i]);
	return 0;
}

/*
 * The owner of a lease this process makes: its effective ids and 0666
 * without its umask, read from /proc (umask(2) would have to change it
 * while the store's threads may create files).
 */
static ustate_meta caller_owner(void)
{
	ustate_meta m = {.uid = geteuid(), .gid = getegid(), .mode = 0644};
	char line[128];
	unsigned mask;
	FILE *f;

	f = fopen("/proc/self/status", "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Umask: %o", &mask) == 1) {
			m.mode = 0666 & ~mask;
			break;
		}
	}
	if (f)
		fclose(f);
	return m;
}

/* A TTL argument: whole seconds, 1 .. USTATE_LEASE_TTL_MAX. */
static int parse_ttl(const char *text, int64_t *ttl)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno || *end || !*text || v < 1 || v > USTATE_LEASE_TTL_MAX) {
		fprintf(stderr,
			"ustate: lease: bad TTL \"%s\": whole seconds, "
			"1 to %d\n",
			text, USTATE_LEASE_TTL_MAX);
		return -EINVAL;
	}
	*ttl = v;
	return 0;
}

static int lease_grant(ustate *s, const char *name, const char *ttl_text)
{
	ustate_meta owner = caller_owner();
	ustate_lease_info *li = NULL;
	int64_t ttl;
	int rc;

	if (parse_ttl(ttl_text, &ttl) < 0)
		return EXIT_USAGE;
	rc = ustate_lease_grant_owned(s, name, ttl, &owner, &li);
	if (rc < 0)
		return lease_fail(name, rc);
	rc = print_lease(li, false);
	ustate_lease_info_free(li);
	return rc;
}

static int lease_keepalive(ustate *s, const char *name)
{
	ustate_lease_info *li = NULL;
	int rc;

	rc = ustate_lease_keepalive(s, name, &li);
	if (rc < 0)
		return lease_fail(name, rc);
	rc = print_lease(li, false);
	ustate_lease_info_free(li);
	return rc;
}

static int lease_get(ustate *s, const char *name)
{
	ustate_lease_info *li = NULL;
	int rc;

	rc = ustate_lease_get(s, name, &li);
	if (rc < 0)
		return lease_fail(name, rc);
	rc = print_lease(li, true);
	ustate_lease_info_free(li);
	return rc;
}

static int lease_list(ustate *s)
{
	json_t *arr = NULL;
	char **names;
	size_t n, i;
	int rc;

	rc = ustate_lease_list(s, &names, &n);
	if (rc < 0)
		return fail("lease list", rc);
	if (cli.json)
		arr = json_array();
	for (i = 0; i < n; i++) {
		if (arr)
			json_array_append_new(arr, json_string(names[i]));
		else
			puts(names[i]);
	}
	ustate_list_free(names, n);
	return arr ? print_json(arr) : 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The exit code of a command that ended with status st, as a shell's. */
static int exit_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return EXIT_ERROR;
}

/*
 * Start argv with USTATE_LEASE=name in its environment; its pid, or -1
 * after saying why.
 */
static pid_t spawn(char **argv, const char *name)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("ustate: lease run: fork");
		return -1;
	}
	if (pid == 0) {
		setenv("USTATE_LEASE", name, 1);
		execvp(argv[0], argv);
		fprintf(stderr, "ustate: lease run: %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	return pid;
}

/*
 * Hold lease name while argv runs. A keepalive every TTL / 3 keeps it
 * (one that fails for a while is retried at the next tick); a lease
 * lost anyway (revoked by someone else, or expired while this process
 * was stopped) ends the command with SIGTERM and exits 1. SIGINT and
 * SIGTERM to ustate pass to the command, which decides when to end.
 */
static int lease_run(ustate *s, const char *name, char **argv)
{
	const struct timespec tick = {0, RUN_TICK_MS * 1000000L};
	int64_t every, next;
	bool lost = false, forwarded = false;
	ustate_meta owner;
	int rc, st = 0;
	pid_t pid;

	if (cli.ttl < 1) {
		fprintf(stderr, "ustate: lease run: --ttl N is required\n");
		return EXIT_USAGE;
	}
	owner = caller_owner();
	rc = ustate_lease_grant_owned(s, name, cli.ttl, &owner, NULL);
	if (rc < 0)
		return lease_fail(name, rc);
	pid = spawn(argv, name);
	if (pid < 0) {
		ustate_lease_revoke(s, name);
		return EXIT_ERROR;
	}
	every = cli.ttl * 1000 / 3;
	next = mono_ms() + every;
	for (;;) {
		rc = waitpid(pid, &st, WNOHANG);
		if (rc == pid || (rc < 0 && errno != EINTR))
			break;
		if (interrupted && !forwarded) {
			kill(pid, SIGTERM);
			forwarded = true;
		}
		if (!lost && mono_ms() >= next) {
			rc = ustate_lease_keepalive(s, name, NULL);
			if (rc == -ENOENT) {
				fprintf(stderr,
					"ustate: lease run: lease %s lost; "
					"ending %s\n",
					name, argv[0]);
				kill(pid, SIGTERM);
				lost = true;
			} else if (rc < 0) {
				fprintf(stderr,
					"ustate: lease run: keepalive of %s: "
					"%s (tried again)\n",
					name, ustate_strerror(rc));
			} else {
				next = mono_ms() + every;
			}
		}
		nanosleep(&tick, NULL);
	}
	if (!lost) {
		rc = ustate_lease_revoke(s, name);
		if (rc < 0 && rc != -ENOENT)
			lease_fail(name, rc);
	}
	return lost ? EXIT_ERROR : exit_code(st);
}

int cmd_lease(ustate *s, int argc, char **argv)
{
	const char *sub = argv[0];

	if (!strcmp(sub, "grant") && argc == 3)
		return lease_grant(s, argv[1], argv[2]);
	if (!strcmp(sub, "keepalive") && argc == 2)
		return lease_keepalive(s, argv[1]);
	if (!strcmp(sub, "revoke") && argc == 2) {
		int rc = ustate_lease_revoke(s, argv[1]);

		return rc < 0 ? lease_fail(argv[1], rc) : 0;
	}
	if (!strcmp(sub, "get") && argc == 2)
		return lease_get(s, argv[1]);
	if (!strcmp(sub, "list") && argc == 1)
		return lease_list(s);
	if (!strcmp(sub, "run") && argc >= 3)
		return lease_run(s, argv[1], argv + 2);
	fprintf(stderr, "ustate: lease: bad arguments; see ustate lease "
			"--help\n");
	return EXIT_USAGE;
}
