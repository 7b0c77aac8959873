/* SPDX-License-Identifier: MIT */
/*
 * This file implements the client half of the etcd fault tests: the
 * scenarios of test_faults.sh, which owns the cluster and does to its
 * members what this program asks, when it asks. A request is one line
 * "@ WORDS" on stdout ("@ kill 1", "@ start 1", "@ stop 0", "@ pause 1"
 * and "@ resume 1" (SIGSTOP, SIGCONT), "@ compact
 * REV", "@ put KEY VALUE" with etcdctl, "@ mark", "@ same": whether etcd's
 * keys and revision are as at the mark), answered by one line on stdin,
 * "ok" or anything else for a failure, within ASK_MS. Everything else
 * goes to stderr: "ok: ..." and "not ok: ..." per check, counts, and the
 * library's warnings (all its messages with $ETCD_FAULTS_DEBUG set).
 * Exit 0 when every check held, 1 otherwise, 2 for bad usage. Every loop
 * is bounded in count and time.
 *
 * usage: etcd_faults failover SOURCE VICTIM OUTCOMES
 *        etcd_faults watch SOURCE_WATCH SOURCE_WRITE VICTIM EVENTS
 *        etcd_faults lagging SOURCE_WATCH SOURCE_WRITE VICTIM
 *        etcd_faults noquorum SOURCE KILL1 KILL2
 *        etcd_faults hung SOURCE FIRST
 *        etcd_faults limits HOST:PORT
 *        etcd_faults auth HOST:PORT USER PASSWORD
 *        etcd_faults tls HOST:PORT CA OTHER_CA
 *        etcd_faults tls-client HOST:PORT CA CERT KEY
 *        etcd_faults replica SOURCE SOURCE_F F FILE OTHER
 *        etcd_faults replica-moved SOURCE FILE
 * (test_faults.sh says what each scenario asserts.)
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "ustate.h"

#define ASK_MS 60000	 /* the script's answer to a request */
#define SLACK_MS 3000	 /* a call may overrun request_timeout by this */
#define WRITERS 4	 /* failover: threads writing */
#define MAX_OPS 20000	 /* ... at most this many writes each */
#define MAX_EVENTS 20000 /* a watch reads at most this many events */

static int failures;

static void check(bool cond, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void check(bool cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cond ? "ok" : "not ok");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (!cond)
		failures++;
}

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec t = {.tv_sec = ms / 1000,
			     .tv_nsec = (ms % 1000) * 1000000L};

	while (ms > 0 && nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

/* The name of a return code: "0", "-ETIMEDOUT"; a static buffer a thread. */
static const char *ename(int rc)
{
	static __thread char buf[32];
	const char *n;

	if (rc >= 0)
		return "0";
	n = strerrorname_np(-rc);
	snprintf(buf, sizeof(buf), "-%s", n ? n : "?");
	return buf;
}

/* ---- the library's log ------------------------------------------------ */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[32768];	    /* protected by log_lock */
static size_t log_len;		    /* protected by log_lock */
static int log_print = LOG_WARNING; /* LOG_DEBUG with $ETCD_FAULTS_DEBUG */

/* Keeps messages of LOG_INFO and more urgent; prints warnings and worse. */
static void on_log(void *arg, int priority, const char *msg)
{
	size_t n = strlen(msg);

	if (priority <= log_print)
		fprintf(stderr, "  log: %s\n", msg);
	if (priority > LOG_INFO)
		return;
	pthread_mutex_lock(&log_lock);
	if (log_len + n + 2 <= sizeof(log_buf)) {
		memcpy(log_buf + log_len, msg, n);
		log_buf[log_len + n] = '\n';
		log_len += n + 1;
		log_buf[log_len] = '\0';
	}
	pthread_mutex_unlock(&log_lock);
}

static void log_reset(void)
{
	pthread_mutex_lock(&log_lock);
	log_len = 0;
	log_buf[0] = '\0';
	pthread_mutex_unlock(&log_lock);
}

static bool log_has(const char *s)
{
	bool has;

	pthread_mutex_lock(&log_lock);
	has = strstr(log_buf, s) != NULL;
	pthread_mutex_unlock(&log_lock);
	return has;
}

/* ---- the script ------------------------------------------------------- */

/* Ask the script for something; true when it answered "ok". */
static bool ask(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static bool ask(const char *fmt, ...)
{
	int64_t until = now_ms() + ASK_MS;
	char what[128], line[256];
	size_t n = 0;
	va_list ap;
	ssize_t r;
	char ch;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	printf("@ %s\n", what);
	fflush(stdout);
	while (n + 1 < sizeof(line)) {
		struct pollfd p = {.fd = 0, .events = POLLIN};
		int64_t left = until - now_ms();

		if (left <= 0)
			break;
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		r = read(0, &ch, 1);
		if (r <= 0)
			break;
		if (ch == '\n') {
			line[n] = '\0';
			check(!strcmp(line, "ok"), "the script did: %s (%s)",
			      what, line);
			return !strcmp(line, "ok");
		}
		line[n++] = ch;
	}
	check(false, "the script answered: %s", what);
	return false;
}

/* ---- helpers ---------------------------------------------------------- */

static ustate_options options(unsigned timeout_ms)
{
	ustate_options o = USTATE_OPTIONS_INIT;

	o.request_timeout = timeout_ms;
	o.dial_timeout = 1000;
	o.log = on_log;
	return o;
}

static ustate *open_store(const char *source, const ustate_options *o)
{
	ustate *s = NULL;
	int rc;

	rc = ustate_open(&s, source, o);
	check(rc == 0, "open %s: %s", source, ename(rc));
	return rc == 0 ? s : NULL;
}

/* One SET or DELETE in a transaction: its revision in *rev on success. */
static int write_one(ustate *s, ustate_op_type type, const char *key,
		     const char *val, uint64_t *rev, uint64_t *version)
{
	ustate_op op = {.type = type,
			.key = key,
			.value = val,
			.value_len = val ? strlen(val) : 0};
	ustate_txn_result res = {.versions = version};
	int rc;

	rc = ustate_transaction(s, &op, 1, &res);
	if (rc == 0 && rev)
		*rev = res.revision;
	return rc;
}

/*
 * A SET that must happen: tried again, for at most secs seconds, after a
 * failure (-ETIMEDOUT included: it may then be applied twice, which the
 * callers allow). Returns the last code.
 */
static int set_retry(ustate *s, const char *key, const char *val, uint64_t *rev,
		     int secs)
{
	int64_t until = now_ms() + secs * 1000;
	int rc, tries;

	for (tries = 0; tries < 1000; tries++) {
		rc = write_one(s, USTATE_OP_SET, key, val, rev, NULL);
		if (rc == 0 || now_ms() >= until)
			break;
		sleep_ms(100);
	}
	return rc;
}

/* The value of key is val. */
static bool has_value(ustate *s, const char *key, const char *val)
{
	ustate_entry *e = NULL;
	bool ok;

	if (ustate_get(s, key, &e) < 0)
		return false;
	ok = e->value_len == strlen(val) &&
	     !memcmp(e->value, val, e->value_len);
	ustate_entry_free(e);
	return ok;
}

/* Whether a write failed in a way that says it changed nothing. */
static bool not_applied(int rc)
{
	return rc == -ENOTCONN || rc == -ECONNREFUSED;
}

/* ---- failover under writes ------------------------------------------- */

struct wop {
	int64_t t0, t1; /* when the call began and returned */
	int rc;
};

struct writer {
	pthread_t thread;
	int id;
	ustate *s;
	int64_t until;
	struct wop *ops;
	size_t n;
};

static int stop_flag;

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	char key[64], val[24];
	struct wop *op;

	for (w->n = 0; w->n < MAX_OPS; w->n++) {
		if (__atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE) ||
		    now_ms() >= w->until)
			break;
		op = &w->ops[w->n];
		snprintf(key, sizeof(key), "/f/%d/%zu", w->id, w->n);
		snprintf(val, sizeof(val), "%zu", w->n);
		op->t0 = now_ms();
		op->rc = ustate_set(w->s, key, val, strlen(val), NULL);
		op->t1 = now_ms();
	}
	return NULL;
}

