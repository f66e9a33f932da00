/*
 * test_http.c — the HTTP/1.1 connection module over a real libuv loop: a Unix
 * listener serves accepted sockets with http_conn_open, a client thread writes raw request
 * bytes on a real socket and reads raw responses, which the test parses
 * strictly (status line, Content-Length or chunked framing); see http_testlib.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"
#include "http_testlib.h"

/* ---- server side ---- */

struct harness {
	struct http_test_server srv;
	uv_timer_t timer;
	uv_timer_t clock;    /* run_for() */
	int rang;
	/* handler observations */
	int headers_calls, message_calls;
	int released;
	int hold_obj;
	struct http_conn *later;
	uint64_t later_ms;   /* /slow answers this long after the request */
	size_t big_len;      /* /big answers this many bytes in one write */
	size_t sink_pieces, sink_bytes, sink_bad;
	struct http_conn *holding; /* /holdsink: the connection its sink held */
};

static void on_later(uv_timer_t *t)
{
	struct harness *h = t->data;
	if (h->later)
		http_respond(h->later, 200, "text/plain", "later", 5);
	h->later = NULL;
}

static void release_obj(void *obj)
{
	struct harness *h = (struct harness *)((char *)obj - offsetof(struct harness, hold_obj));
	h->released++;
}

static int sink_data(void *ctx, const char *buf, size_t len)
{
	struct harness *h = ctx;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] != (unsigned char)((h->sink_bytes + i) % 251))
			h->sink_bad++;
	h->sink_pieces++;
	h->sink_bytes += len;
	return 0;
}

/* /holdsink: a sink that cannot keep up, holding the input from its first piece on. */
static int hold_sink_data(void *ctx, const char *buf, size_t len)
{
	struct harness *h = ctx;
	sink_data(h, buf, len);
	http_conn_hold_input(h->holding);
	return 0;
}

static void on_headers(void *ctx, struct http_conn *conn, struct http_request *req)
{
	struct harness *h = ctx;
	h->headers_calls++;
	if (strcmp(req->path, "/early") == 0) {
		http_respond_error(conn, 403, "forbidden", "not you");
	} else if (strcmp(req->path, "/sink") == 0) {
		struct http_body_sink s = { .data = sink_data, .ctx = h };
		http_conn_set_sink(conn, &s);
	} else if (strcmp(req->path, "/holdsink") == 0) {
		struct http_body_sink s = { .data = hold_sink_data, .ctx = h };
		h->holding = conn;
		http_conn_set_sink(conn, &s);
	}
}

static void on_message(void *ctx, struct http_conn *conn, struct http_request *req)
{
	struct harness *h = ctx;
	h->message_calls++;
	if (strcmp(req->path, "/hello") == 0) {
		http_respond(conn, 200, "text/plain", "hello\n", 6);
	} else if (strcmp(req->path, "/chunked") == 0) {
		http_chunked_begin(conn, 200, "text/plain");
		http_chunked_write(conn, "hello ", 6);
		http_chunked_write(conn, "", 0);
		http_chunked_write(conn, "world", 5);
		http_chunked_end(conn);
		/* Nothing more goes out for this request. */
		http_chunked_write(conn, "late", 4);
		http_respond(conn, 500, "text/plain", "x", 1);
	} else if (strcmp(req->path, "/echo") == 0) {
		http_respond(conn, 200, "application/octet-stream", req->body, req->body_len);
	} else if (strcmp(req->path, "/sink") == 0 || strcmp(req->path, "/holdsink") == 0) {
		http_respond_json(conn, 200, json_pack("{s:I,s:I,s:I,s:b}", "pieces", (json_int_t)h->sink_pieces,
		                                       "bytes", (json_int_t)h->sink_bytes, "bad",
		                                       (json_int_t)h->sink_bad, "buffered", req->body != NULL));
	} else if (strcmp(req->path, "/later") == 0 || strcmp(req->path, "/slow") == 0) {
		h->later = conn;
		uv_timer_start(&h->timer, on_later, strcmp(req->path, "/slow") == 0 ? h->later_ms : 0, 0);
	} else if (strcmp(req->path, "/big") == 0) {
		char *big = malloc(h->big_len);
		assert_non_null(big);
		memset(big, 'b', h->big_len);
		http_respond(conn, 200, "application/octet-stream", big, h->big_len);
		free(big);
	} else if (strcmp(req->path, "/hold") == 0) {
		http_conn_attach(conn, &h->hold_obj, release_obj);
		assert_ptr_equal(http_conn_attached(conn), &h->hold_obj);
	} else if (strcmp(req->path, "/detach") == 0) {
		http_conn_attach(conn, &h->hold_obj, release_obj);
		http_conn_attach(conn, NULL, release_obj);
		assert_null(http_conn_attached(conn));
		http_respond(conn, 204, "text/plain", NULL, 0);
	} else {
		/* Echo the target so ordering is visible. */
		char *echo = NULL;
		assert_true(asprintf(&echo, "%s%s%s", req->path, req->query ? "?" : "",
		                     req->query ? req->query : "") > 0);
		http_respond(conn, 200, "text/plain", echo, strlen(echo));
		free(echo);
	}
}

