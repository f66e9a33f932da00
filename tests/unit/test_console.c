/*
 * test_console.c — a run's console log: the size cap, and followers streaming
 * from the file over a real HTTP connection (a Unix listener on a real libuv
 * loop, a client thread reading the raw chunked response; http_testlib.h):
 * from an offset of a finished file, from a live console until it ends, and a
 * follower whose client hangs up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "console.h"
#include "http.h"
#include "http_testlib.h"

/* ---- the server side ---- */

struct harness {
	struct http_test_server srv;
	char file[128];    /* a finished console log */
	char *content;     /* its bytes */
	size_t content_len;
	struct console con; /* a live console */
	int con_open;
	int started;       /* follow requests that started */
	int follow_err;
};

static void on_headers(void *ctx, struct http_conn *conn, struct http_request *req)
{
	(void)ctx;
	(void)conn;
	(void)req;
}

static void on_message(void *ctx, struct http_conn *conn, struct http_request *req)
{
	struct harness *h = ctx;
	char *o = http_query_get(req->query, "offset");
	uint64_t offset = o ? strtoull(o, NULL, 10) : 0;
	free(o);
	int r;
	if (strcmp(req->path, "/file") == 0)
		r = console_follow_start(NULL, h->file, conn, offset);
	else if (strcmp(req->path, "/live") == 0)
		r = console_follow_start(&h->con, h->con.path, conn, offset);
	else
		r = console_follow_start(NULL, req->path, conn, offset);
	if (r < 0) {
		h->follow_err = r;
		http_respond_error(conn, 404, "console_not_found", "%s", strerror(-r));
		return;
	}
	h->started++;
}

static int setup(void **state)
{
	struct harness *h = calloc(1, sizeof(*h));
	struct http_handler handler = { .headers = on_headers, .message = on_message, .ctx = h };
	if (!h || http_test_server_init(&h->srv, "console", &handler) < 0)
		return -1;
	snprintf(h->file, sizeof(h->file), "%s/finished.log", h->srv.dir);

	/* A finished log larger than the follower's high-water mark, so the stream must
	 * wait for the socket to drain several times. */
	h->content_len = 700 * 1024 + 3;
	h->content = malloc(h->content_len);
	for (size_t i = 0; i < h->content_len; i++)
		h->content[i] = (char)('a' + i % 23);
	struct console con;
	if (console_open(&con, h->file, 0) < 0)
		return -1;
	console_append(&con, h->content, h->content_len);
	console_end(&con);
	console_close(&con);
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	struct harness *h = *state;
	if (h->con_open)
		console_close(&h->con);
	http_test_server_fini(&h->srv);
	free(h->content);
	free(h);
	return 0;
}

/* Start `c` on a GET of `target`; the test runs the loop (http_test_client_finish). */
static void client_start(struct harness *h, struct http_test_client *c, const char *target)
{
	http_test_client_get(c, target);
	http_test_client_start(&h->srv, c);
}

/* The body of the one complete chunked 200 response `c` received (the caller frees it). */
static char *stream_body(const struct http_test_client *c, size_t *ret_len)
{
	struct http_test_resp r = { 0 };
	size_t used = 0;
	int n = http_test_parse_all(c->buf, c->got, 0, &r, 1, &used);
	if (n != 1 || used != c->got || !r.chunked)
		print_error("not one complete chunked response (%d, %zu of %zu bytes): %.300s\n", n, used, c->got,
		            c->buf ? c->buf : "");
	assert_int_equal(n, 1);
	assert_int_equal(used, c->got);
	assert_true(r.chunked);
	assert_int_equal(r.status, 200);
	*ret_len = r.body_len;
	return r.body;
}

/* GET `target` and expect a chunked 200 whose body is `want`. */
static void expect_stream(struct harness *h, const char *target, const char *want, size_t want_len)
{
	struct http_test_client c = { .want = 1 };
	client_start(h, &c, target);
	http_test_client_finish(&h->srv, &c);
	size_t blen = 0;
	char *body = stream_body(&c, &blen);
	assert_int_equal(blen, want_len);
	if (want_len)
		assert_memory_equal(body, want, want_len);
	free(body);
	free(c.buf);
}

/* ---- tests ---- */

static void test_cap(void **state)
{
	struct harness *h = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s/capped.log", h->srv.dir);
	struct console con;
	assert_int_equal(console_open(&con, path, 10), 0);
	console_append(&con, "hello", 5);
	assert_int_equal(con.size, 5);
	assert_int_equal(con.dropped, 0);
	console_append(&con, "", 0);
	assert_int_equal(con.size, 5);
	console_append(&con, "world!!", 7);
	assert_int_equal(con.size, 10);
	assert_int_equal(con.dropped, 2);
	console_append(&con, "x", 1);
	assert_int_equal(con.size, 10);
	assert_int_equal(con.dropped, 3);
	console_end(&con);
	assert_true(con.ended);
	console_close(&con);
	assert_int_equal(con.fd, -1);
	assert_null(con.path);

	char buf[64] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 10);
	close(fd);
	assert_string_equal(buf, "helloworld");

	/* cap 0: unlimited; reopening truncates. */
	assert_int_equal(console_open(&con, path, 0), 0);
	char big[100000];
	memset(big, 'q', sizeof(big));
	for (int i = 0; i < 30; i++)
		console_append(&con, big, sizeof(big));
	assert_int_equal(con.size, 30 * sizeof(big));
	assert_int_equal(con.dropped, 0);
	console_end(&con);
	console_close(&con);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 30 * sizeof(big));

	/* A log in a missing directory. */
	snprintf(path, sizeof(path), "%s/no/such.log", h->srv.dir);
	assert_int_equal(console_open(&con, path, 0), -ENOENT);
}

