/* SPDX-License-Identifier: MIT */
/*
 * This file implements `ustate`, the command line of the store: one
 * subcommand per library call, over the store that -d names (a SQLite
 * database file, :memory: or an etcd URL, opened by ustate_open()), for
 * scripts and operators. Changes it makes reach the mount's inotify
 * watchers through the ustatefs replay. It touches state only through
 * libustate.
 *
 * Exit codes: 0 success; 1 an error (the message says which); 2 bad
 * usage; 3 the key does not exist (get, delete, exists), or the lease
 * (lease, set --lease, create --lease); 4 a version
 * conflict, an existing key or a failed transaction (cas, create, txn),
 * or a restore into a store that is not empty; 5 check found problems.
 * The operator commands (dump, restore, backup, check, compact) are in
 * admin.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <jansson.h>
#include <ustate.h>
#include <ustate_json.h>

#include "cli_i.h"

#define DEFAULT_DB "/var/lib/ustate/state.db"

/* How a command opens the store. */
enum open_mode {
	OPEN_READ,     /* read-only if the file is, created if missing */
	OPEN_WRITE,    /* writable, created if missing */
	OPEN_EXISTING, /* read-only; the file must exist */
	OPEN_MODIFY,   /* writable; the file must exist */
};

struct cmd {
	const char *name;
	const char *args;
	const char *help;
	const char *details; /* more lines for COMMAND --help, or NULL */
	int (*run)(ustate *s, int argc, char **argv);
	int min, max; /* positional arguments */
	enum open_mode open;
	const struct option *opts; /* NULL: only --json and --help */
	const char *shortopts;	   /* NULL: "jh" */
	/*
	 * What to say, and exit with, when the store does not open; -1 for
	 * the usual message.
	 */
	int (*unopened)(const char *db, int rc);
};

struct cli_opts cli;
volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = 1;
}

/*
 * A write with --lease that failed -ENOENT: the lease is what is missing
 * (a missing key is no error for set and create).
 */
static int lease_missing(int rc)
{
	if (rc != -ENOENT || !cli.lease)
		return 0;
	fprintf(stderr, "ustate: lease %s: no such lease (or it expired)\n",
		cli.lease);
	return 1;
}

/* Map a library error to a message and an exit code. */
int fail(const char *what, int rc)
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

int print_json(json_t *v)
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
	if (cli.json) {
		rc = print_json(json_pack(
			"{s:s, s:o, s:I, s:I, s:I, s:I, s:s*}", "key", e->key,
			"value", value_json(e), "version",
			(json_int_t)e->version, "created_at",
			(json_int_t)e->created_at, "updated_at",
			(json_int_t)e->updated_at, "revision",
			(json_int_t)e->mod_revision, "lease", e->lease));
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
	if (cli.json)
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
		rc = ustate_set_leased(s, argv[0], buf, len, cli.lease, &v);
	free(buf);
	if (lease_missing(rc))
		return EXIT_MISSING;
	return rc < 0 ? fail(argv[0], rc) : print_version(v);
}

static int cmd_create(ustate *s, int argc, char **argv)
{
	uint64_t v = 0;
	size_t len;
	char *buf;
	int rc;

	ustate_op op = {.type = USTATE_OP_CREATE, .key = argv[0]};
	ustate_txn_result res = {.versions = &v};

	rc = read_value(argc, argv, 1, &buf, &len);
	if (rc == 0) {
		op.value = buf;
		op.value_len = len;
		op.lease = cli.lease;
		rc = ustate_transaction(s, &op, 1, &res);
		if (rc == -EEXIST)
			v = res.found;
	}
	free(buf);
	if (rc == -EEXIST)
		fprintf(stderr, "ustate: %s exists at version %llu\n", argv[0],
			(unsigned long long)v);
	if (lease_missing(rc))
		return EXIT_MISSING;
	return rc < 0 ? fail(argv[0], rc) : print_version(v);
}

/* A decimal number of 64 bits; -EINVAL for anything else. */
static int parse_u64(const char *text, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || *end || !*text || text[0] == '-' || text[0] == '+' ||
	    text[0] == ' ')
		return -EINVAL;
	*out = v;
	return 0;
}

