/* SPDX-License-Identifier: MIT */
/*
 * This file implements the turns of the SQLite backend: a ticket queue in
 * a small file beside the database (DB-ulock), mapped shared by every
 * libustate process that writes the file. SQLite's busy handler polls and
 * sleeps, so a process that commits without pause (a mount under many
 * writers) finds the lock free whenever it asks and another process
 * almost never does; the queue gives the lock in the order it was asked
 * for instead: a writer waits behind at most one commit of each process
 * that asked before it.
 *
 * The file holds a ticket dispenser (next), the ticket being served
 * (serving, a futex that waiters sleep on) and 64 places, one per open
 * store. A place is owned through an OFD lock on its byte, past the
 * mapped part: the kernel drops it when its owner dies, however it dies,
 * which is how the others tell a dead owner from a slow one (a pid may be
 * reused; an OFD lock cannot outlive its file description). A place
 * shows the ticket its owner holds or waits with (claim).
 *
 * Waiters sleep with a timeout and look at the holder of the ticket
 * served when it passes: a ticket whose place is dead, or that no place
 * claims on two looks in a row (its owner died between taking it and
 * claiming it, or gave up), is skipped. Nothing can stay stuck: a turn
 * not given within the caller's timeout is given up, and the caller
 * writes under SQLite's lock alone.
 *
 * The file also keeps the end of a pause that a member leaves for writers
 * outside the queue (free_until, see ustate_turns_pause()): whoever takes
 * the next turn keeps it too, so that members do not fill each other's.
 * And there is ustate_turns_foreign(), which tells whether such a writer
 * is there at all.
 *
 * All of the file starts as zeros, a valid empty queue: two processes
 * that create it at once need no initialisation to agree on.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sqlite_turns_i.h"

#define TURN_PLACES 64
#define TURN_LOCKS 4096	     /* the byte of place i is TURN_LOCKS + i */
#define TURN_LOOK_MS 20	     /* a waiter looks at the holder this often */
#define CLAIMED (1ull << 32) /* claim: CLAIMED | ticket, or 0 */
#define TURN_PAUSE_MAX_NS 100000000ull

struct turn_place {
	uint64_t claim; /* the ticket held or waited for */
	uint32_t pid;	/* the owner, for ustate_turns_foreign() */
	uint32_t pad;
};

struct turn_file {
	uint32_t next;	  /* the next ticket handed out */
	uint32_t serving; /* the ticket whose turn it is; a futex */
	/*
	 * Places asleep on serving, a bit each: one killed asleep leaves its
	 * bit, cleared when its ticket is skipped or its place taken again,
	 * so that a crash costs no wakeup call for ever after.
	 */
	uint64_t asleep;
	uint64_t free_until; /* CLOCK_MONOTONIC ns: no turn starts before */
	uint32_t pad2[10];
	struct turn_place place[TURN_PLACES];
};

