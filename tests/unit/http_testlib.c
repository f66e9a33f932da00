/*
 * http_testlib.c — a real server loop, a raw client thread and a strict
 * response parser for the unit tests of HTTP-facing modules (see
 * http_testlib.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_testlib.h"

/* ---- raw responses ---- */

const char *http_test_header(const struct http_test_resp *r, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2;
		if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			const char *v = line + nlen + 1;
			while (*v == ' ')
				v++;
			const char *e = strstr(v, "\r\n");
			size_t n = e ? (size_t)(e - v) : strlen(v);
			if (n >= outlen)
				n = outlen - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			return out;
		}
	}
	return NULL;
}

/* The chunked body at buf + pos: as http_test_parse. */
static int parse_chunked(const char *buf, size_t len, size_t pos, struct http_test_resp *r)
{
	r->chunked = 1;
	for (;;) {
		const char *crlf = memmem(buf + pos, len - pos, "\r\n", 2);
		if (!crlf)
			return 0;
		size_t n = 0, digits = 0;
		for (const char *p = buf + pos; p < crlf; p++, digits++) {
			int c = *p, d = c >= '0' && c <= '9' ? c - '0' : (c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1);
			if (d < 0)
				return -1;
			n = n * 16 + (size_t)d;
		}
		if (!digits)
			return -1;
		pos = (size_t)(crlf - buf) + 2;
		if (len - pos < n + 2)
			return 0;
		if (memcmp(buf + pos + n, "\r\n", 2) != 0)
			return -1;
		if (n == 0) {
			r->raw_len = pos + 2;
			return 1;
		}
		char *nb = realloc(r->body, r->body_len + n + 1);
		memcpy(nb + r->body_len, buf + pos, n);
		r->body = nb;
		r->body_len += n;
		r->body[r->body_len] = '\0';
		pos += n + 2;
	}
}

int http_test_parse(const char *buf, size_t len, int head, struct http_test_resp *r)
{
	memset(r, 0, sizeof(*r));
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	if (!end)
		return 0;
	size_t hlen = (size_t)(end - buf) + 2;
	if (hlen >= sizeof(r->head) || sscanf(buf, "HTTP/1.1 %d ", &r->status) != 1)
		return -1;
	memcpy(r->head, buf, hlen);
	r->head[hlen] = '\0';
	size_t pos = hlen + 2;
	char v[64];
	if (head) {
		r->raw_len = pos;
		return 1;
	}
	if (http_test_header(r, "Transfer-Encoding", v, sizeof(v))) {
		if (strcmp(v, "chunked") != 0 || http_test_header(r, "Content-Length", v, sizeof(v)))
			return -1;
		int k = parse_chunked(buf, len, pos, r);
		if (k <= 0) {
			free(r->body);
			r->body = NULL;
		}
		return k;
	}
	if (!http_test_header(r, "Content-Length", v, sizeof(v)))
		return -1;
	size_t cl = strtoull(v, NULL, 10);
	if (len - pos < cl)
		return 0;
	r->body = malloc(cl + 1);
	memcpy(r->body, buf + pos, cl);
	r->body[cl] = '\0';
	r->body_len = cl;
	r->raw_len = pos + cl;
	return 1;
}

int http_test_parse_all(const char *buf, size_t len, unsigned head_mask, struct http_test_resp *out, int max,
                        size_t *ret_used)
{
	size_t pos = 0;
	int n = 0;
	while (n < max && pos < len) {
		struct http_test_resp tmp, *r = out ? &out[n] : &tmp;
		int k = http_test_parse(buf + pos, len - pos, n < 32 && ((head_mask >> n) & 1), r);
		if (k < 0)
			return -1;
		if (k == 0)
			break;
		pos += r->raw_len;
		if (!out)
			free(tmp.body);
		n++;
	}
	if (ret_used)
		*ret_used = pos;
	return n;
}

void http_test_resps_free(struct http_test_resp *r, int n)
{
	for (int i = 0; i < n; i++)
		free(r[i].body);
}

/* ---- client thread ---- */

