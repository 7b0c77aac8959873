/* SPDX-License-Identifier: MIT */
/*
 * This file implements `ustate`, the command line of the store: one
 * subcommand per library call, over a SQLite database file, for scripts
 * and operators. Changes it makes reach the mount's inotify watchers
 * through the ustatefs replay. It touches state only through libustate.
 *
 * Exit codes: 0 success; 1 an error (the message says which); 2 bad
 * usage; 3 the key does not exist (get, delete, exists); 4 a version
 * conflict, an existing key or a failed transaction (cas, create, txn).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <ustate.h>
#include <ustate_json.h>

#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define EXIT_MISSING 3
#define EXIT_CONFLICT 4

#define DEFAULT_DB "/var/lib/ustate/state.db"

struct cmd {
	const char *name;
	const char *args;
	const char *help;
	int (*run)(ustate *s, int argc, char **argv);
	int min, max; /* positional arguments */
	int writes;
};

static int json_out;
static long from_rev;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = 1;
}

/* Map a library error to a message and an exit code. */
static int fail(const char *what, int rc)
{
	fprintf(stderr, "ustate: %s: %s\n", what, ustate_strerror(rc));
	if (rc == -ENOENT)
		return EXIT_MISSING;
	if (rc == -ECANCELED || rc == -EEXIST)
		return EXIT_CONFLICT;
	return EXIT_ERROR;
}

/* The value from argv[i], or all of stdin; caller frees *buf. */
static int read_value(int argc, char **argv, int i, char **buf, size_t *len)
{
	size_t cap = 4096, n = 0, got;
	char *p, *grown;

	if (i < argc) {
		*buf = strdup(argv[i]);
		*len = strlen(argv[i]);
		return *buf ? 0 : -ENOMEM;
	}
	p = malloc(cap);
	if (!p)
		return -ENOMEM;
	while ((got = fread(p + n, 1, cap - n, stdin)) > 0) {
		n += got;
		if (n == cap) {
			grown = realloc(p, cap * 2);
			if (!grown) {
				free(p);
				return -ENOMEM;
			}
			p = grown;
			cap *= 2;
		}
	}
	if (ferror(stdin)) {
		free(p);
		return -EIO;
	}
	*buf = p;
	*len = n;
	return 0;
}

static int print_json(json_t *v)
{
	int rc = json_dumpf(v, stdout, JSON_COMPACT) == 0 ? 0 : EXIT_ERROR;

	json_decref(v);
	putchar('\n');
	return rc;
}

/* A value as JSON text when it is valid UTF-8 without NUL, else null. */
static json_t *value_json(const ustate_entry *e)
{
	json_t *v = NULL;

	if (!memchr(e->value, '\0', e->value_len))
		v = json_stringn(e->value, e->value_len);
	return v ? v : json_null();
}

static int cmd_get(ustate *s, int argc, char **argv)
{
	ustate_entry *e;
	int rc;

	rc = ustate_get(s, argv[0], &e);
	if (rc < 0)
		return fail(argv[0], rc);
	if (json_out) {
		rc = print_json(
			json_pack("{s:s, s:o, s:I, s:I, s:I, s:I}", "key",
				  e->key, "value", value_json(e), "version",
				  (json_int_t)e->version, "created_at",
				  (json_int_t)e->created_at, "updated_at",
				  (json_int_t)e->updated_at, "revision",
				  (json_int_t)e->mod_revision));
	} else {
		rc = fwrite(e->value, 1, e->value_len, stdout) == e->value_len
			     ? 0
			     : EXIT_ERROR;
	}
	ustate_entry_free(e);
	return rc;
}

static int print_version(uint64_t v)
{
	if (json_out)
		return print_json(json_pack("{s:I}", "version", (json_int_t)v));
	printf("%llu\n", (unsigned long long)v);
	return 0;
}

static int cmd_set(ustate *s, int argc, char **argv)
{
	uint64_t v;
	size_t len;
	char *buf;
	int rc;

	rc = read_value(argc, argv, 1, &buf, &len);
	if (rc == 0)
		rc = ustate_set(s, argv[0], buf, len, &v);
	free(buf);
	return rc < 0 ? fail(argv[0], rc) : print_version(v);
}

static int cmd_create(ustate *s, int argc, char **argv)
{
	uint64_t v = 0;
	size_t len;
	char *buf;
	int rc;

	rc = read_value(argc, argv, 1, &buf, &len);
	if (rc == 0)
		rc = ustate_create_if_not_exists(s, argv[0], buf, len, &v);
	free(buf);
	if (rc == -EEXIST)
		fprintf(stderr, "ustate: %s exists at version %llu\n", argv[0],
			(unsigned long long)v);
	return rc < 0 ? fail(argv[0], rc) : print_version(v);
}

