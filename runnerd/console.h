/*
 * console.h — a run's console: bytes appended to runs/<id>/console.log as
 * they arrive (capped: past the cap they are counted and dropped) and
 * streamed to followers (GET .../console?follow=1).
 *
 * The console knows nothing of HTTP: a follower delivers into a sink (struct
 * console_sink; the API's is a chunked response, api.c). A follower always
 * sends exactly the file's bytes from its own offset, in order: one that has
 * caught up is fed from the bytes just stored (no read-back), one that lags
 * (its sink was full, or it started behind) reads them back from the file at
 * its offset until it has caught up. A slow sink never makes the daemon buffer
 * (backpressure: past CONSOLE_SINK_HIGH_WATER queued the follower waits for
 * console_follower_resume), and a follower survives the run's end.
 *
 * Batching (console_batch): appended bytes are kept in memory and stored in
 * one write, and fed to followers at once, when CONSOLE_BATCH_BYTES are
 * pending or CONSOLE_BATCH_MS after the first of them, whichever is first;
 * console_flush, console_end and console_close store them at once. Without it
 * every append is stored at once.
 */
#ifndef RUNNERD_CONSOLE_H
#define RUNNERD_CONSOLE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct follower;
struct console_batcher;

#define CONSOLE_DEFAULT_CAP (16u * 1024 * 1024)
#define CONSOLE_BATCH_BYTES (64u * 1024) /* pending bytes that make a store */
#define CONSOLE_BATCH_MS 5               /* the longest a byte waits to be stored */
#define CONSOLE_SINK_HIGH_WATER (256u * 1024) /* queued in a sink: the follower waits */

struct console {
	int fd;            /* console.log, write side */
	char *path;
	uint64_t size;     /* bytes accepted (stored, or pending when batching) */
	uint64_t stored;   /* bytes in the file: followers see these */
	uint64_t cap;      /* 0 = unlimited */
	uint64_t dropped;  /* bytes past the cap, or that could not be written */
	int write_error;   /* first failed write's errno (e.g. ENOSPC), 0 = none */
	int ended;
	char *pend;        /* batching: bytes [stored, size) not stored yet */
	size_t pend_len, pend_alloc;
	struct console_batcher *batch; /* NULL: every append is stored at once */
	struct follower *followers; /* live followers */
};

/* Where a follower's bytes go. */
struct console_sink {
	/* Take `len` bytes (copied before returning). May release the follower
	 * (console_follower_free) on a failure. */
	void (*write)(void *ctx, const char *buf, size_t len);
	/* Bytes taken and not delivered yet (backpressure). */
	size_t (*queued)(void *ctx);
	/* Every byte is written: the stream is complete. The follower is already freed. */
	void (*end)(void *ctx);
};

/* Create (truncate) the log at `path` (never through a symlink). */
int console_open(struct console *con, const char *path, uint64_t cap);
/* A console whose log at `path` exists but is not open yet (a queued run holds no
 * descriptor): followers can attach; console_attach_fd gives it its write side. */
int console_init(struct console *con, const char *path, uint64_t cap);
/* Take `fd`, open for appending to the console's log (owned from now on). */
void console_attach_fd(struct console *con, int fd);
/* Batch appends on `loop` from now on (see above). 0 or -ENOMEM (then unbatched). */
int console_batch(struct console *con, uv_loop_t *loop);
/* Store and stream `len` bytes (write errors are counted as dropped). */
void console_append(struct console *con, const char *buf, size_t len);
/* Store the pending bytes now (size, dropped and write_error are final for what came). */
void console_flush(struct console *con);
/* No more bytes will come (pending ones are stored): followers finish once they have
 * caught up. */
void console_end(struct console *con);
/* Release the console (after console_end); followers go on from the file alone. */
void console_close(struct console *con);

/* A follower of `path` from `offset` into `sink` (with `ctx`). With `live` non-NULL (a
 * running run's console) it goes on until that console ends; with NULL it ends at the
 * file's current end. Nothing is sent before console_follower_resume. 0 or -errno. */
int console_follow(struct console *live, const char *path, uint64_t offset, const struct console_sink *sink,
                   void *ctx, struct follower **ret_f);
/* Send what the follower can while its sink keeps up (its first call, and each time the
 * sink drains). At the end it frees the follower and calls sink->end. */
void console_follower_resume(struct follower *f);
/* The sink goes away before the end (its client hung up): free without calling the sink.
 * NULL is a no-op. */
void console_follower_free(struct follower *f);

#endif
