/*
 * test_console.c — a run's console log: the size cap, and followers streaming
 * from the file over a real HTTP connection (a Unix listener on a real libuv
 * loop, a client thread reading the raw chunked response; http_testlib.h):
 * from an offset of a finished file, from a live console until it ends, and a
 * follower whose client hangs up (api_console_follow: api.c's sink). Then the
 * console alone, with followers into memory sinks: floods that followers join
 * mid-way, fall behind and catch up in (batched or not), exact to the byte; the
 * batch timer; a sink that hangs up inside a write; write errors.
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

#include "api.h"
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
		r = api_console_follow(NULL, h->file, conn, offset);
	else if (strcmp(req->path, "/live") == 0)
		r = api_console_follow(&h->con, h->con.path, conn, offset);
	else
		r = api_console_follow(NULL, req->path, conn, offset);
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

static void on_tick(uv_timer_t *t)
{
	(void)t;
}

/* Step the loop until `cond` holds. A 5 ms tick runs meanwhile: a condition a timer makes
 * true (the console's batch) may become true in the timers phase at the start of a
 * uv_run(UV_RUN_ONCE), which then polls with no timer left and the listening socket
 * active, i.e. for ever (seen under ASan, where the timer is already due when the loop
 * is entered). */
#define RUN_UNTIL(h, cond)                                                 \
	do {                                                               \
		uv_timer_t tick_;                                          \
		uv_timer_init(&(h)->srv.loop, &tick_);                     \
		uv_timer_start(&tick_, on_tick, 5, 5);                     \
		while (!(cond))                                            \
			uv_run(&(h)->srv.loop, UV_RUN_ONCE);               \
		uv_close((uv_handle_t *)&tick_, NULL);                     \
		uv_run(&(h)->srv.loop, UV_RUN_NOWAIT); /* tick_ closed */ \
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

/* ---- the console alone: followers into memory sinks ---- */

/* A sink in memory whose queue the test drains (as a socket would). */
struct msink {
	char *buf;
	size_t len, queued;
	int ended;
	size_t hangup_after; /* > 0: release the follower from inside the write past this many bytes */
	struct follower *f;
};

static void msink_write(void *ctx, const char *buf, size_t len)
{
	struct msink *m = ctx;
	assert_true(len > 0);
	assert_false(m->ended);
	m->buf = realloc(m->buf, m->len + len);
	assert_non_null(m->buf);
	memcpy(m->buf + m->len, buf, len);
	m->len += len;
	m->queued += len;
	if (m->hangup_after && m->len > m->hangup_after) {
		console_follower_free(m->f);
		m->f = NULL;
	}
}

static size_t msink_queued(void *ctx)
{
	return ((struct msink *)ctx)->queued;
}

static void msink_end(void *ctx)
{
	struct msink *m = ctx;
	assert_false(m->ended);
	m->ended = 1;
	m->f = NULL; /* freed by the console */
}

static const struct console_sink msink_ops = { msink_write, msink_queued, msink_end };

static void msink_follow(struct msink *m, struct console *live, const char *path, uint64_t offset)
{
	memset(m, 0, sizeof(*m));
	assert_int_equal(console_follow(live, path, offset, &msink_ops, m, &m->f), 0);
	console_follower_resume(m->f);
}

/* The socket took everything: the drain callback. */
static void msink_drain(struct msink *m)
{
	m->queued = 0;
	if (m->f)
		console_follower_resume(m->f);
}

static char *read_file(const char *path, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char *b = malloc((size_t)st.st_size + 1);
	assert_non_null(b);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*ret_len = (size_t)st.st_size;
	return b;
}

#define NSINKS 6

/* A flood of numbered bytes (a byte lost or sent twice shifts every later one) in pieces
 * of many sizes; followers attach mid-flood at offsets inside and at the end of what is
 * stored, fall behind (their sink stays full past the high-water mark, so they read the
 * file back) and catch up again (fed from the bytes just stored): each receives exactly
 * the file's bytes from its offset, once. With `batched`, appends wait in memory between
 * stores (and a follower attaches while some are pending). */
static void flood_followers(struct harness *h, const char *name, int batched)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/%s", h->srv.dir, name);
	struct console con;
	assert_int_equal(console_open(&con, path, 0), 0);
	if (batched)
		assert_int_equal(console_batch(&con, &h->srv.loop), 0);
	struct msink m[NSINKS];
	uint64_t offsets[NSINKS];
	int attached[NSINKS] = { 0 };
	static const size_t sizes[] = { 1, 17, 1500, 4096, 65535, 65536, 65537, 3, 200000, 700, 9000 };
	char *piece = malloc(200000);
	uint64_t total = 0;
	unsigned seed = 12345;
	for (int step = 0; step < 400; step++) {
		size_t len = sizes[step % (sizeof(sizes) / sizeof(sizes[0]))];
		for (size_t i = 0; i < len; i++)
			piece[i] = (char)((total + i) % 251);
		console_append(&con, piece, len);
		total += len;
		assert_int_equal(con.size, total);
		/* Attach one follower every so often: at 0, mid-file, at what is stored, and past it. */
		int k = step / 40;
		if (step % 40 == 7 && k < NSINKS) {
			uint64_t at[NSINKS] = { 0, con.stored / 2, con.stored, con.stored + 10, 1, con.stored - 1 };
			offsets[k] = at[k];
			msink_follow(&m[k], &con, path, offsets[k]);
			attached[k] = 1;
		}
		/* Drain the sinks at their own paces: 0 every step, the others now and then. */
		for (int j = 0; j < NSINKS; j++) {
			seed = seed * 1103515245 + 12345;
			if (attached[j] && (j == 0 || (seed >> 16) % (unsigned)(j + 1) == 0))
				msink_drain(&m[j]);
			/* Now and then the queue empties without the drain callback yet: the next
			 * store finds the follower a little behind the bytes just stored. */
			else if (attached[j] && (seed >> 16) % 7 == 0)
				m[j].queued = 0;
		}
		if (batched && step % 50 == 25)
			uv_run(&h->srv.loop, UV_RUN_NOWAIT);
	}
	console_end(&con);
	for (int round = 0; round < 10000; round++) {
		int open_sinks = 0;
		for (int j = 0; j < NSINKS; j++) {
			if (attached[j] && !m[j].ended) {
				msink_drain(&m[j]);
				open_sinks++;
			}
		}
		if (!open_sinks)
			break;
	}
	assert_null(con.followers);
	assert_int_equal(con.stored, total);
	console_close(&con);
	uv_run(&h->srv.loop, UV_RUN_NOWAIT); /* the batching timer closes */

	size_t flen;
	char *file = read_file(path, &flen);
	assert_int_equal(flen, total);
	for (size_t i = 0; i < flen; i++)
		assert_int_equal((unsigned char)file[i], i % 251);
	for (int j = 0; j < NSINKS; j++) {
		assert_true(attached[j]);
		assert_true(m[j].ended);
		uint64_t from = offsets[j] < flen ? offsets[j] : flen;
		if (m[j].len != flen - from)
			print_error("follower %d from %" PRIu64 ": %zu bytes, the file has %zu past it\n", j, from,
			            m[j].len, (size_t)(flen - from));
		assert_int_equal(m[j].len, flen - from);
		assert_memory_equal(m[j].buf, file + from, m[j].len);
		free(m[j].buf);
	}
	free(file);
	free(piece);
}