static int setup(void **state)
{
	struct harness *h = calloc(1, sizeof(*h));
	struct http_handler handler = { .headers = on_headers, .message = on_message, .ctx = h };
	if (!h || http_test_server_init(&h->srv, "http", &handler) < 0)
		return -1;
	uv_timer_init(&h->srv.loop, &h->timer);
	h->timer.data = h;
	uv_timer_init(&h->srv.loop, &h->clock);
	h->clock.data = h;
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	struct harness *h = *state;
	uv_close((uv_handle_t *)&h->timer, NULL);
	uv_close((uv_handle_t *)&h->clock, NULL);
	http_test_server_fini(&h->srv);
	free(h);
	return 0;
}

static void wait_for(struct harness *h, const int *flag)
{
	while (!*flag)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
}

/* ---- tests ---- */

static void test_simple_get(void **state)
{
	struct harness *h = *state;
	static const char req[] = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
	struct http_test_client c = { .req = req, .len = sizeof(req) - 1, .want = 1 };
	struct http_test_resp r[1];
	http_test_exchange_parse(&h->srv, &c, r);
	char v[64];
	assert_int_equal(r[0].status, 200);
	assert_non_null(strstr(r[0].head, "HTTP/1.1 200 OK\r\n"));
	assert_string_equal(http_test_header(&r[0], "Content-Length", v, sizeof(v)), "6");
	assert_string_equal(http_test_header(&r[0], "Content-Type", v, sizeof(v)), "text/plain");
	assert_null(http_test_header(&r[0], "Connection", v, sizeof(v)));
	assert_int_equal(r[0].body_len, 6);
	assert_memory_equal(r[0].body, "hello\n", 6);
	assert_int_equal(h->headers_calls, 1);
	assert_int_equal(h->message_calls, 1);
	http_test_resps_free(r, 1);
	free(c.buf);
	http_test_wait_closed(&h->srv);
}

static void test_head_no_body(void **state)
{
	struct harness *h = *state;
	/* HEAD then GET on one connection: the GET's response must follow the HEAD's headers
	 * directly, so no body bytes were sent for the HEAD. */
	static const char req[] = "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
	struct http_test_client c = { .req = req, .len = sizeof(req) - 1, .want = 2, .head_mask = 1 };
	struct http_test_resp r[2];
	http_test_exchange_parse(&h->srv, &c, r);
	char v[64];
	assert_int_equal(r[0].status, 200);
	assert_string_equal(http_test_header(&r[0], "Content-Length", v, sizeof(v)), "6");
	assert_int_equal(r[0].body_len, 0);
	assert_int_equal(r[1].status, 200);
	assert_string_equal(r[1].body, "/b");
	http_test_resps_free(r, 2);
	free(c.buf);
}

static void test_pipelined_in_order(void **state)
{
	struct harness *h = *state;
	/* Three requests in one write; the first is answered later, from a timer: the others
	 * must wait for it. */
	static const char req[] = "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
	                          "GET /one?x=1&y=%41 HTTP/1.1\r\nHost: x\r\n\r\n"
	                          "GET /two HTTP/1.1\r\nHost: x\r\n\r\n";
	struct http_test_client c = { .req = req, .len = sizeof(req) - 1, .want = 3 };
	struct http_test_resp r[3];
	http_test_exchange_parse(&h->srv, &c, r);
	assert_string_equal(r[0].body, "later");
	assert_string_equal(r[1].body, "/one?x=1&y=%41");
	assert_string_equal(r[2].body, "/two");
	assert_int_equal(h->message_calls, 3);
	http_test_resps_free(r, 3);
	free(c.buf);

	/* The same requests byte by byte. */
	h->message_calls = 0;
	struct http_test_client c2 = { .req = req, .len = sizeof(req) - 1, .want = 3, .split = 1 };
	http_test_exchange_parse(&h->srv, &c2, r);
	assert_string_equal(r[0].body, "later");
	assert_string_equal(r[1].body, "/one?x=1&y=%41");
	assert_string_equal(r[2].body, "/two");
	http_test_resps_free(r, 3);
	free(c2.buf);
}

static void test_connection_close(void **state)
{
	struct harness *h = *state;
	/* "Connection: close" and HTTP/1.0: one answer, then the server closes; a request
	 * pipelined behind a closing one is not answered. */
	static const char req[] = "GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
	struct http_test_client c = { .req = req, .len = sizeof(req) - 1, .want = 1, .until_eof = 1 };
	struct http_test_resp r[1];
	http_test_exchange_parse(&h->srv, &c, r);
	char v[64];
	assert_true(c.eof);
	assert_string_equal(r[0].body, "/a");
	assert_string_equal(http_test_header(&r[0], "Connection", v, sizeof(v)), "close");
	http_test_resps_free(r, 1);
	free(c.buf);

	static const char req10[] = "GET /ten HTTP/1.0\r\n\r\n";
	struct http_test_client c10 = { .req = req10, .len = sizeof(req10) - 1, .want = 1, .until_eof = 1 };
	http_test_exchange_parse(&h->srv, &c10, r);
	assert_true(c10.eof);
	assert_string_equal(r[0].body, "/ten");
	http_test_resps_free(r, 1);
	free(c10.buf);
	http_test_wait_closed(&h->srv);
}

