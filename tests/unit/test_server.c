/*
 * test_server.c — runnerd's listeners (server.c) on a real loop and a real Unix
 * socket: the per-listener cap answers 503 and closes, and running out of file
 * descriptors either sheds the waiting peers at once (the spare descriptor) or,
 * with no spare, pauses accepting without spinning, and serves again afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_testlib.h"
#include "log.h"
#include "server.h"

struct harness {
	uv_loop_t loop;
	struct server srv;
	uv_timer_t clock;
	int rang;
	int messages;
	char dir[64];
	char sock[96];
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
	(void)req;
	h->messages++;
	http_respond(conn, 200, "text/plain", "ok\n", 3);
}

static int setup(void **state)
{
	struct harness *h = calloc(1, sizeof(*h));
	if (!h)
		return -1;
	snprintf(h->dir, sizeof(h->dir), "/tmp/ukrun-test-server-XXXXXX");
	if (!mkdtemp(h->dir) || uv_loop_init(&h->loop) < 0)
		return -1;
	snprintf(h->sock, sizeof(h->sock), "%s/s", h->dir);
	struct http_handler handler = { .headers = on_headers, .message = on_message, .ctx = h };
	struct server_limits limits = { .max_conns = 2 };
	char *err = NULL;
	if (server_init(&h->srv, &h->loop, &handler, &limits) < 0 ||
	    server_listen_unix(&h->srv, h->sock, 0600, &err) < 0) {
		print_error("%s\n", err ? err : "server_init");
		return -1;
	}
	uv_timer_init(&h->loop, &h->clock);
	h->clock.data = h;
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	struct harness *h = *state;
	server_close_connections(&h->srv);
	server_close(&h->srv);
	uv_close((uv_handle_t *)&h->clock, NULL);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&h->loop), 0);
	rmdir(h->dir);
	free(h);
	return 0;
}

static void on_clock(uv_timer_t *t)
{
	struct harness *h = t->data;
	h->rang = 1;
}

/* Run the loop until `cond` holds; fails after 20 s (a safety net, not a timing check). */
#define RUN_UNTIL(h, cond)                                                   \
	do {                                                                  \
		(h)->rang = 0;                                                \
		uv_timer_start(&(h)->clock, on_clock, 20000, 0);              \
		while (!(cond) && !(h)->rang)                                 \
			uv_run(&(h)->loop, UV_RUN_ONCE);                      \
		uv_timer_stop(&(h)->clock);                                   \
		assert_true(cond);                                            \
	} while (0)

static int client_socket(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	return fd;
}

static void client_connect(struct harness *h, int fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h->sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

/* Read all `fd` has into buf/got without waiting; 1 at EOF. */
static int read_some(int fd, char *buf, size_t cap, size_t *got)
{
	for (;;) {
		ssize_t n = recv(fd, buf + *got, cap - 1 - *got, MSG_DONTWAIT);
		if (n > 0) {
			*got += (size_t)n;
			continue;
		}
		return n == 0 || (n < 0 && errno == ECONNRESET);
	}
}

/* Everything `fd` receives until the server closes it (the loop runs meanwhile). */
static size_t read_to_eof(struct harness *h, int fd, char *buf, size_t cap)
{
	size_t got = 0;
	RUN_UNTIL(h, read_some(fd, buf, cap, &got));
	buf[got] = '\0';
	return got;
}

/* A GET on a fresh client: the status of the answer. */
static int get_status(struct harness *h)
{
	int fd = client_socket();
	client_connect(h, fd);
	static const char req[] = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
	assert_int_equal(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(req) - 1));
	char buf[4096];
	size_t n = read_to_eof(h, fd, buf, sizeof(buf));
	close(fd);
	struct http_test_resp r;
	assert_int_equal(http_test_parse(buf, n, 0, &r), 1);
	free(r.body);
	return r.status;
}

