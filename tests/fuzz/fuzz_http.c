/*
 * fuzz_http.c — libFuzzer harness for runnerd/http.c: the input is every byte a
 * client sends on one connection. A real libuv loop accepts the connection on a
 * Unix listener (abstract address, so nothing is left on disk) with
 * http_conn_accept; the harness writes the input on a real socket, in pieces of
 * 1..256 bytes (the input's last byte picks the size) with the loop run between
 * them, hangs up its write side and runs the loop until the connection has
 * closed (one input in three is instead cut short by http_conn_close_all, as at
 * runnerd's shutdown).
 *
 * The handler behind it takes the paths the API takes: plain and JSON answers,
 * query lookups (/q), chunked streams (/c), streamed bodies into a sink (/s,
 * which aborts past 64 bytes), answers before the body (/e) and answers given
 * later from a timer with an attached object (/d next loop turn; /D never before
 * the connection closes), chunked tails sent on drain (as console followers do).
 *
 * Checks beyond the sanitizers: every byte runnerd sends must parse as HTTP/1.1
 * responses (http-parser in response mode; inputs containing "HEAD" are exempt,
 * as a reply to HEAD carries a Content-Length without a body), at most one final
 * response per request begun plus one for a malformed tail, and the connection
 * must close once the client has hung up.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <http_parser.h>
#include <uv.h>

#include "http.h"
#include "log.h"

static struct {
	uv_loop_t loop;
	uv_poll_t listener; /* the listening socket, accepted from as runnerd's server does */
	int listen_fd;
	struct sockaddr_un addr;
	socklen_t addrlen;
	struct http_conn_set set;
	struct http_handler handler;
	int accepted;
	uv_timer_t later;            /* the deferred answer of /d */
	struct http_conn *later_conn;
	size_t sunk;                 /* body bytes the /s sink took */
} F;

#define FAIL(...) (fprintf(stderr, "fuzz_http: " __VA_ARGS__), fputc('\n', stderr), abort())

/* ---- the handler ---- */

static int sink_data(void *ctx, const char *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	F.sunk += len;
	return F.sunk > 64 ? -EFBIG : 0;
}

static void on_headers(void *ctx, struct http_conn *conn, struct http_request *req)
{
	(void)ctx;
	if (http_conn_is_tcp(conn))
		FAIL("a Unix connection says it is TCP");
	if (strncmp(req->path, "/s", 2) == 0) {
		static const struct http_body_sink sink = { .data = sink_data };
		F.sunk = 0;
		http_conn_set_sink(conn, &sink);
	} else if (strncmp(req->path, "/e", 2) == 0) {
		http_respond_error(conn, 409, "conflict", "early answer to '%s'", req->path);
	}
}

static void later_release(void *obj)
{
	uv_timer_stop(obj);
	F.later_conn = NULL;
}

static void on_later(uv_timer_t *t)
{
	struct http_conn *conn = F.later_conn;
	(void)t;
	if (http_conn_attached(conn) != &F.later)
		FAIL("the attached object changed");
	F.later_conn = NULL;
	http_conn_attach(conn, NULL, NULL);
	http_respond(conn, 200, "text/plain", "later\n", 6);
}

/* /c: the rest of the stream once the head is on the wire, as console followers pump. */
static void on_drained(struct http_conn *conn, void *arg)
{
	(void)arg;
	http_conn_on_drain(conn, NULL, NULL);
	http_chunked_write(conn, "tail\n", 5);
	http_chunked_end(conn);
}

static void on_message(void *ctx, struct http_conn *conn, struct http_request *req)
{
	(void)ctx;
	if (strncmp(req->path, "/q", 2) == 0) {
		char *a = http_query_get(req->query, "a"), *off = http_query_get(req->query, "offset");
		http_respond_json(conn, 200, json_pack("{s:s?,s:s?}", "a", a, "offset", off));
		free(a);
		free(off);
	} else if (strncmp(req->path, "/c", 2) == 0 && req->method != HTTP_HEAD) {
		http_chunked_begin(conn, 200, "text/plain");
		http_chunked_write(conn, req->path, strlen(req->path));
		http_chunked_write(conn, req->body ? req->body : "", req->body_len);
		if (http_conn_write_queue(conn) > 0) {
			http_conn_on_drain(conn, on_drained, NULL);
		} else {
			http_chunked_end(conn);
		}
	} else if ((strncmp(req->path, "/d", 2) == 0 || strncmp(req->path, "/D", 2) == 0) && !F.later_conn) {
		/* /d answers on the next loop turn; /D 200 ms later, after the client has hung up
		 * (runnerd notices a vanished peer when it writes the answer). */
		F.later_conn = conn;
		http_conn_attach(conn, &F.later, later_release);
		uv_timer_start(&F.later, on_later, req->path[1] == 'D' ? 200 : 0, 0);
	} else {
		http_respond_json(conn, strncmp(req->path, "/s", 2) == 0 && F.sunk > 64 ? 413 : 200,
		                  json_pack("{s:s,s:I,s:b}", "path", req->path, "body", (json_int_t)req->body_len,
		                            "auth", req->authorization != NULL));
	}
}