static void test_chunked_response(void **state)
{
	struct harness *h = *state;
	static const char req[] = "GET /chunked HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
	struct http_test_client c = { .req = req, .len = sizeof(req) - 1, .want = 2 };
	struct http_test_resp r[2];
	http_test_exchange_parse(&h->srv, &c, r);
	char v[64];
	assert_int_equal(r[0].status, 200);
	assert_true(r[0].chunked);
	assert_string_equal(http_test_header(&r[0], "Transfer-Encoding", v, sizeof(v)), "chunked");
	assert_null(http_test_header(&r[0], "Content-Length", v, sizeof(v)));
	assert_string_equal(r[0].body, "hello world");
	/* Exact framing on the wire. */
	const char *framing = "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
	const char *body = strstr(c.buf, "\r\n\r\n") + 4;
	assert_memory_equal(body, framing, strlen(framing));
	/* The connection stays usable after the terminating chunk (the late writes went nowhere). */
	assert_int_equal(r[1].status, 200);
	assert_string_equal(r[1].body, "/next");
	http_test_resps_free(r, 2);
	free(c.buf);
}

static void assert_json_error(const struct http_test_resp *r, int status, const char *code)
{
	char v[64];
	assert_int_equal(r->status, status);
	assert_string_equal(http_test_header(r, "Content-Type", v, sizeof(v)), "application/json");
	json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")), code);
	assert_non_null(json_string_value(json_object_get(json_object_get(j, "error"), "message")));
	json_decref(j);
}

static void test_malformed_request(void **state)
{
	struct harness *h = *state;
	static const char *const bad[] = {
		"G\x01T / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
		"GET / HTTP/9.9x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_test_client c = { .req = bad[i], .len = strlen(bad[i]), .want = 1, .until_eof = 1 };
		struct http_test_resp r[1];
		http_test_exchange_parse(&h->srv, &c, r);
		assert_true(c.eof);
		assert_json_error(&r[0], 400, "bad_request");
		char v[64];
		assert_string_equal(http_test_header(&r[0], "Connection", v, sizeof(v)), "close");
		http_test_resps_free(r, 1);
		free(c.buf);
	}
	assert_int_equal(h->message_calls, 0);
	http_test_wait_closed(&h->srv);

	/* A malformed percent escape in the path: 400 from the module, handler not called. */
	static const char pct[] = "GET /a%zz HTTP/1.1\r\n\r\nGET /ok HTTP/1.1\r\n\r\n";
	struct http_test_client c = { .req = pct, .len = sizeof(pct) - 1, .want = 2 };
	struct http_test_resp r[2];
	http_test_exchange_parse(&h->srv, &c, r);
	assert_json_error(&r[0], 400, "bad_request");
	assert_string_equal(r[1].body, "/ok");
	assert_int_equal(h->message_calls, 1);
	http_test_resps_free(r, 2);
	free(c.buf);
}

static void test_url_too_long(void **state)
{
	struct harness *h = *state;
	size_t cap = HTTP_MAX_URL + 256;
	char *req = malloc(cap);
	/* A target of exactly HTTP_MAX_URL bytes is fine. */
	int n = snprintf(req, cap, "GET /");
	memset(req + n, 'a', HTTP_MAX_URL - 1);
	n += HTTP_MAX_URL - 1;
	n += snprintf(req + n, cap - (size_t)n, " HTTP/1.1\r\n\r\n");
	struct http_test_client c = { .req = req, .len = (size_t)n, .want = 1 };
	struct http_test_resp r[1];
	http_test_exchange_parse(&h->srv, &c, r);
	assert_int_equal(r[0].status, 200);
	assert_int_equal(r[0].body_len, HTTP_MAX_URL);
	http_test_resps_free(r, 1);
	free(c.buf);

	/* One byte more: 431 and the connection closes. */
	n = snprintf(req, cap, "GET /");
	memset(req + n, 'a', HTTP_MAX_URL);
	n += HTTP_MAX_URL;
	n += snprintf(req + n, cap - (size_t)n, " HTTP/1.1\r\n\r\n");
	struct http_test_client c2 = { .req = req, .len = (size_t)n, .want = 1, .until_eof = 1 };
	http_test_exchange_parse(&h->srv, &c2, r);
	assert_true(c2.eof);
	assert_json_error(&r[0], 431, "too_large");
	http_test_resps_free(r, 1);
	free(c2.buf);
	free(req);
	http_test_wait_closed(&h->srv);
}

/* A request whose header lines ("X-Pad-NNNN: value\r\n") add up to exactly `total` bytes. */
static char *padded_request(size_t total, size_t *ret_len)
{
	size_t cap = total + 256;
	char *req = malloc(cap);
	int n = snprintf(req, cap, "GET / HTTP/1.1\r\n");
	char value[101];
	memset(value, 'v', 100);
	value[100] = '\0';
	for (size_t i = 0, left = total; left; i++) {
		/* 14 bytes of name, ": " and CRLF around each value */
		size_t v = left >= 14 + 100 + 14 ? 100 : left - 14;
		n += snprintf(req + n, cap - (size_t)n, "X-Pad-%04zu: %.*s\r\n", i, (int)v, value);
		left -= 14 + v;
	}
	n += snprintf(req + n, cap - (size_t)n, "\r\n");
	*ret_len = (size_t)n;
	return req;
}

