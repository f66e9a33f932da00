/*
 * console.h — a run's console: bytes appended to runs/<id>/console.log as
 * they arrive (capped: past the cap they are counted and dropped) and
 * streamed to followers (GET .../console?follow=1). A follower always reads
 * from the file at its own offset, so stored and live bytes go one way, a
 * slow reader never makes the daemon buffer (backpressure: it reads again
 * when its socket drains), and it survives the run's end.
 */
#ifndef RUNNERD_CONSOLE_H
#define RUNNERD_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

struct http_conn;
struct follower;

struct console {
	int fd;            /* console.log, write side */
	char *path;
	uint64_t size;     /* bytes stored */
	uint64_t cap;      /* 0 = unlimited */
	uint64_t dropped;  /* bytes past the cap, or that could not be written */
	int write_error;   /* first failed write's errno (e.g. ENOSPC), 0 = none */
	int ended;
	struct follower *followers; /* live followers */
};

#define CONSOLE_DEFAULT_CAP (16u * 1024 * 1024)

/* Create (truncate) the log at `path` (never through a symlink). */
int console_open(struct console *con, const char *path, uint64_t cap);
/* A console whose log at `path` exists but is not open yet (a queued run holds no
 * descriptor): followers can attach; console_attach_fd gives it its write side. */
int console_init(struct console *con, const char *path, uint64_t cap);
/* Take `fd`, open for appending to the console's log (owned from now on). */
void console_attach_fd(struct console *con, int fd);
/* Store and stream `len` bytes (write errors are counted as dropped). */
void console_append(struct console *con, const char *buf, size_t len);
/* No more bytes will come: followers finish once they have caught up. */
void console_end(struct console *con);
/* Release the console (after console_end); followers go on from the file alone. */
void console_close(struct console *con);

/* Start a chunked response on `conn` streaming `path` from `offset`. With `live` non-NULL
 * (a running run's console) the stream goes on until that console ends; with NULL it
 * ends at the file's current end. The follower is attached to `conn` (released if the
 * connection closes first). */
int console_follow_start(struct console *live, const char *path, struct http_conn *conn,
                         uint64_t offset);

#endif