static void test_follow_finished_file(void **state)
{
	struct harness *h = *state;
	static const uint64_t offsets[] = { 0, 1, 12345, 256 * 1024, 700 * 1024 };
	char target[128];
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		snprintf(target, sizeof(target), "/file?offset=%" PRIu64, offsets[i]);
		expect_stream(h, target, h->content + offsets[i], h->content_len - offsets[i]);
	}
	/* At and past the end: an empty, well-terminated stream. */
	snprintf(target, sizeof(target), "/file?offset=%zu", h->content_len);
	expect_stream(h, target, NULL, 0);
	snprintf(target, sizeof(target), "/file?offset=%zu", h->content_len + 100);
	expect_stream(h, target, NULL, 0);
	assert_int_equal(h->started, 7);
	http_test_wait_closed(&h->srv);
}

static void test_follow_missing_file(void **state)
{
	struct harness *h = *state;
	struct http_test_client c = { .want = 1 };
	char target[160];
	snprintf(target, sizeof(target), "%s/nothing.log", h->srv.dir);
	client_start(h, &c, target);
	http_test_client_finish(&h->srv, &c);
	assert_int_equal(h->follow_err, -ENOENT);
	assert_non_null(c.buf);
	assert_non_null(strstr(c.buf, "HTTP/1.1 404 "));
	free(c.buf);
}

/* Step the loop until `cond` holds. */
#define RUN_UNTIL(h, cond)                                   \
	do {                                                 \
		while (!(cond))                              \
			uv_run(&(h)->srv.loop, UV_RUN_ONCE); \
	} while (0)

/* Open the live console NAME in the test dir, starting with `len` bytes of `first`. */
static void live_open(struct harness *h, const char *name, const char *first, size_t len)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/%s", h->srv.dir, name);
	assert_int_equal(console_open(&h->con, path, 0), 0);
	h->con_open = 1;
	console_append(&h->con, first, len);
}

static void live_close(struct harness *h)
{
	console_close(&h->con);
	h->con_open = 0;
}

static void test_follow_live(void **state)
{
	struct harness *h = *state;
	live_open(h, "live.log", "abc", 3);

	struct http_test_client c = { .want = 1 };
	client_start(h, &c, "/live?offset=1");
	RUN_UNTIL(h, h->started == 1);
	assert_non_null(h->con.followers);
	/* More bytes, including a piece bigger than the high-water mark, then the end. */
	console_append(&h->con, "def", 3);
	size_t big_len = 600 * 1024;
	char *big = malloc(big_len);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (char)('A' + i % 26);
	console_append(&h->con, big, big_len);
	console_end(&h->con);
	http_test_client_finish(&h->srv, &c);
	assert_null(h->con.followers);

	size_t blen;
	char *body = stream_body(&c, &blen);
	assert_int_equal(blen, 5 + big_len);
	assert_memory_equal(body, "bcdef", 5);
	assert_memory_equal(body + 5, big, big_len);
	free(body);
	free(c.buf);
	free(big);
	live_close(h);
}

static void test_follow_live_then_close(void **state)
{
	struct harness *h = *state;
	live_open(h, "closing.log", "0123456789", 10);
	struct http_test_client c = { .want = 1 };
	client_start(h, &c, "/live?offset=4");
	RUN_UNTIL(h, h->started == 1);
	console_append(&h->con, "tail", 4);
	/* Closed without console_end (the run's record is final): the follower finishes
	 * from the file alone at the size the console reached. */
	live_close(h);
	http_test_client_finish(&h->srv, &c);
	size_t blen;
	char *body = stream_body(&c, &blen);
	assert_int_equal(blen, 10);
	assert_memory_equal(body, "456789tail", 10);
	free(body);
	free(c.buf);
}

static void test_follower_hangs_up(void **state)
{
	struct harness *h = *state;
	live_open(h, "hangup.log", "abc", 3);
	/* want 0: the client writes its request and hangs up. */
	struct http_test_client c = { .want = 0 };
	client_start(h, &c, "/live");
	http_test_client_finish(&h->srv, &c);
	RUN_UNTIL(h, h->started == 1);
	/* The connection closes on the hang-up and releases its follower. */
	RUN_UNTIL(h, h->srv.set.count == 0);
	assert_null(h->con.followers);
	/* The console goes on without it. */
	console_append(&h->con, "more", 4);
	console_end(&h->con);
	assert_int_equal(h->con.size, 7);
	live_close(h);
}

int main(void)
{
	/* As runnerd's main() does: a peer that hangs up must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follow_finished_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follow_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follow_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follow_live_then_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follower_hangs_up, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