static void test_headers_too_large(void **state)
{
	struct harness *h = *state;
	/* The limit counts whole header lines: names, ": ", values and CRLFs. Exactly at the
	 * limit is fine. */
	size_t len;
	char *req = padded_request(HTTP_MAX_HEADERS, &len);
	struct http_test_client c = { .req = req, .len = len, .want = 1 };
	struct http_test_resp r[1];
	http_test_exchange_parse(&h->srv, &c, r);
	assert_int_equal(r[0].status, 200);
	http_test_resps_free(r, 1);
	free(c.buf);
	free(req);

	/* One byte more (a separator's worth): 431, and the connection closes. */
	req = padded_request(HTTP_MAX_HEADERS + 1, &len);
	struct http_test_client c2 = { .req = req, .len = len, .want = 1, .until_eof = 1 };
	http_test_exchange_parse(&h->srv, &c2, r);
	assert_true(c2.eof);
	assert_json_error(&r[0], 431, "too_large");
	http_test_resps_free(r, 1);
	free(c2.buf);
	free(req);

	/* Many tiny headers: 2 bytes of name and value, 6 on the wire each. */
	size_t cap = HTTP_MAX_HEADERS + 256;
	req = malloc(cap);
	int n = snprintf(req, cap, "GET / HTTP/1.1\r\n");
	for (size_t i = 0; i < HTTP_MAX_HEADERS / 6 + 1; i++)
		n += snprintf(req + n, cap - (size_t)n, "a: b\r\n");
	n += snprintf(req + n, cap - (size_t)n, "\r\n");
	struct http_test_client c3 = { .req = req, .len = (size_t)n, .want = 1, .until_eof = 1 };
	http_test_exchange_parse(&h->srv, &c3, r);
	assert_json_error(&r[0], 431, "too_large");
	http_test_resps_free(r, 1);
	free(c3.buf);
	free(req);
	assert_int_equal(h->message_calls, 1);
}

/* "POST <path>" with `len` body bytes of the (i % 251) pattern, then `tail`. */
static char *post_request(const char *path, size_t len, const char *tail, size_t *ret_len)
{
	size_t cap = len + 256 + strlen(tail);
	char *s = malloc(cap);
	int n = snprintf(s, cap, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", path, len);
	for (size_t i = 0; i < len; i++)
		s[n + i] = (char)(i % 251);
	memcpy(s + n + len, tail, strlen(tail));
	*ret_len = (size_t)n + len + strlen(tail);
	return s;
}

static void test_buffered_body(void **state)
{
	struct harness *h = *state;
	size_t len;
	/* Exactly the buffered limit is accepted and handed over whole. */
	char *req = post_request("/echo", HTTP_MAX_BUFFERED_BODY, "", &len);
	struct http_test_client c = { .req = req, .len = len, .want = 1 };
	struct http_test_resp r[2];
	http_test_exchange_parse(&h->srv, &c, r);
	assert_int_equal(r[0].status, 200);
	assert_int_equal(r[0].body_len, HTTP_MAX_BUFFERED_BODY);
	assert_memory_equal(r[0].body, req + len - HTTP_MAX_BUFFERED_BODY, HTTP_MAX_BUFFERED_BODY);
	http_test_resps_free(r, 1);
	free(c.buf);
	free(req);

	/* One byte more without a sink: 413, the body is dropped and the next request is answered. */
	req = post_request("/echo", HTTP_MAX_BUFFERED_BODY + 1, "GET /after HTTP/1.1\r\n\r\n", &len);
	struct http_test_client c2 = { .req = req, .len = len, .want = 2 };
	http_test_exchange_parse(&h->srv, &c2, r);
	assert_json_error(&r[0], 413, "too_large");
	assert_int_equal(r[1].status, 200);
	assert_string_equal(r[1].body, "/after");
	http_test_resps_free(r, 2);
	free(c2.buf);
	free(req);
}

static void test_body_sink(void **state)
{
	struct harness *h = *state;
	size_t len, body = 300 * 1024 + 17;
	char *req = post_request("/sink", body, "GET /after HTTP/1.1\r\n\r\n", &len);
	struct http_test_client c = { .req = req, .len = len, .want = 2, .split = 100 * 1024 };
	struct http_test_resp r[2];
	http_test_exchange_parse(&h->srv, &c, r);
	assert_int_equal(r[0].status, 200);
	json_t *j = json_loadb(r[0].body, r[0].body_len, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "bytes")), body);
	assert_int_equal(json_integer_value(json_object_get(j, "bad")), 0);
	/* Reads are at most 64 KiB: the body came in several pieces and was not buffered. */
	assert_true(json_integer_value(json_object_get(j, "pieces")) >= 5);
	assert_true(json_is_false(json_object_get(j, "buffered")));
	json_decref(j);
	assert_string_equal(r[1].body, "/after");
	http_test_resps_free(r, 2);
	free(c.buf);
	free(req);

	/* A sink takes bodies over the buffered limit too. */
	h->sink_pieces = h->sink_bytes = h->sink_bad = 0;
	body = HTTP_MAX_BUFFERED_BODY * 2;
	req = post_request("/sink", body, "", &len);
	struct http_test_client c2 = { .req = req, .len = len, .want = 1 };
	http_test_exchange_parse(&h->srv, &c2, r);
	assert_int_equal(r[0].status, 200);
	assert_int_equal(h->sink_bytes, body);
	assert_int_equal(h->sink_bad, 0);
	http_test_resps_free(r, 1);
	free(c2.buf);
	free(req);
}

static void test_early_response(void **state)
{
	struct harness *h = *state;
	size_t len;
	char *req = post_request("/early", 200000, "GET /after HTTP/1.1\r\n\r\n", &len);
	struct http_test_client c = { .req = req, .len = len, .want = 2, .split = 4096 };
	struct http_test_resp r[2];
	http_test_exchange_parse(&h->srv, &c, r);
	assert_json_error(&r[0], 403, "forbidden");
	assert_int_equal(r[1].status, 200);
	assert_string_equal(r[1].body, "/after");
	/* The early-answered request never reached the message handler. */
	assert_int_equal(h->headers_calls, 2);
	assert_int_equal(h->message_calls, 1);
	http_test_resps_free(r, 2);
	free(c.buf);
	free(req);
}