static int failover(int argc, char **argv)
{
	const unsigned timeout = 3000;
	struct writer w[WRITERS] = {0};
	size_t i, k, ok = 0, timedout = 0, notapplied = 0, other = 0;
	size_t after_kill = 0, after_start = 0, before = 0;
	int64_t t0, t_ask, t_kill, t_start, longest = 0;
	ustate_options o = options(timeout);
	const char *victim;
	FILE *out;
	ustate *s;

	if (argc != 3)
		return 2;
	victim = argv[1];
	s = open_store(argv[0], &o);
	if (!s)
		return 1;
	t0 = now_ms();
	for (i = 0; i < WRITERS; i++) {
		w[i].id = (int)i;
		w[i].s = s;
		w[i].until = t0 + 9000;
		w[i].ops = calloc(MAX_OPS, sizeof(*w[i].ops));
		if (!w[i].ops ||
		    pthread_create(&w[i].thread, NULL, writer_main, &w[i])) {
			check(false, "start writer %zu", i);
			return 1;
		}
	}
	sleep_ms(2500);
	t_ask = now_ms();
	ask("kill %s", victim);
	t_kill = now_ms();
	sleep_ms(3000);
	ask("start %s", victim);
	t_start = now_ms();
	for (i = 0; i < WRITERS; i++)
		pthread_join(w[i].thread, NULL);

	out = fopen(argv[2], "w");
	if (!out) {
		check(false, "write %s", argv[2]);
		return 1;
	}
	for (i = 0; i < WRITERS; i++) {
		for (k = 0; k < w[i].n; k++) {
			struct wop *op = &w[i].ops[k];

			fprintf(out, "/f/%zu/%zu %zu %d\n", i, k, k, op->rc);
			if (op->t1 - op->t0 > longest)
				longest = op->t1 - op->t0;
			if (op->rc == 0) {
				ok++;
				before += op->t1 < t_ask;
				after_kill += op->t0 > t_kill;
				after_start += op->t0 > t_start;
			} else if (op->rc == -ETIMEDOUT) {
				timedout++;
			} else if (not_applied(op->rc)) {
				notapplied++;
			} else {
				if (other++ < 5)
					fprintf(stderr,
						"  writer %zu op %zu: %s\n", i,
						k, ename(op->rc));
			}
		}
		free(w[i].ops);
	}
	fclose(out);
	fprintf(stderr,
		"  writes: %zu ok, %zu -ETIMEDOUT, %zu not applied "
		"(-ENOTCONN, -ECONNREFUSED), %zu other; longest %" PRId64
		" ms\n",
		ok, timedout, notapplied, other, longest);
	check(before > 0, "writes succeeded on the first endpoint (%zu)",
	      before);
	check(after_kill > 0,
	      "writes begun after the kill succeeded: failover (%zu)",
	      after_kill);
	check(after_start > 0, "writes begun after the restart succeeded (%zu)",
	      after_start);
	check(other == 0,
	      "every failure was -ETIMEDOUT, -ENOTCONN or "
	      "-ECONNREFUSED (%zu were not)",
	      other);
	check(longest <= timeout + SLACK_MS,
	      "no write took more than request_timeout + %d ms (%" PRId64
	      " ms)",
	      SLACK_MS, longest);
	ustate_close(s);
	return 0;
}

/* ---- a watch across a member's death ---------------------------------- */

struct seen {
	uint64_t rev, version;
	ustate_event_type type;
	char key[64];
};

struct watcher {
	pthread_t thread;
	ustate_watch *w;
	const char *end_key; /* stop after an event of this key */
	int64_t until;
	struct seen *ev;
	size_t n;
	int rc; /* the first error other than -EAGAIN */
	bool ended;
};

static void *watcher_main(void *arg)
{
	struct watcher *x = arg;
	ustate_event ev;
	int rc, i;

	for (i = 0; i < 1000000 && x->n < MAX_EVENTS; i++) {
		if (now_ms() >= x->until)
			break;
		rc = ustate_watch_next(x->w, &ev, 200);
		if (rc == -EAGAIN)
			continue;
		if (rc < 0) {
			x->rc = rc;
			break;
		}
		x->ev[x->n].rev = ev.revision;
		x->ev[x->n].version = ev.version;
		x->ev[x->n].type = ev.type;
		snprintf(x->ev[x->n].key, sizeof(x->ev[x->n].key), "%.63s",
			 ev.key);
		x->n++;
		if (!strcmp(ev.key, x->end_key)) {
			x->ended = true;
			break;
		}
	}
	return NULL;
}