static int cmd_cas(ustate *s, int argc, char **argv)
{
	unsigned long long want;
	uint64_t v = 0;
	char *end, *buf;
	size_t len;
	int rc;

	errno = 0;
	want = strtoull(argv[1], &end, 10);
	if (errno || *end || !*argv[1] || argv[1][0] == '-') {
		fprintf(stderr, "ustate: cas: bad version \"%s\"\n", argv[1]);
		return EXIT_USAGE;
	}
	rc = read_value(argc, argv, 2, &buf, &len);
	if (rc == 0)
		rc = ustate_compare_and_set(s, argv[0], want, buf, len, &v);
	free(buf);
	if (rc == -ECANCELED)
		fprintf(stderr, "ustate: %s is at version %llu, not %llu\n",
			argv[0], (unsigned long long)v, want);
	return rc < 0 ? fail(argv[0], rc) : print_version(v);
}

static int cmd_delete(ustate *s, int argc, char **argv)
{
	int rc = ustate_delete(s, argv[0]);

	return rc < 0 ? fail(argv[0], rc) : 0;
}

static int cmd_exists(ustate *s, int argc, char **argv)
{
	int rc = ustate_exists(s, argv[0]);

	if (rc < 0)
		return fail(argv[0], rc);
	if (json_out)
		print_json(json_pack("{s:b}", "exists", rc));
	return rc ? 0 : EXIT_MISSING;
}

static int cmd_version(ustate *s, int argc, char **argv)
{
	uint64_t v;
	int rc = ustate_version(s, argv[0], &v);

	return rc < 0 ? fail(argv[0], rc) : print_version(v);
}

static int cmd_revision(ustate *s, int argc, char **argv)
{
	uint64_t rev = ustate_revision(s);

	if (json_out)
		return print_json(
			json_pack("{s:I}", "revision", (json_int_t)rev));
	printf("%llu\n", (unsigned long long)rev);
	return 0;
}

static int cmd_list(ustate *s, int argc, char **argv)
{
	json_t *arr = NULL;
	char **keys;
	size_t n, i;
	int rc;

	rc = ustate_list(s, argc ? argv[0] : "", &keys, &n);
	if (rc < 0)
		return fail("list", rc);
	if (json_out)
		arr = json_array();
	for (i = 0; i < n; i++) {
		if (arr)
			json_array_append_new(arr, json_string(keys[i]));
		else
			puts(keys[i]);
	}
	ustate_list_free(keys, n);
	return arr ? print_json(arr) : 0;
}

static int cmd_txn(ustate *s, int argc, char **argv)
{
	char buf[65536];
	ustate_script *sc;
	const char *reply;
	size_t got, len;
	int rc;

	rc = ustate_script_new(&sc, s);
	if (rc < 0)
		return fail("txn", rc);
	while (rc == 0 && (got = fread(buf, 1, sizeof(buf), stdin)) > 0)
		rc = ustate_script_feed(sc, buf, got);
	if (rc == 0)
		rc = ustate_script_result(sc);
	if (rc == 0) {
		fprintf(stderr, "ustate: txn: the script has no commit; "
				"nothing was written\n");
		ustate_script_free(sc);
		return EXIT_USAGE;
	}
	reply = ustate_script_reply(sc, &len);
	fwrite(reply, 1, len, rc > 0 ? stdout : stderr);
	ustate_script_free(sc);
	if (rc > 0)
		return 0;
	return rc == -ECANCELED || rc == -EEXIST || rc == -ENOENT
		       ? EXIT_CONFLICT
	       : rc == -EINVAL ? EXIT_USAGE
			       : EXIT_ERROR;
}

static int cmd_watch(ustate *s, int argc, char **argv)
{
	static const char *const types[] = {"", "created", "updated",
					    "deleted"};
	ustate_watch *w;
	ustate_event ev;
	int rc;

	rc = ustate_watch_open(&w, s, argv[0], (uint64_t)from_rev);
	if (rc < 0)
		return fail(argv[0], rc);
	while (!interrupted) {
		rc = ustate_watch_next(w, &ev, 250);
		if (rc == -EAGAIN || rc == -EINTR)
			continue;
		if (rc < 0)
			break;
		print_json(json_pack("{s:s, s:s, s:I, s:I}", "type",
				     types[ev.type], "key", ev.key, "version",
				     (json_int_t)ev.version, "revision",
				     (json_int_t)ev.revision));
		fflush(stdout);
	}
	ustate_watch_close(w);
	return rc < 0 && rc != -EAGAIN && rc != -EINTR ? fail("watch", rc) : 0;
}