static long maxrss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

#define MANY_REQUESTS 3000

/* The child half of test_many_pipelined: 0 all answered in order within bounded memory,
 * 2 answered but memory grew with the square of the pipelined bytes, 1 wrong answers. */
static int many_pipelined_child(void)
{
	void *st;
	if (setup(&st) < 0)
		return 1;
	struct harness *h = st;
	static const char one[] = "GET /p HTTP/1.1\r\n\r\n";
	size_t len = (sizeof(one) - 1) * MANY_REQUESTS;
	char *req = malloc(len);
	for (size_t i = 0; i < MANY_REQUESTS; i++)
		memcpy(req + i * (sizeof(one) - 1), one, sizeof(one) - 1);
	long before = maxrss_kb();
	struct http_test_client c = { .req = req, .len = len, .want = MANY_REQUESTS };
	http_test_exchange(&h->srv, &c);
	long grown = maxrss_kb() - before;
	int n = http_test_parse_all(c.buf, c.got, 0, NULL, MANY_REQUESTS, NULL);
	int rc = n == MANY_REQUESTS && h->message_calls == MANY_REQUESTS ? 0 : 1;
	if (rc == 0 && grown > 32 * 1024) {
		print_message("BUG: runnerd/http.c feed()/maybe_next(): %d pipelined requests (%zu bytes) "
		              "raised peak RSS by %ld KiB: every request re-copies the unparsed rest into "
		              "conn->pending and recurses (feed -> maybe_next -> feed) while each frame "
		              "still holds its copy, so memory and stack grow with the square/count of "
		              "pipelined requests\n", MANY_REQUESTS, len, grown);
		rc = 2;
	}
	free(c.buf);
	free(req);
	teardown(&st);
	return rc;
}

static void test_many_pipelined(void **state)
{
	(void)state;
	/* In a child: the failure mode is memory/stack exhaustion, which must not take the
	 * rest of the suite down. */
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(many_pipelined_child());
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
		skip();
	if (!WIFEXITED(status))
		print_error("child died with signal %d\n", WTERMSIG(status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_query_get(void **state)
{
	(void)state;
	static const struct {
		const char *query, *name, *want;
	} rows[] = {
		{ "a=1&b=%41%42c&c=&d", "a", "1" },
		{ "a=1&b=%41%42c&c=&d", "b", "ABc" },
		{ "a=1&b=%41%42c&c=&d", "c", "" },
		{ "a=1&b=%41%42c&c=&d", "d", "" },
		{ "a=1&b=%41%42c&c=&d", "e", NULL },
		{ "ab=1&a=2", "a", "2" },
		{ "a=1", "ab", NULL },
		{ "x=a+b%2Fc%2f", "x", "a+b/c/" },
		{ "x=%zz", "x", NULL },
		{ "x=%4", "x", NULL },
		{ "x=%", "x", NULL },
		{ "x=%00", "x", NULL },
		{ "x=%e2%82%ac", "x", "\xe2\x82\xac" },
		{ "&&x=1", "x", "1" },
		{ "", "x", NULL },
		{ NULL, "x", NULL },
		{ "x=1&x=2", "x", "1" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *v = http_query_get(rows[i].query, rows[i].name);
		if (!rows[i].want) {
			if (v)
				print_error("row %zu: got '%s', wanted NULL\n", i, v);
			assert_null(v);
		} else {
			assert_non_null(v);
			assert_string_equal(v, rows[i].want);
		}
		free(v);
	}
}

static void test_attach_release(void **state)
{
	struct harness *h = *state;
	/* The handler attaches an object and never answers; the client hangs up. */
	static const char req[] = "GET /hold HTTP/1.1\r\n\r\n";
	struct http_test_client c = { .req = req, .len = sizeof(req) - 1, .want = 0 };
	http_test_exchange(&h->srv, &c);
	wait_for(h, &h->released);
	assert_int_equal(h->released, 1);
	http_test_wait_closed(&h->srv);
	assert_int_equal(h->released, 1);
	free(c.buf);

	/* Detached (attach NULL) objects are not released. */
	static const char req2[] = "GET /detach HTTP/1.1\r\n\r\n";
	struct http_test_client c2 = { .req = req2, .len = sizeof(req2) - 1, .want = 1 };
	struct http_test_resp r[1];
	http_test_exchange_parse(&h->srv, &c2, r);
	assert_int_equal(r[0].status, 204);
	http_test_resps_free(r, 1);
	free(c2.buf);
	http_test_wait_closed(&h->srv);
	assert_int_equal(h->released, 1);
}

/* What the server has written to `fd` so far (it writes synchronously when it can). */
static size_t read_some(int fd, char *buf, size_t cap)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 20000), 1); /* safety net only */
	ssize_t n = recv(fd, buf, cap - 1, MSG_DONTWAIT);
	assert_true(n > 0);
	buf[n] = '\0';
	return (size_t)n;
}

static void test_expect_continue(void **state)
{
	struct harness *h = *state;
	char buf[4096];
	/* The body is wanted: "100 Continue" first, then the answer to the whole message. */
	int fd = http_test_connect(&h->srv);
	static const char head[] = "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
	assert_int_equal(write(fd, head, sizeof(head) - 1), (ssize_t)(sizeof(head) - 1));
	while (h->headers_calls == 0)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
	read_some(fd, buf, sizeof(buf));
	assert_string_equal(buf, "HTTP/1.1 100 Continue\r\n\r\n");
	assert_int_equal(write(fd, "hello", 5), 5);
	while (h->message_calls == 0)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
	size_t n = read_some(fd, buf, sizeof(buf));
	struct http_test_resp r;
	assert_int_equal(http_test_parse(buf, n, 0, &r), 1);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "hello");
	free(r.body);
	close(fd);

	/* Refused from the headers (too large for a buffered body): 413 and no 100 Continue. */
	fd = http_test_connect(&h->srv);
	static const char big[] = "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n";
	assert_int_equal(write(fd, big, sizeof(big) - 1), (ssize_t)(sizeof(big) - 1));
	while (h->headers_calls < 2)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
	n = read_some(fd, buf, sizeof(buf));
	assert_int_equal(http_test_parse(buf, n, 0, &r), 1);
	assert_json_error(&r, 413, "too_large");
	assert_int_equal(r.raw_len, n);
	free(r.body);
	close(fd);
	http_test_wait_closed(&h->srv);
	assert_int_equal(h->message_calls, 1);
}

