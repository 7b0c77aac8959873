/* SPDX-License-Identifier: MIT */
/*
 * This file tests the turns of the SQLite backend (core/sqlite_turns.c):
 * turns come in the order they were asked for, a holder or a waiter
 * killed with SIGKILL leaves nothing stuck (the next one gets the turn,
 * not the timeout), a waiter that gives up passes its turn on, and a
 * process outside the queue is told from members by its locks. Each
 * open place is a separate description of the lock file, so places of
 * one process stand for processes where no kill is needed.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sqlite_turns_i.h"

#define WAIT_MS 10000 /* far longer than any skip takes */

static char dir[] = "/tmp/ustate-turns.XXXXXX";
static char db[64];

/* A word of the lock file at off, of size bytes (4 or 8). */
static uint64_t word(off_t off, size_t size)
{
	uint64_t v = 0;
	char path[80];
	int fd;

	snprintf(path, sizeof(path), "%s-ulock", db);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &v, size, off), size);
	close(fd);
	return v;
}

/* The ticket dispenser, the file's first word: how many were asked. */
static uint32_t asked(void)
{
	return (uint32_t)word(0, 4);
}

/* Wait, at most 10 s, until n tickets were asked for. */
static void wait_asked(uint32_t n)
{
	int i;

	for (i = 0; i < 10000 && asked() < n; i++)
		usleep(1000);
	assert_true(asked() >= n);
}

struct taker {
	struct ustate_turns *t;
	int *order, *len;
	pthread_mutex_t *lock;
	int id, rc;
};

static void *take_one(void *arg)
{
	struct taker *k = arg;

	k->rc = ustate_turn_take(k->t, WAIT_MS);
	pthread_mutex_lock(k->lock);
	k->order[(*k->len)++] = k->id;
	pthread_mutex_unlock(k->lock);
	ustate_turn_give(k->t);
	return NULL;
}

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/s.db", dir);
	return 0;
}

static int teardown(void **state)
{
	char path[80];

	(void)state;
	snprintf(path, sizeof(path), "%s-ulock", db);
	unlink(path);
	rmdir(dir);
	return 0;
}

/* Three waiters behind a holder get the turn in the order they asked. */
static void test_order(void **state)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct ustate_turns *holder;
	struct taker k[3];
	pthread_t th[3];
	int order[3], len = 0, i;
	uint32_t base;

	(void)state;
	assert_int_equal(ustate_turns_open(&holder, db, true), 0);
	assert_int_equal(ustate_turn_take(holder, WAIT_MS), 0);
	base = asked();
	for (i = 0; i < 3; i++) {
		k[i] = (struct taker){
			.order = order, .len = &len, .lock = &lock, .id = i};
		assert_int_equal(ustate_turns_open(&k[i].t, db, true), 0);
		assert_int_equal(pthread_create(&th[i], NULL, take_one, &k[i]),
				 0);
		wait_asked(base + i + 1);
	}
	ustate_turn_give(holder);
	for (i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(k[i].rc, 0);
		assert_int_equal(order[i], i);
		ustate_turns_close(k[i].t);
	}
	ustate_turns_close(holder);
}

/* A child that takes the turn (and waits for it, when held), then hangs. */
static pid_t child_taking(void)
{
	struct ustate_turns *t;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid)
		return pid;
	if (ustate_turns_open(&t, db, true) < 0 ||
	    ustate_turn_take(t, WAIT_MS) < 0)
		_exit(1);
	pause();
	_exit(0);
}

static void kill_child(pid_t pid)
{
	int status;

	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
}

/* A holder killed with SIGKILL: the next waiter gets the turn. */
static void test_holder_killed(void **state)
{
	struct ustate_turns *t;
	uint32_t base = asked();
	pid_t pid;

	(void)state;
	pid = child_taking();
	wait_asked(base + 1);
	/* The child holds it now (or is about to): kill it in the turn. */
	usleep(20000);
	kill_child(pid);
	assert_int_equal(ustate_turns_open(&t, db, true), 0);
	assert_int_equal(ustate_turn_take(t, WAIT_MS), 0);
	ustate_turn_give(t);
	ustate_turns_close(t);
}

/* A waiter killed in the queue: those behind it are not stuck. */
static void test_waiter_killed(void **state)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct ustate_turns *holder;
	int order[1], len = 0;
	struct taker k = {.order = order, .len = &len, .lock = &lock};
	pthread_t th;
	uint32_t base;
	pid_t pid;

	(void)state;
	assert_int_equal(ustate_turns_open(&holder, db, true), 0);
	assert_int_equal(ustate_turn_take(holder, WAIT_MS), 0);
	base = asked();
	pid = child_taking();
	wait_asked(base + 1);
	assert_int_equal(ustate_turns_open(&k.t, db, true), 0);
	assert_int_equal(pthread_create(&th, NULL, take_one, &k), 0);
	wait_asked(base + 2);
	kill_child(pid);
	ustate_turn_give(holder);
	pthread_join(th, NULL);
	assert_int_equal(k.rc, 0);
	/* Nobody asleep, the killed child's mark too: no wakeup calls. */
	assert_int_equal(word(8, 8), 0);
	ustate_turns_close(k.t);
	ustate_turns_close(holder);
}

