/* SPDX-License-Identifier: MIT */
/*
 * This file implements /.leases/, the leases of the store as files (see
 * the README's "Leases"). /.leases/NAME exists while lease NAME is live.
 * Writing a TTL in seconds to it grants the lease (or refreshes it with
 * that TTL) at the close; an open, a touch (SETATTR) and the last close
 * keep it alive; unlink revokes it; its text is the lease's state:
 *
 *	ttl 10
 *	left 9.871
 *	key /nodes/node-1/status
 *
 * (one "key" line a key attached, in byte order). While any descriptor of
 * the file is open, a thread of the daemon keeps the lease alive every
 * TTL/3: a process ties a lease to its life by holding the file open, and
 * the kernel closes it when the process dies, after which the lease
 * expires a TTL later. The library expires leases (and deletes their
 * keys); the watcher replays those deletes as everyone else's.
 *
 * Holders: the daemon also remembers which process opened each descriptor
 * for reading (the caller of OPEN or CREATE, its thread group; a write-only
 * open, echo 10 > NAME, is a grant: its asynchronous RELEASE must not
 * lease what the shell creates next). A key created through
 * the mount gets the lease of the nearest process, from its creator up
 * its ancestors (LEASE_CHAIN_MAX of them, by /proc/PID/status PPid), that
 * holds a lease file open: exec 9< /.leases/node-1 in a shell leases what
 * the shell and its children create. A process holding files of several
 * leases gets none (no guess). A descriptor inherited by a process that
 * outlives its opener counts for nobody's creations.
 *
 * Owners: the store keeps a lease's owner (ustate_lease_grant_owned()):
 * the creator's uid, gid and mode (the umask taken off) of a lease this
 * mount made, changed by chmod and chown, seen by every mount and kept
 * across restarts. A lease granted without one (ustate lease grant of an
 * older version, a program using ustate_lease_grant()) belongs to the
 * mounting user, mode 0644. /.leases is 01777: anyone may grant leases,
 * and only a lease's owner may revoke it (the sticky bit), when the
 * kernel checks permissions.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_i.h"

#define TICK_MS 200 /* how often the thread looks at the held leases */

/* What the daemon knows of a lease it has seen. */
struct lease_rec {
	char *name;
	unsigned holders; /* open descriptors of its file */
	int64_t ttl;	  /* seconds, as last seen (0: unknown or gone) */
	int64_t kept;	  /* CLOCK_MONOTONIC ms of the last keepalive */
	bool refreshed;	  /* kept alive by the thread since held */
	struct lease_rec *next;
};

/* An open descriptor of a lease file and the process that opened it. */
struct lease_hold {
	pid_t pid;
	char *name;
	struct lease_hold *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct lease_hold *holds; /* protected by lock */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct lease_rec *recs; /* protected by lock */
static bool stopping;	       /* protected by lock */
static bool running;
static pthread_t thread;

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *lease_name_of(const char *path)
{
	static const char dir[] = "/.leases/";

	if (strncmp(path, dir, sizeof(dir) - 1))
		return NULL;
	return path + sizeof(dir) - 1;
}

/* The record of name, made when create; NULL. Called under lock. */
static struct lease_rec *rec_find(const char *name, bool create)
{
	struct lease_rec *r;