static void test_flood_followers(void **state)
{
	flood_followers(*state, "flood.log", 0);
}

static void test_flood_followers_batched(void **state)
{
	flood_followers(*state, "flood-batched.log", 1);
}

/* Batched bytes reach the file (and a caught-up follower) at the timer, without a flush. */
static void test_batch_timer(void **state)
{
	struct harness *h = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s/timer.log", h->srv.dir);
	struct console con;
	assert_int_equal(console_open(&con, path, 0), 0);
	assert_int_equal(console_batch(&con, &h->srv.loop), 0);
	struct msink m;
	msink_follow(&m, &con, path, 0);
	console_append(&con, "hello ", 6);
	console_append(&con, "world", 5);
	assert_int_equal(con.size, 11);
	assert_int_equal(con.stored, 0);
	assert_int_equal(m.len, 0);
	/* The timer is due by the time the loop runs (as under ASan's slowness): it still fires. */
	usleep((CONSOLE_BATCH_MS + 5) * 1000);
	RUN_UNTIL(h, con.stored == 11);
	assert_int_equal(m.len, 11);
	assert_memory_equal(m.buf, "hello world", 11);
	/* A piece as large as a batch goes straight to the file, after what was pending. */
	console_append(&con, "<", 1);
	char *big = malloc(CONSOLE_BATCH_BYTES);
	memset(big, 'x', CONSOLE_BATCH_BYTES);
	console_append(&con, big, CONSOLE_BATCH_BYTES);
	assert_int_equal(con.stored, 12 + CONSOLE_BATCH_BYTES);
	console_append(&con, ">", 1);
	console_end(&con);
	assert_true(m.ended);
	assert_int_equal(m.len, 13 + CONSOLE_BATCH_BYTES);
	assert_int_equal(m.buf[11], '<');
	assert_int_equal(m.buf[12 + CONSOLE_BATCH_BYTES], '>');
	console_close(&con);
	uv_run(&h->srv.loop, UV_RUN_NOWAIT);
	size_t flen;
	char *file = read_file(path, &flen);
	assert_int_equal(flen, m.len);
	assert_memory_equal(file, m.buf, flen);
	free(file);
	free(big);
	free(m.buf);
}

