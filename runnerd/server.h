/*
 * server.h — runnerd's listeners: the Unix socket (always; its file mode is the
 * access control) and an optional TCP socket, plain or TLS (bearer token checked by the
 * API either way).
 * Each accepted connection becomes an http_conn served by the API handler.
 *
 * Each listener accepts on its own (a bounded batch per wake-up, so a flood on one
 * never keeps the loop from the other) and caps its own connections: over the cap a
 * peer gets an immediate 503 and is closed. When the process runs out of file
 * descriptors, a spare one is given up to accept and close the waiting peers at once
 * (they see the daemon is overloaded instead of hanging in the backlog), and with no
 * spare left the listener pauses briefly instead of spinning.
 */
#ifndef RUNNERD_SERVER_H
#define RUNNERD_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "http.h"

struct server_limits {
	struct http_limits http; /* of every connection */
	unsigned max_conns;      /* open connections per listener; 0 = no cap */
};

struct server;

struct listener {
	struct server *srv;
	uv_poll_t poll;          /* the listening socket is readable: peers wait */
	uv_timer_t pause;        /* accepting resumes after running out of descriptors */
	int fd;                  /* -1 when not listening */
	int is_tcp;
	struct http_conn_set conns;
	uint64_t refused;        /* peers turned away over the cap */
	uint64_t shed;           /* peers closed at once for want of file descriptors */
	uint64_t last_warn_ms;   /* rate limit of the overload warnings */
};

struct server {
	uv_loop_t *loop;
	struct listener unix_l, tcp_l;
	char *socket_path;
	struct http_handler handler;
	struct server_limits limits;
	int spare_fd;            /* reserved descriptor, given up to shed peers on EMFILE */
};

/* Prepare `srv` (no listener yet): connections are served by `handler` within `limits`. */
int server_init(struct server *srv, uv_loop_t *loop, const struct http_handler *handler,
                const struct server_limits *limits);
/* Listen on the Unix socket `path` (file mode `mode`). A stale socket (no daemon
 * answering) is replaced; a live one is -EADDRINUSE. */
int server_listen_unix(struct server *srv, const char *path, int mode, char **ret_err);
/* Serve an already listening Unix socket (systemd socket activation passes it as fd 3);
 * its file is left alone at close. -EINVAL when `fd` is not one. */
int server_listen_unix_fd(struct server *srv, int fd, char **ret_err);
/* Listen on "tcp://HOST:PORT" (IPv4 or [IPv6]), or with a TLS context on
 * "tls://HOST:PORT": the same listener, its connections speaking TLS (tls.h). The
 * context stays the caller's and must outlive the server. */
int server_listen_tcp(struct server *srv, const char *url, struct tls_ctx *tls, char **ret_err);
/* Connections inside a request (an upload, a response being streamed): the daemon is
 * not idle while there are any. */
unsigned server_busy(const struct server *srv);
/* Open connections of both listeners. */
unsigned server_conn_count(const struct server *srv);
/* Stop accepting; unlink the socket file. Idempotent. */
void server_close(struct server *srv);
/* Close every open connection (at the very end of a shutdown). */
void server_close_connections(struct server *srv);

#endif
