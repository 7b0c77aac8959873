/* SPDX-License-Identifier: MIT */
/*
 * This file implements the etcd transport: requests to etcd v3's HTTP/JSON
 * gateway through libcurl, one pooled easy handle (and so one kept-alive
 * connection) per concurrent caller, failover between endpoints, etcd's
 * auth token, and the watch stream on a multi handle that another thread
 * can interrupt. The gateway of a member talks to that member only, so
 * failover is ours: a call moves to the next endpoint when the current one
 * cannot be reached, and a write moves only when it surely was not sent.
 * Plain etcd:// is HTTP/1.1 (the gateway takes HTTP/2 only over TLS);
 * etcds:// asks for HTTP/2 and takes what the server offers.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

/* The functions are reached through cu, not linked: no type-check macros. */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>
#include <dlfcn.h>
#include <sodium.h>

#define CURL_SONAME "libcurl.so.4"

#include "etcd_http_i.h"
#include "etcd_stream_i.h"

#define STREAM_MAX_LINE (64u << 20) /* a watch message: many events */

struct ustate_etcd_conn {
	char **urls; /* "http://host:port" */
	size_t nurls;
	bool tls;
	unsigned request_timeout, dial_timeout;
	char *tls_ca, *tls_cert, *tls_key, *user, *password;
	const ustate_options *log;

	pthread_mutex_t lock;
	size_t cur;	      /* the endpoint to try first, protected by lock */
	char *token;	      /* auth token or NULL, protected by lock */
	unsigned token_gen;   /* bumped by each new token, protected by lock */
	struct handle **idle; /* handles not in use, protected by lock */
	char error[512];      /* the last call's failure, protected by lock */
	bool unreachable;     /* the last call found no member; by lock */
	size_t broken_tls;    /* 1 + the endpoint whose TLS session broke
			       * once connected, at the last failure; 0:
			       * none. By lock */
	size_t nidle, cap;    /* protected by lock */
};

struct buf {
	char *p;
	size_t len, cap;
};

/*
 * A pooled easy handle (so one kept-alive connection) and what its
 * requests reuse: the header list, rebuilt only when the token changes,
 * and the buffers of the request body and of the response, kept between
 * requests up to BUF_KEEP bytes.
 */
struct handle {
	CURL *e;
	struct curl_slist *hdr; /* NULL: not built yet */
	bool hdr_token;		/* hdr has the token of generation gen */
	unsigned gen;
	struct buf body, resp;
	/* A write's body as libcurl reads it (body_read, body_seek). */
	const struct buf *out;
	size_t out_off;
	char err[CURL_ERROR_SIZE]; /* libcurl's words on the last failure */
};

#define BUF_KEEP (64u << 10)

/*
 * libcurl, loaded the first time an etcd store opens. Linked, it and what
 * it links (TLS, Kerberos, LDAP, SSH... 31 libraries) cost every process
 * of the library some 10 to 20 ms at start, measured; a program that
 * opens only SQLite or memory stores now pays nothing. systemd loads its
 * heavy optional libraries the same way.
 */
static struct {
	CURLcode (*global_init)(long flags);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *e, CURLoption o, ...);
	CURLcode (*easy_perform)(CURL *e);
	CURLcode (*easy_getinfo)(CURL *e, CURLINFO i, ...);
	void (*easy_cleanup)(CURL *e);
	const char *(*easy_strerror)(CURLcode c);
	struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_add_handle)(CURLM *m, CURL *e);
	CURLMcode (*multi_remove_handle)(CURLM *m, CURL *e);
	CURLMcode (*multi_perform)(CURLM *m, int *running);
	CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd fds[], unsigned n,
				int timeout_ms, int *ret);
	CURLMsg *(*multi_info_read)(CURLM *m, int *left);
	CURLMcode (*multi_wakeup)(CURLM *m);
	CURLMcode (*multi_cleanup)(CURLM *m);
} cu;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_rc = -ELIBACC; /* of the load: 0 once libcurl is there */
static char curl_why[256];

/* Resolve one function of libcurl into *fn; false when it lacks it. */
static bool curl_sym(void *lib, const char *name, void *fn)
{
	void *p = dlsym(lib, name);

	memcpy(fn, &p, sizeof(p));
	if (!p)
		snprintf(curl_why, sizeof(curl_why), "libcurl lacks %s", name);
	return p != NULL;
}