static void test_close_all_releases(void **state)
{
	struct harness *h = *state;
	/* A held request with the client still connected: close_all releases it once. */
	int fd = http_test_connect(&h->srv);
	static const char req[] = "GET /hold HTTP/1.1\r\n\r\n";
	assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
	while (h->message_calls == 0)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
	assert_int_equal(h->srv.set.count, 1);
	http_conn_close_all(&h->srv.set);
	assert_int_equal(h->released, 1);
	http_test_wait_closed(&h->srv);
	assert_int_equal(h->released, 1);
	/* The client sees the server hang up without an answer. */
	char b[16];
	assert_int_equal(read(fd, b, sizeof(b)), 0);
	close(fd);
}

/* ---- time limits and half-close (the server loop runs; the test drives a raw client socket) ---- */

static void on_clock(uv_timer_t *t)
{
	struct harness *h = t->data;
	h->rang = 1;
}

/* Run the server loop for `ms`. */
static void run_for(struct harness *h, uint64_t ms)
{
	h->rang = 0;
	uv_timer_start(&h->clock, on_clock, ms, 0);
	while (!h->rang)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
}

/* Run the server loop until it has closed every connection; false if some is still open
 * after `ms` (a safety net for a test that would otherwise hang, not a timing check). */
static int all_closed_within(struct harness *h, uint64_t ms)
{
	h->rang = 0;
	uv_timer_start(&h->clock, on_clock, ms, 0);
	while (h->srv.set.count && !h->rang)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
	uv_timer_stop(&h->clock);
	return h->srv.set.count == 0;
}

/* Read what `fd` has (the server loop running meanwhile) until EOF or `want` bytes; at most
 * ~20 s. Reads at most `per_read` bytes every `pace_ms`. Returns the bytes (malloc'd, NUL-ended). */
static char *read_paced(struct harness *h, int fd, size_t want, size_t per_read, uint64_t pace_ms,
                        size_t *ret_len, int *ret_eof)
{
	size_t got = 0, cap = 0;
	char *buf = NULL;
	*ret_eof = 0;
	for (uint64_t waited = 0; waited < 20000 && got < want; waited += pace_ms) {
		run_for(h, pace_ms);
		if (got + per_read + 1 > cap) {
			cap = (got + per_read + 1) * 2;
			buf = realloc(buf, cap);
		}
		ssize_t n = recv(fd, buf + got, per_read, MSG_DONTWAIT);
		if (n == 0) {
			*ret_eof = 1;
			break;
		}
		if (n > 0)
			got += (size_t)n;
	}
	if (!buf)
		buf = malloc(1);
	buf[got] = '\0';
	*ret_len = got;
	return buf;
}

/* A connected client socket, once the server has accepted it. */
static int connect_accepted(struct harness *h)
{
	unsigned before = h->srv.set.count;
	int fd = http_test_connect(&h->srv);
	while (h->srv.set.count == before)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
	return fd;
}

