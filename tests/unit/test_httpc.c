/* Unit tests of the client's Unix-socket transport (client/httpc.c) against a
 * scripted peer: byte sequences runnerd never sends on purpose (a response cut
 * mid-body, a chunk split across reads, a body larger than the receive buffer,
 * an idle keep-alive connection closed) must end in the right bytes or a clear
 * error, never a hang or a success. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "httpc.h"

#define MAX_CONNS 4

/* The scripted peer: accepts up to max_conns connections one after the other and
 * runs serve() on each; records what the client sent. */
struct peer {
	char dir[40], path[64];
	int lfd;
	pthread_t thread;
	int max_conns;
	void (*serve)(struct peer *p, int fd, int conn);
	int accepted;
	int requests;
	char head[8192];      /* the last request's head */
	unsigned char *body;  /* the last request's body */
	size_t body_len;
	const void *arg;      /* for serve() */
};

static void pause_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static void put(int fd, const char *s)
{
	size_t n = strlen(s);

	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* One request from the client, head and Content-Length body: 0, or -1 at EOF. */
static int get_request(struct peer *p, int fd)
{
	size_t len = 0, want;
	char *end, *cl;

	for (;;) {
		ssize_t n = recv(fd, p->head + len, sizeof(p->head) - 1 - len, MSG_PEEK);

		if (n <= 0)
			return -1;
		p->head[len + (size_t)n] = '\0';
		end = strstr(p->head, "\r\n\r\n");
		if (end) {
			want = (size_t)(end + 4 - p->head);
			break;
		}
		pause_ms(1);
	}
	/* Consume exactly the head; the body follows. */
	for (len = 0; len < want;) {
		ssize_t n = recv(fd, p->head + len, want - len, 0);

		if (n <= 0)
			return -1;
		len += (size_t)n;
	}
	p->head[want] = '\0';
	free(p->body);
	p->body = NULL;
	p->body_len = 0;
	cl = strcasestr(p->head, "\r\nContent-Length: ");
	if (cl) {
		size_t blen = strtoull(cl + 18, NULL, 10);

		p->body = malloc(blen + 1);
		assert_non_null(p->body);
		while (p->body_len < blen) {
			ssize_t n = recv(fd, p->body + p->body_len, blen - p->body_len, 0);

			if (n <= 0)
				return -1;
			p->body_len += (size_t)n;
		}
	}
	p->requests++;
	return 0;
}

static void *peer_main(void *data)
{
	struct peer *p = data;

	for (int i = 0; i < p->max_conns; i++) {
		struct pollfd pfd = { .fd = p->lfd, .events = POLLIN };
		int fd;

		if (poll(&pfd, 1, 10000) <= 0)
			break;
		fd = accept(p->lfd, NULL, NULL);
		if (fd < 0)
			break;
		p->accepted++;
		p->serve(p, fd, i);
		close(fd);
	}
	return NULL;
}

static void peer_start(struct peer *p, void (*serve)(struct peer *, int, int), int max_conns, const void *arg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(p, 0, sizeof(*p));
	snprintf(p->dir, sizeof(p->dir), "/tmp/ukrun-httpc-XXXXXX");
	assert_non_null(mkdtemp(p->dir));
	snprintf(p->path, sizeof(p->path), "%s/s", p->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->path);
	p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(p->lfd >= 0);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(p->lfd, 8), 0);
	p->serve = serve;
	p->max_conns = max_conns;
	p->arg = arg;
	assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_stop(struct peer *p)
{
	/* Wake a peer still waiting for a connection. */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->path);
	shutdown(p->lfd, SHUT_RDWR);
	(void)connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	pthread_join(p->thread, NULL);
	close(p->lfd);
	unlink(p->path);
	rmdir(p->dir);
	free(p->body);
}

/* Serves: answer each request with the NULL-terminated pieces in arg, a pause between them. */
static void serve_pieces(struct peer *p, int fd, int conn)
{
	const char *const *pieces = p->arg;

	(void)conn;
	if (get_request(p, fd) < 0)
		return;
	for (int i = 0; pieces[i]; i++) {
		put(fd, pieces[i]);
		pause_ms(20); /* so the client gets them in separate reads */
	}
}