/* One that gives up is -ETIMEDOUT, and leaves the queue moving. */
static void test_give_up(void **state)
{
	struct ustate_turns *holder, *t;

	(void)state;
	assert_int_equal(ustate_turns_open(&holder, db, true), 0);
	assert_int_equal(ustate_turns_open(&t, db, true), 0);
	assert_int_equal(ustate_turn_take(holder, WAIT_MS), 0);
	assert_int_equal(ustate_turn_take(t, 50), -ETIMEDOUT);
	ustate_turn_give(holder);
	assert_int_equal(ustate_turn_take(holder, WAIT_MS), 0);
	ustate_turn_give(holder);
	assert_int_equal(ustate_turn_take(t, WAIT_MS), 0);
	ustate_turns_close(t);
	/* Closing with the turn held gives it. */
	assert_int_equal(ustate_turn_take(holder, WAIT_MS), 0);
	ustate_turns_close(holder);
	assert_int_equal(ustate_turns_open(&t, db, true), 0);
	assert_int_equal(ustate_turn_take(t, WAIT_MS), 0);
	ustate_turns_close(t);
}

/*
 * A child that locks a byte of path with a POSIX lock, as SQLite locks
 * the -shm, having joined the queue first when member is set; it says so
 * on a pipe and hangs.
 */
static pid_t child_locking(const char *path, bool member)
{
	struct flock fl = {.l_type = F_RDLCK,
			   .l_whence = SEEK_SET,
			   .l_start = 128,
			   .l_len = 1};
	struct ustate_turns *t;
	int p[2], fd;
	pid_t pid;
	char c;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		if (member && ustate_turns_open(&t, db, true) < 0)
			_exit(1);
		fd = open(path, O_RDWR | O_CREAT, 0600);
		if (fd < 0 || fcntl(fd, F_SETLK, &fl) < 0 ||
		    write(p[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	return pid;
}

/*
 * An outside process with a lock on the file is foreign; a member of the
 * queue, the caller itself, or nobody is not.
 */
static void test_foreign(void **state)
{
	struct flock fl = {.l_type = F_RDLCK,
			   .l_whence = SEEK_SET,
			   .l_start = 128,
			   .l_len = 1};
	struct ustate_turns *t;
	char path[80];
	pid_t pid;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/s.db-shm", dir);
	assert_int_equal(ustate_turns_open(&t, db, true), 0);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_false(ustate_turns_foreign(t, path));
	assert_int_equal(fcntl(fd, F_SETLK, &fl), 0);
	assert_false(ustate_turns_foreign(t, path));
	pid = child_locking(path, false);
	assert_true(ustate_turns_foreign(t, path));
	assert_true(ustate_turns_foreign(NULL, path));
	kill_child(pid);
	assert_false(ustate_turns_foreign(t, path));
	pid = child_locking(path, true);
	assert_false(ustate_turns_foreign(t, path));
	/* Without the queue, every other process is foreign. */
	assert_true(ustate_turns_foreign(NULL, path));
	kill_child(pid);
	close(fd);
	unlink(path);
	assert_false(ustate_turns_foreign(t, path));
	/*
	 * A pause holds for every member, up to its cap whatever the clock
	 * says (the last use of this file: it stays paused).
	 */
	ustate_turns_pause(t, UINT64_MAX);
	assert_int_equal(ustate_turn_take(t, WAIT_MS), 0);
	ustate_turn_give(t);
	ustate_turns_close(t);
}

/* No file and no right to create it: an error, nothing made. */
static void test_open_missing(void **state)
{
	struct ustate_turns *t = NULL;
	char other[96];

	(void)state;
	snprintf(other, sizeof(other), "%s/none.db", dir);
	assert_int_equal(ustate_turns_open(&t, other, false), -ENOENT);
	assert_null(t);
	strcat(other, "-ulock");
	assert_int_equal(access(other, F_OK), -1);
	/* NULL turns are SQLite's busy handler alone: no wait at all. */
	assert_int_equal(ustate_turn_take(NULL, 0), 0);
	ustate_turn_give(NULL);
	ustate_turns_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_holder_killed),
		cmocka_unit_test(test_waiter_killed),
		cmocka_unit_test(test_give_up),
		cmocka_unit_test(test_foreign),
		cmocka_unit_test(test_open_missing),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
