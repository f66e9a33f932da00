/* server.c — Unix and TCP listeners (see server.h). */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static int fail(char **ret_err, int r, const char *what, const char *arg)
{
	if (ret_err && asprintf(ret_err, "%s '%s': %s", what, arg, uv_strerror(r)) < 0)
		*ret_err = NULL;
	return r;
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct server *srv = listener->data;
	if (status < 0) {
		log_warn("accept failed: %s", uv_strerror(status));
		return;
	}
	int is_tcp = listener == (uv_stream_t *)&srv->tcp_listener;
	int r = http_conn_accept(srv->loop, listener, is_tcp, &srv->handler, &srv->conns);
	if (r < 0)
		log_warn("cannot accept a connection: %s", uv_strerror(r));
}

/* Is a daemon answering on `path`? */
static int socket_alive(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return 0;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	int alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return alive;
}

int server_listen_unix(struct server *srv, uv_loop_t *loop, const char *path, int mode,
                       const struct http_handler *handler, char **ret_err)
{
	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	srv->handler = *handler;
	struct sockaddr_un sa;
	if (strlen(path) >= sizeof(sa.sun_path))
		return fail(ret_err, UV_ENAMETOOLONG, "Socket path too long", path);
	if (socket_alive(path))
		return fail(ret_err, UV_EADDRINUSE, "Another runnerd is serving", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return fail(ret_err, -errno, "Cannot remove stale socket", path);
	int r = uv_pipe_init(loop, &srv->unix_listener, 0);
	if (r < 0)
		return fail(ret_err, r, "Cannot create socket", path);
	srv->unix_listener.data = srv;
	srv->has_unix = 1;
	/* Created with a restrictive umask so the socket is never briefly world-accessible. */
	mode_t old = umask(0177);
	r = uv_pipe_bind(&srv->unix_listener, path);
	umask(old);
	if (r == 0 && chmod(path, (mode_t)mode) < 0)
		r = -errno;
	if (r == 0)
		r = uv_listen((uv_stream_t *)&srv->unix_listener, 128, on_connection);
	if (r < 0)
		return fail(ret_err, r, "Cannot listen on", path);
	srv->socket_path = strdup(path);
	log_info("listening on unix:%s", path);
	return 0;
}

int server_listen_tcp(struct server *srv, const char *url, char **ret_err)
{
	if (strncmp(url, "tcp://", 6) != 0)
		return fail(ret_err, UV_EINVAL, "Listen address must look like tcp://127.0.0.1:7878, not", url);
	const char *hp = url + 6;
	char host[256];
	const char *colon;
	if (*hp == '[') {
		const char *end = strchr(hp, ']');
		if (!end || end[1] != ':' || (size_t)(end - hp - 1) >= sizeof(host))
			return fail(ret_err, UV_EINVAL, "Malformed listen address", url);
		memcpy(host, hp + 1, (size_t)(end - hp - 1));
		host[end - hp - 1] = '\0';
		colon = end + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon || (size_t)(colon - hp) >= sizeof(host))
			return fail(ret_err, UV_EINVAL, "Malformed listen address", url);
		memcpy(host, hp, (size_t)(colon - hp));
		host[colon - hp] = '\0';
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return fail(ret_err, UV_EINVAL, "Bad port in listen address", url);
	struct sockaddr_storage ss;
	int r = strchr(host, ':') ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss)
	                          : uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss);
	if (r < 0)
		return fail(ret_err, r, "Bad host in listen address", url);
	r = uv_tcp_init(srv->loop, &srv->tcp_listener);
	if (r < 0)
		return fail(ret_err, r, "Cannot create socket for", url);
	srv->tcp_listener.data = srv;
	srv->has_tcp = 1;
	r = uv_tcp_bind(&srv->tcp_listener, (struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&srv->tcp_listener, 128, on_connection);
	if (r < 0)
		return fail(ret_err, r, "Cannot listen on", url);
	log_info("listening on %s", url);
	return 0;
}

void server_close(struct server *srv)
{
	if (srv->has_unix) {
		uv_close((uv_handle_t *)&srv->unix_listener, NULL);
		srv->has_unix = 0;
		if (srv->socket_path)
			unlink(srv->socket_path);
	}
	if (srv->has_tcp) {
		uv_close((uv_handle_t *)&srv->tcp_listener, NULL);
		srv->has_tcp = 0;
	}
	free(srv->socket_path);
	srv->socket_path = NULL;
}

void server_close_connections(struct server *srv)
{
	http_conn_close_all(&srv->conns);
}