static const struct cmd cmds[] = {
	{"get", "KEY", "print the value of KEY", cmd_get, 1, 1, 0},
	{"set", "KEY [VALUE]",
	 "write KEY (VALUE or stdin); print its "
	 "version",
	 cmd_set, 1, 2, 1},
	{"delete", "KEY", "remove KEY", cmd_delete, 1, 1, 1},
	{"exists", "KEY", "exit 0 if KEY exists, 3 if not", cmd_exists, 1, 1,
	 0},
	{"version", "KEY", "print the version of KEY (0: missing)", cmd_version,
	 1, 1, 0},
	{"list", "[PREFIX]", "print the keys that start with PREFIX", cmd_list,
	 0, 1, 0},
	{"cas", "KEY VERSION [VALUE]",
	 "write KEY only at VERSION (0: only "
	 "if missing); exit 4 on conflict",
	 cmd_cas, 2, 3, 1},
	{"create", "KEY [VALUE]",
	 "write KEY only if missing; exit 4 if "
	 "it exists",
	 cmd_create, 1, 2, 1},
	{"txn", "",
	 "run a transaction script from stdin (the /.txn "
	 "grammar); exit 4 if it fails",
	 cmd_txn, 0, 0, 1},
	{"watch", "PATTERN",
	 "print changes as JSON lines until "
	 "interrupted (--from REV replays history)",
	 cmd_watch, 1, 1, 0},
	{"revision", "", "print the store revision", cmd_revision, 0, 0, 0},
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *f)
{
	size_t i;

	fprintf(f,
		"usage: ustate [-d DB] [--json] COMMAND [ARGS]\n\n"
		"  -d, --db DB   the store (default $USTATE_DB or " DEFAULT_DB
		")\n"
		"  -j, --json    print results as JSON\n"
		"  -h, --help    this text; COMMAND --help for one command\n"
		"\ncommands:\n");
	for (i = 0; i < NCMDS; i++)
		fprintf(f, "  %-9s %-20s %s\n", cmds[i].name, cmds[i].args,
			cmds[i].help);
	fprintf(f, "\nexit: 0 ok, 1 error, 2 usage, 3 no such key, "
		   "4 conflict\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"json", no_argument, NULL, 'j'},
		{"from", required_argument, NULL, 'F'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	ustate_options o = USTATE_OPTIONS_INIT;
	const char *db = getenv("USTATE_DB");
	const struct cmd *c = NULL;
	int ch, rc, help = 0, nargs;
	char *end;
	ustate *s;
	size_t i;

	if (!db)
		db = DEFAULT_DB;
	while ((ch = getopt_long(argc, argv, "+d:jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			db = optarg;
			break;
		case 'j':
			json_out = 1;
			break;
		case 'h':
			help = 1;
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(help ? stdout : stderr);
		return help ? 0 : EXIT_USAGE;
	}
	for (i = 0; i < NCMDS; i++)
		if (!strcmp(argv[optind], cmds[i].name))
			c = &cmds[i];
	if (!c) {
		fprintf(stderr, "ustate: unknown command \"%s\"\n",
			argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	/*
	 * Options after the command (--json, --from, --help), anywhere among
	 * its arguments: parse the command's own argv, from a fresh start.
	 */
	argc -= optind;
	argv += optind;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			json_out = 1;
			break;
		case 'F':
			errno = 0;
			from_rev = strtol(optarg, &end, 10);
			if (errno || *end || from_rev < 0) {
				fprintf(stderr, "ustate: bad --from\n");
				return EXIT_USAGE;
			}
			break;
		case 'h':
			printf("usage: ustate [-d DB] %s %s\n  %s\n", c->name,
			       c->args, c->help);
			return 0;
		default:
			return EXIT_USAGE;
		}
	}
	nargs = argc - optind;
	if (nargs < c->min || nargs > c->max) {
		fprintf(stderr, "usage: ustate [-d DB] %s %s\n", c->name,
			c->args);
		return EXIT_USAGE;
	}
	o.read_only = !c->writes && access(db, W_OK) != 0 && !access(db, R_OK);
	rc = ustate_open_sqlite(&s, db, &o);
	if (rc < 0)
		return fail(db, rc);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	rc = c->run(s, nargs, argv + optind);
	ustate_close(s);
	return rc;
}
