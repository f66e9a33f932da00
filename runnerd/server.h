/*
 * server.h — runnerd's listeners: the Unix socket (always; its file mode is the
 * access control) and an optional TCP socket (bearer token checked by the API).
 * Each accepted connection becomes an http_conn served by the API handler.
 */
#ifndef RUNNERD_SERVER_H
#define RUNNERD_SERVER_H

#include <uv.h>

#include "http.h"

struct server {
	uv_loop_t *loop;
	uv_pipe_t unix_listener;
	uv_tcp_t tcp_listener;
	int has_unix, has_tcp;
	char *socket_path;
	struct http_handler handler;
	struct http_conn_set conns;
};

/* Listen on the Unix socket `path` (file mode `mode`). A stale socket (no daemon
 * answering) is replaced; a live one is -EADDRINUSE. */
int server_listen_unix(struct server *srv, uv_loop_t *loop, const char *path, int mode,
                       const struct http_handler *handler, char **ret_err);
/* Listen on "tcp://HOST:PORT" (IPv4 or [IPv6]). */
int server_listen_tcp(struct server *srv, const char *url, char **ret_err);
/* Stop accepting; unlink the socket file. Idempotent. */
void server_close(struct server *srv);
/* Close every open connection (at the very end of a shutdown). */
void server_close_connections(struct server *srv);

#endif
