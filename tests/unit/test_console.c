/*
 * test_console.c — a run's console log: the size cap, and followers streaming
 * from the file over a real HTTP connection (a Unix listener on a real libuv
 * loop, a client thread reading the raw chunked response): from an offset of
 * a finished file, from a live console until it ends, and a follower whose
 * client hangs up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "console.h"
#include "http.h"

/* ---- a raw HTTP client on its own thread ---- */

struct client {
	char sock[96];
	uv_async_t *wake;
	char req[256];
	int hang_up;      /* write the request and close at once */
	char *buf;
	size_t got;
	int failed;
};

/* Decode a complete chunked response in `buf`: 1 done (body in *ret_body), 0 incomplete,
 * -1 malformed. *ret_status gets the status. */
static int decode_chunked(const char *buf, size_t len, int *ret_status, char **ret_body,
                          size_t *ret_len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	if (!end)
		return 0;
	if (sscanf(buf, "HTTP/1.1 %d ", ret_status) != 1)
		return -1;
	if (!memmem(buf, (size_t)(end - buf) + 2, "\r\nTransfer-Encoding: chunked\r\n", 30))
		return -1;
	size_t pos = (size_t)(end - buf) + 4, blen = 0;
	char *body = NULL;
	for (;;) {
		const char *crlf = memmem(buf + pos, len - pos, "\r\n", 2);
		if (!crlf)
			break;
		char *stop;
		size_t n = strtoul(buf + pos, &stop, 16);
		if (stop != crlf || stop == buf + pos)
			goto bad;
		pos = (size_t)(crlf - buf) + 2;
		if (len - pos < n + 2)
			break;
		if (memcmp(buf + pos + n, "\r\n", 2) != 0)
			goto bad;
		if (n == 0) {
			if (pos + 2 != len)
				goto bad; /* bytes after the end of the stream */
			*ret_body = body;
			*ret_len = blen;
			return 1;
		}
		body = realloc(body, blen + n + 1);
		memcpy(body + blen, buf + pos, n);
		blen += n;
		pos += n + 2;
	}
	free(body);
	return 0;
bad:
	free(body);
	return -1;
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->sock);
	size_t cap = 0, len = strlen(c->req);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    send(fd, c->req, len, MSG_NOSIGNAL) != (ssize_t)len) {
		c->failed = 1;
		goto out;
	}
	while (!c->hang_up) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 20000) <= 0) { /* a safety net, not a timing assertion */
			c->failed = 1;
			break;
		}
		if (c->got + 65536 > cap) {
			cap = (c->got + 65536) * 2;
			c->buf = realloc(c->buf, cap + 1);
		}
		ssize_t n = recv(fd, c->buf + c->got, cap - c->got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		c->got += (size_t)n;
		int st;
		char *body = NULL;
		size_t blen;
		int k = decode_chunked(c->buf, c->got, &st, &body, &blen);
		free(body);
		if (k != 0)
			break;
		/* A plain (error) response is complete at its Content-Length. */
		const char *e = memmem(c->buf, c->got, "\r\n\r\n", 4);
		const char *cl = e ? memmem(c->buf, (size_t)(e - c->buf), "Content-Length: ", 16) : NULL;
		if (cl && c->got - (size_t)(e + 4 - c->buf) >= strtoul(cl + 16, NULL, 10))
			break;
	}
out:
	if (fd >= 0)
		close(fd);
	uv_async_send(c->wake);
	return NULL;
}

/* ---- the server side ---- */

struct harness {
	uv_loop_t loop;
	uv_pipe_t listener;
	uv_async_t wake;
	struct http_conn_set set;
	struct http_handler handler;
	char dir[64];
	char sock[96];
	char file[128];    /* a finished console log */
	char *content;     /* its bytes */
	size_t content_len;
	struct console con; /* a live console */
	int con_open;
	int started;       /* follow requests that started */
	int follow_err;
	int client_done;
};

static void on_wake(uv_async_t *a)
{
	((struct harness *)a->data)->client_done = 1;
}

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

static void on_connection(uv_stream_t *server, int status)
{
	struct harness *h = server->data;
	assert_int_equal(status, 0);
	assert_int_equal(http_conn_accept(&h->loop, server, 0, &h->handler, &h->set), 0);
}

static int setup(void **state)
{
	struct harness *h = calloc(1, sizeof(*h));
	strcpy(h->dir, "/tmp/ukrun-test-console-XXXXXX");
	if (!mkdtemp(h->dir))
		return -1;
	snprintf(h->sock, sizeof(h->sock), "%s/s", h->dir);
	snprintf(h->file, sizeof(h->file), "%s/finished.log", h->dir);
	uv_loop_init(&h->loop);
	uv_pipe_init(&h->loop, &h->listener, 0);
	h->listener.data = h;
	if (uv_pipe_bind(&h->listener, h->sock) < 0 ||
	    uv_listen((uv_stream_t *)&h->listener, 16, on_connection) < 0)
		return -1;
	uv_async_init(&h->loop, &h->wake, on_wake);
	h->wake.data = h;
	h->handler = (struct http_handler){ .headers = on_headers, .message = on_message, .ctx = h };

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

static void rm_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		if (e->d_name[0] != '.')
			unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(path);
}