static void curl_init_once(void)
{
	void *lib;

	/* Never closed: libcurl keeps state for the process's life. */
	lib = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(curl_why, sizeof(curl_why), "%s", dlerror());
		return;
	}
	if (!curl_sym(lib, "curl_global_init", &cu.global_init) ||
	    !curl_sym(lib, "curl_easy_init", &cu.easy_init) ||
	    !curl_sym(lib, "curl_easy_setopt", &cu.easy_setopt) ||
	    !curl_sym(lib, "curl_easy_perform", &cu.easy_perform) ||
	    !curl_sym(lib, "curl_easy_getinfo", &cu.easy_getinfo) ||
	    !curl_sym(lib, "curl_easy_cleanup", &cu.easy_cleanup) ||
	    !curl_sym(lib, "curl_easy_strerror", &cu.easy_strerror) ||
	    !curl_sym(lib, "curl_slist_append", &cu.slist_append) ||
	    !curl_sym(lib, "curl_slist_free_all", &cu.slist_free_all) ||
	    !curl_sym(lib, "curl_multi_init", &cu.multi_init) ||
	    !curl_sym(lib, "curl_multi_add_handle", &cu.multi_add_handle) ||
	    !curl_sym(lib, "curl_multi_remove_handle",
		      &cu.multi_remove_handle) ||
	    !curl_sym(lib, "curl_multi_perform", &cu.multi_perform) ||
	    !curl_sym(lib, "curl_multi_poll", &cu.multi_poll) ||
	    !curl_sym(lib, "curl_multi_info_read", &cu.multi_info_read) ||
	    !curl_sym(lib, "curl_multi_wakeup", &cu.multi_wakeup) ||
	    !curl_sym(lib, "curl_multi_cleanup", &cu.multi_cleanup))
		return;
	if (cu.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(curl_why, sizeof(curl_why), "curl_global_init failed");
		curl_rc = -EIO;
		return;
	}
	curl_rc = 0;
}

/* Room for need bytes in b, growing it by doubling. */
static int buf_reserve(struct buf *b, size_t need)
{
	size_t cap;
	char *g;

	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 1024;
	while (cap < need)
		cap *= 2;
	g = realloc(b->p, cap);
	if (!g)
		return -ENOMEM;
	b->p = g;
	b->cap = cap;
	return 0;
}

static int buf_add(struct buf *b, const char *p, size_t n)
{
	if (buf_reserve(b, b->len + n + 1) < 0)
		return -ENOMEM;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	return buf_add(arg, p, size * n) < 0 ? 0 : size * n;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void handle_free(struct handle *h)
{
	if (!h)
		return;
	cu.easy_cleanup(h->e);
	if (h->hdr)
		cu.slist_free_all(h->hdr);
	free(h->body.p);
	free(h->resp.p);
	free(h);
}

/* Empty a buffer for the next request; one grown past BUF_KEEP shrinks. */
static void buf_reset(struct buf *b)
{
	if (b->cap > BUF_KEEP) {
		free(b->p);
		b->p = NULL;
		b->cap = 0;
	}
	b->len = 0;
}

int ustate_etcd_conn_new(struct ustate_etcd_conn **out,
			 const struct ustate_etcd_config *cfg)
{
	struct ustate_etcd_conn *c;
	size_t i, len;

	if (!cfg->nendpoints)
		return -EINVAL;
	pthread_once(&curl_once, curl_init_once);
	if (curl_rc < 0) {
		ustate_log(cfg->log, LOG_ERR,
			   "etcd: cannot load libcurl (%s): %s", CURL_SONAME,
			   curl_why);
		return curl_rc;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	c->urls = calloc(cfg->nendpoints, sizeof(*c->urls));
	if (!c->urls)
		goto fail;
	for (i = 0; i < cfg->nendpoints; i++) {
		len = strlen(cfg->endpoints[i]) + sizeof("https://");
		c->urls[i] = malloc(len);
		if (!c->urls[i])
			goto fail;
		snprintf(c->urls[i], len, "%s://%s",
			 cfg->tls ? "https" : "http", cfg->endpoints[i]);
		c->nurls++;
	}
	c->tls = cfg->tls;
	c->request_timeout = cfg->request_timeout;
	c->dial_timeout = cfg->dial_timeout;
	c->log = cfg->log;
	c->tls_ca = dup_or_null(cfg->tls_ca);
	c->tls_cert = dup_or_null(cfg->tls_cert);
	c->tls_key = dup_or_null(cfg->tls_key);
	c->user = dup_or_null(cfg->user);
	c->password = dup_or_null(cfg->password);
	if ((cfg->tls_ca && !c->tls_ca) || (cfg->tls_cert && !c->tls_cert) ||
	    (cfg->tls_key && !c->tls_key) || (cfg->user && !c->user) ||
	    (cfg->password && !c->password))
		goto fail;
	*out = c;
	return 0;
fail:
	ustate_etcd_conn_free(c);
	return -ENOMEM;
}

void ustate_etcd_conn_free(struct ustate_etcd_conn *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->nidle; i++)
		handle_free(c->idle[i]);
	free(c->idle);
	for (i = 0; i < c->nurls; i++)
		free(c->urls[i]);
	free(c->urls);
	free(c->tls_ca);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->user);
	if (c->password)
		sodium_memzero(c->password, strlen(c->password));
	free(c->password);
	free(c->token);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void ustate_etcd_last_error(struct ustate_etcd_conn *c, char *buf, size_t len)
{
	pthread_mutex_lock(&c->lock);
	snprintf(buf, len, "%s", c->error[0] ? c->error : "no error");
	pthread_mutex_unlock(&c->lock);
}

size_t ustate_etcd_nendpoints(const struct ustate_etcd_conn *c)
{
	return c->nurls;
}

const char *ustate_etcd_endpoint(const struct ustate_etcd_conn *c, size_t i)
{
	/* Past the scheme: the host:port the SOURCE named. */
	return strstr(c->urls[i], "//") + 2;
}

size_t ustate_etcd_current(struct ustate_etcd_conn *c)
{
	size_t cur;

	pthread_mutex_lock(&c->lock);
	cur = c->cur;
	pthread_mutex_unlock(&c->lock);
	return cur;
}

bool ustate_etcd_reachable(struct ustate_etcd_conn *c)
{
	bool down;

	pthread_mutex_lock(&c->lock);
	down = c->unreachable;
	pthread_mutex_unlock(&c->lock);
	return !down;
}

/* The endpoint a failed attempt used is not the one to try first. */
static void move_on(struct ustate_etcd_conn *c, size_t from)
{
	pthread_mutex_lock(&c->lock);
	if (c->cur == from)
		c->cur = (from + 1) % c->nurls;
	pthread_mutex_unlock(&c->lock);
}

/* Settings every handle has, the same for calls and streams. */
static void easy_common(struct ustate_etcd_conn *c, CURL *e)
{
	cu.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	cu.easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	cu.easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 2L);
	cu.easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 1L);
	cu.easy_setopt(e, CURLOPT_PROTOCOLS_STR, c->tls ? "https" : "http");
	cu.easy_setopt(e, CURLOPT_HTTP_VERSION,
		       c->tls ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
	if (c->tls_ca)
		cu.easy_setopt(e, CURLOPT_CAINFO, c->tls_ca);
	if (c->tls_cert)
		cu.easy_setopt(e, CURLOPT_SSLCERT, c->tls_cert);
	if (c->tls_key)
		cu.easy_setopt(e, CURLOPT_SSLKEY, c->tls_key);
}