	for (r = recs; r; r = r->next)
		if (!strcmp(r->name, name))
			return r;
	if (!create)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->name = strdup(name);
	if (!r->name) {
		free(r);
		return NULL;
	}
	r->next = recs;
	recs = r;
	return r;
}

/* Drop the record of name if nothing needs it. Called under lock. */
static void rec_trim(const char *name)
{
	struct lease_rec **p, *r;

	for (p = &recs; (r = *p); p = &r->next) {
		if (strcmp(r->name, name))
			continue;
		if (r->holders)
			return;
		*p = r->next;
		free(r->name);
		free(r);
		return;
	}
}

/* Keep name alive now; note its TTL (0 when it is gone). */
static int keepalive(const char *name)
{
	ustate_lease_info *info = NULL;
	struct lease_rec *r;
	int rc;

	rc = ustate_lease_keepalive(fs.store, name, &info);
	pthread_mutex_lock(&lock);
	r = rec_find(name, false);
	if (r) {
		r->ttl = rc == 0 ? info->ttl : 0;
		r->kept = mono_ms();
	}
	pthread_mutex_unlock(&lock);
	ustate_lease_info_free(info);
	return rc;
}

/*
 * The text of info into buf (cap bytes, NULL when 0), cut short if it
 * does not fit; its whole length.
 */
static size_t render(const ustate_lease_info *info, char *buf, size_t cap)
{
	size_t used, i;
	int n;

	n = snprintf(buf, cap,
		     "ttl %" PRId64 "\nleft %" PRId64 ".%03" PRId64 "\n",
		     info->ttl, info->remaining_ms / 1000,
		     info->remaining_ms % 1000);
	used = n > 0 ? (size_t)n : 0;
	for (i = 0; i < info->nkeys; i++) {
		n = snprintf(used < cap ? buf + used : NULL,
			     used < cap ? cap - used : 0, "key %s\n",
			     info->keys[i]);
		used += n > 0 ? (size_t)n : 0;
	}
	return used;
}

int lease_attr(const char *name, struct stat *st)
{
	ustate_meta m = {.uid = fs.uid, .gid = fs.gid, .mode = 0644};
	ustate_lease_info *info = NULL;
	int rc;

	rc = ustate_lease_get(fs.store, name, &info);
	if (rc < 0)
		return rc;
	if (info->flags & USTATE_LEASE_OWNED) {
		m.uid = info->uid;
		m.gid = info->gid;
		m.mode = info->mode;
	}
	st->st_mode = S_IFREG | (m.mode & (fs.read_only ? 07555 : 07777));
	st->st_nlink = 1;
	st->st_size = (off_t)render(info, NULL, 0);
	/* The last grant or keepalive. */
	st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec =
		(time_t)((info->deadline - info->ttl * 1000) / 1000);
	st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = st->st_atim.tv_nsec = 0;
	st->st_uid = m.uid;
	st->st_gid = m.gid;
	ustate_lease_info_free(info);
	return 0;
}

void lease_dir_attr(struct stat *st)
{
	st->st_mode = S_IFDIR | (fs.read_only ? 01555 : 01777);
	st->st_nlink = 2;
}

int lease_text(const char *name, char **text, size_t *len)
{
	ustate_lease_info *info;
	char *buf;
	int rc;

	*text = NULL;
	*len = 0;
	rc = ustate_lease_get(fs.store, name, &info);
	if (rc < 0)
		return rc;
	*len = render(info, NULL, 0);
	buf = malloc(*len + 1);
	if (buf)
		render(info, buf, *len + 1);
	ustate_lease_info_free(info);
	*text = buf;
	return buf ? 0 : -ENOMEM;
}

int lease_open(const char *name, bool write, pid_t pid)
{
	ustate_lease_info *info = NULL;
	struct lease_hold *hd = NULL;
	struct lease_rec *r;
	int rc;

	if (pid > 0) {
		hd = calloc(1, sizeof(*hd));
		if (hd)
			hd->name = strdup(name);
		if (!hd || !hd->name) {
			free(hd);
			return -ENOMEM;
		}
		hd->pid = pid;
	}

	/* A write keeps it alive now; a read only from a TTL/3 on. */
	rc = write ? ustate_lease_keepalive(fs.store, name, &info)
		   : ustate_lease_get(fs.store, name, &info);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	pthread_mutex_lock(&lock);
	r = rec_find(name, true);
	if (r) {
		if (!r->holders++) {
			r->kept = mono_ms();
			r->refreshed = false;
		}
		if (info)
			r->ttl = info->ttl;
		if (hd) {
			hd->next = holds;
			holds = hd;
			hd = NULL;
		}
	}
	pthread_mutex_unlock(&lock);
	if (hd) {
		free(hd->name);
		free(hd);
	}
	ustate_lease_info_free(info);
	return r ? 0 : -ENOMEM;
}

void lease_close(const char *name, pid_t pid)
{
	struct lease_hold **p, *hd;
	struct lease_rec *r;
	bool last = false;

	pthread_mutex_lock(&lock);
	for (p = &holds; pid > 0 && (hd = *p); p = &hd->next) {
		if (hd->pid == pid && !strcmp(hd->name, name)) {
			*p = hd->next;
			free(hd->name);
			free(hd);
			break;
		}
	}
	r = rec_find(name, false);
	/*
	 * Held long enough for the thread to keep it alive: the TTL runs
	 * from the last close. A short read (cat) changes nothing.
	 */
	if (r && r->holders) {
		last = --r->holders == 0 && r->ttl && r->refreshed;
		if (!r->holders)
			r->refreshed = false;
	}
	if (r)
		rec_trim(name);
	pthread_mutex_unlock(&lock);
	if (last && !fs.read_only)
		keepalive(name);
}

int64_t lease_ttl_parse(const char *text, size_t len)
{
	char buf[32], *end;
	long long v;
	size_t i = 0;

	while (len && (text[len - 1] == '\n' || text[len - 1] == ' ' ||
		       text[len - 1] == '\t'))
		len--;
	while (i < len && (text[i] == ' ' || text[i] == '\t'))
		i++;
	if (len - i == 0 || len - i >= sizeof(buf))
		return 0;
	memcpy(buf, text + i, len - i);
	buf[len - i] = '\0';
	if (buf[0] < '0' || buf[0] > '9')
		return 0;
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno || *end || v < 1 || v > USTATE_LEASE_TTL_MAX)
		return 0;
	return v;
}

