/*
 * api.h — the HTTP API under /v1 (spec: schema/openapi.yaml, docs/api.md):
 * routes requests to the image store, the run manager and the sqlite store,
 * and maps internal errors to HTTP status + JSON error codes (one table).
 * The API never spawns processes; runs go through run.c.
 */
#ifndef RUNNERD_API_H
#define RUNNERD_API_H

#include <stdint.h>

#include "http.h"
#include "image.h"
#include "run.h"
#include "store.h"

/* Longest bearer token accepted, in the token file or from a client (longer ones are
 * refused, never truncated). */
#define API_TOKEN_MAX 256

struct api {
	struct run_manager *runs;
	struct image_store *images;
	struct store *db;
	const char *token;        /* bearer token required on TCP connections; NULL = TCP refused */
	int remote_binds;         /* runnerd.conf remote-binds: honour --bind over TCP/TLS too */
	uint64_t requests;        /* served (metrics) */
	uint64_t last_request_ms; /* uv_now of the last request (idle exit) */
	uv_loop_t *loop;
};

struct console;

/* Answer on `conn` with a chunked stream of the console log at `path` from `offset`: to
 * the end of `live` (a running run's console) or, with NULL, of the file as it is now.
 * 0, or -errno with nothing sent (the caller answers). */
int api_console_follow(struct console *live, const char *path, struct http_conn *conn, uint64_t offset);

/* Fill *ret with the handler every connection uses (ctx = api). */
void api_handler(struct api *api, struct http_handler *ret);

#endif
