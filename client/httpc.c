/* The client's HTTP channel to runnerd: see httpc.h. */
#define CURL_DISABLE_TYPECHECK /* its macros would stand for the functions loaded below */
#include "httpc.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

_Static_assert(HTTPC_ERROR_SIZE >= CURL_ERROR_SIZE, "curl's error buffer fits httpc.errbuf");

/* libcurl, loaded on first TCP use: the few functions used, named as curl.h names them. */
static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *);
	void (*easy_reset)(CURL *);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	const char *(*easy_strerror)(CURLcode);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
} lc;
static char lc_error[200];
static pthread_once_t lc_once = PTHREAD_ONCE_INIT;

#define curl_easy_init lc.easy_init
#define curl_easy_cleanup lc.easy_cleanup
#define curl_easy_reset lc.easy_reset
#undef curl_easy_setopt /* curl.h may define these two as macros of themselves */
#undef curl_easy_getinfo
#define curl_easy_setopt lc.easy_setopt
#define curl_easy_perform lc.easy_perform
#define curl_easy_getinfo lc.easy_getinfo
#define curl_easy_strerror lc.easy_strerror
#define curl_slist_append lc.slist_append
#define curl_slist_free_all lc.slist_free_all

static void lc_load(void)
{
	void *so = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	const char *miss = NULL;

	if (!so) {
		snprintf(lc_error, sizeof(lc_error), "TCP needs libcurl: %s", dlerror());
		return;
	}
#define LC(field, sym) \
	if (!(*(void **)&lc.field = dlsym(so, sym)) && !miss) \
		miss = sym;
	LC(global_init, "curl_global_init")
	LC(easy_init, "curl_easy_init")
	LC(easy_cleanup, "curl_easy_cleanup")
	LC(easy_reset, "curl_easy_reset")
	LC(easy_setopt, "curl_easy_setopt")
	LC(easy_perform, "curl_easy_perform")
	LC(easy_getinfo, "curl_easy_getinfo")
	LC(easy_strerror, "curl_easy_strerror")
	LC(slist_append, "curl_slist_append")
	LC(slist_free_all, "curl_slist_free_all")
#undef LC
	if (!miss && lc.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		miss = "curl_global_init()";
	if (miss) {
		snprintf(lc_error, sizeof(lc_error), "TCP needs libcurl: libcurl.so.4 lacks %s", miss);
		lc.easy_init = NULL;
	}
	/* Never unloaded: its global state lives until exit. */
}

static CURL *lc_handle(char *errbuf)
{
	CURL *c;

	pthread_once(&lc_once, lc_load);
	if (!lc.easy_init) {
		snprintf(errbuf, HTTPC_ERROR_SIZE, "%s", lc_error);
		return NULL;
	}
	c = curl_easy_init();
	if (!c)
		snprintf(errbuf, HTTPC_ERROR_SIZE, "%s", strerror(ENOMEM));
	return c;
}

#define CONNECT_TIMEOUT_MS 5000L
#define JSON_TIMEOUT_MS 120000L
#define BODY_MAX (32u << 20) /* a JSON answer larger than this is not from runnerd */
#define ERROR_BODY_MAX (64u << 10)
#define UPLOAD_STALL_S 60L   /* an upload making no progress this long is abandoned */

struct buf {
	char *p;
	size_t len, cap, max;
};

/* Per-transfer state shared by the callbacks. */
struct xfer {
	struct httpc *h;
	bool abortable;
	struct buf body;
	/* stream */
	int out_fd;
	uint64_t *io_bytes;
	bool decided, passthrough;
	int werr;
	/* upload */
	int in_fd;
	uint64_t in_off, in_size;
	int bar_drawn; /* progress bar: last percentage drawn + 1 (0 = not drawn yet) */
};

int httpc_init(struct httpc *h, const char *unix_path, const char *base_url, const char *token)
{
	size_t n;

	memset(h, 0, sizeof(*h));
	if (unix_path) {
		h->unix_path = strdup(unix_path);
		h->base = strdup("http://localhost");
		if (!h->unix_path || !h->base)
			goto nomem;
		return 0;
	}
	if (!base_url || (strncmp(base_url, "http://", 7) && strncmp(base_url, "https://", 8)))
		return -EINVAL;
	h->curl = lc_handle(h->errbuf);
	if (!h->curl)
		return lc.easy_init ? -ENOMEM : -ENOSYS;
	h->base = strdup(base_url);
	if (!h->base)
		goto nomem;
	n = strlen(h->base);
	while (n > 8 && h->base[n - 1] == '/')
		h->base[--n] = '\0';
	if (token && *token) {
		if (strpbrk(token, "\r\n"))
			return -EINVAL;
		if (asprintf(&h->auth_header, "Authorization: Bearer %s", token) < 0) {
			h->auth_header = NULL;
			goto nomem;
		}
	}
	return 0;
nomem:
	return -ENOMEM;
}

int httpc_set_ca_file(struct httpc *h, const char *path)
{
	free(h->ca_file);
	h->ca_file = path ? strdup(path) : NULL;
	return path && !h->ca_file ? -ENOMEM : 0;
}

void httpc_free(struct httpc *h)
{
	if (h->curl)
		curl_easy_cleanup(h->curl);
	if (h->connected)
		close(h->fd);
	free(h->unix_path);
	free(h->base);
	free(h->auth_header);
	free(h->ca_file);
	memset(h, 0, sizeof(*h));
}

const char *httpc_where(const struct httpc *h)
{
	return h->unix_path ? h->unix_path : h->base;
}

void httpc_resp_clear(struct httpc_resp *r)
{
	json_decref(r->json);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static int buf_append(struct buf *b, const char *p, size_t n)
{
	if (n > b->max - b->len)
		return -EMSGSIZE;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *np;

		while (cap < b->len + n + 1)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *data)
{
	struct xfer *x = data;
	size_t n = size * nmemb;

	return buf_append(&x->body, p, n) < 0 ? 0 : n;
}

/* Every byte out, whatever write(2) accepts per call; waits when out_fd is non-blocking. */
static int write_all(struct xfer *x, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(x->out_fd, p, n);

		if (w < 0) {
			if (errno == EINTR) {
				if (x->h->abort_flag && *x->h->abort_flag)
					return -EINTR;
				continue;
			}
			if (errno == EAGAIN) {
				struct pollfd pfd = { .fd = x->out_fd, .events = POLLOUT };

				(void)poll(&pfd, 1, 1000);
				continue;
			}
			return -errno;
		}
		p += w;
		n -= (size_t)w;
		*x->io_bytes += (uint64_t)w;
	}
	return 0;
}

static size_t on_stream(char *p, size_t size, size_t nmemb, void *data)
{
	struct xfer *x = data;
	size_t n = size * nmemb;
	int r;

	if (!x->decided) {
		long status = 0;

		curl_easy_getinfo(x->h->curl, CURLINFO_RESPONSE_CODE, &status);
		x->passthrough = status == 200;
		x->decided = true;
	}
	if (!x->passthrough)
		return buf_append(&x->body, p, n) < 0 ? 0 : n;
	if (x->h->sink) {
		r = x->h->sink(x->h->sink_ctx, p, n);
		if (r == 0)
			*x->io_bytes += (uint64_t)n;
	} else {
		r = write_all(x, p, n);
	}
	if (r < 0) {
		x->werr = -r;
		return 0;
	}
	return n;
}

static size_t on_read(char *p, size_t size, size_t nmemb, void *data)
{
	struct xfer *x = data;
	size_t want = size * nmemb;
	ssize_t r;

	if (x->in_off >= x->in_size)
		return 0;
	if (want > x->in_size - x->in_off)
		want = (size_t)(x->in_size - x->in_off);
	do
		r = pread(x->in_fd, p, want, (off_t)x->in_off);
	while (r < 0 && errno == EINTR && !(x->h->abort_flag && *x->h->abort_flag));
	if (r < 0) {
		x->werr = errno;
		return CURL_READFUNC_ABORT;
	}
	x->in_off += (uint64_t)r;
	return (size_t)r;
}

/* "ukrun: uploading NAME [#####     ]  42% 12/30 MiB", redrawn in place on stderr when the percentage moves. */
static void draw_bar(struct xfer *x, uint64_t now)
{
	const int width = 30;
	int pct = x->in_size ? (int)(now * 100 / x->in_size) : 100;
	char bar[32];

	if (pct > 100)
		pct = 100;
	if (pct + 1 == x->bar_drawn)
		return;
	x->bar_drawn = pct + 1;
	for (int i = 0; i < width; i++)
		bar[i] = i < pct * width / 100 ? '#' : ' ';
	bar[width] = '\0';
	fprintf(stderr, "\rukrun: uploading %.40s [%s] %3d%% %llu/%llu MiB", x->h->progress_name, bar, pct,
		(unsigned long long)(now >> 20), (unsigned long long)(x->in_size >> 20));
	if (pct == 100)
		fputc('\n', stderr);
	fflush(stderr);
}

static int on_progress(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = data;

	if (x->h->progress_name && x->in_size && ulnow > 0)
		draw_bar(x, (uint64_t)ulnow);
	return x->abortable && x->h->abort_flag && *x->h->abort_flag;
}

/* Reset the handle (the connection cache survives) and apply what every request needs. */
static int setup(struct xfer *x, const char *path, struct curl_slist **headers)
{
	struct httpc *h = x->h;
	CURL *c = h->curl;
	char *url;

	curl_easy_reset(c);
	h->errbuf[0] = '\0';
	if (asprintf(&url, "%s%s", h->base, path) < 0)
		return -ENOMEM;
	curl_easy_setopt(c, CURLOPT_URL, url);
	free(url); /* libcurl copies string options */
	if (h->unix_path)
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, h->unix_path);
	else /* a follow can be silent for minutes; notice a vanished peer */
		curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (h->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "ukrun/" UKRUN_VERSION);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	x->body.max = BODY_MAX;
	if (h->auth_header) {
		struct curl_slist *l = curl_slist_append(*headers, h->auth_header);

		if (!l)
			return -ENOMEM;
		*headers = l;
	}
	return 0;
}