/*
 * libcurl sends a request again on its own when the connection it reused
 * dies before the first byte of the answer: it takes that for a
 * connection the server had closed while idle. A member that dies (or a
 * connection cut) after taking a write looks just the same, so a write
 * sent again on a new connection, to the same endpoint or refused there
 * and then failed over, was applied twice: a set at version 2, measured
 * (tests/etcd/cutproxy.py). So the body of a write is given through a read
 * callback, and libcurl may not rewind it once it has taken any of it:
 * the transfer then fails with CURLE_SEND_FAIL_REWIND, whose outcome is
 * unknown. Before it took any, the request never left whole, and
 * libcurl's retry is safe. A read may be sent any number of times: its
 * body stays CURLOPT_POSTFIELDS, which libcurl sends with the headers.
 */
static size_t body_read(char *p, size_t size, size_t n, void *arg)
{
	struct handle *h = arg;
	size_t len = h->out->len - h->out_off;

	if (len > size * n)
		len = size * n;
	memcpy(p, h->out->p + h->out_off, len);
	h->out_off += len;
	return len;
}

static int body_seek(void *arg, curl_off_t off, int origin)
{
	return CURL_SEEKFUNC_CANTSEEK;
}

static struct handle *easy_get(struct ustate_etcd_conn *c)
{
	struct handle *h = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->nidle)
		h = c->idle[--c->nidle];
	pthread_mutex_unlock(&c->lock);
	if (h)
		return h;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->e = cu.easy_init();
	if (!h->e) {
		free(h);
		return NULL;
	}
	easy_common(c, h->e);
	/* The response goes to the handle's buffer, whatever the request. */
	cu.easy_setopt(h->e, CURLOPT_WRITEFUNCTION, on_body);
	cu.easy_setopt(h->e, CURLOPT_WRITEDATA, &h->resp);
	/* A POST; a write's body is read, and never rewound. */
	cu.easy_setopt(h->e, CURLOPT_POST, 1L);
	cu.easy_setopt(h->e, CURLOPT_READFUNCTION, body_read);
	cu.easy_setopt(h->e, CURLOPT_READDATA, h);
	cu.easy_setopt(h->e, CURLOPT_SEEKFUNCTION, body_seek);
	cu.easy_setopt(h->e, CURLOPT_SEEKDATA, h);
	cu.easy_setopt(h->e, CURLOPT_ERRORBUFFER, h->err);
	return h;
}

static void easy_put(struct ustate_etcd_conn *c, struct handle *h)
{
	struct handle **g;

	buf_reset(&h->body);
	buf_reset(&h->resp);
	pthread_mutex_lock(&c->lock);
	if (c->nidle == c->cap) {
		g = realloc(c->idle, (c->cap ? c->cap * 2 : 8) * sizeof(*g));
		if (!g) {
			pthread_mutex_unlock(&c->lock);
			handle_free(h);
			return;
		}
		c->idle = g;
		c->cap = c->cap ? c->cap * 2 : 8;
	}
	c->idle[c->nidle++] = h;
	pthread_mutex_unlock(&c->lock);
}

/*
 * The headers of a request: JSON, no "Expect: 100-continue" (libcurl asks
 * for it above 1 MiB of body, and waits for the answer: a round trip for
 * nothing, etcd takes the body anyway), and the auth token if there is one
 * and token is set. etcd checks a token sent with /v3/auth/authenticate
 * too, so the request that replaces a token the server forgot must not
 * send it. *gen: the generation of the token it holds.
 */