struct wrec {
	char key[32];
	ustate_op_type type;
	uint64_t rev, version;
	int rc;
};

static int watch(int argc, char **argv)
{
	enum { N = 300, KEYS = 40 };
	ustate_options o = options(3000);
	struct watcher x = {.end_key = "/w/end"};
	size_t i, k, acked = 0, found = 0, order = 0, dup = 0, missing = 0;
	static struct wrec rec[N];
	ustate *ws, *wr;
	char val[24];
	uint64_t end_rev = 0;
	FILE *out;
	int rc;

	if (argc != 4)
		return 2;
	ws = open_store(argv[0], &o);
	wr = open_store(argv[1], &o);
	if (!ws || !wr)
		return 1;
	rc = ustate_watch_open(&x.w, ws, "/w/*", 0);
	check(rc == 0, "watch /w/*: %s", ename(rc));
	if (rc < 0)
		return 1;
	x.ev = calloc(MAX_EVENTS, sizeof(*x.ev));
	x.until = now_ms() + 60000;
	if (!x.ev || pthread_create(&x.thread, NULL, watcher_main, &x)) {
		check(false, "start the watcher");
		return 1;
	}
	for (i = 0; i < N; i++) {
		if (i == N / 3)
			ask("kill %s", argv[2]);
		if (i == 2 * N / 3)
			ask("start %s", argv[2]);
		snprintf(rec[i].key, sizeof(rec[i].key), "/w/%zu", i % KEYS);
		snprintf(val, sizeof(val), "%zu", i);
		rec[i].type = i % 9 == 8 ? USTATE_OP_DELETE : USTATE_OP_SET;
		rec[i].rc = write_one(wr, rec[i].type, rec[i].key,
				      rec[i].type == USTATE_OP_SET ? val : NULL,
				      &rec[i].rev, &rec[i].version);
		sleep_ms(3);
	}
	rc = set_retry(wr, "/w/end", "end", &end_rev, 20);
	check(rc == 0, "the last write, /w/end, at revision %" PRIu64 ": %s",
	      end_rev, ename(rc));
	pthread_join(x.thread, NULL);
	check(x.rc == 0, "the watch returned no error (%s)", ename(x.rc));
	check(x.ended, "the watch reached /w/end within the time (%zu events)",
	      x.n);

	for (k = 1; k < x.n; k++) {
		if (x.ev[k].rev < x.ev[k - 1].rev)
			order++;
		if (x.ev[k].rev == x.ev[k - 1].rev &&
		    !strcmp(x.ev[k].key, x.ev[k - 1].key))
			dup++;
	}
	check(order == 0, "events in revision order (%zu out of order)", order);
	check(dup == 0, "no event twice (%zu repeated)", dup);
	for (i = 0; i < N; i++) {
		if (rec[i].rc != 0)
			continue;
		acked++;
		for (k = 0; k < x.n; k++)
			if (x.ev[k].rev == rec[i].rev &&
			    !strcmp(x.ev[k].key, rec[i].key))
				break;
		if (k == x.n) {
			if (missing++ < 5)
				fprintf(stderr,
					"  no event of %s at %" PRIu64 "\n",
					rec[i].key, rec[i].rev);
			continue;
		}
		if ((rec[i].type == USTATE_OP_DELETE) !=
			    (x.ev[k].type == USTATE_EVENT_DELETED) ||
		    x.ev[k].version != rec[i].version) {
			fprintf(stderr,
				"  %s at %" PRIu64 ": event %d v%" PRIu64
				", write v%" PRIu64 "\n",
				rec[i].key, rec[i].rev, x.ev[k].type,
				x.ev[k].version, rec[i].version);
			continue;
		}
		found++;
	}
	{
		size_t c[8] = {0};

		for (i = 0; i < N; i++) {
			if (rec[i].rc == 0)
				c[0]++;
			else if (rec[i].rc == -ETIMEDOUT)
				c[1]++;
			else if (not_applied(rec[i].rc))
				c[2]++;
			else if (rec[i].rc == -ENOENT)
				c[3]++;
			else
				c[4]++;
		}
		fprintf(stderr,
			"  writes: %zu ok, %zu -ETIMEDOUT, %zu not applied, "
			"%zu -ENOENT (a delete of nothing), %zu other\n",
			c[0], c[1], c[2], c[3], c[4]);
	}
	check(acked > N / 2, "most writes were acknowledged (%zu of %d)", acked,
	      N);
	check(found == acked,
	      "the watch gave every acknowledged write, with its type and "
	      "version (%zu of %zu)",
	      found, acked);

	out = fopen(argv[3], "w");
	if (!out) {
		check(false, "write %s", argv[3]);
		return 1;
	}
	for (k = 0; k < x.n; k++)
		fprintf(out, "%" PRIu64 " %d %s %" PRIu64 "\n", x.ev[k].rev,
			x.ev[k].type, x.ev[k].key, x.ev[k].version);
	fclose(out);
	free(x.ev);
	ustate_watch_close(x.w);
	ustate_close(ws);
	ustate_close(wr);
	return 0;
}

/* ---- compaction under a lagging watch --------------------------------- */

/* Read events of w until an error or secs; returns the error (or 0). */
static int drain(ustate_watch *w, struct seen *ev, size_t max, size_t *n,
		 int secs)
{
	int64_t until = now_ms() + secs * 1000;
	ustate_event e;
	int rc = 0, i;

	for (i = 0; i < 100000 && now_ms() < until; i++) {
		rc = ustate_watch_next(w, &e, 200);
		if (rc == -EAGAIN)
			continue;
		if (rc < 0)
			return rc;
		if (*n < max) {
			ev[*n].rev = e.revision;
			ev[*n].type = e.type;
			snprintf(ev[*n].key, sizeof(ev[*n].key), "%.63s",
				 e.key);
		}
		(*n)++;
	}
	return rc == -EAGAIN ? 0 : rc;
}