static int add_header(struct curl_slist **headers, const char *line)
{
	struct curl_slist *l = curl_slist_append(*headers, line);

	if (!l)
		return -ENOMEM;
	*headers = l;
	return 0;
}

static int map_result(struct xfer *x, CURLcode cc)
{
	struct httpc *h = x->h;
	long os_errno = 0;

	if (cc != CURLE_OK && !h->errbuf[0])
		snprintf(h->errbuf, sizeof(h->errbuf), "%s", curl_easy_strerror(cc));
	switch (cc) {
	case CURLE_OK:
		return 0;
	case CURLE_ABORTED_BY_CALLBACK:
		return -EINTR;
	case CURLE_WRITE_ERROR:
		if (x->werr == EINTR)
			return -EINTR;
		if (x->werr) {
			snprintf(h->errbuf, sizeof(h->errbuf), "writing the console: %s", strerror(x->werr));
			return -x->werr;
		}
		snprintf(h->errbuf, sizeof(h->errbuf), "response larger than %zu bytes", x->body.max);
		return -EMSGSIZE;
	case CURLE_READ_ERROR:
		if (x->werr)
			snprintf(h->errbuf, sizeof(h->errbuf), "reading the image: %s", strerror(x->werr));
		return -EIO;
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(h->curl, CURLINFO_OS_ERRNO, &os_errno);
		if (os_errno <= 0)
			os_errno = ECONNREFUSED;
		if (h->unix_path) /* curl's text would name "localhost port 80" */
			snprintf(h->errbuf, sizeof(h->errbuf), "%s", strerror((int)os_errno));
		return -(int)os_errno;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		/* One line that says it is TLS: curl's own text may not. */
		if (strncmp(h->errbuf, "TLS", 3) != 0) {
			char why[CURL_ERROR_SIZE];
			snprintf(why, sizeof(why), "%s", h->errbuf);
			snprintf(h->errbuf, sizeof(h->errbuf), "TLS: %.*s", (int)sizeof(h->errbuf) - 8, why);
		}
		return -EPROTO;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	default:
		return -EIO;
	}
}