static struct curl_slist *headers(struct ustate_etcd_conn *c, bool token,
				  unsigned *gen)
{
	struct curl_slist *hdr, *h;
	char auth[1024];

	hdr = cu.slist_append(NULL, "Content-Type: application/json");
	h = hdr ? cu.slist_append(hdr, "Expect:") : NULL;
	if (!h) {
		if (hdr)
			cu.slist_free_all(hdr);
		return NULL;
	}
	pthread_mutex_lock(&c->lock);
	auth[0] = '\0';
	if (c->token && token)
		snprintf(auth, sizeof(auth), "Authorization: %s", c->token);
	*gen = c->token_gen;
	pthread_mutex_unlock(&c->lock);
	if (!auth[0])
		return hdr;
	h = cu.slist_append(hdr, auth);
	if (!h)
		cu.slist_free_all(hdr);
	return h;
}

/*
 * Give handle h the headers of a request with or without the token: the
 * list it has unless the token changed since it was built (a request
 * would otherwise build and free a list of two or three strings).
 */
static int handle_headers(struct ustate_etcd_conn *c, struct handle *h,
			  bool token)
{
	struct curl_slist *hdr;
	unsigned gen;
	bool same;

	pthread_mutex_lock(&c->lock);
	token = token && c->token;
	same = h->hdr && h->hdr_token == token &&
	       (!token || h->gen == c->token_gen);
	pthread_mutex_unlock(&c->lock);
	if (same)
		return 0;
	hdr = headers(c, token, &gen);
	if (!hdr)
		return -ENOMEM;
	cu.easy_setopt(h->e, CURLOPT_HTTPHEADER, hdr);
	if (h->hdr)
		cu.slist_free_all(h->hdr);
	h->hdr = hdr;
	h->hdr_token = token;
	h->gen = gen;
	return 0;
}

/* gRPC status codes, as etcd's gateway reports them in "code". */
enum {
	GRPC_CANCELED = 1,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNAVAILABLE = 14,
	GRPC_UNAUTHENTICATED = 16,
};

static bool has(const char *msg, const char *what)
{
	return msg && strstr(msg, what);
}

int ustate_etcd_errno(long long grpc_code, long long http_code, const char *msg,
		      bool write)
{
	switch (grpc_code) {
	case GRPC_CANCELED:
		/* A member going down ends its streams so. */
		return write ? -ETIMEDOUT : -ENOTCONN;
	case GRPC_INVALID_ARGUMENT:
		if (has(msg, "too many operations"))
			return -E2BIG;
		if (has(msg, "request is too large"))
			return -EFBIG;
		/* A request without a token to a cluster with auth on. */
		if (has(msg, "authentication failed") ||
		    has(msg, "user name is empty"))
			return -EACCES;
		return -EINVAL;
	case GRPC_RESOURCE_EXHAUSTED:
		/* The request limit, on the gateway's side of the call. */
		if (has(msg, "larger than max") || has(msg, "too large"))
			return -EFBIG;
		/* The preflight check of a member that lags: not proposed. */
		if (has(msg, "too many requests"))
			return -ENOTCONN;
		return -ENOSPC; /* "mvcc: database space exceeded" */
	case GRPC_PERMISSION_DENIED:
	case GRPC_UNAUTHENTICATED:
		return -EACCES;
	case GRPC_OUT_OF_RANGE:
		if (has(msg, "compacted"))
			return -ENODATA;
		return -EINVAL; /* a future revision */
	case GRPC_NOT_FOUND:
		return -ENOENT; /* a lease, a member */
	case GRPC_FAILED_PRECONDITION:
		return -EINVAL;
	case GRPC_UNAVAILABLE:
		/* Refused before it was proposed: surely not applied. */
		if (!write || has(msg, "no leader") || has(msg, "not capable"))
			return -ENOTCONN;
		return -ETIMEDOUT; /* "leader changed" and the like */
	case GRPC_DEADLINE_EXCEEDED:
		return -ETIMEDOUT;
	}
	if (grpc_code >= 0)
		return write ? -ETIMEDOUT : -EIO;
	/* No gRPC code: the gateway's own HTTP status. */
	switch (http_code) {
	case 401:
	case 403:
		return -EACCES;
	case 503:
		return -ENOTCONN;
	case 504:
		return -ETIMEDOUT;
	}
	return write ? -ETIMEDOUT : -EIO;
}

/*
 * Whether libcurl's words on a failed send or receive (err, may be NULL)
 * tell of a TLS alert by which the member refused our credentials: under
 * TLS 1.3 a member that requires a client certificate checks it after the
 * client's side of the handshake is done, so a missing or rejected one
 * reaches libcurl as a failed read, not as a failed handshake. libcurl
 * quotes OpenSSL's error, "error:0A00045C:SSL routines::tlsv13 alert
 * certificate required"; the reason (its low 12 bits, in OpenSSL 1.1 and
 * 3 alike) of an alert from the peer is 1000 + the alert's number.
 */
static bool credentials_alert(const char *err)
{
	const char *p = err ? strstr(err, "error:") : NULL;
	unsigned long code;
	char *end;

	if (!p)
		return false;
	code = strtoul(p + 6, &end, 16);
	if (end == p + 6 || *end != ':')
		return false;
	switch ((code & 0xfff) - 1000) {
	case 42:  /* bad_certificate */
	case 43:  /* unsupported_certificate */
	case 44:  /* certificate_revoked */
	case 45:  /* certificate_expired */
	case 46:  /* certificate_unknown */
	case 48:  /* unknown_ca */
	case 49:  /* access_denied */
	case 116: /* certificate_required */
		return true;
	}
	return false;
}

