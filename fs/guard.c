/* SPDX-License-Identifier: MIT */
/*
 * This file implements the daemon's guard: a small child process that
 * aborts the mount's FUSE connection when the daemon dies without
 * unmounting (SIGKILL, a crash), so that no process stays blocked on it.
 *
 * Why it is needed: a killed daemon can fail to die. A thread of it that
 * tells the kernel to forget a name (fuse_lowlevel_notify_inval_entry()
 * and the like) waits, uninterruptibly, for the directory's lock; when a
 * writer holds that lock while it waits for the daemon's answer, and
 * SIGKILL takes the threads that would answer, the writer waits for an
 * answer and the daemon's last thread for the writer, for ever. The
 * daemon's /dev/fuse is never closed, so the kernel never ends the
 * connection, and fusermount3 -uz does not end the requests in flight.
 * Aborting the connection (fusectl's abort file) fails those requests,
 * the lock is released, the daemon finishes dying.
 *
 * The guard is forked before the mount and before any thread, holds
 * nothing of the daemon but a pipe, and learns the connection's number
 * (the mount's minor device number, read from /proc/self/mountinfo
 * without touching the mount) once the mount exists. It waits for the
 * daemon's main thread to end (PR_SET_PDEATHSIG), which happens even
 * while another thread of the daemon is stuck; a daemon that unmounted
 * says so first, and the guard then just exits. It never touches the
 * store.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs_i.h"

#define FUSECTL "/sys/fs/fuse/connections"

static int guard_fd = -1; /* the daemon's end of the pipe */
static pid_t guard_pid = -1;

/*
 * Abort connection conn (its fusectl directory's name), mounting fusectl
 * first if nobody did. A connection that is gone already needs nothing.
 */
static void abort_connection(unsigned conn)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), FUSECTL "/%u/abort", conn);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT &&
	    mount("fusectl", FUSECTL, "fusectl", 0, NULL) == 0)
		fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			log_msg(LOG_ERR, "guard: %s: %s", path,
				strerror(errno));
		return;
	}
	if (write(fd, "1", 1) != 1)
		log_msg(LOG_ERR, "guard: %s: %s", path, strerror(errno));
	else
		log_msg(LOG_WARNING,
			"guard: the daemon died without unmounting: "
			"connection %u aborted (fusermount3 -uz the mountpoint)",
			conn);
	close(fd);
}

/* Whether the daemon said it unmounted ('u' waiting in the pipe). */
static bool said_unmounted(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	return poll(&p, 1, 0) == 1 && read(fd, &c, 1) == 1 && c == 'u';
}

/*
 * The guard: read the connection's number ("c NUMBER"), then wait for
 * the daemon's word ('u': it unmounted), the pipe's end (the daemon is
 * gone whole: the kernel ended the connection), or the death signal
 * (its main thread ended; without a 'u' first, a death).
 */
static void guard_main(int fd, pid_t daemon)
{
	struct pollfd p[2];
	unsigned conn;
	sigset_t set;
	char msg[32];
	ssize_t n;
	int sfd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	/* Dead before the prctl: nothing was mounted yet. */
	if (sfd < 0 || getppid() != daemon)
		_exit(0);
	n = read(fd, msg, sizeof(msg) - 1);
	if (n <= 0 || msg[0] != 'c')
		_exit(0); /* no mount was made */
	msg[n] = '\0';
	conn = (unsigned)strtoul(msg + 2, NULL, 10);
	p[0] = (struct pollfd){.fd = fd, .events = POLLIN};
	p[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
	/* Each wakeup ends the guard: bounded by the daemon's life. */
	while (poll(p, 2, -1) < 0 && errno == EINTR)
		;
	if (said_unmounted(fd) || !(p[1].revents & POLLIN))
		_exit(0);
	abort_connection(conn);
	_exit(0);
}

int guard_init(void)
{
	pid_t daemon = getpid(), pid;
	int fds[2];

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -errno;
	}
	if (pid == 0) {
		close(fds[1]);
		if (fs.background)
			log_detach();
		guard_main(fds[0], daemon);
	}
	close(fds[0]);
	guard_fd = fds[1];
	guard_pid = pid;
	return 0;
}

/* Unescape a mountinfo field (\040 and the like) in place. */
static void unescape(char *s)
{
	char *d = s;

	for (; *s; s++, d++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] &&
		    s[3]) {
			*d = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				    (s[3] - '0'));
			s += 3;
		} else {
			*d = *s;
		}
	}
	*d = '\0';
}

/*
 * The connection of the FUSE mount at mountpoint: the minor number of the
 * last mount there (the newest), from /proc/self/mountinfo.
 */
static int connection_of(const char *mountpoint, unsigned *conn)
{
	char line[4096 + 256], mnt[4096 + 1];
	unsigned major, minor;
	int rc = -ENOENT;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%*u %*u %u:%u %*s %4096s", &major, &minor,
			   mnt) == 3) {
			unescape(mnt);
			if (major == 0 && !strcmp(mnt, mountpoint)) {
				*conn = minor;
				rc = 0;
			}
		}
	fclose(f);
	return rc;
}

void guard_arm(const char *mountpoint)
{
	unsigned conn;
	char msg[32];
	int len, rc;

	if (guard_fd < 0)
		return;
	rc = connection_of(mountpoint, &conn);
	if (rc < 0) {
		log_msg(LOG_WARNING, "guard: no connection found for %s: %s",
			mountpoint, strerror(-rc));
		return;
	}
	len = snprintf(msg, sizeof(msg), "c %u", conn);
	if (write(guard_fd, msg, (size_t)len) != len)
		log_msg(LOG_WARNING, "guard: %s", strerror(errno));
}

void guard_exit(void)
{
	if (guard_fd < 0)
		return;
	if (write(guard_fd, "u", 1) != 1) {
		/* the guard is gone already */
	}
	close(guard_fd);
	guard_fd = -1;
	waitpid(guard_pid, NULL, 0);
}
