/*
 * image_recv.h — receiving an image upload without blocking the event loop.
 *
 * The loop only copies the body's bytes into chunks of IMAGE_RECV_CHUNK bytes; libuv
 * workers (uv_queue_work) hash each full chunk (image_upload_digest) and write it
 * (image_upload_append) — two jobs that run in parallel, each over the chunks in order —
 * while the loop fills the next one, and seal the upload at the end (image_upload_seal:
 * digest check, fsync, rename, probe). IMAGE_RECV_CHUNKS chunks at most: when all but the
 * one being filled are still being hashed or written and that one is full too,
 * image_recv_feed() answers IMAGE_RECV_HOLD and the caller stops reading the connection
 * until ops.room runs (backpressure). So an upload holds at most IMAGE_RECV_CHUNKS ×
 * IMAGE_RECV_CHUNK bytes of memory (plus what one socket read brings after the hold), and
 * the loop never waits for the disk or the hash.
 */
#ifndef RUNNERD_IMAGE_RECV_H
#define RUNNERD_IMAGE_RECV_H

#include <stddef.h>
#include <uv.h>

#include "image.h"

#define IMAGE_RECV_CHUNK (1u << 20) /* bytes hashed and written per worker job */
#define IMAGE_RECV_CHUNKS 3         /* chunks an upload holds at most */
#define IMAGE_RECV_HOLD 1           /* image_recv_feed: stop reading until ops.room */

struct image_recv;

/* Called on the loop; never after image_recv_abort(). */
struct image_recv_ops {
	/* A feed that answered IMAGE_RECV_HOLD may go on (or the next one reports the
	 * worker's error). */
	void (*room)(void *arg);
	/* After image_recv_finish(): the upload is sealed, or failed; call
	 * image_recv_record(). */
	void (*sealed)(void *arg);
};

/* Receive into `up` (image_upload_begin), which this now owns (freed by record or abort). */
int image_recv_new(uv_loop_t *loop, struct image_upload *up, const struct image_recv_ops *ops, void *arg,
                   struct image_recv **ret_rc);
/* Take all `len` bytes of the body. 0: go on; IMAGE_RECV_HOLD: taken, but stop reading
 * until ops.room; < 0: the upload failed (-EFBIG over the store's limit, or the worker's
 * write error, with a message in *ret_err when there is one): abort it. */
int image_recv_feed(struct image_recv *rc, const char *buf, size_t len, char **ret_err);
/* The body is complete: write what is left and seal on the worker; ops.sealed follows. */
void image_recv_finish(struct image_recv *rc);
/* After ops.sealed: record the image (image_upload_record: -EBADMSG on a digest mismatch,
 * message in *ret_err). Frees `rc`. */
int image_recv_record(struct image_recv *rc, char **ret_err);
/* Drop the upload (the temporary file is removed): now, or when the worker's current job
 * returns. No callback runs after this. NULL ok. */
void image_recv_abort(struct image_recv *rc);

#endif