static void fill_resp(struct xfer *x, struct httpc_resp *ret)
{
	curl_easy_getinfo(x->h->curl, CURLINFO_RESPONSE_CODE, &ret->status);
	if (x->body.len) {
		ret->json = json_loadb(x->body.p, x->body.len, 0, NULL);
		ret->body = x->body.p;
		x->body.p = NULL;
	}
}

static int perform(struct xfer *x, struct curl_slist *headers, struct httpc_resp *ret)
{
	CURLcode cc;
	int r;

	if (headers)
		curl_easy_setopt(x->h->curl, CURLOPT_HTTPHEADER, headers);
	cc = curl_easy_perform(x->h->curl);
	r = map_result(x, cc);
	if (r == 0 && ret)
		fill_resp(x, ret);
	curl_slist_free_all(headers);
	free(x->body.p);
	x->body.p = NULL;
	return r;
}

/* ---- The Unix socket: requests by hand, responses through http-parser. ---- */

#define RECV_BUF (64u << 10)
#define SEND_CHUNK (1u << 20) /* sendfile per call: the progress bar and the interrupt flag are seen between */
#define POLL_SLICE_MS 1000    /* the interrupt flag is looked at least this often while waiting */

/* One request on the Unix socket. */
struct ureq {
	struct xfer *x;
	const char *method, *path;
	const char *headers; /* extra header lines, each ending in "\r\n" */
	const char *body;    /* in memory (NULL: none, or the file of x->in_fd) */
	size_t body_len;
	bool has_body;       /* send Content-Length (body, or x->in_size bytes of x->in_fd) */
	bool head;           /* HEAD: the response has no body */
	bool stream;         /* a 200's body goes to the sink / out_fd */
	int64_t total_ms;    /* limit for the whole exchange; 0 = none */
	int64_t stall_ms;    /* limit without progress; 0 = none */
	/* state */
	int64_t deadline, stall_deadline;
	http_parser parser;
	bool complete, reusable;
	long status;
	uint64_t got; /* response bytes received */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool aborted(const struct xfer *x)
{
	return x->abortable && x->h->abort_flag && *x->h->abort_flag;
}

static void uds_close(struct httpc *h)
{
	if (h->connected)
		close(h->fd);
	h->connected = false;
}

static int uds_connect(struct httpc *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = CONNECT_TIMEOUT_MS / 1000 };
	int fd, e;