static int cmd_cas(ustate *s, int argc, char **argv)
{
	uint64_t want, v = 0;
	char *buf;
	size_t len;
	int rc;

	if (parse_u64(argv[1], &want) < 0) {
		fprintf(stderr, "ustate: cas: bad version \"%s\"\n", argv[1]);
		return EXIT_USAGE;
	}
	rc = read_value(argc, argv, 2, &buf, &len);
	if (rc == 0)
		rc = ustate_compare_and_set(s, argv[0], want, buf, len, &v);
	free(buf);
	if (rc == -ECANCELED)
		fprintf(stderr, "ustate: %s is at version %llu, not %llu\n",
			argv[0], (unsigned long long)v,
			(unsigned long long)want);
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
	if (cli.json)
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

	if (cli.json)
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
	if (cli.json)
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
	static const char *const types[] = {
		"",	   "created",	  "updated",
		"deleted", "dir_created", "dir_deleted"};
	ustate_watch *w;
	ustate_event ev;
	int rc;

	rc = ustate_watch_open(&w, s, argv[0], cli.from);
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

#define COMMON_OPTS                                                            \
	{"json", no_argument, NULL, 'j'},                                      \
	{                                                                      \
		"help", no_argument, NULL, 'h'                                 \
	}

static const struct option plain_opts[] = {
	COMMON_OPTS,
	{NULL, 0, NULL, 0},
};

static const struct option watch_opts[] = {
	COMMON_OPTS,
	{"from", required_argument, NULL, 'F'},
	{NULL, 0, NULL, 0},
};

static const struct option restore_opts[] = {
	COMMON_OPTS,
	{"merge", no_argument, NULL, 'm'},
	{"replace", no_argument, NULL, 'r'},
	{NULL, 0, NULL, 0},
};

static const struct option backup_opts[] = {
	COMMON_OPTS,
	{"force", no_argument, NULL, 'f'},
	{NULL, 0, NULL, 0},
};

static const struct option compact_opts[] = {
	COMMON_OPTS,
	{"keep", required_argument, NULL, 'k'},
	{"revision", required_argument, NULL, 'R'},
	{NULL, 0, NULL, 0},
};

static const struct option set_opts[] = {
	COMMON_OPTS,
	{"lease", required_argument, NULL, 'L'},
	{NULL, 0, NULL, 0},
};

static const struct option lease_opts[] = {
	COMMON_OPTS,
	{"ttl", required_argument, NULL, 'T'},
	{NULL, 0, NULL, 0},
};

static const struct cmd cmds[] = {
	{.name = "get",
	 .args = "KEY",
	 .help = "print the value of KEY",
	 .run = cmd_get,
	 .min = 1,
	 .max = 1},
	{.name = "set",
	 .args = "KEY [VALUE] [--lease L]",
	 .help = "write KEY (VALUE or stdin); print its version",
	 .details = "  --lease L  attach KEY to lease L (exit 3 if L does not "
		    "exist);\n"
		    "             without it, KEY is attached to none\n",
	 .run = cmd_set,
	 .min = 1,
	 .max = 2,
	 .open = OPEN_WRITE,
	 .opts = set_opts},
	{.name = "delete",
	 .args = "KEY",
	 .help = "remove KEY",
	 .run = cmd_delete,
	 .min = 1,
	 .max = 1,
	 .open = OPEN_WRITE},
	{.name = "exists",
	 .args = "KEY",
	 .help = "exit 0 if KEY exists, 3 if not",
	 .run = cmd_exists,
	 .min = 1,
	 .max = 1},
	{.name = "version",
	 .args = "KEY",
	 .help = "print the version of KEY (0: missing)",
	 .run = cmd_version,
	 .min = 1,
	 .max = 1},
	{.name = "list",
	 .args = "[PREFIX]",
	 .help = "print the keys that start with PREFIX",
	 .run = cmd_list,
	 .max = 1},
	{.name = "cas",
	 .args = "KEY VERSION [VALUE]",
	 .help = "write KEY only at VERSION (0: only if missing); exit 4 on "
		 "conflict",
	 .run = cmd_cas,
	 .min = 2,
	 .max = 3,
	 .open = OPEN_WRITE},
	{.name = "create",
	 .args = "KEY [VALUE] [--lease L]",
	 .help = "write KEY only if missing; exit 4 if it exists",
	 .details = "  --lease L  attach KEY to lease L (exit 3 if L does not "
		    "exist)\n",
	 .run = cmd_create,
	 .min = 1,
	 .max = 2,
	 .open = OPEN_WRITE,
	 .opts = set_opts},
	{.name = "lease",
	 .args = "SUBCOMMAND ...",
	 .help = "grant, keep alive, revoke, show, list or hold leases",
	 .details =
		 "  grant NAME TTL   make lease NAME, or refresh it: TTL "
		 "seconds from now\n"
		 "  keepalive NAME   NAME lasts its TTL from now (exit 3 if "
		 "gone)\n"
		 "  revoke NAME      end NAME now: its keys are deleted, in "
		 "one revision\n"
		 "  get NAME         print its TTL, time left and keys\n"
		 "  list             print the live leases\n"
		 "  run NAME --ttl N [--] CMD [ARGS]\n"
		 "                   grant NAME, keep it alive while CMD "
		 "runs, revoke it\n"
		 "                   when CMD exits; exit with CMD's status. "
		 "CMD gets\n"
		 "                   USTATE_LEASE=NAME. If ustate is killed, "
		 "NAME expires\n"
		 "                   after N seconds; if NAME is lost, CMD "
		 "gets SIGTERM\n"
		 "                   and ustate exits 1.\n"
		 "  At the deadline, every key attached to NAME (set --lease) "
		 "is deleted.\n",
	 .run = cmd_lease,
	 .min = 1,
	 .max = 1 << 20,
	 .open = OPEN_WRITE,
	 .opts = lease_opts},
	{.name = "txn",
	 .args = "",
	 .help = "run a transaction script from stdin (the /.txn grammar); "
		 "exit 4 if it fails",
	 .run = cmd_txn,
	 .open = OPEN_WRITE},
	{.name = "watch",
	 .args = "PATTERN [--from REV]",
	 .help = "print changes as JSON lines until interrupted",
	 .details = "  --from REV  replay the retained history from revision "
		    "REV first\n",
	 .run = cmd_watch,
	 .min = 1,
	 .max = 1,
	 .opts = watch_opts},
	{.name = "revision",
	 .args = "",
	 .help = "print the store revision",
	 .run = cmd_revision},
	{.name = "dump",
	 .args = "[PREFIX]",
	 .help = "print every key (and directory record) as JSON lines",
	 .details =
		 "  One line per key, in key order, from one snapshot:\n"
		 "  {\"key\":K,\"version\":V,\"created_at\":T,\"updated_at\":T,\n"
		 "   \"encoding\":\"utf-8\"|\"base64\",\"value\":TEXT}\n"
		 "  and {\"dir\":PATH} for a directory record made by mkdir.\n"
		 "  A value is text when it is UTF-8 without NUL, else base64.\n",
	 .run = cmd_dump,
	 .max = 1,
	 .open = OPEN_EXISTING},
	{.name = "restore",
	 .args = "[FILE|-] [--merge|--replace]",
	 .help = "write the lines of a dump back, all or nothing",
	 .details =
		 "  Keys get the versions and timestamps of the dump. The store\n"
		 "  must be empty (exit 4 if not) unless:\n"
		 "  --merge    replace the keys the dump names, keep the others\n"
		 "             (a version may go down: CAS clients may be "
		 "fooled)\n"
		 "  --replace  and remove every key and directory it does not "
		 "name\n"
		 "  A malformed line is an error naming it; nothing is written.\n"
		 "  The store's writers wait while the input is read.\n",
	 .run = cmd_restore,
	 .max = 1,
	 .open = OPEN_WRITE,
	 .opts = restore_opts},
	{.name = "backup",
	 .args = "FILE [--force]",
	 .help = "copy the store, online and consistent, into a new FILE",
	 .details = "  FILE is made with mode 0600 and appears only when "
		    "complete.\n"
		    "  -f, --force  replace FILE if it exists\n",
	 .run = cmd_backup,
	 .min = 1,
	 .max = 1,
	 .open = OPEN_EXISTING,
	 .opts = backup_opts,
	 .shortopts = "jhf"},
	{.name = "check",
	 .args = "",
	 .help = "verify the file and the store's invariants; exit 5 on "
		 "problems",
	 .details = "  Prints one line per problem: CHECK [KEY]: DETAIL, then\n"
		    "  \"ok\" or the number found; --json prints one object.\n",
	 .run = cmd_check,
	 .open = OPEN_EXISTING,
	 .unopened = check_unopened},
	{.name = "compact",
	 .args = "--keep N | --revision R",
	 .help = "drop old change history (watch --from); print how much",
	 .details = "  --keep N      keep the changes of the last N revisions\n"
		    "  --revision R  drop the changes before revision R\n"
		    "  Watches asking for a dropped revision then fail.\n",
	 .run = cmd_compact,
	 .open = OPEN_MODIFY,
	 .opts = compact_opts},
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *f)
{
	size_t i;

	fprintf(f,
		"usage: ustate [-d DB] [OPTIONS] [--json] COMMAND [ARGS]\n\n"
		"  -d, --db DB   the store: a SQLite file, :memory: or\n"
		"                etcd[s]://HOST:PORT[,HOST:PORT...]/PREFIX\n"
		"                (default $USTATE_DB or " DEFAULT_DB ")\n"
		"  -j, --json    print results as JSON\n"
		"  -h, --help    this text; COMMAND --help for one command\n"
		"\nremote (etcd) stores:\n"
		"  --request-timeout MS  deadline of each request (5000)\n"
		"  --dial-timeout MS     connecting to one endpoint (2000)\n"
		"  --tls-ca FILE         etcds://: CA certificates (the "
		"system's)\n"
		"  --tls-cert FILE       etcds://: client certificate\n"
		"  --tls-key FILE        etcds://: its private key\n"
		"  --user NAME           etcd user (no authentication)\n"
		"  --password-file FILE  its password: the first line of FILE,\n"
		"                        which only its owner may read\n"
		"\ncommands:\n");
	for (i = 0; i < NCMDS; i++)
		fprintf(f, "  %-9s %-20s %s\n", cmds[i].name, cmds[i].args,
			cmds[i].help);
	fprintf(f, "\nexit: 0 ok, 1 error, 2 usage, 3 no such key, "
		   "4 conflict, 5 check found problems\n");
}

static void cmd_usage(FILE *f, const struct cmd *c, bool full)
{
	fprintf(f, "usage: ustate [-d DB] %s %s\n", c->name, c->args);
	if (!full)
		return;
	fprintf(f, "  %s\n", c->help);
	if (c->details)
		fputs(c->details, f);
}

/* Whether db names a SQLite file, not :memory: or a scheme://. */
static bool source_is_file(const char *db)
{
	return strcmp(db, ":memory:") && !strstr(db, "://");
}

/* --request-timeout and --dial-timeout: 1 ms to one hour. */
static int parse_timeout(const char *what, const char *text, unsigned *out)
{
	uint64_t v;

	if (parse_u64(text, &v) < 0 || v < 1 || v > USTATE_MAX_TIMEOUT_MS) {
		fprintf(stderr, "ustate: %s: \"%s\" is not 1 to %u ms\n", what,
			text, USTATE_MAX_TIMEOUT_MS);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

#define PASSWORD_MAX 4096 /* bytes in the first line of --password-file */

/*
 * The first line of the --password-file, without its line end, in *out
 * (wiped and freed by password_free()). A file that its group or others
 * may read is refused: the password would be theirs too. Says why it
 * failed.
 */
static int password_read(const char *path, char **out)
{
	char *buf = NULL, *end;
	const char *why = NULL;
	struct stat st;
	size_t n = 0;
	ssize_t got;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		why = strerror(-rc);
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		why = strerror(-rc);
		goto out;
	}
	rc = -EINVAL;
	if (!S_ISREG(st.st_mode)) {
		why = "not a regular file";
		goto out;
	}
	if (st.st_mode & (S_IRGRP | S_IROTH)) {
		fprintf(stderr,
			"ustate: --password-file %s: readable by its group or "
			"others (mode %04o): refused; chmod go-rwx it\n",
			path, (unsigned)(st.st_mode & 07777));
		rc = -EPERM;
		goto out;
	}
	buf = malloc(PASSWORD_MAX + 1);
	if (!buf) {
		rc = -ENOMEM;
		why = strerror(ENOMEM);
		goto out;
	}
	/* read(2), not stdio, so that no copy is left in a FILE buffer. */
	while (n < PASSWORD_MAX && !memchr(buf, '\n', n)) {
		got = read(fd, buf + n, PASSWORD_MAX - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			why = strerror(-rc);
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	end = memchr(buf, '\n', n);
	if (!end && n == PASSWORD_MAX) {
		why = "the first line is too long";
		goto out;
	}
	if (!end)
		end = buf + n;
	if (end > buf && end[-1] == '\r')
		end--;
	*end = '\0';
	if (!*buf || strlen(buf) != (size_t)(end - buf)) {
		why = *buf ? "the first line holds a NUL byte"
			   : "the first line is empty";
		goto out;
	}
	*out = buf;
	buf = NULL;
	rc = 0;
out:
	if (why)
		fprintf(stderr, "ustate: --password-file %s: %s\n", path, why);
	if (buf)
		explicit_bzero(buf, PASSWORD_MAX + 1);
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

static void password_free(char *p)
{
	if (p)
		explicit_bzero(p, strlen(p));
	free(p);
}

/* Errors the library logged (it logs from the calling thread here). */
static unsigned library_errors;

/*
 * The library's messages: warnings and errors on stderr, as its default
 * log writes them, counted so that a failed open is explained once.
 */
static void library_log(void *arg, int priority, const char *msg)
{
	if (priority > LOG_WARNING)
		return;
	if (priority <= LOG_ERR)
		library_errors++;
	fprintf(stderr, "ustate: %s\n", msg);
}

/*
 * Say why the database did not open. Exit 1 whatever the code: a missing
 * file is no missing key (exit 3).
 */
static int open_failed(const struct cmd *c, const char *db, int rc)
{
	int code = c->unopened ? c->unopened(db, rc) : -1;

	if (code >= 0)
		return code;
	/* The library's log said why already. */
	if (library_errors)
		return EXIT_ERROR;
	fprintf(stderr, "ustate: %s: %s\n", db,
		rc == -ENOENT ? strerror(ENOENT) : ustate_strerror(rc));
	return EXIT_ERROR;
}

/*
 * Parse the options of command c from its own argv (after its name).
 * Return -1 to go on, or the code to exit with (0 after --help).
 */
static int cmd_options(const struct cmd *c, int argc, char **argv)
{
	const char *what = NULL;
	uint64_t *num = NULL, ttl;
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, c->shortopts ? c->shortopts : "jh",
				 c->opts ? c->opts : plain_opts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			cli.json = 1;
			break;
		case 'F':
			what = "--from";
			num = &cli.from;
			break;
		case 'm':
			cli.merge = 1;
			break;
		case 'r':
			cli.replace = 1;
			break;
		case 'f':
			cli.force = 1;
			break;
		case 'k':
			what = "--keep";
			num = &cli.keep;
			cli.keep_set = 1;
			break;
		case 'R':
			what = "--revision";
			num = &cli.revision;
			cli.revision_set = 1;
			break;
		case 'L':
			cli.lease = optarg;
			break;
		case 'T':
			if (parse_u64(optarg, &ttl) < 0 || ttl < 1 ||
			    ttl > USTATE_LEASE_TTL_MAX) {
				fprintf(stderr,
					"ustate: --ttl: bad TTL \"%s\": "
					"whole seconds, 1 to %d\n",
					optarg, USTATE_LEASE_TTL_MAX);
				return EXIT_USAGE;
			}
			cli.ttl = (int64_t)ttl;
			break;
		case 'h':
			cmd_usage(stdout, c, true);
			return 0;
		default:
			cmd_usage(stderr, c, false);
			return EXIT_USAGE;
		}
		if (num && parse_u64(optarg, num) < 0) {
			fprintf(stderr, "ustate: %s: bad number \"%s\"\n", what,
				optarg);
			return EXIT_USAGE;
		}
		num = NULL;
	}
	return -1;
}

/* The long options of remote stores, which have no short form. */
enum {
	OPT_REQUEST_TIMEOUT = 256,
	OPT_DIAL_TIMEOUT,
	OPT_TLS_CA,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_USER,
	OPT_PASSWORD_FILE,
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"request-timeout", required_argument, NULL,
		 OPT_REQUEST_TIMEOUT},
		{"dial-timeout", required_argument, NULL, OPT_DIAL_TIMEOUT},
		{"tls-ca", required_argument, NULL, OPT_TLS_CA},
		{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
		{"tls-key", required_argument, NULL, OPT_TLS_KEY},
		{"user", required_argument, NULL, OPT_USER},
		{"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
		{NULL, 0, NULL, 0},
	};
	ustate_options o = USTATE_OPTIONS_INIT;
	const char *db = getenv("USTATE_DB"), *password_file = NULL;
	const struct cmd *c = NULL;
	int ch, rc, help = 0, nargs;
	char *password = NULL;
	ustate *s;
	size_t i;

	if (!db)
		db = DEFAULT_DB;
	while ((ch = getopt_long(argc, argv, "+d:jh", opts, NULL)) != -1) {
		rc = 0;
		switch (ch) {
		case 'd':
			db = optarg;
			break;
		case 'j':
			cli.json = 1;
			break;
		case 'h':
			help = 1;
			break;
		case OPT_REQUEST_TIMEOUT:
			rc = parse_timeout("--request-timeout", optarg,
					   &o.request_timeout);
			break;
		case OPT_DIAL_TIMEOUT:
			rc = parse_timeout("--dial-timeout", optarg,
					   &o.dial_timeout);
			break;
		case OPT_TLS_CA:
			o.tls_ca = optarg;
			break;
		case OPT_TLS_CERT:
			o.tls_cert = optarg;
			break;
		case OPT_TLS_KEY:
			o.tls_key = optarg;
			break;
		case OPT_USER:
			o.user = optarg;
			break;
		case OPT_PASSWORD_FILE:
			password_file = optarg;
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
		if (rc < 0)
			return EXIT_USAGE;
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
	 * Options after the command, anywhere among its arguments: parse
	 * the command's own argv, from a fresh start.
	 */
	argc -= optind;
	argv += optind;
	rc = cmd_options(c, argc, argv);
	if (rc >= 0)
		return rc;
	nargs = argc - optind;
	if (nargs < c->min || nargs > c->max) {
		cmd_usage(stderr, c, false);
		return EXIT_USAGE;
	}
	/* Files alone can be missing, or readable and not writable. */
	if (source_is_file(db) &&
	    (c->open == OPEN_EXISTING || c->open == OPEN_MODIFY) &&
	    access(db, F_OK) != 0) {
		return open_failed(c, db, -errno);
	}
	if (c->open == OPEN_EXISTING)
		o.read_only = 1;
	else if (c->open == OPEN_READ && source_is_file(db))
		o.read_only = access(db, W_OK) != 0 && !access(db, R_OK);
	if (password_file) {
		if (password_read(password_file, &password) < 0)
			return EXIT_ERROR;
		o.password = password;
	}
	o.log = library_log;
	/* The library copies the password: wipe ours at once. */
	rc = ustate_open(&s, db, &o);
	password_free(password);
	if (rc < 0)
		return open_failed(c, db, rc);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	rc = c->run(s, nargs, argv + optind);
	ustate_close(s);
	return rc;
}
