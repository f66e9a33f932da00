/*
 * http_testlib.h — test support for modules that answer over runnerd's HTTP
 * connection module (http.h): a real libuv loop with a Unix listener in a
 * private temp dir that serves accepted sockets with http_conn_open, a raw client on its own
 * thread that writes request bytes on a real socket and reads raw responses,
 * and a strict HTTP/1.1 response parser (status line, Content-Length or
 * chunked framing). Failures are cmocka assertions.
 */
#ifndef UKRUN_HTTP_TESTLIB_H
#define UKRUN_HTTP_TESTLIB_H

#include <pthread.h>
#include <stddef.h>

#include <uv.h>

#include "http.h"

/* One response as it came off the wire. */
struct http_test_resp {
	int status;
	char head[2048];  /* status line + headers, NUL-terminated */
	char *body;       /* decoded body (malloc'd) */
	size_t body_len;
	int chunked;
	size_t raw_len;   /* bytes of the whole response on the wire */
};

/* The value of header `name` (case-insensitive) copied into `out` (truncated to outlen - 1), or NULL. */
const char *http_test_header(const struct http_test_resp *r, const char *name, char *out, size_t outlen);

/* Parse one response at `buf` (`head`: it answers a HEAD, so no body follows):
 * 1 complete, 0 incomplete, -1 malformed. On 1 the caller frees r->body. */
int http_test_parse(const char *buf, size_t len, int head, struct http_test_resp *r);

/* Split `len` bytes into at most `max` responses (into `out`, or only counted when NULL); bit i
 * of head_mask marks a response to HEAD. Returns the number of complete responses (-1 when
 * malformed), *ret_used (optional) their bytes. */
int http_test_parse_all(const char *buf, size_t len, unsigned head_mask, struct http_test_resp *out, int max,
                        size_t *ret_used);

/* Free the bodies of `n` responses. */
void http_test_resps_free(struct http_test_resp *r, int n);

/* One client connection, run on its own thread. The test fills the request fields; the
 * thread fills the rest. */
struct http_test_client {
	const char *req;
	size_t len;
	size_t split;        /* write in pieces of this many bytes (0 = one write) */
	int want;            /* complete responses to wait for; 0 = write and hang up */
	unsigned head_mask;  /* bit i: response i answers a HEAD */
	int until_eof;       /* keep reading until the server closes */
	char *buf;           /* everything received (malloc'd, NUL-terminated; the test frees it) */
	size_t got;
	int eof;
	int failed;          /* connect error or no answer in time */
	/* set by the server side */
	const char *sock;
	uv_async_t *wake;
	pthread_t thread;
	char get[256];       /* request storage for http_test_client_get */
};

/* A loop serving one Unix listener with http_conn_open. */
struct http_test_server {
	uv_loop_t loop;
	uv_poll_t listener;
	int listen_fd;
	uv_async_t wake;     /* a client thread finished */
	struct http_conn_set set; /* limits: none unless the test sets them */
	struct http_handler handler;
	char dir[64];        /* private temp dir, removed with its files by http_test_server_fini */
	char sock[96];
	int client_done;
};

/* Make a temp dir /tmp/ukrun-test-NAME-XXXXXX, listen on a socket in it and serve accepted
 * connections with `handler`. 0, or a negative errno. */
int http_test_server_init(struct http_test_server *s, const char *name, const struct http_handler *handler);

/* Close every connection and the server's handles, run the loop dry, assert that nothing is left
 * open, and remove the temp dir. Other handles the test put on s->loop must be closed first. */
void http_test_server_fini(struct http_test_server *s);

/* Make `c` send "GET target HTTP/1.1" with a Host header. */
void http_test_client_get(struct http_test_client *c, const char *target);

/* Start `c` on its thread against `s`; http_test_client_finish runs the loop until it is done. */
void http_test_client_start(struct http_test_server *s, struct http_test_client *c);
void http_test_client_finish(struct http_test_server *s, struct http_test_client *c);

/* Run one client exchange to its end on the loop (start + finish). */
void http_test_exchange(struct http_test_server *s, struct http_test_client *c);

/* Exchange and parse exactly c->want responses into `out`, which must cover every byte received. */
void http_test_exchange_parse(struct http_test_server *s, struct http_test_client *c, struct http_test_resp *out);

/* Run the loop until every connection has closed. */
void http_test_wait_closed(struct http_test_server *s);

/* A blocking client socket connected to the server (the test drives both sides itself). */
int http_test_connect(const struct http_test_server *s);

#endif