	if (strlen(h->unix_path) >= sizeof(sa.sun_path)) {
		snprintf(h->errbuf, sizeof(h->errbuf), "socket path longer than %zu bytes", sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, h->unix_path, strlen(h->unix_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	/* A listener whose backlog is full makes connect wait: at most the connect timeout. */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINTR)
			goto fail;
	}
	tv.tv_sec = 0;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		goto fail;
	h->fd = fd;
	h->connected = true;
	return 0;
fail:
	e = errno == EAGAIN || errno == EINPROGRESS ? ETIMEDOUT : errno;
	if (fd >= 0)
		close(fd);
	snprintf(h->errbuf, sizeof(h->errbuf), "%s", strerror(e));
	return -e;
}

/* Wait until the connection is ready for `events`: 0, -ETIMEDOUT or -EINTR (interrupted). */
static int uds_wait(struct ureq *q, short events)
{
	struct httpc *h = q->x->h;

	for (;;) {
		struct pollfd pfd = { .fd = h->fd, .events = events };
		int64_t slice = POLL_SLICE_MS, now = now_ms();
		int n;

		if (aborted(q->x))
			return -EINTR;
		if ((q->deadline && now >= q->deadline) || (q->stall_deadline && now >= q->stall_deadline)) {
			if (q->stall_deadline && now >= q->stall_deadline)
				snprintf(h->errbuf, sizeof(h->errbuf), "no progress for %lld seconds",
					 (long long)(q->stall_ms / 1000));
			else
				snprintf(h->errbuf, sizeof(h->errbuf), "Operation timed out after %lld milliseconds",
					 (long long)q->total_ms);
			return -ETIMEDOUT;
		}
		if (q->deadline && q->deadline - now < slice)
			slice = q->deadline - now;
		if (q->stall_deadline && q->stall_deadline - now < slice)
			slice = q->stall_deadline - now;
		n = poll(&pfd, 1, (int)slice);
		if (n > 0)
			return 0; /* readiness, hang-up or error: the next call tells */
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static void progressed(struct ureq *q)
{
	if (q->stall_ms)
		q->stall_deadline = now_ms() + q->stall_ms;
}

static int uds_send(struct ureq *q, const char *p, size_t n)
{
	struct httpc *h = q->x->h;

	while (n) {
		ssize_t w = send(h->fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			int r;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			r = uds_wait(q, POLLOUT);
			if (r < 0)
				return r;
			continue;
		}
		p += w;
		n -= (size_t)w;
		progressed(q);
	}
	return 0;
}

/* x->in_size bytes of x->in_fd from offset 0: sendfile, or pread and send where sendfile cannot. */
static int uds_send_file(struct ureq *q)
{
	struct xfer *x = q->x;
	struct httpc *h = x->h;
	bool plain = false;
	off_t off = 0;

	while ((uint64_t)off < x->in_size) {
		size_t want = x->in_size - (uint64_t)off < SEND_CHUNK ? (size_t)(x->in_size - (uint64_t)off) : SEND_CHUNK;
		ssize_t w;
		int r;

		if (aborted(x))
			return -EINTR;
		if (plain) {
			char buf[64 << 10];

			w = pread(x->in_fd, buf, want < sizeof(buf) ? want : sizeof(buf), off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				x->werr = errno;
				return -EIO;
			}
			if (w > 0 && (r = uds_send(q, buf, (size_t)w)) < 0)
				return r;
			off += w;
		} else {
			w = sendfile(h->fd, x->in_fd, &off, want);
			if (w < 0) {
				if (errno == EINVAL || errno == ENOSYS) {
					plain = true;
					continue;
				}
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN) {
					r = uds_wait(q, POLLOUT);
					if (r < 0)
						return r;
					continue;
				}
				if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
					return -errno;
				x->werr = errno;
				return -EIO;
			}
		}
		if (w == 0) {
			x->werr = ENODATA; /* the file is shorter than it was */
			return -EIO;
		}
		progressed(q);
		if (h->progress_name && x->in_size)
			draw_bar(x, (uint64_t)off);
	}
	return 0;
}

static int on_u_headers(http_parser *p)
{
	struct ureq *q = p->data;

	q->status = p->status_code;
	if (q->stream)
		q->x->passthrough = q->status == 200;
	q->x->decided = true;
	if (!q->x->passthrough)
		q->x->body.max = q->stream ? ERROR_BODY_MAX : BODY_MAX;
	return q->head ? 1 : 0; /* 1: no body follows */
}

static int on_u_body(http_parser *p, const char *at, size_t n)
{
	struct ureq *q = p->data;
	struct xfer *x = q->x;
	int r;

	if (!x->passthrough) {
		r = buf_append(&x->body, at, n);
		if (r < 0)
			x->werr = -r == EMSGSIZE ? -1 : -r; /* -1: too large */
		return r < 0;
	}
	if (x->h->sink) {
		r = x->h->sink(x->h->sink_ctx, at, n);
		if (r == 0)
			*x->io_bytes += (uint64_t)n;
	} else {
		r = write_all(x, at, n);
	}
	if (r < 0)
		x->werr = -r;
	return r < 0;
}

static int on_u_complete(http_parser *p)
{
	struct ureq *q = p->data;

	q->complete = true;
	http_parser_pause(p, 1); /* whatever follows is not ours */
	return 0;
}

static const http_parser_settings u_settings = {
	.on_headers_complete = on_u_headers,
	.on_body = on_u_body,
	.on_message_complete = on_u_complete,
};

/* The parser stopped on an error of its own or of a callback: which. */
static int parse_error(struct ureq *q)
{
	struct xfer *x = q->x;
	struct httpc *h = x->h;
	enum http_errno e = HTTP_PARSER_ERRNO(&q->parser);

	if (e == HPE_CB_body && x->werr == -1) {
		snprintf(h->errbuf, sizeof(h->errbuf), "response larger than %zu bytes", x->body.max);
		return -EMSGSIZE;
	}
	if (e == HPE_CB_body && x->werr == EINTR)
		return -EINTR;
	if (e == HPE_CB_body && x->werr == ENOMEM)
		return -ENOMEM;
	if (e == HPE_CB_body && x->werr) {
		snprintf(h->errbuf, sizeof(h->errbuf), "writing the console: %s", strerror(x->werr));
		return -x->werr;
	}
	snprintf(h->errbuf, sizeof(h->errbuf), "malformed response from runnerd: %s", http_errno_description(e));
	return -EPROTO;
}

static int uds_recv(struct ureq *q)
{
	struct httpc *h = q->x->h;
	char *buf = malloc(RECV_BUF);
	/* A read that did not fill the buffer most likely drained the socket: wait before the
	 * next one rather than try it (and the answer to a request just sent is not there yet). */
	bool drained = true;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	http_parser_init(&q->parser, HTTP_RESPONSE);
	q->parser.data = q;
	while (!q->complete) {
		ssize_t n;
		size_t used;

		if (aborted(q->x)) { /* a flood keeps the buffer full: uds_wait would not look */
			r = -EINTR;
			break;
		}
		if (drained && (r = uds_wait(q, POLLIN)) < 0)
			break;
		n = recv(h->fd, buf, RECV_BUF, 0);
		drained = n < (ssize_t)RECV_BUF;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				continue; /* drained: waits first */
			r = -errno;
			snprintf(h->errbuf, sizeof(h->errbuf), "Recv failure: %s", strerror(errno));
			break;
		}
		if (n == 0) { /* runnerd closed: the end only of a body delimited by the close */
			http_parser_execute(&q->parser, &u_settings, NULL, 0);
			q->reusable = false;
			if (q->complete)
				break;
			snprintf(h->errbuf, sizeof(h->errbuf), q->got ? "runnerd closed the connection mid-response"
								      : "runnerd closed the connection without an answer");
			r = -ECONNRESET;
			break;
		}
		q->got += (uint64_t)n;
		progressed(q);
		used = http_parser_execute(&q->parser, &u_settings, buf, (size_t)n);
		if (q->complete) {
			/* Bytes after the response would be out of step with the next request. */
			q->reusable = used == (size_t)n && http_should_keep_alive(&q->parser);
			break;
		}
		if (HTTP_PARSER_ERRNO(&q->parser) != HPE_OK) {
			r = parse_error(q);
			break;
		}
	}
	free(buf);
	return r;
}

static int uds_exchange(struct ureq *q)
{
	struct xfer *x = q->x;
	struct httpc *h = x->h;
	char *head = NULL;
	int r, len;

	h->errbuf[0] = '\0';
	if (strpbrk(q->path, " \r\n")) {
		snprintf(h->errbuf, sizeof(h->errbuf), "bad request path");
		return -EINVAL;
	}
	if (q->has_body)
		len = asprintf(&head, "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ukrun/" UKRUN_VERSION
			       "\r\n%sContent-Length: %llu\r\n\r\n", q->method, q->path, q->headers ? q->headers : "",
			       (unsigned long long)(q->body ? q->body_len : x->in_size));
	else
		len = asprintf(&head, "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ukrun/" UKRUN_VERSION "\r\n%s\r\n",
			       q->method, q->path, q->headers ? q->headers : "");
	if (len < 0)
		return -ENOMEM;
	if (q->body && q->body_len) { /* a body in memory goes out in the same send as the head */
		char *all = malloc((size_t)len + q->body_len);

		if (!all) {
			free(head);
			return -ENOMEM;
		}
		memcpy(all, head, (size_t)len);
		memcpy(all + len, q->body, q->body_len);
		free(head);
		head = all;
	}
	for (int attempt = 0;; attempt++) {
		bool reused = h->connected;

		h->errbuf[0] = '\0'; /* a retry's answer, not the first attempt's failure */
		q->deadline = q->total_ms ? now_ms() + q->total_ms : 0;
		q->stall_deadline = 0;
		progressed(q);
		q->complete = q->reusable = false;
		q->got = 0;
		x->werr = 0;
		x->decided = x->passthrough = false;
		x->body.len = 0;
		if (!h->connected && (r = uds_connect(h)) < 0)
			break;
		r = uds_send(q, head, (size_t)len + (q->body ? q->body_len : 0));
		if (r == 0 && q->has_body && !q->body)
			r = uds_send_file(q);
		if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) {
			/* runnerd may have answered already (an upload it refuses): read that answer. */
			r = uds_recv(q);
		} else if (r == 0) {
			r = uds_recv(q);
		}
		if (r == 0 && q->reusable)
			break;
		uds_close(h);
		if (r == 0)
			break;
		/* A kept-alive connection runnerd closed while idle: once more on a new one. */
		if (reused && attempt == 0 && q->got == 0 && (r == -ECONNRESET || r == -EPIPE))
			continue;
		break;
	}
	if ((r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) && !x->werr) { /* the socket's, not the console's */
		if (!h->errbuf[0])
			snprintf(h->errbuf, sizeof(h->errbuf), "Send failure: %s", strerror(-r));
		r = -ECONNRESET;
	}
	if (r == -EIO && x->werr)
		snprintf(h->errbuf, sizeof(h->errbuf), "reading the image: %s",
			 x->werr == ENODATA ? "the file became shorter" : strerror(x->werr));
	free(head);
	return r;
}