static void test_cap(void **state)
{
	struct harness *h = *state;
	struct listener *l = &h->srv.unix_l;
	int a = client_socket(), b = client_socket(), c = client_socket();
	client_connect(h, a);
	client_connect(h, b);
	RUN_UNTIL(h, l->conns.count == 2);
	/* Over the cap: 503 at once, then closed; the two idle ones stay. */
	client_connect(h, c);
	char buf[4096];
	size_t n = read_to_eof(h, c, buf, sizeof(buf));
	struct http_test_resp r;
	assert_int_equal(http_test_parse(buf, n, 0, &r), 1);
	assert_int_equal(r.status, 503);
	assert_int_equal(r.raw_len, n);
	assert_non_null(strstr(r.body, "\"too_many_connections\""));
	free(r.body);
	assert_int_equal(l->refused, 1);
	assert_int_equal(l->conns.count, 2);
	/* Room again once one leaves. */
	close(a);
	RUN_UNTIL(h, l->conns.count == 1);
	assert_int_equal(get_status(h), 200);
	close(b);
	close(c);
	assert_int_equal(h->messages, 1);
}

/* Use up every descriptor below the soft limit `lim` (returns them for fds_free). */
static int *fds_fill(rlim_t lim, struct rlimit *ret_old, int *ret_n)
{
	assert_int_equal(getrlimit(RLIMIT_NOFILE, ret_old), 0);
	struct rlimit low = { .rlim_cur = lim, .rlim_max = ret_old->rlim_max };
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	int *fds = malloc(sizeof(int) * lim), n = 0;
	int fd;
	while ((fd = dup(2)) >= 0)
		fds[n++] = fd;
	assert_int_equal(errno, EMFILE);
	*ret_n = n;
	return fds;
}

static void fds_free(int *fds, int n, const struct rlimit *old)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, old), 0);
}

static void test_out_of_fds_sheds(void **state)
{
	struct harness *h = *state;
	struct listener *l = &h->srv.unix_l;
	int cl[3];
	for (int i = 0; i < 3; i++)
		cl[i] = client_socket(); /* before the descriptors run out */
	struct rlimit old;
	int n;
	int *fds = fds_fill(256, &old, &n);
	for (int i = 0; i < 3; i++)
		client_connect(h, cl[i]);
	/* Each waiting peer is accepted with the spare and closed at once. */
	RUN_UNTIL(h, l->shed == 3);
	char buf[256];
	for (int i = 0; i < 3; i++) {
		assert_int_equal(read_to_eof(h, cl[i], buf, sizeof(buf)), 0);
		close(cl[i]);
	}
	assert_int_equal(l->conns.count, 0);
	assert_true(h->srv.spare_fd >= 0); /* taken back */
	fds_free(fds, n, &old);
	assert_int_equal(get_status(h), 200);
}

static void test_out_of_fds_no_spare(void **state)
{
	struct harness *h = *state;
	struct listener *l = &h->srv.unix_l;
	int fd = client_socket();
	/* Another thread took the descriptor the spare left: no spare, no descriptor. */
	close(h->srv.spare_fd);
	h->srv.spare_fd = -1;
	struct rlimit old;
	int n;
	int *fds = fds_fill(256, &old, &n);
	client_connect(h, fd);
	static const char req[] = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
	assert_int_equal(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(req) - 1));
	/* The listener pauses (uv_run returns: no spinning inside the callback). */
	RUN_UNTIL(h, uv_is_active((uv_handle_t *)&l->pause));
	for (int i = 0; i < 5; i++)
		uv_run(&h->loop, UV_RUN_NOWAIT);
	assert_int_equal(l->conns.count, 0);
	/* Descriptors come back: accepting resumes, the waiting peer is served, the spare is back. */
	fds_free(fds, n, &old);
	char buf[4096];
	size_t len = read_to_eof(h, fd, buf, sizeof(buf));
	close(fd);
	struct http_test_resp r;
	assert_int_equal(http_test_parse(buf, len, 0, &r), 1);
	assert_int_equal(r.status, 200);
	free(r.body);
	assert_true(h->srv.spare_fd >= 0);
	assert_int_equal(h->messages, 1);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_ERROR); /* the overload warnings are expected here */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_fds_sheds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_fds_no_spare, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