static void send_all(int fd, const char *s)
{
	size_t len = strlen(s);
	assert_int_equal(send(fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* A client that sends `s` at once, then waits until the server has accepted it: the bytes
 * are there before any of the server's timers start, however late this process runs
 * (a loaded machine can deschedule it for longer than a short timeout). */
static int connect_send(struct harness *h, const char *s)
{
	unsigned before = h->srv.set.count;
	int fd = http_test_connect(&h->srv);
	send_all(fd, s);
	while (h->srv.set.count == before)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
	return fd;
}

static void test_header_timeout(void **state)
{
	struct harness *h = *state;
	h->srv.set.limits = (struct http_limits){ .header_timeout_ms = 400, .idle_timeout_ms = 60000 };
	/* A connection that never sends a byte is closed without a word. */
	int fd = connect_accepted(h);
	assert_true(all_closed_within(h, 20000));
	char b[512];
	assert_int_equal(recv(fd, b, sizeof(b), 0), 0);
	close(fd);

	/* A head that trickles in byte by byte (each far within the idle timeout) is due by
	 * the header timeout all the same: 408, then the connection closes. */
	fd = connect_send(h, "GET /hello HTTP/1.1\r\nX-Slow: ");
	/* The server may have answered and closed between a check and a send (the connection
	 * is counted until its handle has closed): a refused send ends the trickle, not the test. */
	int peer_closed = 0;
	for (int i = 0; i < 200 && h->srv.set.count; i++) {
		run_for(h, 50);
		if (h->srv.set.count && !peer_closed && send(fd, "a", 1, MSG_NOSIGNAL) != 1)
			peer_closed = 1;
	}
	assert_int_equal(h->srv.set.count, 0);
	ssize_t n = recv(fd, b, sizeof(b) - 1, 0);
	assert_true(n > 0);
	struct http_test_resp r;
	assert_int_equal(http_test_parse(b, (size_t)n, 0, &r), 1);
	assert_json_error(&r, 408, "request_timeout");
	free(r.body);
	close(fd);
	assert_int_equal(h->message_calls, 0);
	assert_int_equal(h->srv.set.busy, 0);
}

static void test_keepalive_timeout(void **state)
{
	struct harness *h = *state;
	h->srv.set.limits = (struct http_limits){ .header_timeout_ms = 60000, .idle_timeout_ms = 400 };
	int fd = connect_send(h, "GET /hello HTTP/1.1\r\n\r\n");
	size_t len;
	int eof;
	char *got = read_paced(h, fd, 1, 4096, 10, &len, &eof);
	assert_non_null(strstr(got, "200 OK"));
	free(got);
	assert_int_equal(h->srv.set.busy, 0);
	/* Stray CRLFs between requests are no request: they do not keep the connection open. */
	for (int i = 0; i < 200 && h->srv.set.count; i++) {
		run_for(h, 50);
		if (h->srv.set.count)
			send(fd, "\r\n", 2, MSG_NOSIGNAL);
	}
	assert_int_equal(h->srv.set.count, 0);
	got = read_paced(h, fd, 1, 4096, 10, &len, &eof);
	assert_true(eof);
	assert_int_equal(len, 0); /* closed without a word */
	free(got);
	close(fd);
	assert_int_equal(h->message_calls, 1);
}

static void test_body_idle(void **state)
{
	struct harness *h = *state;
	h->srv.set.limits = (struct http_limits){ .header_timeout_ms = 1000, .idle_timeout_ms = 1000 };
	/* An upload that keeps coming is never idle, however long it takes in all. */
	int fd = connect_send(h, "POST /sink HTTP/1.1\r\nContent-Length: 16\r\n\r\n");
	for (int i = 0; i < 16; i++) {
		run_for(h, 100);
		char c = (char)(i % 251);
		assert_int_equal(send(fd, &c, 1, MSG_NOSIGNAL), 1);
		assert_int_equal(h->srv.set.busy, 1);
	}
	size_t len;
	int eof;
	char *got = read_paced(h, fd, 1, 4096, 10, &len, &eof);
	struct http_test_resp r;
	assert_int_equal(http_test_parse(got, len, 0, &r), 1);
	assert_int_equal(r.status, 200);
	json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 16);
	assert_int_equal(json_integer_value(json_object_get(j, "bad")), 0);
	json_decref(j);
	free(r.body);
	free(got);
	assert_int_equal(h->srv.set.busy, 0);
	close(fd);
	http_test_wait_closed(&h->srv);

	/* A body that stops coming: 408 and closed. */
	fd = connect_send(h, "POST /sink HTTP/1.1\r\nContent-Length: 10\r\n\r\nab");
	assert_true(all_closed_within(h, 20000));
	got = read_paced(h, fd, 1, 4096, 10, &len, &eof);
	assert_int_equal(http_test_parse(got, len, 0, &r), 1);
	assert_json_error(&r, 408, "request_timeout");
	free(r.body);
	free(got);
	close(fd);
	assert_int_equal(h->message_calls, 1);
	assert_int_equal(h->srv.set.busy, 0);
}

static void test_handler_turn_not_idle(void **state)
{
	struct harness *h = *state;
	/* The handler answers well after both timeouts: waiting on it is not idleness. */
	h->srv.set.limits = (struct http_limits){ .header_timeout_ms = 300, .idle_timeout_ms = 300 };
	h->later_ms = 1000;
	int fd = connect_send(h, "GET /slow HTTP/1.1\r\n\r\n");
	size_t len;
	int eof;
	char *got = read_paced(h, fd, 1, 4096, 10, &len, &eof);
	struct http_test_resp r;
	assert_int_equal(http_test_parse(got, len, 0, &r), 1);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "later");
	free(r.body);
	free(got);
	close(fd);
	http_test_wait_closed(&h->srv);
}

static void test_send_idle(void **state)
{
	struct harness *h = *state;
	h->srv.set.limits = (struct http_limits){ .header_timeout_ms = 60000, .idle_timeout_ms = 500 };
	h->big_len = 4 * 1024 * 1024;
	/* A slow reader that keeps reading gets its whole answer (one write that takes far
	 * longer than the idle timeout to complete). */
	int fd = connect_send(h, "GET /big HTTP/1.1\r\n\r\n");
	size_t len;
	int eof;
	char *got = read_paced(h, fd, SIZE_MAX, 128 * 1024, 50, &len, &eof);
	struct http_test_resp r;
	int k = http_test_parse(got, len, 0, &r);
	if (k != 1)
		print_error("got %zu bytes, eof %d\n", len, eof);
	assert_int_equal(k, 1);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, h->big_len);
	free(r.body);
	free(got);
	close(fd);
	http_test_wait_closed(&h->srv);

	/* A peer that never reads its answer is closed. */
	fd = connect_send(h, "GET /big HTTP/1.1\r\n\r\n");
	assert_true(all_closed_within(h, 20000));
	close(fd);
}

