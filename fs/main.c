/* SPDX-License-Identifier: MIT */
/*
 * This file implements the ustatefs command: option parsing in the
 * argument order of mount.fuse3 (SOURCE MOUNTPOINT), opening the store
 * that SOURCE names (ustate_open(): a SQLite file, :memory: or an etcd
 * URL) with the library's messages in the daemon's log, mounting, going
 * to the background once the mount is live, and a clean unmount on
 * SIGTERM, SIGINT or fusermount3 -u.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"

struct fs fs;

struct options {
	char *source;
	char *mountpoint;
	char *sync;
	unsigned long max_value_size;
	unsigned long max_buffered;
	unsigned long max_txn_ops;
	unsigned long history;
	char *log_level;
	unsigned request_timeout; /* ms; USTATE_OPTIONS_INIT's unless given */
	unsigned dial_timeout;
	char *tls_ca;
	char *tls_cert;
	char *tls_key;
	char *user;
	char *password_file;
	char *replica;	   /* etcd: the replica's file, "none"; NULL: temp */
	char *consistency; /* linearizable (NULL) or local */
	double timeout;
	double attr_timeout;
	int direct_io;
	int noopen;
	int ro;
	int others; /* allow_other, allow_root or default_permissions */
	int max_threads_given; /* -o max_threads=: libfuse reads it */
	int help;
	int version;
};

/* opt_proc() notes these options, and passes them on to FUSE. */
#define KEY_OTHERS 1
#define KEY_MAX_THREADS 2

/*
 * FUSE worker threads of a mount whose opens wait on etcd (see
 * opens_wait), unless -o max_threads= says otherwise. Each open
 * there waits in its thread for a quorum read (the close-to-open
 * barrier, ops.c), so libfuse's 10 let 10 waiting opens hold every
 * thread: the other requests, even a stat, queued behind them (16 readers
 * of one key read 0.82x an etcd range with 10, 1.06-1.13x with 64; 16
 * writers 0.36-0.41x of etcd puts, 0.48-0.51x). Where nothing waits on
 * the network before it answers (SQLite, memory, a replica read at
 * consistency=local) more threads only mean more wakeups: 16 readers of
 * a consistency=local mount read 89,500-97,800/s with 10, 67,100-70,100/s
 * with 64, on 2 cores.
 */
#define WAITING_MAX_THREADS 64

#define OPT(t, p)                                                              \
	{                                                                      \
		t, offsetof(struct options, p), 1                              \
	}