/* Read until key's event shows; false after secs. */
static bool wait_key(ustate_watch *w, const char *key, int secs)
{
	int64_t until = now_ms() + secs * 1000;
	ustate_event e;
	int rc, i;

	for (i = 0; i < 100000 && now_ms() < until; i++) {
		rc = ustate_watch_next(w, &e, 200);
		if (rc == 0 && !strcmp(e.key, key))
			return true;
		if (rc < 0 && rc != -EAGAIN) {
			check(false, "watch_next: %s", ename(rc));
			return false;
		}
	}
	return false;
}

/* A write of key after ms, from another thread. */
struct later {
	ustate *s;
	const char *key;
	long ms;
	int rc;
};

static void *later_main(void *arg)
{
	struct later *l = arg;

	sleep_ms(l->ms);
	l->rc = set_retry(l->s, l->key, "later", NULL, 10);
	return NULL;
}

static int lagging(int argc, char **argv)
{
	ustate_options o = options(3000);
	uint64_t brev[5], crev = 0, cut, r;
	ustate_watch *lag, *live, *w2;
	ustate *ws, *wr, *fresh;
	struct seen ev[64];
	size_t i, n = 0;
	ustate_event e;
	bool prefix_ok;
	char key[32];
	int64_t t;
	int rc;

	if (argc != 3)
		return 2;
	ws = open_store(argv[0], &o);
	wr = open_store(argv[1], &o);
	if (!ws || !wr)
		return 1;
	rc = ustate_watch_open(&lag, ws, "/l/*", 0);
	check(rc == 0, "the lagging watch: %s", ename(rc));
	rc = ustate_watch_open(&live, ws, "/l/*", 0);
	check(rc == 0, "a watch that keeps up: %s", ename(rc));
	if (failures)
		return 1;
	for (i = 0; i < 5; i++) {
		snprintf(key, sizeof(key), "/l/b%zu", i);
		rc = set_retry(wr, key, "b", &brev[i], 10);
		check(rc == 0, "write %s at %" PRIu64 ": %s", key, brev[i],
		      ename(rc));
	}
	/* The stream has them all before its member dies. */
	check(wait_key(live, "/l/b4", 10),
	      "the watch that keeps up saw /l/b4 before the kill");
	if (!ask("kill %s", argv[2]))
		return 1;
	for (i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "/l/c%zu", i);
		rc = set_retry(wr, key, "c", &crev, 10);
		if (rc < 0)
			check(false, "write %s: %s", key, ename(rc));
	}
	/*
	 * Compact at a revision outside the prefix: after the compaction
	 * the watch's history is empty, and only the notice tells it.
	 */
	if (!ask("put /elsewhere x"))
		return 1;
	cut = ustate_revision(wr);
	fprintf(stderr,
		"  /l/b4 at %" PRIu64 ", /l/c19 at %" PRIu64
		", compaction at %" PRIu64 "\n",
		brev[4], crev, cut);
	check(cut == crev + 1, "the put elsewhere is the last revision");
	if (!ask("compact %" PRIu64, cut) || !ask("start %s", argv[2]))
		return 1;

	/*
	 * Some of what the ring had (the notice of the compaction clears it,
	 * so how many depends on when it comes), in order, then the loss,
	 * however long the call would wait.
	 */
	t = now_ms();
	for (i = 0; i < 6; i++) {
		rc = ustate_watch_next(lag, &e, 20000);
		if (rc < 0)
			break;
		ev[n++].rev = e.revision;
	}
	t = now_ms() - t;
	prefix_ok = n <= 5;
	for (i = 0; i < n && i < 5; i++)
		prefix_ok = prefix_ok && ev[i].rev == brev[i];
	check(prefix_ok,
	      "the lagging watch gives the first %zu of the 5 events before "
	      "the gap, in order, and nothing after it",
	      n);
	check(rc == -EOVERFLOW, "then -EOVERFLOW: %s%s%s", ename(rc),
	      rc == 0 ? " " : "", rc == 0 ? e.key : "");
	check(t < 5000,
	      "as soon as the member is back, not at the end of a 20 s wait "
	      "(%" PRId64 " ms)",
	      t);
	rc = ustate_watch_next(lag, &e, 0);
	check(rc == -EOVERFLOW, "and -EOVERFLOW again on the next call: %s",
	      ename(rc));
	rc = drain(live, ev, 64, &n, 10);
	check(rc == -EOVERFLOW,
	      "the watch that kept up gets -EOVERFLOW too: %s", ename(rc));
	ustate_watch_close(lag);
	ustate_watch_close(live);

	rc = ustate_watch_open(&w2, ws, "/l/*", cut - 1);
	check(rc == -ENODATA, "a watch from %" PRIu64 ", compacted: %s",
	      cut - 1, ename(rc));
	if (rc == 0)
		ustate_watch_close(w2);

	/*
	 * A watch from the compaction on the same handle: nothing yet, then
	 * a write by another client while it waits, which wakes it at once.
	 */
	rc = ustate_watch_open(&w2, ws, "/l/*", cut);
	check(rc == 0, "a watch from %" PRIu64 ", the compaction: %s", cut,
	      ename(rc));
	if (rc == 0) {
		struct later l = {.s = wr, .key = "/l/d", .ms = 500};
		pthread_t th;

		t = now_ms();
		if (pthread_create(&th, NULL, later_main, &l)) {
			check(false, "start a thread");
			return 1;
		}
		rc = ustate_watch_next(w2, &e, 10000);
		t = now_ms() - t;
		pthread_join(th, NULL);
		check(l.rc == 0, "another client wrote /l/d after 500 ms: %s",
		      ename(l.rc));
		check(rc == 0 && !strcmp(e.key, "/l/d"),
		      "the watch gives it first: %s %s", ename(rc),
		      rc == 0 ? e.key : "");
		check(t < 2500,
		      "within 2 s of the write, not at the end of its 10 s "
		      "timeout (%" PRId64 " ms)",
		      t);
		ustate_watch_close(w2);
	}

	fresh = open_store(argv[1], &o);
	if (fresh) {
		rc = ustate_watch_open(&w2, fresh, "/l/*", cut - 1);
		check(rc == -ENODATA,
		      "a new handle's watch from %" PRIu64 ": %s", cut - 1,
		      ename(rc));
		if (rc == 0)
			ustate_watch_close(w2);
		rc = ustate_watch_open(&w2, fresh, "/l/*", 1);
		check(rc == -ENODATA, "... and from revision 1: %s", ename(rc));
		if (rc == 0)
			ustate_watch_close(w2);
		r = ustate_revision(fresh);
		check(r > cut, "its revision is %" PRIu64, r);
		ustate_close(fresh);
	}
	ustate_close(ws);
	ustate_close(wr);
	return 0;
}

