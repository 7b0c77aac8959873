/* SPDX-License-Identifier: MIT */
/*
 * This file implements bench_watch, which times how long a change made by
 * another process through libustate takes to reach an inotify watcher of
 * a ustatefs mount of the same database: it sets DIR-key KEY with
 * ustate_set() (this process is not the daemon), takes the time when the
 * call returns (the commit is done), and waits for IN_CLOSE_WRITE of the
 * file on the mount. Between changes it sleeps 2-12 ms, so that changes
 * do not queue behind each other. Prints one latency per change, in
 * milliseconds; a change whose event does not come within 2 s counts as
 * 2000 ms. A first change, untimed, waits until the mount has replayed
 * everything before it.
 *
 *   bench_watch SOURCE MOUNTPOINT N
 * SOURCE is the mount's store, as ustate_open() takes it (a SQLite file,
 * or etcd://...: then the change travels from this process to the mount
 * through etcd, as from one node to another).
 * The key is /watch/k, which must exist before (the mount watches the
 * directory /watch).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "bench_i.h"
#include "ustate.h"

/* Wait until the event for "k" arrives or the deadline passes; returns
 * the time it was read, or 0. */
static double wait_event(int ifd, double deadline)
{
	char buf[4096] __attribute__((aligned(8)));
	const struct inotify_event *ev;
	struct pollfd p = {.fd = ifd, .events = POLLIN};
	ssize_t n;
	char *at;
	double t;

	for (;;) {
		t = bench_now();
		if (t >= deadline)
			return 0;
		if (poll(&p, 1, (int)((deadline - t) * 1e3) + 1) < 0)
			bench_die("poll", errno);
		if (!(p.revents & POLLIN))
			continue;
		n = read(ifd, buf, sizeof(buf));
		t = bench_now();
		if (n < 0)
			bench_die("inotify read", errno);
		for (at = buf; at < buf + n; at += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)at;
			if ((ev->mask & IN_CLOSE_WRITE) && ev->len &&
			    !strcmp(ev->name, "k"))
				return t;
		}
	}
}

/* Read whatever is queued, so that each change waits for its own. */
static void drain(int ifd)
{
	char buf[4096] __attribute__((aligned(8)));
	struct pollfd p = {.fd = ifd, .events = POLLIN};

	while (poll(&p, 1, 0) > 0 && read(ifd, buf, sizeof(buf)) > 0)
		;
}

int main(int argc, char **argv)
{
	ustate_options o = USTATE_OPTIONS_INIT;
	char dir[4096], value[BENCH_VALUE_LEN];
	double t, got;
	int ifd, i, n, rc;
	ustate *s;

	if (argc != 4) {
		fprintf(stderr, "usage: bench_watch SOURCE MOUNTPOINT N\n");
		return 2;
	}
	n = bench_int_arg(argv[3], 1, 100000);
	o.sync = USTATE_SYNC_NORMAL;
	rc = ustate_open(&s, argv[1], &o);
	if (rc < 0) {
		fprintf(stderr, "bench_watch: %s: %s\n", argv[1],
			ustate_strerror(rc));
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/watch", argv[2]);
	ifd = inotify_init1(IN_CLOEXEC);
	if (ifd < 0)
		bench_die("inotify_init1", errno);
	if (inotify_add_watch(ifd, dir, IN_CLOSE_WRITE | IN_MODIFY) < 0)
		bench_die(dir, errno);
	srand(getpid());
	/*
	 * One change first, untimed, whose event may take up to a minute:
	 * the mount replays whatever came before it (a benchmark's writes)
	 * first, and the latency is that of a mount that has caught up.
	 */
	bench_value(value, "/watch/k", 0);
	rc = ustate_set(s, "/watch/k", value, sizeof(value), NULL);
	if (rc < 0 || !wait_event(ifd, bench_now() + 60)) {
		fprintf(stderr,
			"bench_watch: the first change made no event\n");
		return 1;
	}
	for (i = 0; i < n; i++) {
		usleep(2000 + rand() % 10000);
		drain(ifd);
		bench_value(value, "/watch/k", i + 1);
		rc = ustate_set(s, "/watch/k", value, sizeof(value), NULL);
		if (rc < 0) {
			fprintf(stderr, "bench_watch: set: %s\n",
				ustate_strerror(rc));
			return 1;
		}
		t = bench_now();
		got = wait_event(ifd, t + 2);
		printf("%.3f\n", got ? (got - t) * 1e3 : 2000.0);
	}
	close(ifd);
	ustate_close(s);
	return 0;
}