static const struct fuse_opt opt_spec[] = {
	OPT("sync=%s", sync), OPT("max_value_size=%lu", max_value_size),
	OPT("max_buffered=%lu", max_buffered),
	OPT("max_txn_ops=%lu", max_txn_ops), OPT("history=%lu", history),
	OPT("log_level=%s", log_level), OPT("timeout=%lf", timeout),
	/* Remote stores (etcd): the names of the library's options. */
	OPT("request_timeout=%u", request_timeout),
	OPT("dial_timeout=%u", dial_timeout), OPT("tls_ca=%s", tls_ca),
	OPT("tls_cert=%s", tls_cert), OPT("tls_key=%s", tls_key),
	OPT("user=%s", user), OPT("password_file=%s", password_file),
	OPT("replica=%s", replica), OPT("consistency=%s", consistency),
	OPT("attr_timeout=%lf", attr_timeout), OPT("direct_io", direct_io),
	OPT("noopen", noopen), OPT("-h", help), OPT("--help", help),
	OPT("-V", version), OPT("--version", version),
	/*
	 * Read-only: the daemon refuses every write (EROFS). The kernel's
	 * mount stays rw: the replay of outside changes as inotify events
	 * opens files of the mount for writing (see replay.c).
	 */
	OPT("ro", ro), FUSE_OPT_KEY("rw", FUSE_OPT_KEY_DISCARD),
	/* Others may come in: the kernel checks modes (perm.c). */
	FUSE_OPT_KEY("allow_other", KEY_OTHERS),
	FUSE_OPT_KEY("allow_root", KEY_OTHERS),
	FUSE_OPT_KEY("default_permissions", KEY_OTHERS),
	FUSE_OPT_KEY("max_threads=", KEY_MAX_THREADS),
	/* fstab words that mean nothing to a FUSE file system. */
	FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nouser", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD), FUSE_OPT_END};

static void usage(const char *prog)
{
	printf("usage: %s [-f] [-d] [-s] [-o OPTIONS] SOURCE MOUNTPOINT\n"
	       "\n"
	       "Mount the univrs-state store SOURCE at MOUNTPOINT: a SQLite\n"
	       "file (created if missing), :memory:, or\n"
	       "etcd[s]://HOST:PORT[,HOST:PORT...]/PREFIX.\n"
	       "\n"
	       "ustatefs options:\n"
	       "    -o sync=full|normal|off  durability of a commit (full)\n"
	       "    -o max_value_size=N      largest value in bytes (16 MiB)\n"
	       "    -o max_buffered=N        bytes held by all open files and\n"
	       "                             transactions (256 MiB)\n"
	       "    -o max_txn_ops=N         operations in one transaction\n"
	       "                             (100000)\n"
	       "    -o history=N             revisions of history kept for\n"
	       "                             watchers (100000)\n"
	       "    -o timeout=SECONDS       kernel entry cache (1.0)\n"
	       "    -o attr_timeout=SECONDS  kernel attribute cache (1.0)\n"
	       "    -o direct_io             readers bypass the page cache\n"
	       "    -o noopen                no OPEN requests: fastest reads,\n"
	       "                             no snapshots; implies ro\n"
	       "    -o ro                    refuse every write (EROFS)\n"
	       "    -o allow_other           let other users in; the kernel\n"
	       "                             then checks owners and modes\n"
	       "    -o log_level=LEVEL       error, warning, notice, info\n"
	       "                             (default) or debug\n"
	       "    -o request_timeout=MS    deadline of a request to etcd\n"
	       "                             (5000)\n"
	       "    -o dial_timeout=MS       connecting to one etcd endpoint\n"
	       "                             (2000)\n"
	       "    -o tls_ca=FILE           etcds://: CA certificates (the\n"
	       "                             system's)\n"
	       "    -o tls_cert=FILE         etcds://: client certificate\n"
	       "    -o tls_key=FILE          etcds://: its private key\n"
	       "    -o user=NAME             etcd user (no authentication)\n"
	       "    -o password_file=FILE    its password: the first line of\n"
	       "                             FILE, which only its owner may\n"
	       "                             read\n"
	       "    -o replica=FILE|none     etcd: keep the local replica\n"
	       "                             reads come from in FILE, for\n"
	       "                             the next mount (a private\n"
	       "                             temporary file), or none\n"
	       "    -o consistency=LEVEL     reads of the replica: an open\n"
	       "                             sees every write completed\n"
	       "                             before it (linearizable, the\n"
	       "                             default), or no round trip at\n"
	       "                             all (local)\n"
	       "    -o debug, -d             trace every FUSE request\n"
	       "    -f                       stay in the foreground\n"
	       "    -s                       single-threaded\n"
	       "    -o max_threads=N         FUSE worker threads (64 on etcd\n"
	       "                             but at consistency=local,\n"
	       "                             libfuse's 10 otherwise)\n"
	       "\n"
	       "FUSE options:\n",
	       prog);
	fuse_lowlevel_help();
}

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct options *o = data;

	if (key == FUSE_OPT_KEY_NONOPT) {
		if (!o->source)
			return (o->source = strdup(arg)) ? 0 : -1;
		if (!o->mountpoint)
			return (o->mountpoint = strdup(arg)) ? 0 : -1;
		fprintf(stderr, "ustatefs: too many arguments: %s\n", arg);
		return -1;
	}
	if (key == KEY_OTHERS)
		o->others = 1;
	if (key == KEY_MAX_THREADS)
		o->max_threads_given = 1;
	return 1;
}

/*
 * Whether the mount's opens wait on etcd (store_open() says): an etcd
 * SOURCE, unless its reads come from a replica at consistency=local.
 */
static bool opens_wait;

/*
 * The database the daemon opens for SOURCE: SOURCE itself, or, when it
 * is a symbolic link, the file it leads to, which the log names; a link
 * to nothing is refused (-ENOENT), so that no file is made through it.
 * *real is NULL or allocated.
 */
static int source_resolve(const char *source, char **real)
{
	struct stat st;
	int saverr;

	*real = NULL;
	if (lstat(source, &st) < 0 || !S_ISLNK(st.st_mode))
		return 0;
	*real = realpath(source, NULL);
	if (!*real) {
		saverr = errno;
		log_msg(LOG_ERR,
			"%s is a symbolic link to nothing (%s): refused",
			source, strerror(saverr));
		return -saverr;
	}
	log_msg(LOG_NOTICE, "%s is a symbolic link: opening %s", source, *real);
	return 0;
}