/* ---- no quorum -------------------------------------------------------- */

/* Check that a failed call took no longer than the bound. */
static void bounded(const char *what, int rc, int64_t ms, unsigned timeout,
		    bool want_write_codes)
{
	bool code_ok = rc == -ETIMEDOUT || rc == -ENOTCONN;

	check(rc < 0 && (!want_write_codes || code_ok),
	      "%s without a quorum fails%s: %s", what,
	      want_write_codes ? " with -ETIMEDOUT or -ENOTCONN" : "",
	      ename(rc));
	check(ms <= (int64_t)timeout + SLACK_MS,
	      "%s fails within request_timeout + %d ms (%" PRId64 " ms)", what,
	      SLACK_MS, ms);
}

static int noquorum(int argc, char **argv)
{
	const unsigned timeout = 2000;
	ustate_options o = options(timeout);
	int rc, rc1, rc2, i;
	ustate_entry *e = NULL;
	ustate_watch *w = NULL;
	char **keys = NULL;
	uint64_t r;
	size_t n;
	int64_t t;
	ustate *s;

	if (argc != 3)
		return 2;
	s = open_store(argv[0], &o);
	if (!s)
		return 1;
	rc = ustate_set(s, "/q/before", "1", 1, NULL);
	check(rc == 0, "a write with a quorum: %s", ename(rc));
	if (!ask("kill %s", argv[1]) || !ask("kill %s", argv[2]))
		return 1;

	/* At once: the member left may still think it leads. */
	t = now_ms();
	rc1 = ustate_set(s, "/q/1", "1", 1, NULL);
	bounded("a write at once", rc1, now_ms() - t, timeout, true);
	t = now_ms();
	rc = ustate_get(s, "/q/before", &e);
	bounded("a read at once", rc, now_ms() - t, timeout, false);
	if (rc == 0)
		ustate_entry_free(e);
	sleep_ms(1500); /* past an election timeout: it knows */
	t = now_ms();
	rc2 = ustate_set(s, "/q/2", "2", 1, NULL);
	bounded("a write later", rc2, now_ms() - t, timeout, true);
	t = now_ms();
	rc = ustate_get(s, "/q/before", &e);
	bounded("a read later", rc, now_ms() - t, timeout, false);
	if (rc == 0)
		ustate_entry_free(e);
	t = now_ms();
	rc = ustate_list(s, "/q/", &keys, &n);
	bounded("a list", rc, now_ms() - t, timeout, false);
	if (rc == 0)
		ustate_list_free(keys, n);
	t = now_ms();
	r = ustate_revision(s);
	check(r == 0 && now_ms() - t <= timeout + SLACK_MS,
	      "the revision is 0 (unknown) within the bound (%" PRIu64
	      ", %" PRId64 " ms)",
	      r, now_ms() - t);
	t = now_ms();
	rc = ustate_watch_open(&w, s, "/q/*", 0);
	bounded("a watch", rc, now_ms() - t, timeout, false);
	if (rc == 0)
		ustate_watch_close(w);

	if (!ask("start %s", argv[1]) || !ask("start %s", argv[2]))
		return 1;
	/* The same handle, by itself: no reopening. */
	t = now_ms();
	for (i = 0; i < 200; i++) {
		rc = ustate_set(s, "/q/after", "3", 1, NULL);
		if (rc == 0 || now_ms() - t > 20000)
			break;
		sleep_ms(100);
	}
	check(rc == 0, "the same handle writes again after %d tries: %s", i + 1,
	      ename(rc));
	check(i == 0, "at the first try once the cluster is back (%d)", i + 1);
	check(has_value(s, "/q/after", "3"), "and reads it back");
	check(has_value(s, "/q/before", "1"), "the write before is there");
	rc = ustate_exists(s, "/q/1");
	fprintf(stderr, "  /q/1 (%s): %s\n", ename(rc1),
		rc ? "written" : "absent");
	if (not_applied(rc1))
		check(rc == 0, "/q/1, refused, was not written");
	rc = ustate_exists(s, "/q/2");
	fprintf(stderr, "  /q/2 (%s): %s\n", ename(rc2),
		rc ? "written" : "absent");
	if (not_applied(rc2))
		check(rc == 0, "/q/2, refused, was not written");
	ustate_close(s);
	return 0;
}

/* ---- a member that hangs ---------------------------------------------- */