static void test_half_close(void **state)
{
	struct harness *h = *state;
	/* Request, then shutdown(SHUT_WR): the answer (from a timer, well after the EOF) still
	 * comes, then the server closes. */
	h->later_ms = 200;
	int fd = connect_send(h, "GET /slow HTTP/1.1\r\n\r\n");
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	size_t len;
	int eof;
	char *got = read_paced(h, fd, SIZE_MAX, 4096, 10, &len, &eof);
	assert_true(eof);
	struct http_test_resp r;
	assert_int_equal(http_test_parse(got, len, 0, &r), 1);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "later");
	assert_int_equal(r.raw_len, len);
	free(r.body);
	free(got);
	close(fd);
	http_test_wait_closed(&h->srv);

	/* Pipelined requests before the half-close are all answered, in order. */
	fd = connect_send(h, "GET /slow HTTP/1.1\r\n\r\nGET /two HTTP/1.1\r\n\r\n");
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	got = read_paced(h, fd, SIZE_MAX, 4096, 10, &len, &eof);
	assert_true(eof);
	struct http_test_resp rs[2];
	size_t used;
	assert_int_equal(http_test_parse_all(got, len, 0, rs, 2, &used), 2);
	assert_int_equal(used, len);
	assert_string_equal(rs[0].body, "later");
	assert_string_equal(rs[1].body, "/two");
	http_test_resps_free(rs, 2);
	free(got);
	close(fd);

	/* A request cut short by the half-close is not answered: the server just closes. */
	fd = connect_send(h, "GET /hello HTTP/1.1\r\nHost:");
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	got = read_paced(h, fd, SIZE_MAX, 4096, 10, &len, &eof);
	assert_true(eof);
	assert_int_equal(len, 0);
	free(got);
	close(fd);
	http_test_wait_closed(&h->srv);
	assert_int_equal(h->srv.set.busy, 0);
}

static void test_body_hold(void **state)
{
	struct harness *h = *state;
	h->srv.set.limits = (struct http_limits){ .header_timeout_ms = 1000, .idle_timeout_ms = 300 };
	static const char body[8] = {0, 1, 2, 3, 4, 5, 6, 7}; /* what sink_data checks */
	int fd = connect_send(h, "POST /holdsink HTTP/1.1\r\nContent-Length: 8\r\n\r\n");
	assert_int_equal(send(fd, body, 2, MSG_NOSIGNAL), 2);
	while (!h->sink_pieces)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
	assert_int_equal(h->sink_bytes, 2);
	/* Held: the rest of the body waits in the socket, and a hold is no idle body (several
	 * idle timeouts pass without a 408). */
	assert_int_equal(send(fd, body + 2, 6, MSG_NOSIGNAL), 6);
	send_all(fd, "GET /hello HTTP/1.1\r\n\r\n");
	run_for(h, 1200);
	assert_int_equal(h->srv.set.count, 1);
	assert_int_equal(h->sink_bytes, 2);
	char b[64];
	assert_int_equal(recv(fd, b, sizeof(b), MSG_DONTWAIT), -1);
	/* Released: the rest comes in (the sink holds again on it), the request is answered,
	 * and so is the next one on the same connection: the end of the body ended the hold. */
	http_conn_release_input(h->holding);
	while (h->message_calls < 2)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
	size_t len;
	int eof;
	char *got = read_paced(h, fd, 1, 4096, 10, &len, &eof);
	struct http_test_resp rs[2];
	assert_int_equal(http_test_parse_all(got, len, 0, rs, 2, NULL), 2);
	assert_int_equal(rs[0].status, 200);
	json_t *j = json_loadb(rs[0].body, rs[0].body_len, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 8);
	assert_int_equal(json_integer_value(json_object_get(j, "bad")), 0);
	json_decref(j);
	assert_string_equal(rs[1].body, "hello\n");
	http_test_resps_free(rs, 2);
	free(got);
	close(fd);
	http_test_wait_closed(&h->srv); /* the client's close is seen: nothing holds the input */

	/* A response before the body is in ends a hold too: the rest is read and dropped. */
	h->sink_pieces = h->sink_bytes = 0;
	fd = connect_send(h, "POST /holdsink HTTP/1.1\r\nContent-Length: 8\r\n\r\n");
	assert_int_equal(send(fd, body, 2, MSG_NOSIGNAL), 2);
	while (!h->sink_pieces)
		uv_run(&h->srv.loop, UV_RUN_ONCE);
	http_respond_error(h->holding, 507, "insufficient_storage", "disk full");
	assert_int_equal(send(fd, body + 2, 6, MSG_NOSIGNAL), 6);
	send_all(fd, "GET /hello HTTP/1.1\r\n\r\n");
	got = read_paced(h, fd, SIZE_MAX, 4096, 10, &len, &eof);
	assert_int_equal(http_test_parse_all(got, len, 0, rs, 2, NULL), 2);
	assert_json_error(&rs[0], 507, "insufficient_storage");
	assert_string_equal(rs[1].body, "hello\n");
	http_test_resps_free(rs, 2);
	free(got);
	assert_int_equal(h->sink_bytes, 2);
	close(fd);
	http_test_wait_closed(&h->srv);
}

int main(void)
{
	/* As runnerd's main() does: a peer that hangs up must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_simple_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_no_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunked_response, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_url_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_headers_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buffered_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_sink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_early_response, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
		cmocka_unit_test(test_many_pipelined),
		cmocka_unit_test(test_query_get),
		cmocka_unit_test_setup_teardown(test_attach_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_all_releases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keepalive_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_idle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handler_turn_not_idle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_idle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_hold, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
