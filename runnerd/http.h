/*
 * http.h — one HTTP/1.1 connection: nodejs http-parser glue on a libuv stream.
 *
 * The connection parses one request at a time (pipelined requests wait until the
 * response to the previous one is complete), hands it to a handler in two steps
 * (headers, then the complete message) and offers plain, JSON and chunked
 * responses. Bounded: URL 8 KiB, header lines 32 KiB in all (names, values and
 * separators), buffered bodies 1 MiB; larger bodies must be streamed through a body
 * sink set by the handler. Bounded in time too (struct http_limits): a connection
 * that sends its request head too slowly, sits idle between requests, stalls in a
 * body or stops reading its answer is closed. A peer that half-closes after its
 * request (shutdown(SHUT_WR)) still gets the answer.
 *
 * A connection set with a TLS context (tls.h) runs every connection's bytes through
 * a TLS session: reads are decrypted before parsing, writes encrypted before they
 * are queued, and all of the above applies to the plaintext unchanged.
 */
#ifndef RUNNERD_HTTP_H
#define RUNNERD_HTTP_H

#include <http_parser.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_MAX_URL (8 * 1024)
#define HTTP_MAX_HEADERS (32 * 1024)
#define HTTP_MAX_BUFFERED_BODY (1024 * 1024)

struct http_conn;
struct tls_ctx;

struct http_request {
	enum http_method method;
	char *url;           /* raw request target */
	char *path;          /* decoded path, no query */
	char *query;         /* raw query string or NULL */
	char *authorization; /* Authorization header or NULL */
	uint64_t content_length; /* UINT64_MAX when absent */
	char *body;          /* buffered body (NUL-terminated) unless a sink took it */
	size_t body_len;
};

/* Receives a streamed body. Return < 0 to abort (the handler must respond from on_error). */
struct http_body_sink {
	int (*data)(void *ctx, const char *buf, size_t len);
	void *ctx;
};

/* What the server plugs into each connection. */
struct http_handler {
	/* Headers are in. May call http_conn_set_sink() to stream the body, or respond at
	 * once (e.g. 413); then the body is discarded. */
	void (*headers)(void *ctx, struct http_conn *conn, struct http_request *req);
	/* The whole message is in (unless a response was already sent). Must respond, now
	 * or later. */
	void (*message)(void *ctx, struct http_conn *conn, struct http_request *req);
	void *ctx;
};

/* Time limits of every connection of a set, in ms (0 = none). */
struct http_limits {
	/* The request line and headers must be in by this long after the accept (first
	 * request) or after the request's first byte (later ones), however slowly they come. */
	uint64_t header_timeout_ms;
	/* Keep-alive: the wait for the next request after an answer. Also a request body
	 * that brings no byte, or an answer the peer does not read from, for this long. A
	 * request the handler has not answered yet (a run, a console follower with nothing
	 * new) is never idle. */
	uint64_t idle_timeout_ms;
};

/* The open connections of a listener (so they can be counted, capped and all closed at
 * shutdown). */
struct http_conn_set {
	struct http_conn *head;
	unsigned count;
	unsigned busy; /* connections inside a request: from its first byte to its answer's end */
	struct http_limits limits;
	struct tls_ctx *tls; /* not NULL: every connection speaks TLS with this context (tls.h) */
};

/* Serve the connected socket `fd` (a Unix or, with `is_tcp`, a TCP stream; TCP requests
 * need the bearer token) as a member of `set`, through TLS when the set has a context. Takes `fd` in every case (closed on
 * failure). 0 or a negative errno. */
int http_conn_open(uv_loop_t *loop, int fd, int is_tcp, const struct http_handler *handler,
                   struct http_conn_set *set);
/* Close every connection of `set` (each frees in its close callback). */
void http_conn_close_all(struct http_conn_set *set);

/* Close now (idempotent); frees in the close callback. */
void http_conn_close(struct http_conn *conn);

int http_conn_is_tcp(const struct http_conn *conn);
/* The uid of the process at the other end of a Unix connection (SO_PEERCRED), or -1
 * (TCP, or unknown). */
long http_conn_peer_uid(const struct http_conn *conn);
/* The object serving the connection's current request (an upload, a console follower):
 * `release(obj)` runs when the connection closes while it is attached. Attaching NULL
 * detaches without releasing. */
void http_conn_attach(struct http_conn *conn, void *obj, void (*release)(void *obj));
void *http_conn_attached(const struct http_conn *conn);

void http_conn_set_sink(struct http_conn *conn, const struct http_body_sink *sink);
/* Backpressure for a body sink that cannot keep up: stop reading the connection (the
 * sink has taken every byte it was given) until http_conn_release_input(), the end of the
 * body or a response, whichever comes first. The body's idle deadline does not run
 * meanwhile. Both idempotent. */
void http_conn_hold_input(struct http_conn *conn);
void http_conn_release_input(struct http_conn *conn);

/* Responses. Exactly one per request. */
void http_respond(struct http_conn *conn, int status, const char *content_type, const char *body,
                  size_t len);
/* Steals a reference to `json`. */
void http_respond_json(struct http_conn *conn, int status, json_t *json);
/* `{"error": {"code": code, "message": ...}}`. */
void http_respond_error(struct http_conn *conn, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Chunked streaming response. */
void http_chunked_begin(struct http_conn *conn, int status, const char *content_type);
void http_chunked_write(struct http_conn *conn, const char *buf, size_t len);
void http_chunked_end(struct http_conn *conn);
/* Bytes queued on the socket, not yet written (backpressure for streams). */
size_t http_conn_write_queue(const struct http_conn *conn);
/* Called once each time the write queue drains to empty (for pumping streams). */
void http_conn_on_drain(struct http_conn *conn, void (*cb)(struct http_conn *, void *), void *arg);

/* Query parameter `name` (decoded, malloc'd) or NULL. */
char *http_query_get(const char *query, const char *name);

#endif