static void *client_main(void *arg)
{
	struct http_test_client *c = arg;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->sock);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		c->failed = 1;
		goto out;
	}
	for (size_t off = 0; off < c->len;) {
		size_t n = c->len - off;
		if (c->split && n > c->split)
			n = c->split;
		ssize_t w = send(fd, c->req + off, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			/* The server may close early (an error answer): go read it. */
			break;
		}
		off += (size_t)w;
	}
	size_t cap = 0;
	while (c->want || c->until_eof) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		/* A safety net against a hung test, not a timing assertion. */
		if (poll(&p, 1, 20000) <= 0) {
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
		if (n <= 0) {
			c->eof = 1;
			break;
		}
		c->got += (size_t)n;
		c->buf[c->got] = '\0';
		if (c->until_eof)
			continue;
		/* Done at `want` responses; a malformed one stays malformed, so stop there too. */
		int k = http_test_parse_all(c->buf, c->got, c->head_mask, NULL, c->want, NULL);
		if (k < 0 || k >= c->want)
			break;
	}
out:
	if (fd >= 0)
		close(fd);
	uv_async_send(c->wake);
	return NULL;
}

void http_test_client_get(struct http_test_client *c, const char *target)
{
	int n = snprintf(c->get, sizeof(c->get), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target);
	assert_true(n > 0 && (size_t)n < sizeof(c->get));
	c->req = c->get;
	c->len = (size_t)n;
}

void http_test_client_start(struct http_test_server *s, struct http_test_client *c)
{
	c->sock = s->sock;
	c->wake = &s->wake;
	s->client_done = 0;
	assert_int_equal(pthread_create(&c->thread, NULL, client_main, c), 0);
}

void http_test_client_finish(struct http_test_server *s, struct http_test_client *c)
{
	while (!s->client_done)
		uv_run(&s->loop, UV_RUN_ONCE);
	pthread_join(c->thread, NULL);
	assert_false(c->failed);
}

void http_test_exchange(struct http_test_server *s, struct http_test_client *c)
{
	http_test_client_start(s, c);
	http_test_client_finish(s, c);
}

void http_test_exchange_parse(struct http_test_server *s, struct http_test_client *c, struct http_test_resp *out)
{
	http_test_exchange(s, c);
	size_t used = 0;
	int n = http_test_parse_all(c->buf, c->got, c->head_mask, out, c->want, &used);
	if (n != c->want || used != c->got)
		print_error("parsed %d of %d responses, %zu of %zu bytes:\n%.*s\n", n, c->want, used, c->got,
		            (int)(c->got > 2000 ? 2000 : c->got), c->buf ? c->buf : "");
	assert_int_equal(n, c->want);
	assert_int_equal(used, c->got);
}

int http_test_connect(const struct http_test_server *s)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->sock);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* ---- server side ---- */

static void on_wake(uv_async_t *a)
{
	struct http_test_server *s = a->data;
	s->client_done = 1;
}

static void on_connection(uv_poll_t *p, int status, int events)
{
	struct http_test_server *s = p->data;
	(void)events;
	assert_int_equal(status, 0);
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	assert_true(fd >= 0);
	assert_int_equal(http_conn_open(&s->loop, fd, 0, &s->handler, &s->set), 0);
	assert_int_equal(http_conn_is_tcp(s->set.head), 0);
}

int http_test_server_init(struct http_test_server *s, const char *name, const struct http_handler *handler)
{
	memset(s, 0, sizeof(*s));
	int n = snprintf(s->dir, sizeof(s->dir), "/tmp/ukrun-test-%s-XXXXXX", name);
	if (n < 0 || (size_t)n >= sizeof(s->dir))
		return -ENAMETOOLONG;
	if (!mkdtemp(s->dir))
		return -errno;
	snprintf(s->sock, sizeof(s->sock), "%s/s", s->dir);
	s->handler = *handler;
	int r = uv_loop_init(&s->loop);
	if (r < 0)
		return r;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->sock);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(s->listen_fd, 16) < 0)
		return -errno;
	r = uv_poll_init(&s->loop, &s->listener, s->listen_fd);
	s->listener.data = s;
	if (r >= 0)
		r = uv_poll_start(&s->listener, UV_READABLE, on_connection);
	if (r < 0)
		return r;
	uv_async_init(&s->loop, &s->wake, on_wake);
	s->wake.data = s;
	return 0;
}

void http_test_wait_closed(struct http_test_server *s)
{
	while (s->set.count)
		uv_run(&s->loop, UV_RUN_ONCE);
}

/* Remove `path` and the plain files in it (tests make no subdirectories). */
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

void http_test_server_fini(struct http_test_server *s)
{
	http_conn_close_all(&s->set);
	uv_close((uv_handle_t *)&s->listener, NULL);
	uv_close((uv_handle_t *)&s->wake, NULL);
	close(s->listen_fd);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	assert_int_equal(s->set.count, 0);
	assert_int_equal(uv_loop_close(&s->loop), 0);
	rm_dir(s->dir);
}
