/* http.c — HTTP/1.1 connections over libuv with nodejs http-parser (see http.h). */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <sys/socket.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "tls.h"

struct http_conn {
	union {
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} h;
	uv_timer_t timer;    /* the deadline of what the connection waits for (timer_update) */
	int handles;         /* of h and timer still open: freed when both have closed */
	http_parser parser;
	struct http_handler handler;
	struct http_request req;
	struct http_body_sink sink;
	struct tls_session *tls; /* the TLS transport, or NULL for plain bytes */
	int is_tcp;
	int has_sink;
	int responded;       /* a response to the current request has started */
	int resp_done;       /* ... and is completely queued */
	int msg_done;        /* the parser has seen the whole current request */
	int in_execute;      /* inside http_parser_execute: never re-enter it */
	int skip_body;
	uint64_t discarded;  /* body bytes dropped after an early response */
	int keep_alive;
	int closing;
	int close_after_write;
	int field_is_auth;   /* current header field is Authorization */
	int field_is_expect; /* current header field is Expect */
	int expect_continue; /* the client waits for "100 Continue" before the body */
	int last_was_value;
	int started;         /* the parser has seen the first byte of the current request */
	int head_done;       /* ... and its whole head */
	int busy;            /* counted in set->busy: inside a request, first byte to response end */
	int peer_eof;        /* the peer will send no more (it may still read: a half-close) */
	int input_held;      /* a body sink asked to stop reading (http_conn_hold_input) */
	unsigned requests;   /* finished on this connection */
	uint64_t head_deadline; /* when the current (or first) request's head is due */
	uint64_t idle_since;    /* keep-alive wait since */
	uint64_t progress_ms;   /* last body byte in, or last response byte out */
	size_t queue_mark;      /* unsent bytes at progress_ms (to see a slow writer progress) */
	char field[32];
	size_t field_len;
	size_t header_bytes;
	char *pending;       /* bytes read, parsed up to pending_off (pipelining waits here) */
	size_t pending_len;
	size_t pending_off;
	size_t writes_outstanding;
	size_t write_bytes;
	void (*drain_cb)(struct http_conn *, void *);
	void *drain_arg;
	void *attached;
	void (*release)(void *obj);
	struct http_conn_set *set;
	struct http_conn *next, **pprev;
};

struct write_req {
	uv_write_t req;
	struct http_conn *conn;
	size_t len;  /* plaintext bytes it carries (write_bytes) */
	size_t size; /* bytes of data[] on the wire */
	char data[];
};

static const http_parser_settings settings;

static void request_reset(struct http_request *req)
{
	free(req->url);
	free(req->path);
	free(req->query);
	free(req->authorization);
	free(req->body);
	memset(req, 0, sizeof(*req));
	req->content_length = UINT64_MAX;
}

static void set_busy(struct http_conn *conn, int busy)
{
	if (conn->busy == busy || !conn->set)
		return;
	conn->busy = busy;
	if (busy)
		conn->set->busy++;
	else
		conn->set->busy--;
}

static void on_close(uv_handle_t *h)
{
	struct http_conn *conn = h->data;
	if (--conn->handles > 0)
		return;
	if (conn->pprev) {
		*conn->pprev = conn->next;
		if (conn->next)
			conn->next->pprev = conn->pprev;
		conn->set->count--;
	}
	request_reset(&conn->req);
	tls_session_free(conn->tls);
	free(conn->pending);
	free(conn);
}

/* Bytes the transport has for the peer (TLS records, handshake flights, alerts) as one
 * malloc'd write_req payload, or NULL when there are none. */
static struct write_req *tls_take(struct http_conn *conn, size_t accounted);

/* Best effort, never waiting: `len` bytes of plaintext (through TLS when the connection
 * has it), for the last words before a close. */
static void try_send(struct http_conn *conn, const char *buf, size_t len)
{
	if (conn->tls) {
		if (len && tls_session_write(conn->tls, buf, len) < 0)
			return;
		struct write_req *wr = tls_take(conn, 0);
		if (!wr)
			return;
		uv_buf_t b = uv_buf_init(wr->data, (unsigned)wr->size);
		(void)uv_try_write((uv_stream_t *)&conn->h, &b, 1);
		free(wr);
		return;
	}
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
	(void)uv_try_write((uv_stream_t *)&conn->h, &b, 1);
}

