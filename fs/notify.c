/* SPDX-License-Identifier: MIT */
/*
 * This file implements ustatefs's side of the systemd service protocol,
 * through libsystemd's sd_notify(): READY=1 once the mount answers (a
 * stat of the mountpoint went through the daemon's own loop), then, when
 * the unit sets WatchdogSec, WATCHDOG=1 every half period for as long as
 * the loop keeps answering that stat. A hung loop therefore stops the
 * pings and systemd restarts the service. Without systemd (no
 * NOTIFY_SOCKET) every call is a no-op.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

static pthread_t notifier;
static bool running; /* set before start, cleared at stop */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static bool stopping; /* protected by lock */

/* Whether the mount answers: a stat that the daemon's loop must serve. */
static bool answers(void)
{
	struct stat st;

	return stat(fs.mountpoint, &st) == 0 && st.st_ino == FUSE_ROOT_ID;
}

/* Sleep up to usec, or until stop; false when stopping. */
static bool nap(uint64_t usec)
{
	struct timespec until;
	bool go;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += usec / 1000000;
	until.tv_nsec += (long)(usec % 1000000) * 1000;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&lock);
	if (!stopping)
		pthread_cond_timedwait(&wake, &lock, &until);
	go = !stopping;
	pthread_mutex_unlock(&lock);
	return go;
}

static void *notify_main(void *arg)
{
	uint64_t usec = 0;
	int i;

	for (i = 0; !answers(); i++)
		if (!nap(10000) || i > 3000)
			return NULL;
	sd_notifyf(0, "READY=1\nSTATUS=serving %s", fs.mountpoint);
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return NULL;
	while (nap(usec / 2))
		if (answers())
			sd_notify(0, "WATCHDOG=1");
	return NULL;
}

void notify_start(void)
{
	/* Nothing to tell, and no thread to run, outside systemd. */
	if (!getenv("NOTIFY_SOCKET"))
		return;
	running = pthread_create(&notifier, NULL, notify_main, NULL) == 0;
}

void notify_stop(void)
{
	if (!running)
		return;
	sd_notify(0, "STOPPING=1");
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(notifier, NULL);
	running = false;
}
#else
void notify_start(void)
{
}

void notify_stop(void)
{
}
#endif