/*
 * The errno of a transfer that failed; *sent: whether the request left.
 * err: libcurl's error buffer of the transfer, or NULL.
 */
static int curl_errno(CURL *e, CURLcode cc, const char *err, bool *sent)
{
	long oserr = 0, reqsize = 0;

	cu.easy_getinfo(e, CURLINFO_OS_ERRNO, &oserr);
	cu.easy_getinfo(e, CURLINFO_REQUEST_SIZE, &reqsize);
	*sent = reqsize > 0;
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
		*sent = false;
		return -EHOSTUNREACH;
	case CURLE_COULDNT_CONNECT:
		*sent = false;
		if (oserr == ECONNREFUSED || oserr == EHOSTUNREACH ||
		    oserr == ENETUNREACH)
			return -oserr;
		return oserr == ETIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
		*sent = false;
		return -EACCES;
	case CURLE_SEND_FAIL_REWIND:
		/* Sent, and the connection died: see body_read(). */
		*sent = true;
		return -ETIMEDOUT;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		/* Refused at the handshake: the member read no request. */
		if (credentials_alert(err)) {
			*sent = false;
			return -EACCES;
		}
		/* fall through */
	default:
		return *sent ? -ETIMEDOUT : -ENOTCONN;
	}
}

int ustate_etcd_tls_refused(struct ustate_etcd_conn *c)
{
	char err[CURL_ERROR_SIZE] = "";
	CURLcode cc;
	size_t ep;
	CURL *e;
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	ep = c->broken_tls;
	pthread_mutex_unlock(&c->lock);
	if (!ep || !(e = cu.easy_init()))
		return 0;
	easy_common(c, e);
	cu.easy_setopt(e, CURLOPT_URL, c->urls[ep - 1]);
	cu.easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
	cu.easy_setopt(
		e, CURLOPT_SSLVERSION,
		(long)(CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2));
	cu.easy_setopt(e, CURLOPT_ERRORBUFFER, err);
	cu.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->dial_timeout);
	cc = cu.easy_perform(e);
	if (cc != CURLE_OK && credentials_alert(err)) {
		pthread_mutex_lock(&c->lock);
		snprintf(c->error, sizeof(c->error), "%s: %s",
			 ustate_etcd_endpoint(c, ep - 1), err);
		pthread_mutex_unlock(&c->lock);
		rc = -EACCES;
	}
	cu.easy_cleanup(e);
	return rc;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 +
	       (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * One attempt on endpoint ep. 0 with *out, or an errno; *sent tells
 * whether the request may have reached the member, *grpc whether the
 * error came from etcd itself (its code, or -1).
 */
static int attempt(struct ustate_etcd_conn *c, struct handle *h, size_t ep,
		   const char *path, const struct buf *body, bool once,
		   long timeout, bool token, json_t **out, bool *sent,
		   int *grpc, char **msg)
{
	char url[512];
	json_error_t jerr;
	json_t *j = NULL, *code;
	long status = 0;
	CURL *e = h->e;
	CURLcode cc;
	int rc;

	*grpc = -1;
	*sent = false;
	h->resp.len = 0;
	snprintf(url, sizeof(url), "%s%s", c->urls[ep], path);
	rc = handle_headers(c, h, token);
	if (rc < 0)
		return rc;
	cu.easy_setopt(e, CURLOPT_URL, url);
	h->out = body;
	h->out_off = 0;
	cu.easy_setopt(e, CURLOPT_POSTFIELDS, once ? NULL : body->p);
	cu.easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)body->len);
	cu.easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
	cu.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
		       timeout < (long)c->dial_timeout ? timeout
						       : (long)c->dial_timeout);
	cc = cu.easy_perform(e);
	if (cc != CURLE_OK) {
		rc = curl_errno(e, cc, h->err, sent);
		if (c->tls && rc != -EACCES &&
		    (cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR)) {
			pthread_mutex_lock(&c->lock);
			c->broken_tls = ep + 1;
			pthread_mutex_unlock(&c->lock);
		}
		*msg = strdup(h->err[0] ? h->err : cu.easy_strerror(cc));
		return rc;
	}
	*sent = true;
	cu.easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	j = h->resp.len ? json_loadb(h->resp.p, h->resp.len, 0, &jerr) : NULL;
	if (!json_is_object(j)) {
		rc = status == 200 ? -EPROTO : -EIO;
		*msg = strdup(status == 200 ? "a response that is no JSON"
					    : "an HTTP error without JSON");
		goto out;
	}
	code = json_object_get(j, "code");
	if (status != 200 || json_object_get(j, "error")) {
		*grpc = json_is_integer(code) ? (int)json_integer_value(code)
					      : 0;
		rc = -EIO;
		*msg = strdup(json_string_value(json_object_get(j, "error"))
				      ?: "an HTTP error");
		goto out;
	}
	*out = j;
	j = NULL;
	rc = 0;
out:
	json_decref(j);
	return rc;
}

/*
 * Write j as compact JSON into b, reused from request to request:
 * json_dumps grew a new string buffer from scratch for every request and
 * handed it over to be freed. json_dumpb says how much it needs when b is
 * too small; b then grows once and j is dumped again.
 */