void http_conn_close(struct http_conn *conn)
{
	if (conn->closing)
		return;
	if (conn->tls && tls_session_established(conn->tls)) {
		tls_session_shutdown(conn->tls); /* close_notify, if the socket takes it now */
		try_send(conn, NULL, 0);
	}
	conn->closing = 1;
	if (conn->attached && conn->release) {
		void *obj = conn->attached;
		conn->attached = NULL;
		conn->release(obj);
	}
	set_busy(conn, 0);
	uv_close((uv_handle_t *)&conn->timer, on_close);
	uv_close((uv_handle_t *)&conn->h, on_close);
}

int http_conn_is_tcp(const struct http_conn *conn)
{
	return conn->is_tcp;
}

long http_conn_peer_uid(const struct http_conn *conn)
{
	uv_os_fd_t fd;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (conn->is_tcp || uv_fileno((const uv_handle_t *)&conn->h.pipe, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -1;
	return (long)cred.uid;
}

void http_conn_attach(struct http_conn *conn, void *obj, void (*release)(void *obj))
{
	conn->attached = obj;
	conn->release = obj ? release : NULL;
}

void *http_conn_attached(const struct http_conn *conn)
{
	return conn->attached;
}

void http_conn_set_sink(struct http_conn *conn, const struct http_body_sink *sink)
{
	conn->sink = *sink;
	conn->has_sink = 1;
}

size_t http_conn_write_queue(const struct http_conn *conn)
{
	return conn->write_bytes;
}

void http_conn_on_drain(struct http_conn *conn, void (*cb)(struct http_conn *, void *), void *arg)
{
	conn->drain_cb = cb;
	conn->drain_arg = arg;
}

/* ---- deadlines ---- */

static uint64_t now_ms(const struct http_conn *conn)
{
	return uv_now(conn->timer.loop);
}

/* When what the connection waits for is due, 0 = never (see struct http_limits):
 * - a request head (the first from the accept, later ones from their first byte): a fixed
 *   deadline, however slowly the bytes trickle in;
 * - the peer taking our response, or a request body coming in: idle time since the last
 *   progress (a slow reader that reads, a slow upload that uploads, never expire);
 * - keep-alive between requests: idle time since the previous request ended;
 * - a request the handler answers (a run, a console follower, a worker): never. */
static uint64_t deadline(struct http_conn *conn)
{
	const struct http_limits *lim = &conn->set->limits;
	if (!conn->msg_done && !conn->head_done && (conn->started || conn->requests == 0))
		return lim->header_timeout_ms ? conn->head_deadline : 0;
	if (!lim->idle_timeout_ms)
		return 0;
	if (conn->writes_outstanding) {
		/* A write completes only when all of it is in the kernel: watch the queue shrink. */
		size_t q = uv_stream_get_write_queue_size((const uv_stream_t *)&conn->h);
		if (q < conn->queue_mark)
			conn->progress_ms = now_ms(conn);
		conn->queue_mark = q;
		return conn->progress_ms + lim->idle_timeout_ms;
	}
	if (conn->msg_done || conn->input_held)
		return 0; /* held: runnerd is the slow side, not the peer */
	if (conn->head_done)
		return conn->progress_ms + lim->idle_timeout_ms;
	return conn->idle_since + lim->idle_timeout_ms;
}

static void on_timeout(uv_timer_t *t);

/* (Re)arm the timer for the connection's current deadline. */
static void timer_update(struct http_conn *conn)
{
	if (conn->closing)
		return;
	uint64_t due = deadline(conn), now = now_ms(conn);
	if (!due)
		uv_timer_stop(&conn->timer);
	else
		uv_timer_start(&conn->timer, on_timeout, due > now ? due - now : 0, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

void http_conn_hold_input(struct http_conn *conn)
{
	if (conn->input_held || conn->closing)
		return;
	conn->input_held = 1;
	uv_read_stop((uv_stream_t *)&conn->h);
	timer_update(conn);
}

void http_conn_release_input(struct http_conn *conn)
{
	if (!conn->input_held || conn->closing)
		return;
	conn->input_held = 0;
	conn->progress_ms = now_ms(conn); /* the idle wait for the body starts again */
	if (!conn->peer_eof && uv_read_start((uv_stream_t *)&conn->h, on_alloc, on_read) < 0) {
		http_conn_close(conn);
		return;
	}
	timer_update(conn);
}


/* A whole response written as a connection's last words (a timeout, a refusal): status
 * line, JSON body, Connection: close. Returns its length (it fits: callers' bodies are short). */
static size_t last_words(char *msg, size_t size, const char *status, const char *body)
{
	int n = snprintf(msg, size,
	                 "HTTP/1.1 %s\r\nServer: runnerd/" UKRUN_VERSION
	                 "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n%s",
	                 status, strlen(body), body);
	return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}
static void on_timeout(uv_timer_t *t)
{
	struct http_conn *conn = t->data;
	uint64_t due = deadline(conn);
	if (!due || due > now_ms(conn)) {
		timer_update(conn); /* progress since the timer was set */
		return;
	}
	/* A request that had begun gets a 408 if it fits into the socket now (nothing waits
	 * for a peer that stalls); then the connection closes. */
	if (conn->started && !conn->responded) {
		char msg[512];
		size_t n = last_words(msg, sizeof(msg), "408 Request Timeout",
		                      "{\"error\":{\"code\":\"request_timeout\",\"message\":"
		                      "\"the request did not arrive in time\"}}\n");
		try_send(conn, msg, n);
	}
	log_debug("closing a %s connection: %s", conn->tls ? "TLS" : conn->is_tcp ? "TCP" : "Unix",
	          !conn->head_done && !conn->msg_done && (conn->started || !conn->requests)
	              ? "header timeout"
	              : "idle timeout");
	http_conn_close(conn);
}

static void on_write(uv_write_t *w, int status)
{
	struct write_req *wr = (struct write_req *)w;
	struct http_conn *conn = wr->conn;
	conn->writes_outstanding--;
	conn->write_bytes -= wr->len;
	free(wr);
	if (conn->closing)
		return;
	if (status < 0) {
		http_conn_close(conn);
		return;
	}
	conn->progress_ms = now_ms(conn);
	if (conn->writes_outstanding == 0) {
		if (conn->close_after_write) {
			http_conn_close(conn);
			return;
		}
		if (conn->drain_cb)
			conn->drain_cb(conn, conn->drain_arg);
	}
	timer_update(conn);
}

static struct write_req *tls_take(struct http_conn *conn, size_t accounted)
{
	size_t n = tls_session_pending(conn->tls);
	if (!n)
		return NULL;
	struct write_req *wr = malloc(sizeof(*wr) + n);
	if (!wr)
		return NULL;
	wr->conn = conn;
	wr->len = accounted;
	n = tls_session_take(conn->tls, wr->data, n);
	wr->size = n;
	return wr;
}

static void on_tls_write(uv_write_t *w, int status)
{
	struct write_req *wr = (struct write_req *)w;
	struct http_conn *conn = wr->conn;
	free(wr);
	if (status < 0 && !conn->closing)
		http_conn_close(conn);
}

/* Send what TLS has for the peer besides responses (handshake flights, session tickets,
 * alerts). Not a response write: the HTTP accounting (timeouts, drain) ignores it; the
 * stream keeps the order, so a response written later follows it. */
static void tls_flush(struct http_conn *conn)
{
	if (conn->closing || !tls_session_pending(conn->tls))
		return;
	struct write_req *wr = tls_take(conn, 0);
	if (!wr) {
		http_conn_close(conn);
		return;
	}
	uv_buf_t buf = uv_buf_init(wr->data, (unsigned)wr->size);
	if (uv_write(&wr->req, (uv_stream_t *)&conn->h, &buf, 1, on_tls_write) < 0) {
		free(wr);
		http_conn_close(conn);
	}
}

/* The payload of a response write: the plaintext itself, or its TLS records. The
 * accounted length (write_bytes, backpressure) is the plaintext's in both cases. */
static struct write_req *write_req_new(struct http_conn *conn, const char *a, size_t alen, const char *b,
                                       size_t blen, const char *c, size_t clen, uv_buf_t *ret_buf)
{
	size_t len = alen + blen + clen;
	struct write_req *wr;
	if (conn->tls) {
		if (tls_session_write(conn->tls, a, alen) < 0 || (blen && tls_session_write(conn->tls, b, blen) < 0) ||
		    (clen && tls_session_write(conn->tls, c, clen) < 0))
			return NULL;
		wr = tls_take(conn, len);
		if (wr)
			*ret_buf = uv_buf_init(wr->data, (unsigned)wr->size);
		return wr;
	}
	wr = malloc(sizeof(*wr) + len);
	if (!wr)
		return NULL;
	memcpy(wr->data, a, alen);
	if (blen)
		memcpy(wr->data + alen, b, blen);
	if (clen)
		memcpy(wr->data + alen + blen, c, clen);
	wr->conn = conn;
	wr->len = len;
	*ret_buf = uv_buf_init(wr->data, (unsigned)len);
	return wr;
}

static void conn_write(struct http_conn *conn, const char *a, size_t alen, const char *b, size_t blen,
                       const char *c, size_t clen)
{
	if (conn->closing)
		return;
	size_t len = alen + blen + clen;
	uv_buf_t buf;
	struct write_req *wr = write_req_new(conn, a, alen, b, blen, c, clen, &buf);
	if (!wr) {
		if (conn->tls && tls_session_error(conn->tls)[0])
			log_debug("closing a TLS connection: %s", tls_session_error(conn->tls));
		http_conn_close(conn);
		return;
	}
	int r = uv_write(&wr->req, (uv_stream_t *)&conn->h, &buf, 1, on_write);
	if (r < 0) {
		free(wr);
		http_conn_close(conn);
		return;
	}
	if (conn->writes_outstanding == 0) {
		/* The peer's turn to read starts now. */
		conn->progress_ms = now_ms(conn);
		conn->queue_mark = uv_stream_get_write_queue_size((const uv_stream_t *)&conn->h);
	}
	conn->writes_outstanding++;
	conn->write_bytes += len;
	if (conn->writes_outstanding == 1)
		timer_update(conn);
}


#define HTTP_MAX_DISCARD (64u * 1024 * 1024)

static void pump_input(struct http_conn *conn);

/* When the response is queued and the request fully read, go on with the next request. */
static void maybe_next(struct http_conn *conn)
{
	pump_input(conn);
}

static void response_done(struct http_conn *conn)
{
	conn->resp_done = 1;
	maybe_next(conn);
}

static const char *status_text(int status)
{
	const char *t = http_status_str((enum http_status)status);
	return t ? t : "Unknown";
}

static void write_head(struct http_conn *conn, int status, const char *content_type, const char *extra)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %d %s\r\nServer: runnerd/" UKRUN_VERSION "\r\nContent-Type: %s\r\n%s%s\r\n",
	                 status, status_text(status), content_type,
	                 conn->keep_alive ? "" : "Connection: close\r\n", extra);
	conn_write(conn, head, (size_t)n, NULL, 0, NULL, 0);
}

static int begin_response(struct http_conn *conn)
{
	if (conn->responded || conn->closing)
		return -EALREADY;
	conn->responded = 1;
	/* An answer before the body is read (an error): drop the rest of the body (read on). */
	if (!conn->msg_done) {
		conn->skip_body = 1;
		http_conn_release_input(conn);
	}
	if (conn->keep_alive && !conn->msg_done)
		conn->keep_alive = http_should_keep_alive(&conn->parser);
	return 0;
}

void http_respond(struct http_conn *conn, int status, const char *content_type, const char *body,
                  size_t len)
{
	if (begin_response(conn) < 0)
		return;
	char cl[64];
	snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", len);
	write_head(conn, status, content_type, cl);
	if (conn->req.method != HTTP_HEAD && len)
		conn_write(conn, body, len, NULL, 0, NULL, 0);
	response_done(conn);
}

void http_respond_json(struct http_conn *conn, int status, json_t *json)
{
	char *s = json ? json_dumps(json, JSON_COMPACT) : NULL;
	json_decref(json);
	if (!s) {
		static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
		http_respond(conn, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	size_t n = strlen(s);
	char *body = realloc(s, n + 2);
	if (body) {
		body[n++] = '\n';
		s = body;
	}
	http_respond(conn, status, "application/json", s, n);
	free(s);
}

void http_respond_error(struct http_conn *conn, int status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	http_respond_json(conn, status,
	                  json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

void http_chunked_begin(struct http_conn *conn, int status, const char *content_type)
{
	if (begin_response(conn) < 0)
		return;
	write_head(conn, status, content_type, "Transfer-Encoding: chunked\r\nCache-Control: no-store\r\n");
}

void http_chunked_write(struct http_conn *conn, const char *buf, size_t len)
{
	if (!len || conn->resp_done)
		return;
	char head[32];
	int n = snprintf(head, sizeof(head), "%zx\r\n", len);
	conn_write(conn, head, (size_t)n, buf, len, "\r\n", 2);
}

void http_chunked_end(struct http_conn *conn)
{
	if (conn->resp_done || !conn->responded)
		return;
	conn_write(conn, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
	response_done(conn);
}

/* ---- parsing ---- */

static int append(char **dst, size_t *dlen, const char *at, size_t len, size_t max)
{
	if (*dlen + len > max)
		return -E2BIG;
	char *n = realloc(*dst, *dlen + len + 1);
	if (!n)
		return -ENOMEM;
	memcpy(n + *dlen, at, len);
	*dlen += len;
	n[*dlen] = '\0';
	*dst = n;
	return 0;
}

static int hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decode `len` bytes of `s` ('+' stays '+': paths and our query values).
 * Returns NULL on a malformed escape or an embedded NUL. */
static char *pct_decode(const char *s, size_t len)
{
	char *out = malloc(len + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		if (i + 2 >= len) {
			free(out);
			return NULL;
		}
		int a = hex((unsigned char)s[i + 1]), b = hex((unsigned char)s[i + 2]);
		if (a < 0 || b < 0 || (a == 0 && b == 0)) {
			free(out);
			return NULL;
		}
		*o++ = (char)(a * 16 + b);
		i += 2;
	}
	*o = '\0';
	return out;
}

char *http_query_get(const char *query, const char *name)
{
	if (!query)
		return NULL;
	size_t nlen = strlen(name);
	const char *p = query;
	while (*p) {
		const char *end = strchr(p, '&');
		size_t plen = end ? (size_t)(end - p) : strlen(p);
		if (plen >= nlen && strncmp(p, name, nlen) == 0 && (plen == nlen || p[nlen] == '=')) {
			if (plen == nlen)
				return strdup("");
			return pct_decode(p + nlen + 1, plen - nlen - 1);
		}
		p += plen;
		if (*p == '&')
			p++;
	}
	return NULL;
}

static struct http_conn *conn_of(http_parser *p)
{
	return p->data;
}

static int on_message_begin(http_parser *p)
{
	struct http_conn *conn = conn_of(p);
	conn->started = 1;
	set_busy(conn, 1);
	/* The first request's head is due from the accept; later ones from their first byte. */
	if (conn->requests)
		conn->head_deadline = now_ms(conn) + conn->set->limits.header_timeout_ms;
	request_reset(&conn->req);
	conn->last_was_value = 0;
	conn->field_len = 0;
	conn->expect_continue = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_conn *conn = conn_of(p);
	size_t cur = conn->req.url ? strlen(conn->req.url) : 0;
	return append(&conn->req.url, &cur, at, len, HTTP_MAX_URL) < 0 ? -1 : 0;
}

/* The header-size limit counts whole lines: name, ": ", value and CRLF. */
static int count_header_bytes(struct http_conn *conn, size_t n)
{
	conn->header_bytes += n;
	return conn->header_bytes > HTTP_MAX_HEADERS ? -1 : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_conn *conn = conn_of(p);
	int new_line = conn->last_was_value || conn->field_len == 0;
	if (count_header_bytes(conn, len + (new_line ? 4 : 0)) < 0)
		return -1;
	if (conn->last_was_value) {
		conn->field_len = 0;
		conn->last_was_value = 0;
	}
	size_t take = len;
	if (conn->field_len + take >= sizeof(conn->field))
		take = sizeof(conn->field) - 1 - conn->field_len;
	memcpy(conn->field + conn->field_len, at, take);
	conn->field_len += take;
	conn->field[conn->field_len] = '\0';
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_conn *conn = conn_of(p);
	if (count_header_bytes(conn, len) < 0)
		return -1;
	if (!conn->last_was_value) {
		conn->field_is_auth = strcasecmp(conn->field, "authorization") == 0;
		conn->field_is_expect = strcasecmp(conn->field, "expect") == 0;
	}
	if (conn->field_is_expect && len >= 12 && strncasecmp(at, "100-continue", 12) == 0)
		conn->expect_continue = 1;
	conn->last_was_value = 1;
	if (conn->field_is_auth) {
		size_t cur = conn->req.authorization ? strlen(conn->req.authorization) : 0;
		if (append(&conn->req.authorization, &cur, at, len, 4096) < 0)
			return -1;
	}
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct http_conn *conn = conn_of(p);
	struct http_request *req = &conn->req;
	conn->head_done = 1;
	conn->progress_ms = now_ms(conn);
	req->method = (enum http_method)p->method;
	conn->keep_alive = http_should_keep_alive(p);
	if ((p->flags & F_CONTENTLENGTH) || p->content_length != ULLONG_MAX)
		req->content_length = p->content_length;
	if (!req->url) {
		http_respond_error(conn, 400, "bad_request", "missing request target");
		return 0;
	}
	struct http_parser_url u;
	http_parser_url_init(&u);
	if (http_parser_parse_url(req->url, strlen(req->url), 0, &u) != 0 ||
	    !(u.field_set & (1 << UF_PATH))) {
		http_respond_error(conn, 400, "bad_request", "malformed request target");
		return 0;
	}
	req->path = pct_decode(req->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
	if (!req->path) {
		http_respond_error(conn, 400, "bad_request", "malformed percent-encoding in path");
		return 0;
	}
	if (u.field_set & (1 << UF_QUERY))
		req->query = strndup(req->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
	conn->handler.headers(conn->handler.ctx, conn, req);
	if (!conn->responded && !conn->has_sink && req->content_length != UINT64_MAX &&
	    req->content_length > HTTP_MAX_BUFFERED_BODY)
		http_respond_error(conn, 413, "too_large", "request body over %d bytes", HTTP_MAX_BUFFERED_BODY);
	/* Answer "Expect: 100-continue" only when the body is wanted; an early error already
	 * told the client not to send it. */
	if (!conn->responded && conn->expect_continue)
		conn_write(conn, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0, NULL, 0);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *conn = conn_of(p);
	conn->progress_ms = now_ms(conn);
	if (conn->skip_body || conn->responded) {
		conn->discarded += len;
		return conn->discarded > HTTP_MAX_DISCARD ? -1 : 0;
	}
	if (conn->has_sink) {
		if (conn->sink.data(conn->sink.ctx, at, len) < 0)
			conn->skip_body = 1;
		return 0;
	}
	if (append(&conn->req.body, &conn->req.body_len, at, len, HTTP_MAX_BUFFERED_BODY) < 0) {
		http_respond_error(conn, 413, "too_large", "request body over %d bytes",
		                   HTTP_MAX_BUFFERED_BODY);
		conn->skip_body = 1;
	}
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_conn *conn = conn_of(p);
	conn->msg_done = 1;
	http_conn_release_input(conn); /* the sink gets nothing more: a hold has no purpose now */
	if (!conn->responded)
		conn->handler.message(conn->handler.ctx, conn, &conn->req);
	/* Hold pipelined requests until this response is out. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* A parse error: answer it (unless a response is out already) and close after writing. */
static void parse_failed(struct http_conn *conn, enum http_errno err)
{
	conn->keep_alive = 0;
	if (!conn->responded) {
		if (err == HPE_CB_url || err == HPE_CB_header_field || err == HPE_CB_header_value ||
		    err == HPE_HEADER_OVERFLOW)
			http_respond_error(conn, 431, "too_large", "request line or headers too large");
		else
			http_respond_error(conn, 400, "bad_request", "malformed HTTP request: %s",
			                   http_errno_description(err));
	}
	conn->msg_done = 1;
	conn->close_after_write = 1;
	if (conn->writes_outstanding == 0)
		http_conn_close(conn);
}

/* Parse buffered input, one request at a time: a request whose response is not yet
 * queued holds the rest back. Iterative (never re-enters the parser), so any number
 * of pipelined requests costs one buffer. */
static void pump(struct http_conn *conn)
{
	if (conn->in_execute)
		return; /* the running loop below goes on */
	while (!conn->closing) {
		if (conn->msg_done) {
			if (!conn->resp_done)
				return; /* response_done() calls back */
			if (!conn->keep_alive) {
				conn->close_after_write = 1;
				if (conn->writes_outstanding == 0)
					http_conn_close(conn);
				return;
			}
			request_reset(&conn->req);
			conn->requests++;
			conn->started = conn->head_done = 0;
			set_busy(conn, 0);
			conn->idle_since = now_ms(conn);
			conn->has_sink = 0;
			conn->responded = conn->resp_done = conn->msg_done = 0;
			conn->skip_body = 0;
			conn->discarded = 0;
			conn->header_bytes = 0;
			http_parser_pause(&conn->parser, 0);
		}
		size_t avail = conn->pending_len - conn->pending_off;
		if (!avail)
			break;
		conn->in_execute = 1;
		size_t n = http_parser_execute(&conn->parser, &settings, conn->pending + conn->pending_off, avail);
		conn->in_execute = 0;
		if (conn->closing)
			return;
		conn->pending_off += n;
		enum http_errno err = HTTP_PARSER_ERRNO(&conn->parser);
		if (err != HPE_OK && err != HPE_PAUSED) {
			parse_failed(conn, err);
			return;
		}
	}
	if (conn->pending_off == conn->pending_len) {
		free(conn->pending);
		conn->pending = NULL;
		conn->pending_len = conn->pending_off = 0;
	}
	if (conn->peer_eof) {
		/* Every request that came before the peer's EOF is answered: done. */
		conn->close_after_write = 1;
		if (conn->writes_outstanding == 0)
			http_conn_close(conn);
	}
}

static void pump_input(struct http_conn *conn)
{
	pump(conn);
	timer_update(conn);
}

/* Queue `len` read bytes behind what is still unparsed (bounded). */
static int buffer_input(struct http_conn *conn, const char *buf, size_t len)
{
	if (conn->pending_off) {
		memmove(conn->pending, conn->pending + conn->pending_off, conn->pending_len - conn->pending_off);
		conn->pending_len -= conn->pending_off;
		conn->pending_off = 0;
	}
	if (conn->pending_len + len > HTTP_MAX_BUFFERED_BODY * 2)
		return -ENOBUFS;
	char *np = realloc(conn->pending, conn->pending_len + len);
	if (!np)
		return -ENOMEM;
	memcpy(np + conn->pending_len, buf, len);
	conn->pending = np;
	conn->pending_len += len;
	return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = malloc(64 * 1024);
	buf->len = buf->base ? 64 * 1024 : 0;
}

/* The peer has closed both directions (not just shut down its sending side). */
static int peer_hung_up(struct http_conn *conn)
{
	uv_os_fd_t fd;
	if (uv_fileno((const uv_handle_t *)&conn->h, &fd) < 0)
		return 1;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

/* The peer will send nothing more: EOF (maybe a half-close, shutdown(SHUT_WR), after its
 * request; it still reads the answer) or a read error. */
static void read_ended(struct http_conn *conn, int err)
{
	if (conn->closing)
		return;
	conn->peer_eof = 1;
	if (err == UV_EOF && conn->msg_done && !peer_hung_up(conn)) {
		/* A whole request is in: pump() closes once it and any pipelined ones are answered. */
		timer_update(conn);
		return;
	}
	/* A request cut short, none at all, or nobody left to read an answer. */
	conn->keep_alive = 0;
	conn->close_after_write = 1;
	if (err != UV_EOF || conn->writes_outstanding == 0 || peer_hung_up(conn))
		http_conn_close(conn);
}

/* Plaintext arrived: parse it. */
static void input(struct http_conn *conn, const char *buf, size_t len)
{
	if (buffer_input(conn, buf, len) < 0) {
		/* A client that keeps sending while its response is pending. */
		http_conn_close(conn);
		return;
	}
	pump_input(conn);
}

/* Plain HTTP on the TLS port: say so in plain HTTP (what the peer can read), then close. */
static void refuse_plaintext(struct http_conn *conn)
{
	char msg[512];
	size_t n = last_words(msg, sizeof(msg), "400 Bad Request",
	                      "{\"error\":{\"code\":\"tls_required\",\"message\":"
	                      "\"this port speaks HTTPS only\"}}\n");
	uv_buf_t b = uv_buf_init(msg, (unsigned)n);
	(void)uv_try_write((uv_stream_t *)&conn->h, &b, 1);
	log_debug("closing a TLS connection: %s", tls_session_error(conn->tls));
	http_conn_close(conn);
}

/* Records arrived on a TLS connection: decrypt what is complete and parse it; answer
 * the handshake. */
static void tls_input(struct http_conn *conn, const char *buf, size_t len)
{
	if (tls_session_feed(conn->tls, buf, len) < 0) {
		http_conn_close(conn);
		return;
	}
	char plain[16 * 1024];
	for (;;) {
		ssize_t n = tls_session_read(conn->tls, plain, sizeof(plain));
		if (n > 0) {
			input(conn, plain, (size_t)n);
			if (conn->closing)
				return;
			continue;
		}
		if (n == TLS_PLAINTEXT) {
			refuse_plaintext(conn);
			return;
		}
		tls_flush(conn);
		if (n == TLS_EOF)
			read_ended(conn, UV_EOF); /* close_notify: as a half-close on a plain socket */
		else if (n == TLS_FAILED) {
			log_debug("closing a TLS connection: %s", tls_session_error(conn->tls));
			try_send(conn, NULL, 0); /* the alert, if any and if it fits */
			http_conn_close(conn);
		}
		return;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct http_conn *conn = s->data;
	if (nread < 0) {
		free(buf->base);
		read_ended(conn, (int)nread);
		return;
	}
	if (nread > 0 && !conn->closing) {
		if (conn->tls)
			tls_input(conn, buf->base, (size_t)nread);
		else
			input(conn, buf->base, (size_t)nread);
	}
	free(buf->base);
}

void http_conn_close_all(struct http_conn_set *set)
{
	for (struct http_conn *c = set->head, *next; c; c = next) {
		next = c->next;
		http_conn_close(c);
	}
}

int http_conn_open(uv_loop_t *loop, int fd, int is_tcp, const struct http_handler *handler,
                   struct http_conn_set *set)
{
	struct http_conn *conn = calloc(1, sizeof(*conn));
	if (!conn) {
		close(fd);
		return -ENOMEM;
	}
	int r = is_tcp ? uv_tcp_init(loop, &conn->h.tcp) : uv_pipe_init(loop, &conn->h.pipe, 0);
	if (r < 0) {
		free(conn);
		close(fd);
		return r;
	}
	uv_timer_init(loop, &conn->timer);
	conn->handles = 2;
	conn->h.pipe.data = conn;
	conn->timer.data = conn;
	conn->set = set;
	conn->is_tcp = is_tcp;
	conn->handler = *handler;
	if (set->tls && !(conn->tls = tls_session_new(set->tls)))
		r = -ENOMEM;
	conn->req.content_length = UINT64_MAX;
	http_parser_init(&conn->parser, HTTP_REQUEST);
	conn->parser.data = conn;
	if (r == 0)
		r = is_tcp ? uv_tcp_open(&conn->h.tcp, fd) : uv_pipe_open(&conn->h.pipe, fd);
	if (r < 0)
		close(fd); /* not the handle's yet */
	else
		r = uv_read_start((uv_stream_t *)&conn->h, on_alloc, on_read);
	if (r < 0) {
		conn->closing = 1;
		uv_close((uv_handle_t *)&conn->timer, on_close);
		uv_close((uv_handle_t *)&conn->h, on_close);
		return r;
	}
	conn->next = set->head;
	if (set->head)
		set->head->pprev = &conn->next;
	set->head = conn;
	conn->pprev = &set->head;
	set->count++;
	conn->head_deadline = now_ms(conn) + set->limits.header_timeout_ms;
	timer_update(conn);
	return 0;
}
