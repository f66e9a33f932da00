/* The client's HTTP channel to runnerd: see httpc.h. */
#include "httpc.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	h->curl = curl_easy_init();
	if (!h->curl)
		return -ENOMEM;
	if (unix_path) {
		h->unix_path = strdup(unix_path);
		h->base = strdup("http://localhost");
		if (!h->unix_path || !h->base)
			goto nomem;
		return 0;
	}
	if (!base_url || (strncmp(base_url, "http://", 7) && strncmp(base_url, "https://", 8)))
		return -EINVAL;
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

int httpc_json(struct httpc *h, const char *method, const char *path, json_t *body, struct httpc_resp *ret)
{
	struct xfer x = { .h = h };
	struct curl_slist *headers = NULL;
	char *text = NULL;
	int r;

	memset(ret, 0, sizeof(*ret));
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
	dst->curl = curl_easy_init();
	dst->unix_path = src->unix_path ? strdup(src->unix_path) : NULL;
	dst->base = strdup(src->base);
	dst->auth_header = src->auth_header ? strdup(src->auth_header) : NULL;
	dst->ca_file = src->ca_file ? strdup(src->ca_file) : NULL;
	dst->abort_flag = src->abort_flag;
	dst->timeout_ms = src->timeout_ms;
	if (!dst->curl || !dst->base || (src->unix_path && !dst->unix_path) ||
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