/* Whether SOURCE names a SQLite file, not :memory: or a scheme://. */
static bool source_is_file(const char *source)
{
	return strcmp(source, ":memory:") && !strstr(source, "://");
}

/*
 * name made absolute, for a file the library may open after the daemon
 * has gone to "/" (a TLS file, read at each connection); *out is NULL or
 * allocated.
 */
static int path_absolute(const char *name, char **out)
{
	char *cwd;
	int rc = 0;

	*out = NULL;
	if (!name)
		return 0;
	if (name[0] == '/') {
		*out = strdup(name);
		return *out ? 0 : -ENOMEM;
	}
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return -errno;
	if (asprintf(out, "%s/%s", cwd, name) < 0) {
		*out = NULL;
		rc = -ENOMEM;
	}
	free(cwd);
	return rc;
}

#define PASSWORD_MAX 4096 /* bytes in the first line of password_file= */

/*
 * The first line of password_file=, without its line end, in *out (to be
 * wiped and freed with password_free()). A file that its group or others
 * may read is refused: the password would be theirs too. Logs why it
 * failed.
 */
static int password_read(const char *path, char **out)
{
	char *buf = NULL, *end;
	struct stat st;
	size_t n = 0;
	ssize_t got;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		log_msg(LOG_ERR, "password_file=%s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		log_msg(LOG_ERR, "password_file=%s: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		log_msg(LOG_ERR, "password_file=%s: not a regular file", path);
		rc = -EINVAL;
		goto out;
	}
	if (st.st_mode & (S_IRGRP | S_IROTH)) {
		log_msg(LOG_ERR,
			"password_file=%s: readable by its group or others "
			"(mode %04o): refused; chmod go-rwx it",
			path, (unsigned)(st.st_mode & 07777));
		rc = -EPERM;
		goto out;
	}
	buf = malloc(PASSWORD_MAX + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	/* read(2), not stdio, so that no copy is left in a FILE buffer. */
	while (n < PASSWORD_MAX && !memchr(buf, '\n', n)) {
		got = read(fd, buf + n, PASSWORD_MAX - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			log_msg(LOG_ERR, "password_file=%s: %s", path,
				strerror(-rc));
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	end = memchr(buf, '\n', n);
	if (!end && n == PASSWORD_MAX) {
		log_msg(LOG_ERR, "password_file=%s: first line over %d bytes",
			path, PASSWORD_MAX);
		rc = -EINVAL;
		goto out;
	}
	if (!end)
		end = buf + n;
	if (end > buf && end[-1] == '\r')
		end--;
	*end = '\0';
	if (!*buf || strlen(buf) != (size_t)(end - buf)) {
		log_msg(LOG_ERR, "password_file=%s: %s", path,
			*buf ? "the first line holds a NUL byte"
			     : "the first line is empty");
		rc = -EINVAL;
		goto out;
	}
	*out = buf;
	buf = NULL;
	rc = 0;
out:
	if (buf)
		explicit_bzero(buf, PASSWORD_MAX + 1);
	free(buf);
	close(fd);
	return rc;
}

static void password_free(char *p)
{
	if (p)
		explicit_bzero(p, strlen(p));
	free(p);
}

/* Errors the library logged; any thread may add one. */
static unsigned library_errors;

/* The library's messages, into the daemon's log. */
static void library_log(void *arg, int priority, const char *msg)
{
	if (priority <= LOG_ERR)
		__atomic_add_fetch(&library_errors, 1, __ATOMIC_RELAXED);
	if (priority < LOG_EMERG)
		priority = LOG_EMERG;
	if (priority > LOG_DEBUG)
		priority = LOG_DEBUG;
	log_msg(priority, "%s", msg);
}

static int store_open(const struct options *o)
{
	ustate_options so = USTATE_OPTIONS_INIT, got;
	char *real = NULL, *ca = NULL, *cert = NULL, *key = NULL, *rep = NULL;
	char *password = NULL;
	unsigned errors;
	int rc;

	if (!o->sync || !strcmp(o->sync, "full"))
		so.sync = USTATE_SYNC_FULL;
	else if (!strcmp(o->sync, "normal"))
		so.sync = USTATE_SYNC_NORMAL;
	else
		so.sync = USTATE_SYNC_OFF; /* checked by main() */
	if (o->max_value_size)
		so.max_value_size = o->max_value_size;
	if (o->max_txn_ops)
		so.max_txn_ops = o->max_txn_ops;
	if (o->history)
		so.history = o->history;
	so.read_only = o->ro;
	so.request_timeout = o->request_timeout;
	so.dial_timeout = o->dial_timeout;
	so.user = o->user;
	so.log = library_log;
	rc = path_absolute(o->tls_ca, &ca);
	if (rc == 0)
		rc = path_absolute(o->tls_cert, &cert);
	if (rc == 0)
		rc = path_absolute(o->tls_key, &key);
	if (rc == 0 && o->replica && strcmp(o->replica, "none"))
		rc = path_absolute(o->replica, &rep);
	if (rc < 0) {
		log_msg(LOG_ERR, "tls_ca=, tls_cert=, tls_key=, replica=: %s",
			strerror(-rc));
		goto out;
	}
	/*
	 * A remote store reads a replica unless told not to, always at
	 * local consistency: the default, close-to-open, is a barrier at
	 * each open (ops.c), not a quorum read at each of its reads.
	 */
	so.replica = !o->replica ? "" : rep;
	so.consistency = USTATE_CONSISTENCY_LOCAL;
	fs.barrier = so.replica && !strncmp(o->source, "etcd", 4) &&
		     !(o->consistency && !strcmp(o->consistency, "local"));
	/* Without a replica, each read of an etcd store is a request. */
	opens_wait =
		fs.barrier || (!so.replica && !strncmp(o->source, "etcd", 4));
	if (o->password_file) {
		rc = password_read(o->password_file, &password);
		if (rc < 0)
			goto out; /* it said why */
	}
	so.tls_ca = ca;
	so.tls_cert = cert;
	so.tls_key = key;
	so.password = password;
	/* Only a file can be a symbolic link; other sources are names. */
	if (source_is_file(o->source))
		rc = source_resolve(o->source, &real);
	if (rc < 0)
		goto out; /* it said why */
	errors = __atomic_load_n(&library_errors, __ATOMIC_RELAXED);
	rc = ustate_open(&fs.store, real ? real : o->source, &so);
	if (rc < 0) {
		/* Unless the library said why already. */
		if (errors ==
		    __atomic_load_n(&library_errors, __ATOMIC_RELAXED))
			/* Opening a store, ENOENT is of a file, not a key. */
			log_msg(LOG_ERR, "%s: %s", o->source,
				rc == -ENOENT ? strerror(ENOENT)
					      : ustate_strerror(rc));
		goto out;
	}
	/* What the backend chose: etcd may take less than asked. */
	ustate_options_get(fs.store, &got);
	fs.max_value = got.max_value_size;
out:
	password_free(password);
	free(ca);
	free(cert);
	free(key);
	free(rep);
	free(real);
	return rc;
}

/* Whether a timeout option is in range; says why not. */
static bool timeout_ok(const char *name, unsigned ms)
{
	if (ms >= 1 && ms <= USTATE_MAX_TIMEOUT_MS)
		return true;
	fprintf(stderr, "ustatefs: %s=%u: must be 1 to %u ms\n", name, ms,
		USTATE_MAX_TIMEOUT_MS);
	return false;
}

/*
 * The -ofsname= option that shows SOURCE in the mount table; the commas
 * of an etcd source (and backslashes) escaped, as fuse_opt wants them.
 * NULL when out of memory.
 */
static char *fsname_option(const char *source)
{
	static const char pre[] = "-ofsname=", post[] = ",subtype=ustatefs";
	char *opt, *d;

	opt = malloc(sizeof(pre) + 2 * strlen(source) + sizeof(post));
	if (!opt)
		return NULL;
	d = stpcpy(opt, pre);
	for (; *source; source++) {
		if (*source == ',' || *source == '\\')
			*d++ = '\\';
		*d++ = *source;
	}
	strcpy(d, post);
	return opt;
}

/*
 * Fork; the parent waits until the child says the mount is live (or
 * failed), so a script may use the mount as soon as ustatefs returns.
 * Returns the descriptor the child reports on, in the child.
 */
static int background(void)
{
	int pfd[2], status = 1;
	char c;
	pid_t pid;

	if (pipe(pfd) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(pfd[1]);
		if (read(pfd[0], &c, 1) == 1)
			status = c;
		_exit(status);
	}
	close(pfd[0]);
	setsid();
	return pfd[1];
}

static void report(int fd, char status)
{
	if (fd < 0)
		return;
	if (write(fd, &status, 1) != 1) {
		/* the parent is gone; nothing to tell */
	}
	close(fd);
	if (status)
		return;
	/* Daemon: leave the terminal; messages go to syslog from now on. */
	log_detach();
	if (chdir("/") < 0) {
		/* not fatal */
	}
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts copts = {0};
	struct fuse_loop_config *lcfg = NULL;
	static const ustate_options lib = USTATE_OPTIONS_INIT;
	struct options o = {.timeout = 1.0,
			    .attr_timeout = 1.0,
			    .max_buffered = 256ul << 20,
			    .request_timeout = lib.request_timeout,
			    .dial_timeout = lib.dial_timeout};
	char *fsname = NULL;
	int rc = 1, notify = -1, err, level, tuned;

	/*
	 * SQLite's memory statistics, which nothing here reads, take one
	 * process-wide mutex at every allocation, and all the daemon's
	 * connections contend for it. The process is ours, has no other
	 * thread yet and has opened no store: the one moment this setting
	 * may be made, so it cannot be too late (-EBUSY) here.
	 */
	tuned = ustate_global_tune(USTATE_TUNE_NO_MEMSTATS);
	rc = 2;
	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) < 0)
		goto out_args;
	if (o.help || o.version) {
		if (o.help)
			usage(argv[0]);
		else
			printf("ustatefs 0.1.0 (libfuse %s)\n",
			       fuse_pkgversion());
		rc = 0;
		goto out_args;
	}
	if (o.sync && strcmp(o.sync, "full") && strcmp(o.sync, "normal") &&
	    strcmp(o.sync, "off")) {
		fprintf(stderr,
			"ustatefs: sync=%s: must be full, normal or "
			"off\n",
			o.sync);
		goto out_args;
	}
	if (o.consistency && strcmp(o.consistency, "linearizable") &&
	    strcmp(o.consistency, "local")) {
		fprintf(stderr,
			"ustatefs: consistency=%s: must be linearizable or "
			"local\n",
			o.consistency);
		goto out_args;
	}
	if (!timeout_ok("request_timeout", o.request_timeout) ||
	    !timeout_ok("dial_timeout", o.dial_timeout))
		goto out_args;
	if (!o.source || !o.mountpoint) {
		fprintf(stderr,
			"usage: %s [-f] [-o OPTIONS] SOURCE MOUNTPOINT "
			"(see --help)\n",
			argv[0]);
		goto out_args;
	}
	/* fuse_parse_cmdline() wants the mountpoint as its argument. */
	fsname = fsname_option(o.source);
	if (!fsname) {
		fprintf(stderr, "ustatefs: %s\n", strerror(ENOMEM));
		goto out_args;
	}
	/*
	 * When others may come in, the kernel checks every access against
	 * the owners and modes the store keeps (perm.c). Without, FUSE lets
	 * in the mounting user alone, who owns what it makes; the checks
	 * would cost a GETATTR at each access whose attributes are not
	 * cached (see "Caching" in ops.c) and protect nobody.
	 */
	fs.permissions = o.others;
	if ((o.others &&
	     fuse_opt_add_arg(&args, "-odefault_permissions") < 0) ||
	    fuse_opt_add_arg(&args, fsname) < 0 ||
	    fuse_opt_add_arg(&args, o.mountpoint) < 0 ||
	    fuse_parse_cmdline(&args, &copts) != 0)
		goto out_args;
	level = copts.debug ? LOG_DEBUG : LOG_INFO;
	if (o.log_level && (level = log_level_parse(o.log_level)) < 0) {
		fprintf(stderr,
			"ustatefs: log_level=%s: must be error, warning, "
			"notice, info or debug\n",
			o.log_level);
		goto out_args;
	}
	log_init(level);
	if (tuned < 0)
		log_msg(LOG_DEBUG, "SQLite memory statistics stay on: %s",
			ustate_strerror(tuned));
	rc = 1;
	/* Writes and /.txn need an open of their own: noopen is read-only. */
	fs.noopen = o.noopen;
	if (o.noopen)
		o.ro = 1;
	fs.read_only = o.ro;
	fs.mountpoint = realpath(o.mountpoint, NULL);
	if (!fs.mountpoint) {
		log_msg(LOG_ERR, "%s: %s", o.mountpoint, strerror(errno));
		goto out_args;
	}
	fs.debug = copts.debug;
	fs.single = copts.singlethread;
	fs.timeout = o.timeout;
	/*
	 * Entries, attributes and pages are cached; every commit of this
	 * mount and the watcher, for everyone else's, invalidate them (see
	 * "Caching" in ops.c).
	 */
	fs.attr_timeout = o.attr_timeout;
	fs.max_buffered = o.max_buffered;
	fs.direct_io = o.direct_io;
	fs.uid = getuid();
	fs.gid = getgid();
	clock_gettime(CLOCK_REALTIME, &fs.started);

	if (!copts.foreground) {
		notify = background();
		if (notify < 0) {
			log_msg(LOG_ERR, "fork: %s", strerror(-notify));
			goto out_args;
		}
		fs.background = true;
	}
	/* Fork the guard and the replay helper now, with one thread. */
	err = guard_init();
	if (err < 0) {
		log_msg(LOG_ERR, "guard: %s", strerror(-err));
		goto out_report;
	}
	err = replay_init();
	if (err < 0) {
		log_msg(LOG_ERR, "replay helper: %s", strerror(-err));
		goto out_report;
	}
	/* It logs why it failed. */
	err = store_open(&o);
	if (err < 0)
		goto out_replay;
	err = nodes_init();
	if (err < 0)
		goto out_store;
	fs.se = fuse_session_new(&args, &ustatefs_ops, sizeof(ustatefs_ops),
				 NULL);
	if (!fs.se)
		goto out_nodes;
	if (fuse_set_signal_handlers(fs.se) != 0)
		goto out_session;
	if (fuse_session_mount(fs.se, copts.mountpoint) != 0)
		goto out_signals;
	guard_arm(fs.mountpoint);
	err = watcher_start();
	if (err < 0) {
		log_msg(LOG_ERR, "watch: %s", ustate_strerror(err));
		goto out_unmount;
	}
	err = leases_start();
	if (err < 0) {
		log_msg(LOG_ERR, "leases: %s", strerror(-err));
		goto out_watcher;
	}
	report(notify, 0);
	notify = -1;
	log_msg(LOG_INFO, "serving %s at %s (%ssync=%s)", o.source,
		fs.mountpoint, o.ro ? "read-only, " : "",
		o.sync ? o.sync : "full");
	notify_start();

	if (copts.singlethread) {
		rc = fuse_session_loop(fs.se);
	} else {
		lcfg = fuse_loop_cfg_create();
		if (!lcfg)
			goto out_watcher;
		fuse_loop_cfg_set_clone_fd(lcfg, copts.clone_fd);
		if (!o.max_threads_given && opens_wait)
			copts.max_threads = WAITING_MAX_THREADS;
		fuse_loop_cfg_set_max_threads(lcfg, copts.max_threads);
		/* Unset, it is UINT_MAX, which libfuse 3.14 warns about. */
		if (copts.max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(lcfg,
						       copts.max_idle_threads);
		rc = fuse_session_loop_mt(fs.se, lcfg);
		fuse_loop_cfg_destroy(lcfg);
	}
	/* A signal ends the loop with its number: that is a clean exit. */
	rc = rc < 0 ? 1 : 0;
	log_msg(LOG_INFO, "unmounting %s", fs.mountpoint);
out_watcher:
	/*
	 * Unmount first: it ends the connection, so a replay request of the
	 * watcher that no worker will serve any more fails instead of
	 * blocking the join.
	 */
	__atomic_store_n(&fs.closing, true, __ATOMIC_RELEASE);
	fuse_session_unmount(fs.se);
	notify_stop();
	watcher_stop();
	handles_shutdown();
	leases_stop();
	goto out_signals;
out_unmount:
	fuse_session_unmount(fs.se);
out_signals:
	fuse_remove_signal_handlers(fs.se);
out_session:
	fuse_session_destroy(fs.se);
out_nodes:
	nodes_destroy();
	times_free();
out_store:
	ustate_close(fs.store);
out_replay:
	replay_exit();
out_report:
	guard_exit();
	report(notify, 1);
out_args:
	free(copts.mountpoint);
	fuse_opt_free_args(&args);
	free(o.source);
	free(o.mountpoint);
	free(o.sync);
	free(o.log_level);
	free(o.tls_ca);
	free(o.tls_cert);
	free(o.tls_key);
	free(o.user);
	free(o.password_file);
	free(o.replica);
	free(o.consistency);
	free(fsname);
	free(fs.mountpoint);
	return rc;
}
