/* SPDX-License-Identifier: MIT */
/*
 * This file implements where the ustatefs daemon's messages go, and at
 * which levels (syslog's, LOG_ERR to LOG_DEBUG):
 *
 *  - under systemd (stderr is the journal stream that $JOURNAL_STREAM
 *    names), to stderr with a "<N>" level prefix, which journald turns
 *    into the entry's priority (SyslogLevelPrefix=, on by default);
 *  - in the foreground otherwise, to stderr as "ustatefs: level: text";
 *  - once gone to the background, to syslog (facility daemon).
 *
 * libfuse's own messages, among them the trace of every request that -d
 * (-o debug) turns on, come through here too (fuse_set_log_func), as
 * debug messages. Messages above the threshold (-o log_level=, default
 * info; debug with -d) are dropped. Nothing here prints values: callers
 * pass keys and errors only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "fs_i.h"

static int threshold = LOG_INFO;
static enum { TO_STDERR, TO_JOURNAL, TO_SYSLOG } sink = TO_STDERR;

static const char *const level_names[] = {
	[LOG_EMERG] = "emerg",	   [LOG_ALERT] = "alert",
	[LOG_CRIT] = "crit",	   [LOG_ERR] = "error",
	[LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",	   [LOG_DEBUG] = "debug",
};

int log_level_parse(const char *name)
{
	int i;

	for (i = LOG_EMERG; i <= LOG_DEBUG; i++)
		if (!strcmp(name, level_names[i]) ||
		    (i == LOG_ERR && !strcmp(name, "err")))
			return i;
	return -EINVAL;
}

/* Whether stderr is the stream $JOURNAL_STREAM ("DEV:INO") names. */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) < 0)
		return false;
	return st.st_dev == dev && st.st_ino == ino;
}

static void log_fuse(enum fuse_log_level level, const char *fmt, va_list ap)
{
	/* FUSE_LOG_* are syslog's levels. */
	log_vmsg((int)level, fmt, ap);
}

void log_init(int level)
{
	threshold = level;
	sink = stderr_is_journal() ? TO_JOURNAL : TO_STDERR;
	fuse_set_log_func(log_fuse);
}

void log_detach(void)
{
	int null;

	if (sink != TO_JOURNAL) {
		openlog("ustatefs", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		sink = TO_SYSLOG;
	}
	null = open("/dev/null", O_RDWR);
	if (null < 0)
		return;
	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	dup2(null, STDERR_FILENO);
	if (null > STDERR_FILENO)
		close(null);
}

void log_vmsg(int level, const char *fmt, va_list ap)
{
	char buf[1024];
	size_t len;

	if (level > threshold)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One line each: libfuse ends its messages with a newline. */
	len = strlen(buf);
	while (len && buf[len - 1] == '\n')
		buf[--len] = '\0';
	switch (sink) {
	case TO_SYSLOG:
		syslog(level, "%s", buf);
		break;
	case TO_JOURNAL:
		fprintf(stderr, "<%d>%s\n", level, buf);
		break;
	case TO_STDERR:
		if (level >= LOG_INFO)
			fprintf(stderr, "ustatefs: %s\n", buf);
		else
			fprintf(stderr, "ustatefs: %s: %s\n",
				level_names[level], buf);
		break;
	}
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