static void test_chunked_split_across_reads(void **state)
{
	static const char *const pieces[] = { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r",
					      "\n\r\n5\r\nhel", "lo\r\n6", "\r\n world\r\n0\r", "\n\r\n", NULL };
	struct peer p;
	struct httpc h;
	struct httpc_resp resp;
	uint64_t io = 0;
	char out[64] = { 0 };
	int pipefd[2];

	(void)state;
	peer_start(&p, serve_pieces, 1, pieces);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(httpc_stream(&h, "/v1/runs/x/console?follow=1", pipefd[1], &io, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(io, 11);
	assert_int_equal(read(pipefd[0], out, sizeof(out) - 1), 11);
	assert_string_equal(out, "hello world");
	assert_non_null(strstr(p.head, "GET /v1/runs/x/console?follow=1 HTTP/1.1\r\n"));
	httpc_resp_clear(&resp);
	httpc_free(&h);
	close(pipefd[0]);
	close(pipefd[1]);
	peer_stop(&p);
}

static void test_closed_mid_response_is_an_error(void **state)
{
	/* A sized body cut short, and a chunked stream that ends without its last chunk. */
	static const char *const sized[] = { "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"state\":", NULL };
	static const char *const chunked[] = { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nboot\r\n", NULL };
	static const char *const headless[] = { "HTTP/1.1 200 OK\r\nContent-Le", NULL };
	struct peer p;
	struct httpc h;
	struct httpc_resp resp;
	uint64_t io = 0;
	int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

	(void)state;
	peer_start(&p, serve_pieces, 1, sized);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(httpc_json(&h, "GET", "/v1/runs/x", NULL, &resp), -ECONNRESET);
	assert_non_null(strstr(h.errbuf, "mid-response"));
	httpc_resp_clear(&resp);
	httpc_free(&h);
	peer_stop(&p);

	peer_start(&p, serve_pieces, 1, chunked);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(httpc_stream(&h, "/v1/runs/x/console?follow=1", null_fd, &io, &resp), -ECONNRESET);
	assert_int_equal(io, 4); /* what came before the cut was passed on */
	httpc_resp_clear(&resp);
	httpc_free(&h);
	peer_stop(&p);

	peer_start(&p, serve_pieces, 1, headless);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(httpc_json(&h, "POST", "/v1/runs", NULL, &resp), -ECONNRESET);
	httpc_resp_clear(&resp);
	httpc_free(&h);
	peer_stop(&p);
	close(null_fd);
}

static void test_console_sink_closed(void **state)
{
	static const char *const pieces[] = { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", NULL };
	struct peer p;
	struct httpc h;
	struct httpc_resp resp;
	uint64_t io = 0;
	int pipefd[2];

	(void)state;
	/* Nobody reads the console any more: -EPIPE (the runner ends as SIGPIPE would), not a transport error. */
	peer_start(&p, serve_pieces, 1, pieces);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(pipe(pipefd), 0);
	close(pipefd[0]);
	assert_int_equal(httpc_stream(&h, "/v1/runs/x/console?follow=1", pipefd[1], &io, &resp), -EPIPE);
	assert_non_null(strstr(h.errbuf, "writing the console"));
	httpc_resp_clear(&resp);
	httpc_free(&h);
	close(pipefd[1]);
	peer_stop(&p);
}

static void test_closed_without_answer(void **state)
{
	static const char *const nothing[] = { NULL };
	struct peer p;
	struct httpc h;
	struct httpc_resp resp;

	(void)state;
	/* A fresh connection closed at once is not retried: the request may have been acted on. */
	peer_start(&p, serve_pieces, 2, nothing);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(httpc_json(&h, "POST", "/v1/runs", NULL, &resp), -ECONNRESET);
	assert_non_null(strstr(h.errbuf, "without an answer"));
	assert_int_equal(p.requests, 1);
	httpc_resp_clear(&resp);
	httpc_free(&h);
	peer_stop(&p);
}

static void serve_large(struct peer *p, int fd, int conn)
{
	size_t n = *(const size_t *)p->arg;
	char *body = malloc(n + 64), head[128];

	(void)conn;
	assert_non_null(body);
	if (get_request(p, fd) < 0) {
		free(body);
		return;
	}
	/* {"a":"xxxx...x"} */
	memcpy(body, "{\"a\":\"", 6);
	memset(body + 6, 'x', n - 8);
	memcpy(body + n - 2, "\"}", 3);
	snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
	put(fd, head);
	put(fd, body);
	free(body);
}

static void test_response_larger_than_a_buffer(void **state)
{
	static const size_t n = 300000; /* several receive buffers */
	struct peer p;
	struct httpc h;
	struct httpc_resp resp;

	(void)state;
	peer_start(&p, serve_large, 1, &n);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(httpc_json(&h, "GET", "/v1/big", NULL, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_non_null(resp.json);
	assert_int_equal(strlen(json_string_value(json_object_get(resp.json, "a"))), n - 8);
	httpc_resp_clear(&resp);
	httpc_free(&h);
	peer_stop(&p);
}

/* Serves: every request on the connection with a small JSON answer; the number of
 * requests to answer before closing is in arg (0: until the client closes). */
static void serve_keepalive(struct peer *p, int fd, int conn)
{
	int limit = *(const int *)p->arg;

	(void)conn;
	for (int i = 0; !limit || i < limit; i++) {
		char ans[160];

		if (get_request(p, fd) < 0)
			return;
		if (!strncmp(p->head, "HEAD ", 5)) {
			put(fd, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n");
			continue;
		}
		snprintf(ans, sizeof(ans), "{\"n\":%d,\"len\":%zu}", p->requests, p->body_len);
		dprintf(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			strlen(ans), ans);
	}
}

static void test_keepalive_one_connection(void **state)
{
	static const int unlimited = 0;
	static const char data[] = "a\0b\r\n";
	json_t *spec = json_pack("{s:s}", "image", "x");
	struct peer p;
	struct httpc h;
	struct httpc_resp resp;
	long status = 0;

	(void)state;
	peer_start(&p, serve_keepalive, 2, &unlimited);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(httpc_json(&h, "POST", "/v1/runs", spec, &resp), 0);
	assert_int_equal(json_integer_value(json_object_get(resp.json, "n")), 1);
	assert_non_null(strstr(p.head, "Content-Type: application/json\r\n"));
	assert_memory_equal(p.body, "{\"image\":\"x\"}", 13);
	httpc_resp_clear(&resp);
	assert_int_equal(httpc_head(&h, "/v1/images/abc", &status), 0);
	assert_int_equal(status, 404); /* no body read after a HEAD, whatever Content-Length says */
	assert_int_equal(httpc_post_data(&h, "/v1/runs/x/stdin", data, sizeof(data) - 1, &resp), 0);
	assert_int_equal(json_integer_value(json_object_get(resp.json, "n")), 3);
	assert_int_equal(p.body_len, sizeof(data) - 1);
	assert_memory_equal(p.body, data, sizeof(data) - 1); /* NUL bytes and all */
	httpc_resp_clear(&resp);
	assert_int_equal(httpc_json(&h, "DELETE", "/v1/runs/x", NULL, &resp), 0);
	assert_non_null(strstr(p.head, "DELETE /v1/runs/x HTTP/1.1\r\n"));
	assert_null(strstr(p.head, "Content-Length"));
	httpc_resp_clear(&resp);
	assert_int_equal(p.accepted, 1);
	assert_int_equal(p.requests, 4);
	httpc_free(&h);
	peer_stop(&p);
	json_decref(spec);
}

static void test_idle_connection_closed_is_reopened(void **state)
{
	static const int one = 1;
	struct peer p;
	struct httpc h;
	struct httpc_resp resp;

	(void)state;
	peer_start(&p, serve_keepalive, 2, &one);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(httpc_json(&h, "GET", "/healthz", NULL, &resp), 0);
	httpc_resp_clear(&resp);
	pause_ms(50); /* the peer closes the kept-alive connection */
	assert_int_equal(httpc_json(&h, "GET", "/healthz", NULL, &resp), 0);
	assert_int_equal(resp.status, 200);
	httpc_resp_clear(&resp);
	assert_int_equal(p.accepted, 2);
	assert_int_equal(p.requests, 2);
	httpc_free(&h);
	peer_stop(&p);
}

static void test_upload_from_file(void **state)
{
	static const int unlimited = 0;
	const size_t size = (3u << 20) + 12345; /* more than one sendfile call */
	char tmpl[] = "/tmp/ukrun-httpc-img-XXXXXX";
	unsigned char *img = malloc(size);
	struct peer p;
	struct httpc h;
	struct httpc_resp resp;
	int fd = mkstemp(tmpl);

	(void)state;
	assert_true(fd >= 0);
	unlink(tmpl);
	for (size_t i = 0; i < size; i++)
		img[i] = (unsigned char)(i * 7 + (i >> 12));
	assert_int_equal(write(fd, img, size), (ssize_t)size);
	peer_start(&p, serve_keepalive, 1, &unlimited);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(httpc_put_fd(&h, "/v1/images/abc?name=x", fd, size, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_non_null(strstr(p.head, "PUT /v1/images/abc?name=x HTTP/1.1\r\n"));
	assert_int_equal(p.body_len, size);
	assert_memory_equal(p.body, img, size);
	httpc_resp_clear(&resp);
	/* The file shorter than announced: an error naming the image, not a hang. */
	assert_int_equal(httpc_put_fd(&h, "/v1/images/abc", fd, size + 10, &resp), -EIO);
	assert_non_null(strstr(h.errbuf, "reading the image"));
	httpc_resp_clear(&resp);
	httpc_free(&h);
	peer_stop(&p);
	close(fd);
	free(img);
}

static void serve_silent(struct peer *p, int fd, int conn)
{
	char c;

	(void)conn;
	if (get_request(p, fd) < 0)
		return;
	/* Never answers; the client gives up and closes. */
	(void)recv(fd, &c, 1, 0);
}

static void test_timeout_and_interrupt(void **state)
{
	static volatile sig_atomic_t flag;
	struct peer p;
	struct httpc h;
	struct httpc_resp resp;
	uint64_t io = 0;

	(void)state;
	peer_start(&p, serve_silent, 2, NULL);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	h.timeout_ms = 100;
	assert_int_equal(httpc_json(&h, "GET", "/healthz", NULL, &resp), -ETIMEDOUT);
	assert_non_null(strstr(h.errbuf, "timed out"));
	httpc_resp_clear(&resp);
	/* A follow waits for ever, until the interrupt flag is raised. */
	h.abort_flag = &flag;
	flag = 1;
	assert_int_equal(httpc_stream(&h, "/v1/runs/x/console?follow=1", STDOUT_FILENO, &io, &resp), -EINTR);
	httpc_resp_clear(&resp);
	httpc_free(&h);
	peer_stop(&p);
}

static void test_error_body_of_a_stream(void **state)
{
	static const char *const pieces[] = {
		"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 54\r\n\r\n",
		"{\"error\":{\"code\":\"not_found\",\"message\":\"no run x!!!\"}}", NULL
	};
	struct peer p;
	struct httpc h;
	struct httpc_resp resp;
	uint64_t io = 0;
	char msg[64];

	(void)state;
	peer_start(&p, serve_pieces, 1, pieces);
	assert_int_equal(httpc_init(&h, p.path, NULL, NULL), 0);
	assert_int_equal(httpc_stream(&h, "/v1/runs/x/console", STDOUT_FILENO, &io, &resp), 0);
	assert_int_equal(resp.status, 404);
	assert_int_equal(io, 0);
	assert_string_equal(httpc_resp_code(&resp), "not_found");
	assert_string_equal(httpc_resp_message(&resp, msg, sizeof(msg)), "no run x!!!");
	httpc_resp_clear(&resp);
	httpc_free(&h);
	peer_stop(&p);
}

static void test_nobody_listening(void **state)
{
	struct httpc h;
	struct httpc_resp resp;

	(void)state;
	assert_int_equal(httpc_init(&h, "/nonexistent/ukrun/runnerd.sock", NULL, NULL), 0);
	assert_int_equal(httpc_json(&h, "GET", "/healthz", NULL, &resp), -ENOENT);
	assert_string_equal(h.errbuf, strerror(ENOENT));
	httpc_resp_clear(&resp);
	httpc_free(&h);
}

static void test_escape(void **state)
{
	char *e = httpc_escape("a b/c&d=é~_.-");

	(void)state;
	assert_string_equal(e, "a%20b%2Fc%26d%3D%C3%A9~_.-");
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunked_split_across_reads),
		cmocka_unit_test(test_closed_mid_response_is_an_error),
		cmocka_unit_test(test_closed_without_answer),
		cmocka_unit_test(test_console_sink_closed),
		cmocka_unit_test(test_response_larger_than_a_buffer),
		cmocka_unit_test(test_keepalive_one_connection),
		cmocka_unit_test(test_idle_connection_closed_is_reopened),
		cmocka_unit_test(test_upload_from_file),
		cmocka_unit_test(test_timeout_and_interrupt),
		cmocka_unit_test(test_error_body_of_a_stream),
		cmocka_unit_test(test_nobody_listening),
		cmocka_unit_test(test_escape),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