static int hung(int argc, char **argv)
{
	const unsigned timeout = 3000;
	ustate_options o = options(timeout);
	ustate *s, *s2 = NULL;
	ustate_watch *w = NULL;
	ustate_entry *e;
	int64_t t;
	int rc;

	if (argc != 2)
		return 2;
	s = open_store(argv[0], &o);
	if (!s)
		return 1;
	rc = ustate_watch_open(&w, s, "/h/*", 0);
	check(rc == 0, "a watch, on the first endpoint: %s", ename(rc));
	rc = ustate_set(s, "/h/0", "0", 1, NULL);
	check(rc == 0, "a write on the first endpoint: %s", ename(rc));
	check(w && wait_key(w, "/h/0", 10), "the watch hears it");
	if (!ask("pause %s", argv[1]))
		return 1;

	/* Its connections are made and never answered. */
	t = now_ms();
	rc = ustate_get(s, "/h/0", &e);
	t = now_ms() - t;
	check(rc == 0, "a read on the open handle fails over: %s", ename(rc));
	if (rc == 0)
		ustate_entry_free(e);
	check(t <= timeout + SLACK_MS, "within the bound (%" PRId64 " ms)", t);
	rc = ustate_set(s, "/h/1", "1", 1, NULL);
	check(rc == 0, "then a write: %s", ename(rc));
	/*
	 * The watch's stream stays on the hung member, silent: its probe
	 * (5 s of silence, then 3 s for an answer) moves it on.
	 */
	t = now_ms();
	rc = w && wait_key(w, "/h/1", 30);
	t = now_ms() - t;
	check(rc,
	      "the watch leaves the hung member and hears the write "
	      "(%" PRId64 " ms)",
	      t);
	ustate_watch_close(w);

	t = now_ms();
	rc = ustate_open(&s2, argv[0], &o);
	t = now_ms() - t;
	check(rc == 0, "open with the hung member first: %s (%" PRId64 " ms)",
	      ename(rc), t);
	if (rc == 0) {
		check(has_value(s2, "/h/1", "1"), "its handle reads");
		rc = ustate_set(s2, "/h/2", "2", 1, NULL);
		check(rc == 0, "and writes: %s", ename(rc));
		ustate_close(s2);
	}
	if (!ask("resume %s", argv[1]))
		return 1;
	ustate_close(s);
	return 0;
}

/* ---- bad input against the server's limits ---------------------------- */

static int limits(int argc, char **argv)
{
	char src[256], *big, key[USTATE_KEY_MAX + 1];
	ustate_options o = options(3000), got;
	ustate_op ops[200];
	ustate *s = NULL;
	size_t i, max;
	int rc;

	if (argc != 1)
		return 2;
	snprintf(src, sizeof(src), "etcd://%s/lim", argv[0]);
	big = malloc(4u << 20);
	if (!big)
		return 1;
	memset(big, 'v', 4u << 20);

	/* The library's own limit: what etcd takes by default. */
	s = open_store(src, &o);
	if (!s)
		return 1;
	ustate_options_get(s, &got);
	max = got.max_value_size;
	/* 2048 bytes: segments of 199 bytes, and one of 47. */
	memset(key, 'k', sizeof(key) - 1);
	for (i = 0; i < sizeof(key) - 1; i += 200)
		key[i] = '/';
	key[sizeof(key) - 1] = '\0';
	rc = ustate_key_valid(key);
	check(rc == 0, "a key of %zu bytes is valid: %s", strlen(key),
	      ename(rc));
	rc = ustate_set(s, key, big, max, NULL);
	check(rc == 0,
	      "a value of max_value_size (%zu) with the longest key "
	      "is written: %s",
	      max, ename(rc));
	rc = ustate_set(s, "/max1", big, max + 1, NULL);
	check(rc == -EFBIG, "one byte more is -EFBIG: %s", ename(rc));
	/* etcd.c: "a Txn under etcd's --max-txn-ops of 128 holds 42 writes" */
	for (i = 0; i < 42; i++) {
		static char keys[42][16];

		snprintf(keys[i], sizeof(keys[i]), "/t42/%zu", i);
		ops[i] = (ustate_op){.type = USTATE_OP_SET,
				     .key = keys[i],
				     .value = "x",
				     .value_len = 1};
	}
	rc = ustate_transaction(s, ops, 42, NULL);
	check(rc == 0, "a transaction of 42 SETs: %s", ename(rc));
	ustate_close(s);

	if (!ask("mark"))
		return 1;
	o.max_value_size = 4u << 20;
	log_reset();
	s = open_store(src, &o);
	if (!s)
		return 1;
	rc = ustate_set(s, "/big", big, 2u << 20, NULL);
	check(rc == -EFBIG, "a 2 MiB value, allowed by the options: %s",
	      ename(rc));
	check(log_has("--max-request-bytes"),
	      "the log names --max-request-bytes");
	ask("same");
	ustate_close(s);

	o = options(3000);
	o.max_txn_ops = 1000;
	log_reset();
	s = open_store(src, &o);
	if (!s)
		return 1;
	for (i = 0; i < 200; i++) {
		static char keys[200][16];

		snprintf(keys[i], sizeof(keys[i]), "/t/%zu", i);
		ops[i] = (ustate_op){.type = USTATE_OP_SET,
				     .key = keys[i],
				     .value = "x",
				     .value_len = 1};
	}
	rc = ustate_transaction(s, ops, 200, NULL);
	check(rc == -E2BIG, "a transaction of 200 SETs: %s", ename(rc));
	check(log_has("--max-txn-ops"), "the log names --max-txn-ops");
	ask("same");
	ustate_close(s);

	log_reset();
	o = options(3000);
	rc = ustate_open(&s, "etcd://127.0.0.1:1/p", &o);
	check(rc == -ECONNREFUSED, "open etcd://127.0.0.1:1/p: %s", ename(rc));
	check(log_has("127.0.0.1:1"), "the log names the endpoint");
	{
		static const char *const bad[] = {"/",	   "/a/",  "",
						  "/a//b", "/./a", "/a/.."};

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			snprintf(src, sizeof(src), "etcd://%s%s", argv[0],
				 bad[i]);
			rc = ustate_open(&s, src, &o);
			check(rc == -EINVAL, "open %s: %s", src, ename(rc));
			if (rc == 0)
				ustate_close(s);
		}
	}
	ask("same");
	free(big);
	return 0;
}

/* ---- auth ------------------------------------------------------------- */