static int dump(struct buf *b, json_t *j)
{
	size_t n;

	b->len = 0;
	n = json_dumpb(j, b->p, b->cap, JSON_COMPACT);
	if (n == 0)
		return -ENOMEM;
	if (n >= b->cap) {
		if (buf_reserve(b, n + 1) < 0 ||
		    json_dumpb(j, b->p, b->cap, JSON_COMPACT) != n)
			return -ENOMEM;
	}
	b->len = n;
	b->p[n] = '\0';
	return 0;
}

/* A flag of call_body() besides USTATE_ETCD_READ: send no auth token. */
#define NO_TOKEN 0x100

static int call_body(struct ustate_etcd_conn *c, struct handle *h,
		     const char *path, const struct buf *body, unsigned flags,
		     json_t **out, bool reauth);

int ustate_etcd_authenticate(struct ustate_etcd_conn *c)
{
	json_t *req, *resp = NULL;
	struct handle *h;
	const char *tok;
	char *body;
	int rc;

	if (!c->user)
		return 0;
	req = json_pack("{s:s, s:s}", "name", c->user, "password",
			c->password ? c->password : "");
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body)
		return -ENOMEM;
	h = easy_get(c);
	rc = h ? buf_add(&h->body, body, strlen(body)) : -ENOMEM;
	sodium_memzero(body, strlen(body));
	free(body);
	if (rc == 0)
		rc = call_body(c, h, "/v3/auth/authenticate", &h->body,
			       USTATE_ETCD_READ | NO_TOKEN, &resp, false);
	if (h) {
		/* The password stays in no buffer a later request reuses. */
		sodium_memzero(h->body.p, h->body.len);
		easy_put(c, h);
	}
	if (rc == -EINVAL) {
		/* Credentials a cluster without auth does not need. */
		pthread_mutex_lock(&c->lock);
		rc = strstr(c->error, "authentication is not enabled") ? 0 : rc;
		pthread_mutex_unlock(&c->lock);
		if (rc == 0)
			ustate_log(c->log, LOG_WARNING,
				   "etcd has no authentication enabled: the "
				   "user %s is not needed, and not used",
				   c->user);
		return rc;
	}
	if (rc < 0)
		return rc;
	tok = json_string_value(json_object_get(resp, "token"));
	if (!tok) {
		json_decref(resp);
		return -EPROTO;
	}
	pthread_mutex_lock(&c->lock);
	free(c->token);
	c->token = strdup(tok);
	c->token_gen++;
	rc = c->token ? 0 : -ENOMEM;
	pthread_mutex_unlock(&c->lock);
	json_decref(resp);
	return rc;
}

static int call_body(struct ustate_etcd_conn *c, struct handle *h,
		     const char *path, const struct buf *body, unsigned flags,
		     json_t **out, bool reauth)
{
	bool read = flags & USTATE_ETCD_READ, sent, unknown = false;
	bool slow = false;
	int rc = -ENOTCONN, grpc = -1;
	struct timespec t0;
	size_t i, ep = 0, first;
	char *msg = NULL;
	long left, share;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	first = ustate_etcd_current(c);
	for (i = 0; i < c->nurls; i++) {
		left = (long)c->request_timeout - ms_since(&t0);
		if (left <= 0) {
			rc = -ETIMEDOUT;
			break;
		}
		ep = (first + i) % c->nurls;
		free(msg);
		msg = NULL;
		/*
		 * A read may be sent again: it gives each endpoint left an
		 * equal share of the time, so that a member that takes the
		 * connection and never answers (hung, stopped) does not use
		 * it all before a healthy one is tried. A write keeps all of
		 * it: once sent, it goes nowhere else.
		 */
		share = read ? left / (long)(c->nurls - i) : left;
		rc = attempt(c, h, ep, path, body, !read, share ? share : 1,
			     !(flags & NO_TOKEN), out, &sent, &grpc, &msg);
		if (read && rc == -ETIMEDOUT && grpc < 0)
			slow = true;
		if (rc == 0) {
			pthread_mutex_lock(&c->lock);
			c->cur = ep;
			pthread_mutex_unlock(&c->lock);
			break;
		}
		if (grpc >= 0) {
			/* An answer from etcd: its code says what happened. */
			if (grpc == GRPC_UNAUTHENTICATED && reauth &&
			    has(msg, "invalid auth token")) {
				rc = ustate_etcd_authenticate(c);
				if (rc == 0)
					rc = call_body(c, h, path, body, flags,
						       out, false);
				break;
			}
			rc = ustate_etcd_errno(grpc, -1, msg, !read);
			unknown = !read && rc == -ETIMEDOUT;
			/* A member without a quorum: another may have one. */
			if (rc != -ENOTCONN && !(read && rc == -ETIMEDOUT))
				break;
		} else if (sent && !read) {
			/* Sent and no answer: it may have been applied. */
			rc = -ETIMEDOUT;
			unknown = true;
			move_on(c, ep);
			break;
		}
		ustate_log(c->log, LOG_INFO, "etcd %s: %s%s%s",
			   ustate_etcd_endpoint(c, ep), msg ? msg : "",
			   i + 1 < c->nurls ? ", trying " : "",
			   i + 1 < c->nurls ? ustate_etcd_endpoint(
						      c, (ep + 1) % c->nurls)
					    : "");
		move_on(c, ep);
	}
	/* -ETIMEDOUT says "may have been applied": not if never sent. */
	if (!read && rc == -ETIMEDOUT && !unknown)
		rc = -ENOTCONN;
	/* A read that one endpoint let wait and the others refused. */
	if (read && slow &&
	    (rc == -ECONNREFUSED || rc == -EHOSTUNREACH || rc == -ENETUNREACH))
		rc = -ETIMEDOUT;
	pthread_mutex_lock(&c->lock);
	c->unreachable =
		grpc < 0 &&
		(rc == -ETIMEDOUT || rc == -ENOTCONN || rc == -ECONNREFUSED ||
		 rc == -EHOSTUNREACH || rc == -ENETUNREACH);
	pthread_mutex_unlock(&c->lock);
	if (rc < 0) {
		pthread_mutex_lock(&c->lock);
		snprintf(c->error, sizeof(c->error), "%s%s%s",
			 ustate_etcd_endpoint(c, ep), msg ? ": " : "",
			 msg ? msg : "");
		pthread_mutex_unlock(&c->lock);
	}
	if (rc < 0 && rc != -ECANCELED)
		ustate_log(c->log, LOG_DEBUG, "etcd %s %s: %s", path,
			   msg ? msg : "", strerror(-rc));
	free(msg);
	return rc;
}