static int uds_finish(struct ureq *q, int r, struct httpc_resp *ret)
{
	struct xfer *x = q->x;

	if (r == 0 && ret) {
		ret->status = q->status;
		if (x->body.len) {
			ret->json = json_loadb(x->body.p, x->body.len, 0, NULL);
			ret->body = x->body.p;
			x->body.p = NULL;
		}
	}
	free(x->body.p);
	x->body.p = NULL;
	return r;
}

int httpc_json(struct httpc *h, const char *method, const char *path, json_t *body, struct httpc_resp *ret)
{
	struct xfer x = { .h = h };
	struct curl_slist *headers = NULL;
	char *text = NULL;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (h->unix_path) {
		struct ureq q = { .x = &x, .method = method, .path = path, .body = "",
				  .total_ms = h->timeout_ms > 0 ? h->timeout_ms : JSON_TIMEOUT_MS };

		q.headers = body ? "Accept: application/json\r\nContent-Type: application/json\r\n"
				 : "Accept: application/json\r\n";
		q.has_body = body || !strcmp(method, "POST") || !strcmp(method, "PUT");
		if (body) {
			text = json_dumps(body, JSON_COMPACT);
			if (!text)
				return -ENOMEM;
			q.body = text;
			q.body_len = strlen(text);
		}
		r = uds_finish(&q, uds_exchange(&q), ret);
		free(text);
		return r;
	}
	r = setup(&x, path, &headers);
	if (r >= 0)
		r = add_header(&headers, "Accept: application/json");
	if (r >= 0 && body) {
		text = json_dumps(body, JSON_COMPACT);
		r = text ? add_header(&headers, "Content-Type: application/json") : -ENOMEM;
		if (r >= 0) {
			curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, text);
			curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
		}
	}
	if (r < 0) {
		curl_slist_free_all(headers);
		free(text);
		return r;
	}
	if (!strcmp(method, "POST") && !body) {
		curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}
	if (strcmp(method, "GET") && strcmp(method, "POST"))
		curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, h->timeout_ms > 0 ? h->timeout_ms : JSON_TIMEOUT_MS);
	r = perform(&x, headers, ret);
	free(text);
	return r;
}