/* A follower released from inside its sink's write (its client hung up while the bytes
 * went out) is freed once the console is done with it; the others go on. */
static void test_sink_hangs_up_in_write(void **state)
{
	struct harness *h = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s/hangup-write.log", h->srv.dir);
	struct console con;
	assert_int_equal(console_open(&con, path, 0), 0);
	console_append(&con, "0123456789", 10);
	struct msink quits, stays;
	msink_follow(&quits, &con, path, 0);
	quits.hangup_after = 15;
	msink_follow(&stays, &con, path, 0);
	console_append(&con, "abcdefghij", 10); /* quits goes past 15 bytes here */
	assert_null(quits.f);
	assert_int_equal(quits.len, 20);
	console_append(&con, "KLMNO", 5);
	console_end(&con);
	assert_false(quits.ended);
	assert_int_equal(quits.len, 20);
	assert_true(stays.ended);
	assert_int_equal(stays.len, 25);
	assert_memory_equal(stays.buf, "0123456789abcdefghijKLMNO", 25);
	assert_null(con.followers);
	console_close(&con);
	free(quits.buf);
	free(stays.buf);
}

/* Bytes that cannot be written are dropped and not counted as stored, batched or not;
 * followers see only stored bytes. */
static void test_write_error(void **state)
{
	struct harness *h = *state;
	for (int batched = 0; batched < 2; batched++) {
		struct console con;
		if (console_open(&con, "/dev/full", 0) < 0)
			skip();
		if (batched)
			assert_int_equal(console_batch(&con, &h->srv.loop), 0);
		console_append(&con, "abc", 3);
		console_append(&con, "defg", 4);
		console_flush(&con);
		assert_int_equal(con.write_error, ENOSPC);
		assert_int_equal(con.size, 0);
		assert_int_equal(con.stored, 0);
		assert_int_equal(con.dropped, 7);
		console_end(&con);
		console_close(&con);
	}
	uv_run(&h->srv.loop, UV_RUN_NOWAIT);
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
		cmocka_unit_test_setup_teardown(test_flood_followers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flood_followers_batched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_timer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sink_hangs_up_in_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