int ustate_etcd_call(struct ustate_etcd_conn *c, const char *path, json_t *req,
		     unsigned flags, json_t **out)
{
	struct handle *h;
	int rc;

	h = easy_get(c);
	if (!h)
		return -ENOMEM;
	rc = dump(&h->body, req);
	if (rc == 0)
		rc = call_body(c, h, path, &h->body, flags, out, true);
	easy_put(c, h);
	return rc;
}

/* ---- the watch stream ------------------------------------------------- */

struct ustate_etcd_stream {
	struct ustate_etcd_conn *c;
	CURLM *multi;
	pthread_mutex_t lock;
	bool stop; /* protected by lock */
};

struct stream_run {
	struct ustate_etcd_splitter sp;
	ustate_etcd_stream_fn fn;
	void *arg;
	int rc;		       /* the first error of a message or of fn */
	struct timespec heard; /* the member's last sign of life */
};

/*
 * A watch stream says nothing while nothing changes, and a member that
 * hangs (stopped, or its process wedged: the kernel still acknowledges
 * the connection and its keepalives) says nothing either. After
 * PROBE_IDLE_MS of silence, the stream's own endpoint is asked for its
 * status; no answer within PROBE_TIMEOUT_MS ends the stream, and the
 * watch resumes on the next endpoint.
 */
#define PROBE_IDLE_MS 5000
#define PROBE_TIMEOUT_MS 3000

/* Whether endpoint ep answers a status request in time. */
static bool probe(struct ustate_etcd_conn *c, size_t ep)
{
	static char empty[] = "{}";
	struct buf body = {.p = empty, .len = 2};
	struct handle *h = easy_get(c);
	json_t *out = NULL;
	char *msg = NULL;
	bool sent;
	int rc, grpc;
	long t = PROBE_TIMEOUT_MS;

	if (!h)
		return true; /* no memory: no verdict on the member */
	if ((long)c->request_timeout < t)
		t = (long)c->request_timeout;
	rc = attempt(c, h, ep, "/v3/maintenance/status", &body, false, t, true,
		     &out, &sent, &grpc, &msg);
	json_decref(out);
	if (rc < 0)
		ustate_log(c->log, LOG_WARNING,
			   "etcd %s: the watch stream is silent and the member "
			   "does not answer (%s): moving on",
			   ustate_etcd_endpoint(c, ep),
			   msg ? msg : ustate_strerror(rc));
	free(msg);
	easy_put(c, h);
	/* An error etcd itself sent is an answer: the member is alive. */
	return rc == 0 || grpc >= 0;
}

int ustate_etcd_stream_new(struct ustate_etcd_stream **out,
			   struct ustate_etcd_conn *c)
{
	struct ustate_etcd_stream *st;

	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->c = c;
	st->multi = cu.multi_init();
	if (!st->multi) {
		free(st);
		return -EIO;
	}
	pthread_mutex_init(&st->lock, NULL);
	*out = st;
	return 0;
}

void ustate_etcd_stream_free(struct ustate_etcd_stream *st)
{
	if (!st)
		return;
	cu.multi_cleanup(st->multi);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

void ustate_etcd_stream_stop(struct ustate_etcd_stream *st)
{
	pthread_mutex_lock(&st->lock);
	st->stop = true;
	pthread_mutex_unlock(&st->lock);
	cu.multi_wakeup(st->multi);
}

static bool stopping(struct ustate_etcd_stream *st)
{
	bool stop;

	pthread_mutex_lock(&st->lock);
	stop = st->stop;
	pthread_mutex_unlock(&st->lock);
	return stop;
}

static int on_line(void *arg, const char *line, size_t len)
{
	struct stream_run *r = arg;
	json_t *result = NULL;
	char *msg = NULL;
	int rc;

	rc = ustate_etcd_stream_parse(line, len, &result, &msg);
	free(msg);
	if (rc < 0)
		return rc;
	rc = r->fn(r->arg, result);
	json_decref(result);
	return rc;
}

static size_t on_stream(char *p, size_t size, size_t n, void *arg)
{
	struct stream_run *r = arg;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &r->heard);
	rc = ustate_etcd_splitter_feed(&r->sp, p, size * n, on_line, r);
	if (rc < 0) {
		r->rc = rc;
		return 0; /* ends the transfer */
	}
	return size * n;
}