int httpc_post_data(struct httpc *h, const char *path, const char *data, size_t len, struct httpc_resp *ret)
{
	struct xfer x = { .h = h };
	struct curl_slist *headers = NULL;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (h->unix_path) {
		struct ureq q = { .x = &x, .method = "POST", .path = path, .body = len ? data : "", .body_len = len,
				  .has_body = true, .headers = "Content-Type: application/octet-stream\r\n",
				  .total_ms = h->timeout_ms > 0 ? h->timeout_ms : JSON_TIMEOUT_MS };

		return uds_finish(&q, uds_exchange(&q), ret);
	}
	r = setup(&x, path, &headers);
	if (r >= 0)
		r = add_header(&headers, "Content-Type: application/octet-stream");
	if (r >= 0)
		r = add_header(&headers, "Expect:");
	if (r < 0) {
		curl_slist_free_all(headers);
		return r;
	}
	curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, len ? data : "");
	curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, h->timeout_ms > 0 ? h->timeout_ms : JSON_TIMEOUT_MS);
	return perform(&x, headers, ret);
}

int httpc_clone(struct httpc *dst, const struct httpc *src)
{
	memset(dst, 0, sizeof(*dst));
	if (!src->unix_path && !(dst->curl = lc_handle(dst->errbuf)))
		return -ENOMEM;
	dst->unix_path = src->unix_path ? strdup(src->unix_path) : NULL;
	dst->base = strdup(src->base);
	dst->auth_header = src->auth_header ? strdup(src->auth_header) : NULL;
	dst->ca_file = src->ca_file ? strdup(src->ca_file) : NULL;
	dst->abort_flag = src->abort_flag;
	dst->timeout_ms = src->timeout_ms;
	if (!dst->base || (src->unix_path && !dst->unix_path) ||
	    (src->auth_header && !dst->auth_header) || (src->ca_file && !dst->ca_file)) {
		httpc_free(dst);
		return -ENOMEM;
	}
	return 0;
}