static int auth(int argc, char **argv)
{
	ustate_options o = options(3000);
	ustate_watch *w;
	char src[256];
	ustate *s, *t;
	int rc;

	if (argc != 3)
		return 2;
	snprintf(src, sizeof(src), "etcd://%s/auth", argv[0]);
	o.user = argv[1];
	o.password = argv[2];
	s = open_store(src, &o);
	if (!s)
		return 1;
	rc = ustate_set(s, "/a", "1", 1, NULL);
	check(rc == 0, "a write as %s: %s", argv[1], ename(rc));
	check(has_value(s, "/a", "1"), "... reads back");

	o.password = "wrong";
	log_reset();
	rc = ustate_open(&t, src, &o);
	check(rc == -EACCES, "a wrong password at open: %s", ename(rc));
	check(log_has(argv[0]), "the log names the endpoint %s", argv[0]);
	if (rc == 0)
		ustate_close(t);
	o.user = o.password = NULL;
	log_reset();
	rc = ustate_open(&t, src, &o);
	check(rc == -EACCES, "no user at all: %s", ename(rc));
	if (rc == 0)
		ustate_close(t);
	o.user = "nobody";
	o.password = "nobodypw";
	rc = ustate_open(&t, src, &o);
	check(rc == -EACCES, "a user without a role on the keys: %s",
	      ename(rc));
	if (rc == 0)
		ustate_close(t);

	rc = ustate_watch_open(&w, s, "/w/*", 0);
	check(rc == 0, "a watch as %s: %s", argv[1], ename(rc));
	if (rc < 0)
		return 1;

	/*
	 * A restart forgets etcd's simple tokens: the handle logs in again,
	 * its watch first, before any call of ours.
	 */
	if (!ask("stop 0") || !ask("start 0") || !ask("put /auth/w/1 x"))
		return 1;
	check(wait_key(w, "/w/1", 10),
	      "the watch sees etcdctl's put after the restart");
	ustate_watch_close(w);
	rc = ustate_set(s, "/b", "2", 1, NULL);
	check(rc == 0, "a write after the restart, the token gone: %s",
	      ename(rc));
	check(has_value(s, "/b", "2"), "... reads back");
	check(has_value(s, "/a", "1"), "the write before is there");
	ustate_close(s);
	return 0;
}

/* ---- TLS -------------------------------------------------------------- */

static int tls(int argc, char **argv)
{
	ustate_options o = options(3000);
	char src[256];
	ustate *s;
	int rc;

	if (argc != 3)
		return 2;
	snprintf(src, sizeof(src), "etcds://%s/tls", argv[0]);
	o.tls_ca = argv[1];
	s = open_store(src, &o);
	if (!s)
		return 1;
	rc = ustate_set(s, "/a", "secret", 6, NULL);
	check(rc == 0, "a write over TLS: %s", ename(rc));
	check(has_value(s, "/a", "secret"), "... reads back");
	ustate_close(s);

	o.tls_ca = NULL;
	log_reset();
	rc = ustate_open(&s, src, &o);
	check(rc == -EACCES, "without the CA (the system's): %s", ename(rc));
	check(log_has(argv[0]), "the log names the endpoint");
	if (rc == 0)
		ustate_close(s);
	o.tls_ca = argv[2];
	rc = ustate_open(&s, src, &o);
	check(rc == -EACCES, "with another CA: %s", ename(rc));
	if (rc == 0)
		ustate_close(s);
	snprintf(src, sizeof(src), "etcd://%s/tls", argv[0]);
	o.tls_ca = argv[1];
	rc = ustate_open(&s, src, &o);
	check(rc < 0, "plain etcd:// to a TLS member fails: %s", ename(rc));
	if (rc == 0)
		ustate_close(s);
	return 0;
}

/* A member that takes only clients with a certificate of its CA. */
static int tls_client(int argc, char **argv)
{
	ustate_options o = options(3000);
	char src[256];
	ustate *s;
	int rc;

	if (argc != 4)
		return 2;
	snprintf(src, sizeof(src), "etcds://%s/tls", argv[0]);
	o.tls_ca = argv[1];
	o.tls_cert = argv[2];
	o.tls_key = argv[3];
	s = open_store(src, &o);
	if (!s)
		return 1;
	rc = ustate_set(s, "/c", "cert", 4, NULL);
	check(rc == 0, "a write with a client certificate: %s", ename(rc));
	check(has_value(s, "/c", "cert"), "... reads back");
	ustate_close(s);

	/*
	 * ustate.h promises -EACCES for credentials etcd refuses. Under TLS
	 * 1.3 the member refuses a missing certificate after the client's
	 * side of the handshake, with an alert that libcurl reports as a
	 * failed receive: the transport reads the alert (etcd_http.c).
	 */
	o.tls_cert = o.tls_key = NULL;
	log_reset();
	rc = ustate_open(&s, src, &o);
	check(rc == -EACCES,
	      "without a client certificate, open is -EACCES: %s", ename(rc));
	check(log_has(argv[0]), "the log names the endpoint");
	if (rc == 0)
		ustate_close(s);
	return 0;
}

/* Whether the library logged a line with what since log_reset(). */
static bool logged(const char *what)
{
	bool yes;

	pthread_mutex_lock(&log_lock);
	yes = strstr(log_buf, what) != NULL;
	pthread_mutex_unlock(&log_lock);
	return yes;
}

/* The value of key, polled for at most secs seconds. */
static bool reaches(ustate *s, const char *key, const char *val, int secs)
{
	int64_t until = now_ms() + secs * 1000;
	int i;

	for (i = 0; i < secs * 50 + 1; i++) {
		if (has_value(s, key, val))
			return true;
		if (now_ms() >= until)
			break;
		sleep_ms(20);
	}
	return false;
}

static ustate *open_replica(const char *source, const char *file,
			    int consistency)
{
	ustate_options o = options(2000);

	o.replica = file;
	o.consistency = consistency;
	return open_store(source, &o);
}

/*
 * Replicas: a writer w without one; lin, a replica read linearizably on
 * every endpoint; loc, a replica in FILE read at local consistency, on
 * the follower F alone (SOURCE_F); OTHER, a store of another PREFIX of
 * the same cluster, whose writes move etcd's revision past this one's.
 */