static int teardown(void **state)
{
	struct harness *h = *state;
	if (h->con_open)
		console_close(&h->con);
	http_conn_close_all(&h->set);
	uv_close((uv_handle_t *)&h->listener, NULL);
	uv_close((uv_handle_t *)&h->wake, NULL);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	assert_int_equal(h->set.count, 0);
	assert_int_equal(uv_loop_close(&h->loop), 0);
	free(h->content);
	rm_dir(h->dir);
	free(h);
	return 0;
}

static void client_start(struct harness *h, struct client *c, pthread_t *t, const char *target)
{
	snprintf(c->sock, sizeof(c->sock), "%s", h->sock);
	snprintf(c->req, sizeof(c->req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target);
	c->wake = &h->wake;
	h->client_done = 0;
	assert_int_equal(pthread_create(t, NULL, client_main, c), 0);
}

static void client_finish(struct harness *h, struct client *c, pthread_t t)
{
	while (!h->client_done)
		uv_run(&h->loop, UV_RUN_ONCE);
	pthread_join(t, NULL);
	assert_false(c->failed);
}

/* GET `target` and expect a chunked 200 whose body is `want`. */
static void expect_stream(struct harness *h, const char *target, const char *want, size_t want_len)
{
	struct client c = { 0 };
	pthread_t t;
	client_start(h, &c, &t, target);
	client_finish(h, &c, t);
	int status = 0;
	char *body = NULL;
	size_t blen = 0;
	int k = decode_chunked(c.buf, c.got, &status, &body, &blen);
	if (k != 1)
		print_error("%s: not a complete chunked response (%d) in %zu bytes: %.300s\n", target, k, c.got,
		            c.buf ? c.buf : "");
	assert_int_equal(k, 1);
	assert_int_equal(status, 200);
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
	snprintf(path, sizeof(path), "%s/capped.log", h->dir);
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
	snprintf(path, sizeof(path), "%s/no/such.log", h->dir);
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
	while (h->set.count)
		uv_run(&h->loop, UV_RUN_ONCE);
}

static void test_follow_missing_file(void **state)
{
	struct harness *h = *state;
	struct client c = { 0 };
	pthread_t t;
	char target[160];
	snprintf(target, sizeof(target), "%s/nothing.log", h->dir);
	client_start(h, &c, &t, target);
	client_finish(h, &c, t);
	assert_int_equal(h->follow_err, -ENOENT);
	assert_non_null(c.buf);
	assert_non_null(strstr(c.buf, "HTTP/1.1 404 "));
	free(c.buf);
}

/* Step the loop until `cond` holds. */
#define RUN_UNTIL(h, cond)                                 \
	do {                                               \
		while (!(cond))                            \
			uv_run(&(h)->loop, UV_RUN_ONCE);   \
	} while (0)

static void test_follow_live(void **state)
{
	struct harness *h = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s/live.log", h->dir);
	assert_int_equal(console_open(&h->con, path, 0), 0);
	h->con_open = 1;
	console_append(&h->con, "abc", 3);

	struct client c = { 0 };
	pthread_t t;
	client_start(h, &c, &t, "/live?offset=1");
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
	client_finish(h, &c, t);
	assert_null(h->con.followers);

	int status;
	char *body = NULL;
	size_t blen;
	assert_int_equal(decode_chunked(c.buf, c.got, &status, &body, &blen), 1);
	assert_int_equal(status, 200);
	assert_int_equal(blen, 5 + big_len);
	assert_memory_equal(body, "bcdef", 5);
	assert_memory_equal(body + 5, big, big_len);
	free(body);
	free(c.buf);
	free(big);
	console_close(&h->con);
	h->con_open = 0;
}

static void test_follow_live_then_close(void **state)
{
	struct harness *h = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s/closing.log", h->dir);
	assert_int_equal(console_open(&h->con, path, 0), 0);
	h->con_open = 1;
	console_append(&h->con, "0123456789", 10);
	struct client c = { 0 };
	pthread_t t;
	client_start(h, &c, &t, "/live?offset=4");
	RUN_UNTIL(h, h->started == 1);
	console_append(&h->con, "tail", 4);
	/* Closed without console_end (the run's record is final): the follower finishes
	 * from the file alone at the size the console reached. */
	console_close(&h->con);
	h->con_open = 0;
	client_finish(h, &c, t);
	int status;
	char *body = NULL;
	size_t blen;
	assert_int_equal(decode_chunked(c.buf, c.got, &status, &body, &blen), 1);
	assert_int_equal(blen, 10);
	assert_memory_equal(body, "456789tail", 10);
	free(body);
	free(c.buf);
}

static void test_follower_hangs_up(void **state)
{
	struct harness *h = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s/hangup.log", h->dir);
	assert_int_equal(console_open(&h->con, path, 0), 0);
	h->con_open = 1;
	console_append(&h->con, "abc", 3);
	struct client c = { .hang_up = 1 };
	pthread_t t;
	client_start(h, &c, &t, "/live");
	client_finish(h, &c, t);
	RUN_UNTIL(h, h->started == 1);
	/* The connection closes on the hang-up and releases its follower. */
	RUN_UNTIL(h, h->set.count == 0);
	assert_null(h->con.followers);
	/* The console goes on without it. */
	console_append(&h->con, "more", 4);
	console_end(&h->con);
	assert_int_equal(h->con.size, 7);
	console_close(&h->con);
	h->con_open = 0;
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