int httpc_head(struct httpc *h, const char *path, long *ret_status)
{
	struct xfer x = { .h = h };
	struct curl_slist *headers = NULL;
	struct httpc_resp resp = { 0 };
	int r;

	if (h->unix_path) {
		struct ureq q = { .x = &x, .method = "HEAD", .path = path, .head = true, .total_ms = JSON_TIMEOUT_MS };

		r = uds_finish(&q, uds_exchange(&q), &resp);
		*ret_status = resp.status;
		httpc_resp_clear(&resp);
		return r;
	}
	r = setup(&x, path, &headers);
	if (r < 0) {
		curl_slist_free_all(headers);
		return r;
	}
	curl_easy_setopt(h->curl, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, JSON_TIMEOUT_MS);
	r = perform(&x, headers, &resp);
	*ret_status = resp.status;
	httpc_resp_clear(&resp);
	return r;
}

int httpc_put_fd(struct httpc *h, const char *path, int fd, uint64_t size, struct httpc_resp *ret)
{
	struct xfer x = { .h = h, .abortable = true, .in_fd = fd, .in_size = size };
	struct curl_slist *headers = NULL;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (h->unix_path) {
		struct ureq q = { .x = &x, .method = "PUT", .path = path, .has_body = true,
				  .headers = "Content-Type: application/octet-stream\r\nAccept: application/json\r\n",
				  .stall_ms = UPLOAD_STALL_S * 1000 };

		r = uds_finish(&q, uds_exchange(&q), ret);
		if (x.bar_drawn && x.bar_drawn != 101)
			fputc('\n', stderr); /* an interrupted bar does not swallow the next message */
		return r;
	}
	r = setup(&x, path, &headers);
	if (r >= 0)
		r = add_header(&headers, "Content-Type: application/octet-stream");
	if (r >= 0)
		r = add_header(&headers, "Expect:"); /* no 100-continue round trip */
	if (r >= 0)
		r = add_header(&headers, "Accept: application/json");
	if (r < 0) {
		curl_slist_free_all(headers);
		return r;
	}
	curl_easy_setopt(h->curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(h->curl, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(h->curl, CURLOPT_READDATA, &x);
	curl_easy_setopt(h->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
	curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, UPLOAD_STALL_S);
	r = perform(&x, headers, ret);
	if (x.bar_drawn && x.bar_drawn != 101)
		fputc('\n', stderr); /* an interrupted bar does not swallow the next message */
	return r;
}

int httpc_stream(struct httpc *h, const char *path, int out_fd, uint64_t *io_bytes, struct httpc_resp *ret)
{
	struct xfer x = { .h = h, .abortable = true, .out_fd = out_fd, .io_bytes = io_bytes };
	struct curl_slist *headers = NULL;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (h->unix_path) {
		struct ureq q = { .x = &x, .method = "GET", .path = path, .stream = true };

		return uds_finish(&q, uds_exchange(&q), ret);
	}
	r = setup(&x, path, &headers);
	if (r < 0) {
		curl_slist_free_all(headers);
		return r;
	}
	x.body.max = ERROR_BODY_MAX;
	curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &x);
	/* Console bytes must reach the terminal as they come, not when a buffer fills. */
	curl_easy_setopt(h->curl, CURLOPT_BUFFERSIZE, 16384L);
	return perform(&x, headers, ret);
}

const char *httpc_resp_code(const struct httpc_resp *r)
{
	const char *code = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));

	return code ? code : "";
}

const char *httpc_resp_message(const struct httpc_resp *r, char *buf, size_t len)
{
	const char *msg = json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
	size_t n = 0;

	if (msg && *msg)
		return msg;
	if (r->body && len > 1) {
		for (const char *p = r->body; *p && *p != '\n' && *p != '\r' && n + 1 < len && n < 200; p++)
			buf[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
		buf[n] = '\0';
		if (n)
			return buf;
	}
	snprintf(buf, len, "HTTP %ld", r->status);
	return buf;
}

char *httpc_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '.' || *p == '_' || *p == '~') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}