static int replica(int argc, char **argv)
{
	ustate_options o = options(2000);
	ustate *w, *lin, *loc, *lin_f, *other;
	ustate_entry *e;
	char val[32], line[160];
	unsigned long long a, b, n;
	const char *at;
	int i, ok, rc;
	uint64_t rev;

	if (argc != 5)
		return 2;
	w = open_store(argv[0], &o);
	other = open_store(argv[4], &o);
	lin = open_replica(argv[0], "", USTATE_CONSISTENCY_LINEARIZABLE);
	loc = open_replica(argv[1], argv[3], USTATE_CONSISTENCY_LOCAL);
	lin_f = open_replica(argv[1], "", USTATE_CONSISTENCY_LINEARIZABLE);
	if (!w || !other || !lin || !loc || !lin_f)
		return 1;

	/* Linearizable: a write that returned is read at once, anywhere. */
	for (i = ok = 0; i < 50; i++) {
		snprintf(val, sizeof(val), "%d", i);
		rc = ustate_set(w, "/a", val, strlen(val), NULL);
		ok += rc == 0 && has_value(lin, "/a", val);
	}
	check(ok == 50,
	      "linearizable reads of a replica see each write "
	      "(%d of 50)",
	      ok);
	/* ... also when other stores of the cluster write meanwhile. */
	for (i = ok = 0; i < 50; i++) {
		snprintf(val, sizeof(val), "o%d", i);
		rc = ustate_set(w, "/a", val, strlen(val), NULL);
		rc |= ustate_set(other, "/x", val, strlen(val), NULL);
		ok += rc == 0 && has_value(lin, "/a", val);
	}
	check(ok == 50, "... with another PREFIX written after each (%d of 50)",
	      ok);

	/* Local: the handle's own writes at once, others' soon. */
	for (i = ok = 0; i < 20; i++) {
		snprintf(val, sizeof(val), "b%d", i);
		rc = ustate_set(loc, "/b", val, strlen(val), NULL);
		ok += rc == 0 && has_value(loc, "/b", val);
	}
	check(ok == 20, "a local replica reads its own writes (%d of 20)", ok);
	rc = ustate_set(w, "/c", "x", 1, NULL);
	check(rc == 0 && reaches(loc, "/c", "x", 5),
	      "... and another handle's write within 5 s");

	/* F hangs: the local replica reads on, linearizable reads fail. */
	if (!ask("pause %s", argv[2]))
		return 1;
	check(has_value(loc, "/b", "b19"),
	      "the follower hung, a local replica still reads");
	e = NULL;
	rc = ustate_get(lin_f, "/b", &e);
	ustate_entry_free(e);
	check(rc == -ETIMEDOUT || rc == -ENOTCONN || rc == -ECONNREFUSED,
	      "... a linearizable one refuses: %s", ename(rc));
	if (!ask("resume %s", argv[2]))
		return 1;
	ustate_close(lin_f);

	/* The file is kept: live again at once, and it catches up. */
	ustate_close(loc);
	rc = ustate_set(w, "/d", "after", 5, NULL);
	check(rc == 0, "a write while the replica is closed: %s", ename(rc));
	log_reset();
	loc = open_replica(argv[1], argv[3], USTATE_CONSISTENCY_LOCAL);
	if (!loc)
		return 1;
	check(logged("resuming from revision"),
	      "the replica file is resumed, not loaded again");
	check(has_value(loc, "/b", "b19"), "... with what it held");
	check(reaches(loc, "/d", "after", 5), "... and catches up");

	/* Compacted past while its member was down: loaded again. */
	if (!ask("kill %s", argv[2]))
		return 1;
	log_reset();
	for (i = 0; i < 10; i++) {
		snprintf(val, sizeof(val), "e%d", i);
		set_retry(w, "/e", val, &rev, 10);
	}
	rc = ustate_set(w, "/e", "last", 4, &(uint64_t){0});
	rev = ustate_revision(w);
	check(rc == 0 && rev > 0, "writes while the follower is down");
	if (!ask("compact %" PRIu64, rev) || !ask("start %s", argv[2]))
		return 1;
	check(reaches(loc, "/e", "last", 20),
	      "compacted past, the replica is loaded again and reads the "
	      "last write");
	check(logged("loading it again"), "... and says so");
	ustate_close(loc);

	/* lin answered from its replica (its count is in the log). */
	log_reset();
	ustate_close(lin);
	at = NULL;
	pthread_mutex_lock(&log_lock);
	at = strstr(log_buf, "the replica answered");
	snprintf(line, sizeof(line), "%s", at ? at : "");
	pthread_mutex_unlock(&log_lock);
	n = sscanf(line, "the replica answered %llu reads, etcd %llu", &a, &b);
	check(n == 2 && a >= 50,
	      "the replica answered most linearizable "
	      "reads (%s)",
	      line);
	ustate_close(other);
	ustate_close(w);
	return 0;
}

/*
 * FILE, a replica of an etcd cluster that is gone, opened on SOURCE, a new
 * cluster with the same PREFIX, whose only key is /fresh (= "new"): the
 * file is loaded again, not resumed (its revisions mean nothing here), and
 * holds the new cluster's keys, none of the old one's.
 */
static int replica_moved(int argc, char **argv)
{
	ustate *loc;
	ustate_entry *e = NULL;
	int rc;

	if (argc != 2)
		return 2;
	log_reset();
	loc = open_replica(argv[0], argv[1], USTATE_CONSISTENCY_LOCAL);
	if (!loc)
		return 1;
	check(logged("is of another etcd cluster"),
	      "a replica of another cluster is recognised as such");
	check(!logged("resuming from revision"), "... and not resumed");
	check(reaches(loc, "/fresh", "new", 20),
	      "... loaded again, it reads the new cluster's key");
	rc = ustate_get(loc, "/b", &e);
	ustate_entry_free(e);
	check(rc == -ENOENT, "... and none of the old one's: %s", ename(rc));
	ustate_close(loc);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{"failover", failover},
		{"watch", watch},
		{"lagging", lagging},
		{"noquorum", noquorum},
		{"hung", hung},
		{"limits", limits},
		{"auth", auth},
		{"tls", tls},
		{"tls-client", tls_client},
		{"replica", replica},
		{"replica-moved", replica_moved},
	};
	size_t i;
	int rc;

	setvbuf(stderr, NULL, _IOLBF, 0);
	if (getenv("ETCD_FAULTS_DEBUG"))
		log_print = LOG_DEBUG;
	for (i = 0; argc > 1 && i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name))
			continue;
		rc = cmds[i].fn(argc - 2, argv + 2);
		if (rc == 2)
			break;
		fprintf(stderr, "%s: %d failed\n", argv[1], failures);
		return rc || failures ? 1 : 0;
	}
	fprintf(stderr, "usage: etcd_faults failover|watch|lagging|noquorum|"
			"hung|limits|auth|tls ARGS (see its source)\n");
	return 2;
}
