/* SPDX-License-Identifier: MIT */
/*
 * This file implements an example of the watch API of libustate: it
 * prints every change to the keys that match a pattern, one line each,
 * waiting in poll(2) on ustate_watch_fd() as an event loop would, and it
 * sees the changes of every process that writes the same store (ustatefs
 * mounts, the ustate command, other programs). The store is any SOURCE
 * that ustate_open() takes: a SQLite file, or an etcd URL
 * (etcd://HOST:PORT/PREFIX) with a libustate built with the etcd backend.
 *
 * Build: cc watch.c -o watch $(pkg-config --cflags --libs ustate)
 *        (meson builds it as build/examples/watch)
 * Run:   ./watch /var/lib/ustate/state.db '*'
 *        (every key; an exact key, or a prefix and a star: /config/ *
 *        without the space) and then elsewhere: ustate set /config/a 1,
 *        or echo 1 > /run/ustate/state/config/a
 *
 * usage: watch [-n COUNT] [-r REVISION] SOURCE PATTERN
 *   -n COUNT     exit after COUNT events
 *   -r REVISION  replay the retained history from REVISION first
 * It prints "watching PATTERN after revision R" once the watch is open,
 * then "TYPE KEY version V revision R" for each change, TYPE being
 * created, updated or deleted. SIGINT and SIGTERM end it (exit 0).
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ustate.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

static void print_event(const ustate_event *ev)
{
	static const char *const types[] = {
		[USTATE_EVENT_CREATED] = "created",
		[USTATE_EVENT_UPDATED] = "updated",
		[USTATE_EVENT_DELETED] = "deleted",
		[USTATE_EVENT_DIR_CREATED] = "dir_created",
		[USTATE_EVENT_DIR_DELETED] = "dir_deleted",
	};

	printf("%s %s version %llu revision %llu\n", types[ev->type], ev->key,
	       (unsigned long long)ev->version,
	       (unsigned long long)ev->revision);
	fflush(stdout);
}

/*
 * Print events until stopped or count (0: no limit) are printed.
 * Returns 0 or a negative errno.
 */
static int watch(ustate *s, const char *pattern, uint64_t from, long count)
{
	struct pollfd pfd = {.events = POLLIN};
	ustate_watch *w;
	ustate_event ev;
	long seen = 0;
	int rc;

	/* From now on: from the revision after the one read here. */
	if (!from)
		from = ustate_revision(s) + 1;
	rc = ustate_watch_open(&w, s, pattern, from);
	if (rc < 0)
		return rc;
	printf("watching %s after revision %llu\n", pattern,
	       (unsigned long long)from - 1);
	fflush(stdout);
	pfd.fd = ustate_watch_fd(w);
	while (!stop && (!count || seen < count)) {
		/* A signal interrupts poll (no SA_RESTART) and sets stop. */
		if (poll(&pfd, 1, -1) < 0) {
			rc = errno == EINTR ? 0 : -errno;
			if (rc < 0)
				break;
			continue;
		}
		/* Take everything pending; the descriptor says when more is. */
		while ((!count || seen < count) &&
		       (rc = ustate_watch_next(w, &ev, 0)) == 0) {
			print_event(&ev);
			seen++;
		}
		if (rc == -EOVERFLOW) {
			/*
			 * Events were lost: a real program re-reads the state
			 * it follows here, then goes on from the revision it
			 * read.
			 */
			from = ustate_revision(s) + 1;
			fprintf(stderr, "watch: fell behind; now from %llu\n",
				(unsigned long long)from);
			ustate_watch_close(w);
			rc = ustate_watch_open(&w, s, pattern, from);
			if (rc < 0)
				return rc;
			pfd.fd = ustate_watch_fd(w);
		} else if (rc < 0 && rc != -EAGAIN) {
			break;
		}
		rc = 0;
	}
	ustate_watch_close(w);
	return rc;
}

int main(int argc, char **argv)
{
	ustate_options opts = USTATE_OPTIONS_INIT;
	struct sigaction sa = {.sa_handler = on_signal};
	unsigned long long from = 0;
	long count = 0;
	ustate *s;
	int ch, rc;

	while ((ch = getopt(argc, argv, "n:r:")) != -1) {
		switch (ch) {
		case 'n':
			count = strtol(optarg, NULL, 10);
			break;
		case 'r':
			from = strtoull(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 2)
		goto usage;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* A watcher writes nothing: open the store read-only. */
	opts.read_only = 1;
	rc = ustate_open(&s, argv[optind], &opts);
	if (rc < 0) {
		fprintf(stderr, "watch: %s: %s\n", argv[optind],
			ustate_strerror(rc));
		return 1;
	}
	rc = watch(s, argv[optind + 1], from, count);
	if (rc < 0)
		fprintf(stderr, "watch: %s: %s\n", argv[optind + 1],
			ustate_strerror(rc));
	ustate_close(s);
	return rc < 0 ? 1 : 0;
usage:
	fprintf(stderr,
		"usage: watch [-n COUNT] [-r REVISION] SOURCE PATTERN\n");
	return 2;
}