int lease_live(const char *name)
{
	ustate_lease_info *info = NULL;
	int rc;

	rc = ustate_lease_get(fs.store, name, &info);
	ustate_lease_info_free(info);
	return rc;
}

int lease_write(const char *name, const char *text, size_t len, bool created,
		const ustate_meta *creator)
{
	ustate_lease_info *info = NULL;
	struct lease_rec *r;
	int64_t ttl;
	int rc;

	ttl = lease_ttl_parse(text, len);
	if (!ttl)
		return -EINVAL;
	/* Through a file of a lease that ended since: no new lease. */
	if (!created) {
		rc = lease_live(name);
		if (rc < 0)
			return rc;
	}
	/* A lease this write makes is its creator's; a refresh keeps its. */
	rc = ustate_lease_grant_owned(fs.store, name, ttl,
				      created ? creator : NULL, &info);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&lock);
	r = rec_find(name, false);
	if (r) {
		r->ttl = info->ttl;
		r->kept = mono_ms();
	}
	pthread_mutex_unlock(&lock);
	ustate_lease_info_free(info);
	return 0;
}

int lease_setattr(const char *name, const struct stat *attr, int to_set)
{
	ustate_meta m = {0};
	struct stat st;
	int rc;

	if (fs.read_only)
		return -EROFS;
	if (!(to_set &
	      (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		return keepalive(name);
	rc = lease_attr(name, &st);
	if (rc < 0)
		return rc;
	m.uid = to_set & FUSE_SET_ATTR_UID ? attr->st_uid : st.st_uid;
	m.gid = to_set & FUSE_SET_ATTR_GID ? attr->st_gid : st.st_gid;
	m.mode = to_set & FUSE_SET_ATTR_MODE ? attr->st_mode & 07777
					     : st.st_mode & 07777;
	return ustate_lease_set_owner(fs.store, name, &m);
}

int lease_revoke(const char *name)
{
	struct lease_rec *r;
	int rc;

	if (fs.read_only)
		return -EROFS;
	rc = ustate_lease_revoke(fs.store, name);
	pthread_mutex_lock(&lock);
	r = rec_find(name, false);
	if (r && rc == 0) {
		r->ttl = 0;
		rec_trim(name);
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

int lease_list(ustate_dirent **ents, size_t *n)
{
	ustate_dirent *d = NULL;
	char **names;
	size_t i, count;
	int rc;

	*ents = NULL;
	*n = 0;
	rc = ustate_lease_list(fs.store, &names, &count);
	if (rc < 0)
		return rc;
	if (count) {
		d = calloc(count, sizeof(*d));
		if (!d) {
			ustate_list_free(names, count);
			return -ENOMEM;
		}
	}
	/* The names move into the entries. */
	for (i = 0; i < count; i++) {
		d[i].name = names[i];
		d[i].flags = USTATE_NODE_VALUE;
	}
	free(names);
	*ents = d;
	*n = count;
	return 0;
}

pid_t proc_status_id(pid_t pid, const char *field)
{
	char path[64], line[128];
	size_t n = strlen(field);
	pid_t id = 0;
	FILE *f;
	int v;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, field, n) && line[n] == ':' &&
		    sscanf(line + n + 1, "%d", &v) == 1) {
			id = v;
			break;
		}
	}
	fclose(f);
	return id;
}

/*
 * pid and its ancestors, nearest first, into chain (LEASE_CHAIN_MAX); how
 * many. init (1) and the daemon's own line end it.
 */
static size_t chain_of(pid_t pid, pid_t *chain)
{
	size_t n = 0;

	while (pid > 1 && n < LEASE_CHAIN_MAX) {
		chain[n++] = pid;
		pid = proc_status_id(pid, "PPid");
	}
	return n;
}

static bool any_holds(void)
{
	bool any;

	pthread_mutex_lock(&lock);
	any = holds != NULL;
	pthread_mutex_unlock(&lock);
	return any;
}

int lease_auto(pid_t pid, char *name)
{
	pid_t chain[LEASE_CHAIN_MAX];
	struct lease_hold *hd;
	const char *found;
	size_t n, i;
	int rc = 0;

	if (pid <= 0 || !any_holds())
		return 0;
	n = chain_of(pid, chain);
	pthread_mutex_lock(&lock);
	for (i = 0; i < n; i++) {
		found = NULL;
		for (hd = holds; hd; hd = hd->next) {
			if (hd->pid != chain[i])
				continue;
			if (found && strcmp(found, hd->name)) {
				/* Several: no guess. */
				rc = -EEXIST;
				break;
			}
			found = hd->name;
		}
		if (rc < 0)
			break;
		if (!found)
			continue;
		if (strlen(found) <= USTATE_SEGMENT_MAX) {
			strcpy(name, found);
			rc = 1;
		}
		break;
	}
	pthread_mutex_unlock(&lock);
	return rc < 0 ? 0 : rc;
}

bool lease_held(pid_t pid, const char *name)
{
	pid_t chain[LEASE_CHAIN_MAX];
	struct lease_hold *hd;
	bool held = false;
	size_t n, i;

	if (pid <= 0 || !any_holds())
		return false;
	n = chain_of(pid, chain);
	pthread_mutex_lock(&lock);
	for (i = 0; i < n && !held; i++)
		for (hd = holds; hd && !held; hd = hd->next)
			held = hd->pid == chain[i] &&
			       (!name || !strcmp(hd->name, name));
	pthread_mutex_unlock(&lock);
	return held;
}

/* The thread: keep every held lease alive each third of its TTL. */
static void *keeper(void *arg)
{
	struct timespec until;
	struct lease_rec *r;
	char *due;
	int64_t now;
	int rc;

	(void)arg;
	pthread_mutex_lock(&lock);
	while (!stopping) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += TICK_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&wake, &lock, &until);
		/* One keepalive a pass, without the lock; then look again. */
		for (;;) {
			due = NULL;
			now = mono_ms();
			for (r = recs; r && !stopping; r = r->next)
				if (r->holders && r->ttl &&
				    now - r->kept >= r->ttl * 1000 / 3) {
					due = strdup(r->name);
					r->kept =
						now; /* no second pass on it */
					break;
				}
			if (!due)
				break;
			pthread_mutex_unlock(&lock);
			rc = keepalive(due);
			if (rc < 0)
				log_msg(LOG_INFO, "lease %s ended while held",
					due);
			pthread_mutex_lock(&lock);
			r = rec_find(due, false);
			if (r && rc == 0 && r->holders)
				r->refreshed = true;
			free(due);
		}
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int leases_start(void)
{
	pthread_condattr_t ca;
	int rc;

	if (fs.read_only)
		return 0;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_destroy(&wake);
	pthread_cond_init(&wake, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&thread, NULL, keeper, NULL);
	if (rc)
		return -rc;
	running = true;
	return 0;
}

void leases_stop(void)
{
	struct lease_rec *r;

	if (running) {
		pthread_mutex_lock(&lock);
		stopping = true;
		pthread_cond_broadcast(&wake);
		pthread_mutex_unlock(&lock);
		pthread_join(thread, NULL);
		running = false;
	}
	while ((r = recs)) {
		recs = r->next;
		free(r->name);
		free(r);
	}
	while (holds) {
		struct lease_hold *hd = holds;

		holds = hd->next;
		free(hd->name);
		free(hd);
	}
}