struct ustate_turns {
	int fd;
	int me; /* our place */
	struct turn_file *f;
	uint32_t ticket;
	bool held;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t now_ms(void)
{
	return now_ns() / 1000000;
}

/* An OFD lock on the byte of place i: F_SETLK to take, F_GETLK to test. */
static int place_lock(int fd, int cmd, int i, struct flock *fl)
{
	*fl = (struct flock){
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = TURN_LOCKS + i,
		.l_len = 1,
	};
	return fcntl(fd, cmd, fl) < 0 ? -errno : 0;
}

/* Whether the owner of place i (not ours) is alive: it holds its lock. */
static bool place_alive(const struct ustate_turns *t, int i)
{
	struct flock fl;

	if (place_lock(t->fd, F_OFD_GETLK, i, &fl) < 0)
		return true; /* cannot tell: never skip a live one */
	return fl.l_type != F_UNLCK;
}

int ustate_turns_open(struct ustate_turns **out, const char *db, bool create)
{
	struct ustate_turns *t;
	int rc, i, flags;
	struct flock fl;
	struct stat st;
	mode_t mode;
	char *path;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->fd = -1;
	t->f = MAP_FAILED;
	if (asprintf(&path, "%s-ulock", db) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	/*
	 * Whoever may write the database may take turns on it: made with
	 * its mode, whatever the umask.
	 */
	mode = stat(db, &st) == 0 ? st.st_mode & 0666 : 0600;
	flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW;
	t->fd = create ? open(path, flags | O_CREAT | O_EXCL, mode) : -1;
	if (t->fd >= 0 && fchmod(t->fd, mode) < 0) {
		rc = -errno;
		free(path);
		goto fail;
	}
	if (t->fd < 0)
		t->fd = open(path, flags);
	rc = t->fd < 0 ? -errno : 0;
	free(path);
	if (rc < 0)
		goto fail;
	if (fstat(t->fd, &st) < 0) {
		rc = -errno;
		goto fail;
	}
	/* Growing it is idempotent: the new bytes are zeros either way. */
	if (st.st_size < (off_t)sizeof(struct turn_file) &&
	    ftruncate(t->fd, sizeof(struct turn_file)) < 0) {
		rc = -errno;
		goto fail;
	}
	t->f = mmap(NULL, sizeof(struct turn_file), PROT_READ | PROT_WRITE,
		    MAP_SHARED, t->fd, 0);
	if (t->f == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	rc = -ENOSPC;
	for (i = 0; i < TURN_PLACES && rc == -ENOSPC; i++) {
		rc = place_lock(t->fd, F_OFD_SETLK, i, &fl);
		if (rc == -EAGAIN || rc == -EACCES)
			rc = -ENOSPC;
	}
	if (rc < 0)
		goto fail;
	t->me = i - 1;
	/* A dead owner's claim may be left: it is ours now. */
	__atomic_store_n(&t->f->place[t->me].claim, 0, __ATOMIC_SEQ_CST);
	__atomic_fetch_and(&t->f->asleep, ~(1ull << t->me), __ATOMIC_SEQ_CST);
	__atomic_store_n(&t->f->place[t->me].pid, (uint32_t)getpid(),
			 __ATOMIC_SEQ_CST);
	*out = t;
	return 0;
fail:
	ustate_turns_close(t);
	return rc;
}

void ustate_turns_close(struct ustate_turns *t)
{
	if (!t)
		return;
	ustate_turn_give(t);
	if (t->f != MAP_FAILED) {
		__atomic_store_n(&t->f->place[t->me].pid, 0, __ATOMIC_SEQ_CST);
		munmap(t->f, sizeof(struct turn_file));
	}
	/* Our place's lock goes with the descriptor. */
	if (t->fd >= 0)
		close(t->fd);
	free(t);
}

static void wake_all(struct turn_file *f)
{
	if (__atomic_load_n(&f->asleep, __ATOMIC_SEQ_CST))
		syscall(SYS_futex, &f->serving, FUTEX_WAKE, INT_MAX, NULL, NULL,
			0);
}

/* Serve the ticket after s, unless someone did already. */
static void skip(struct turn_file *f, uint32_t s)
{
	if (__atomic_compare_exchange_n(&f->serving, &s, s + 1, false,
					__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		wake_all(f);
}

/*
 * Look at the holder of ticket s, which has been served for a while:
 * skip it when its place is dead, or when no place has claimed it on two
 * looks in a row (*unclaimed counts them).
 */
static void look(struct ustate_turns *t, uint32_t s, unsigned *unclaimed)
{
	uint64_t want = CLAIMED | s;
	int i;

	for (i = 0; i < TURN_PLACES; i++) {
		if (i == t->me || __atomic_load_n(&t->f->place[i].claim,
						  __ATOMIC_SEQ_CST) != want)
			continue;
		*unclaimed = 0;
		if (!place_alive(t, i)) {
			__atomic_fetch_and(&t->f->asleep, ~(1ull << i),
					   __ATOMIC_SEQ_CST);
			skip(t->f, s);
		}
		return;
	}
	if (++*unclaimed >= 2) {
		*unclaimed = 0;
		skip(t->f, s);
	}
}

int ustate_turn_take(struct ustate_turns *t, unsigned timeout_ms)
{
	struct turn_place *p;
	struct timespec ts;
	uint64_t end = 0, now, until;
	uint32_t s, last = 0;
	unsigned unclaimed = 0;
	long wait;

	if (!t)
		return 0;
	p = &t->f->place[t->me];
	for (;;) {
		t->ticket =
			__atomic_fetch_add(&t->f->next, 1, __ATOMIC_SEQ_CST);
		__atomic_store_n(&p->claim, CLAIMED | t->ticket,
				 __ATOMIC_SEQ_CST);
		/* Alone, or the lock's last holder: no wait, no call. */
		s = __atomic_load_n(&t->f->serving, __ATOMIC_SEQ_CST);
		while (s != t->ticket && (int32_t)(t->ticket - s) > 0) {
			now = now_ms();
			if (!end)
				end = now + timeout_ms;
			if (now >= end) {
				/* Ours may have come meanwhile: pass it on. */
				__atomic_store_n(&p->claim, 0,
						 __ATOMIC_SEQ_CST);
				skip(t->f, t->ticket);
				return -ETIMEDOUT;
			}
			wait = end - now < TURN_LOOK_MS ? (long)(end - now)
							: TURN_LOOK_MS;
			ts.tv_sec = 0;
			ts.tv_nsec = wait * 1000000;
			__atomic_fetch_or(&t->f->asleep, 1ull << t->me,
					  __ATOMIC_SEQ_CST);
			syscall(SYS_futex, &t->f->serving, FUTEX_WAIT, s, &ts,
				NULL, 0);
			__atomic_fetch_and(&t->f->asleep, ~(1ull << t->me),
					   __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&t->f->serving, __ATOMIC_SEQ_CST) ==
			    s) {
				if (s != last)
					unclaimed = 0;
				last = s;
				look(t, s, &unclaimed);
			}
			s = __atomic_load_n(&t->f->serving, __ATOMIC_SEQ_CST);
		}
		if (s == t->ticket)
			break;
		/* Skipped while we slept (stopped, say): ask again. */
	}
	t->held = true;
	/*
	 * A pause left for writers outside the queue holds for every member
	 * (it would be filled by the next one otherwise); a clock of
	 * another time namespace is bounded by the cap.
	 */
	now = now_ns();
	until = __atomic_load_n(&t->f->free_until, __ATOMIC_RELAXED);
	if (until > now) {
		until -= now;
		until = until < TURN_PAUSE_MAX_NS ? until : TURN_PAUSE_MAX_NS;
		ts.tv_sec = until / 1000000000;
		ts.tv_nsec = until % 1000000000;
		nanosleep(&ts, NULL);
	}
	return 0;
}

void ustate_turn_give(struct ustate_turns *t)
{
	uint32_t s;

	if (!t || !t->held)
		return;
	t->held = false;
	s = t->ticket;
	__atomic_compare_exchange_n(&t->f->serving, &s, s + 1, false,
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	__atomic_store_n(&t->f->place[t->me].claim, 0, __ATOMIC_SEQ_CST);
	wake_all(t->f);
}

void ustate_turns_pause(struct ustate_turns *t, uint64_t until)
{
	uint64_t cur;

	if (!t)
		return;
	cur = __atomic_load_n(&t->f->free_until, __ATOMIC_RELAXED);
	while (cur < until && !__atomic_compare_exchange_n(
				      &t->f->free_until, &cur, until, false,
				      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* Whether pid owns a live place of the queue. */
static bool member(const struct ustate_turns *t, uint32_t pid)
{
	int i;

	for (i = 0; t && i < TURN_PLACES; i++)
		if (__atomic_load_n(&t->f->place[i].pid, __ATOMIC_SEQ_CST) ==
			    pid &&
		    (i == t->me || place_alive(t, i)))
			return true;
	return false;
}

bool ustate_turns_foreign(struct ustate_turns *t, const char *path)
{
	unsigned long long ino;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	struct stat st;
	unsigned maj, min;
	int pid, self = getpid();
	FILE *f;

	if (stat(path, &st) < 0)
		return false;
	f = fopen("/proc/locks", "re");
	if (!f)
		return false;
	/*
	 * "1: POSIX  ADVISORY  READ 1234 08:01:5678 128 128": the pid, then
	 * the device (hex) and inode. Waiters ("1: -> POSIX ...") have four
	 * words before the pid and fail the match. Only the inode is
	 * compared: the device of a stat() and of the kernel's list differ
	 * on some file systems, and a false match only costs pauses.
	 */
	while (!found && getline(&line, &cap, f) > 0) {
		if (sscanf(line, "%*d: %*s %*s %*s %d %x:%x:%llu", &pid, &maj,
			   &min, &ino) != 4)
			continue;
		found = ino == (unsigned long long)st.st_ino && pid != self &&
			pid > 0 && !member(t, (uint32_t)pid);
	}
	free(line);
	fclose(f);
	return found;
}