int ustate_etcd_stream_run(struct ustate_etcd_stream *st, size_t ep,
			   json_t *req, ustate_etcd_stream_fn fn, void *arg)
{
	struct ustate_etcd_conn *c = st->c;
	struct curl_slist *hdr = NULL;
	struct stream_run r = {.fn = fn, .arg = arg};
	char url[512], *body = NULL;
	int running = 1, rc, left;
	unsigned gen;
	bool sent;
	CURLMsg *m;
	CURL *e;

	if (ustate_etcd_splitter_init(&r.sp, STREAM_MAX_LINE) < 0)
		return -ENOMEM;
	e = cu.easy_init();
	body = json_dumps(req, JSON_COMPACT);
	hdr = headers(c, true, &gen);
	if (!e || !body || !hdr) {
		rc = -ENOMEM;
		goto out;
	}
	easy_common(c, e);
	snprintf(url, sizeof(url), "%s/v3/watch", c->urls[ep]);
	cu.easy_setopt(e, CURLOPT_URL, url);
	cu.easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
	cu.easy_setopt(e, CURLOPT_POSTFIELDS, body);
	cu.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_stream);
	cu.easy_setopt(e, CURLOPT_WRITEDATA, &r);
	cu.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->dial_timeout);
	cu.multi_add_handle(st->multi, e);
	rc = 0;
	clock_gettime(CLOCK_MONOTONIC, &r.heard);
	while (running && !stopping(st)) {
		if (cu.multi_perform(st->multi, &running) != CURLM_OK) {
			rc = -EIO;
			break;
		}
		if (!running)
			break;
		/* A second at most: stop() also wakes the poll. */
		cu.multi_poll(st->multi, NULL, 0, 1000, NULL);
		if (ms_since(&r.heard) >= PROBE_IDLE_MS && !stopping(st)) {
			if (!probe(c, ep)) {
				r.rc = -ETIMEDOUT;
				break;
			}
			clock_gettime(CLOCK_MONOTONIC, &r.heard);
		}
	}
	if (stopping(st)) {
		/* A stop ends one run: the next starts afresh. */
		pthread_mutex_lock(&st->lock);
		st->stop = false;
		pthread_mutex_unlock(&st->lock);
		rc = 0;
	} else if (rc == 0) {
		/* A stream's last word, its error, may lack a newline. */
		if (!r.rc) {
			rc = ustate_etcd_splitter_finish(&r.sp, on_line, &r);
			if (rc < 0)
				r.rc = rc;
		}
		rc = r.rc ? r.rc : -ENOTCONN;
		while ((m = cu.multi_info_read(st->multi, &left)))
			if (m->msg == CURLMSG_DONE &&
			    m->data.result != CURLE_OK && !r.rc)
				rc = curl_errno(e, m->data.result, NULL, &sent);
	}
	cu.multi_remove_handle(st->multi, e);
out:
	cu.easy_cleanup(e);
	cu.slist_free_all(hdr);
	free(body);
	ustate_etcd_splitter_free(&r.sp);
	return rc;
}

/* ---- JSON helpers ----------------------------------------------------- */

json_t *ustate_etcd_b64(const void *buf, size_t len)
{
	size_t n =
		sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	char small[512], *s = small;
	json_t *j;

	/* Keys and short values (most of them) need no buffer of their own. */
	if (n > sizeof(small)) {
		s = malloc(n);
		if (!s)
			return NULL;
	}
	sodium_bin2base64(s, n, buf, len, sodium_base64_VARIANT_ORIGINAL);
	j = json_stringn_nocheck(s, n - 1);
	if (s != small)
		free(s);
	return j;
}

json_t *ustate_etcd_b64s(const char *s)
{
	return ustate_etcd_b64(s, strlen(s));
}

int ustate_etcd_get_bytes(json_t *obj, const char *name, char **out,
			  size_t *len)
{
	json_t *v = json_object_get(obj, name);
	const char *s = json_string_value(v);
	size_t slen, n;
	char *p;

	slen = s ? json_string_length(v) : 0;
	p = malloc(slen / 4 * 3 + 3);
	if (!p)
		return -ENOMEM;
	n = 0;
	if (slen && sodium_base642bin((unsigned char *)p, slen / 4 * 3 + 3, s,
				      slen, NULL, &n, NULL,
				      sodium_base64_VARIANT_ORIGINAL) != 0) {
		free(p);
		return -EPROTO;
	}
	p[n] = '\0';
	*out = p;
	*len = n;
	return 0;
}

uint64_t ustate_etcd_get_u64(json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);

	if (json_is_string(v))
		return strtoull(json_string_value(v), NULL, 10);
	if (json_is_integer(v))
		return (uint64_t)json_integer_value(v);
	return 0;
}

json_t *ustate_etcd_u64(uint64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
	return json_string_nocheck(s);
}