static void on_connection(uv_poll_t *p, int status, int events)
{
	/* As runnerd's server does: accept, then hand the descriptor to http_conn_open. */
	(void)p, (void)events;
	int fd = status < 0 ? -1 : accept4(F.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (fd < 0 || http_conn_open(&F.loop, fd, 0, &F.handler, &F.set) < 0)
		FAIL("accept failed");
	F.accepted = 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	signal(SIGPIPE, SIG_IGN); /* as runnerd: a write to a vanished peer is EPIPE, not death */
	if (uv_loop_init(&F.loop) < 0 || uv_timer_init(&F.loop, &F.later) < 0)
		FAIL("loop setup failed");
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	F.listen_fd = fd;
	F.addr.sun_family = AF_UNIX;
	int n = snprintf(F.addr.sun_path + 1, sizeof(F.addr.sun_path) - 1, "ukrun-fuzz-http-%d", (int)getpid());
	F.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
	if (fd < 0 || bind(fd, (struct sockaddr *)&F.addr, F.addrlen) < 0 ||
	    listen(fd, 16) < 0 || uv_poll_init(&F.loop, &F.listener, fd) < 0 ||
	    uv_poll_start(&F.listener, UV_READABLE, on_connection) < 0)
		FAIL("listen failed: %s", strerror(errno));
	F.handler = (struct http_handler){ .headers = on_headers, .message = on_message };
	return 0;
}

/* ---- the oracle ---- */

struct count {
	int begun;   /* requests begun (reference request parser) */
	int finals;  /* final (non-1xx) responses */
};

static int req_begin(http_parser *p)
{
	((struct count *)p->data)->begun++;
	return 0;
}

static int resp_headers(http_parser *p)
{
	if (p->status_code >= 200)
		((struct count *)p->data)->finals++;
	return 0;
}

static const http_parser_settings req_settings = { .on_message_begin = req_begin };
static const http_parser_settings resp_settings = { .on_headers_complete = resp_headers };

/* ---- one input ---- */

static void drain(int fd, http_parser *resp, int check)
{
	char buf[65536];
	ssize_t n;
	while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		if (!check || HTTP_PARSER_ERRNO(resp) != HPE_OK)
			continue;
		size_t used = http_parser_execute(resp, &resp_settings, buf, (size_t)n);
		if (HTTP_PARSER_ERRNO(resp) != HPE_OK || used != (size_t)n)
			FAIL("runnerd sent a malformed response: %s",
			     http_errno_description(HTTP_PARSER_ERRNO(resp)));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct count c = {0};
	http_parser ref, resp;
	int check = memmem(data, size, "HEAD", 4) == NULL;
	http_parser_init(&ref, HTTP_REQUEST);
	ref.data = &c;
	http_parser_execute(&ref, &req_settings, (const char *)data, size);
	http_parser_init(&resp, HTTP_RESPONSE);
	resp.data = &c;

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&F.addr, F.addrlen) < 0)
		FAIL("connect failed: %s", strerror(errno));
	F.accepted = 0;
	size_t off = 0;
	unsigned long spins = 0;
	/* Pieces of 1..256 bytes (the last byte decides), each read by runnerd on its own, so
	 * requests and pipelined tails arrive split at every place. */
	size_t piece = size ? 1 + data[size - 1] : 1;
	while (off < size) {
		size_t want = size - off < piece ? size - off : piece;
		ssize_t n = send(fd, data + off, want, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			break; /* runnerd closed first (a malformed request) */
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			FAIL("send failed: %s", strerror(errno));
		uv_run(&F.loop, UV_RUN_NOWAIT);
		drain(fd, &resp, check);
	}
	/* One input in three ends with runnerd's shutdown (http_conn_close_all) instead of the
	 * client's hang-up. */
	if (size % 3 == 0) {
		while (!F.accepted)
			uv_run(&F.loop, UV_RUN_NOWAIT);
		http_conn_close_all(&F.set);
	}
	/* Half-close first: runnerd answers what it was sent, then closes. A request it
	 * answers only later (/D) keeps a half-closed connection open, so after a while the
	 * client closes for good, and then the connection must go at once. */
	shutdown(fd, SHUT_WR);
	while ((!F.accepted || F.set.count > 0) && ++spins < 200000) {
		uv_run(&F.loop, UV_RUN_NOWAIT);
		drain(fd, &resp, check);
	}
	drain(fd, &resp, check);
	close(fd);
	uint64_t until = uv_hrtime() + 5000000000ull; /* 5 s */
	while (!F.accepted || F.set.count > 0) {
		uv_run(&F.loop, UV_RUN_NOWAIT);
		if (uv_hrtime() > until)
			FAIL("the connection did not close after the client hung up");
	}
	if (uv_is_active((uv_handle_t *)&F.later) || F.later_conn)
		FAIL("a deferred answer outlived its connection");
	if (check && c.finals > c.begun + 1)
		FAIL("%d responses to %d requests", c.finals, c.begun);
	return 0;
}
