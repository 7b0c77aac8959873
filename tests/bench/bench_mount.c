/* SPDX-License-Identifier: MIT */
/*
 * This file implements bench_mount, which starts a file system daemon in
 * the foreground and times its mount: from just before the exec until a
 * stat of the mountpoint is answered by the new file system (another
 * st_dev than its parent directory's). It prints "PID MILLISECONDS" and
 * returns, leaving the daemon running; the caller stops it by its pid.
 *
 *   bench_mount LOG DAEMON ARGS... MOUNTPOINT
 * The daemon's stdout and stderr go to LOG. If the daemon exits first, or
 * nothing answers within 60 s, bench_mount fails (and kills it).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_i.h"

int main(int argc, char **argv)
{
	char parent[4096], *mnt;
	struct stat pst, st;
	double t0;
	pid_t pid;
	int fd, status;

	if (argc < 4) {
		fprintf(stderr, "usage: bench_mount LOG DAEMON ARGS... "
				"MOUNTPOINT\n");
		return 2;
	}
	mnt = argv[argc - 1];
	snprintf(parent, sizeof(parent), "%s", mnt);
	if (stat(dirname(parent), &pst) < 0)
		bench_die(parent, errno);
	fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0)
		bench_die(argv[1], errno);
	fflush(NULL);
	t0 = bench_now();
	pid = fork();
	if (pid < 0)
		bench_die("fork", errno);
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
		execvp(argv[2], argv + 2);
		bench_die(argv[2], errno);
	}
	close(fd);
	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			bench_die("the daemon exited before it answered", 0);
		if (stat(mnt, &st) == 0 && st.st_dev != pst.st_dev)
			break;
		if (bench_now() - t0 > 60) {
			kill(pid, SIGTERM);
			bench_die("no answer within 60 s", ETIMEDOUT);
		}
		usleep(100);
	}
	printf("%d %.2f\n", (int)pid, (bench_now() - t0) * 1e3);
	return 0;
}
