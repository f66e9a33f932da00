/*
 * httpc.h — the client's HTTP/1.1 channel to runnerd.
 *
 * Over the Unix socket (the default, the per-user daemon) it is its own
 * transport: one kept-alive connection serves every request of a run,
 * requests are written by hand, responses parsed with nodejs http-parser,
 * uploads go out with sendfile(2). Over TCP with a bearer token ($UKRUN_URL,
 * http or https) it is libcurl, loaded with dlopen on first use so the common
 * case does not pay the start-up of libcurl and its 30-odd libraries. JSON in
 * and out for the API; raw streams for image uploads and console follows,
 * which stop early (within a second) when the caller's interrupt flag is
 * raised (the signal handler only sets it).
 *
 * Transport failures return a negative errno (-ENOENT/-ECONNREFUSED: nobody
 * listens; -EINTR: interrupted; -EPIPE: the console sink closed; -ETIMEDOUT;
 * -ECONNRESET; -EPROTO: the TLS handshake or runnerd's certificate failed; -EIO)
 * -ENOSYS: libcurl could not be loaded for TCP) with a one-line message in
 * httpc.errbuf. An HTTP response of
 * any status is a success at this layer.
 */
#ifndef UKRUN_CLIENT_HTTPC_H
#define UKRUN_CLIENT_HTTPC_H

#include <signal.h>
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define HTTPC_ERROR_SIZE 256

struct httpc {
	void *curl;                         /* TCP: libcurl's easy handle; NULL over the Unix socket */
	char *unix_path;                    /* NULL over TCP */
	char *base;                         /* URL prefix without trailing '/' */
	char *auth_header;                  /* "Authorization: Bearer ..." or NULL */
	char *ca_file;                      /* https: CA certificates (PEM) to verify runnerd with; NULL = system's */
	const volatile sig_atomic_t *abort_flag; /* non-zero: abortable transfers stop (may be NULL) */
	long timeout_ms;                    /* total limit for JSON requests; 0 = default */
	const char *progress_name;          /* non-NULL: httpc_put_fd draws a progress bar on stderr naming it */
	/* httpc_stream: when set, the body goes here instead of out_fd (0 or -errno). */
	int (*sink)(void *ctx, const char *p, size_t n);
	void *sink_ctx;
	int fd;                             /* Unix socket: the kept-alive connection, when connected */
	bool connected;
	char errbuf[HTTPC_ERROR_SIZE];
};

struct httpc_resp {
	long status;  /* HTTP status */
	json_t *json; /* the body when it parsed as JSON, else NULL */
	char *body;   /* the raw body, NUL-terminated (bounded), or NULL */
};

/* Set up for `unix_path` (then `base_url` and `token` are ignored) or for
 * `base_url` like "http://127.0.0.1:7878" with an optional bearer token.
 * Returns 0, -EINVAL (bad URL) or -ENOMEM. */
int httpc_init(struct httpc *h, const char *unix_path, const char *base_url, const char *token);
void httpc_free(struct httpc *h);
/* https: verify runnerd's certificate against the PEM CA file `path` instead of the
 * system's trust store. 0 or -ENOMEM. */
int httpc_set_ca_file(struct httpc *h, const char *path);

/* Where requests go, for messages ("socket /run/..." or the URL). */
const char *httpc_where(const struct httpc *h);

/* `method` `path` with an optional JSON body; fills *ret (clear with
 * httpc_resp_clear). Not abortable: a request that creates or cancels a run
 * must complete so its result is known. */
int httpc_json(struct httpc *h, const char *method, const char *path, json_t *body, struct httpc_resp *ret);

/* POST `len` bytes of `data` to `path` as application/octet-stream. Not abortable. */
int httpc_post_data(struct httpc *h, const char *path, const char *data, size_t len, struct httpc_resp *ret);

/* A second channel to the same runnerd (its own connection), for another thread. 0 or
 * -ENOMEM; free with httpc_free. */
int httpc_clone(struct httpc *dst, const struct httpc *src);

/* HEAD `path`: *ret_status gets the status. */
int httpc_head(struct httpc *h, const char *path, long *ret_status);

/* PUT `size` bytes of `fd` (read from offset 0) to `path` as
 * application/octet-stream with Content-Length and no "Expect: 100-continue".
 * Abortable. */
int httpc_put_fd(struct httpc *h, const char *path, int fd, uint64_t size, struct httpc_resp *ret);

/* GET `path`; on 200 every body byte goes to `out_fd` with write(2) as it
 * arrives (*io_bytes grows by what was written); on other statuses the body
 * is collected into *ret instead. Abortable. */
int httpc_stream(struct httpc *h, const char *path, int out_fd, uint64_t *io_bytes, struct httpc_resp *ret);

/* The one-line reason of an error response: error.message, else the body's
 * first line, else "HTTP <status>". Valid while *r lives. */
const char *httpc_resp_message(const struct httpc_resp *r, char *buf, size_t len);

/* error.code of an error response, or "" */
const char *httpc_resp_code(const struct httpc_resp *r);

void httpc_resp_clear(struct httpc_resp *r);

/* `s` percent-encoded for a URL query value (RFC 3986 unreserved characters
 * kept); free() it. NULL when out of memory. */
char *httpc_escape(const char *s);

#endif
