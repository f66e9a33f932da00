/* image_recv.c — an image upload received off the loop (see image_recv.h). */
#include "image_recv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A chunk grows past IMAGE_RECV_CHUNK only by what arrives after a hold (the rest of one
 * socket read); a caller that ignores the hold is cut off here. */
#define RECV_CHUNK_MAX (4 * IMAGE_RECV_CHUNK)

struct chunk {
	char *buf;
	size_t len, cap;
};

struct image_recv {
	uv_loop_t *loop;
	struct image_upload *up;
	struct image_recv_ops ops;
	void *arg;
	uv_work_t work;
	struct chunk c[2];
	int fill;      /* the chunk the loop fills; the other one is the worker's while busy */
	int busy;      /* a job is on the worker */
	int held;      /* feed answered IMAGE_RECV_HOLD: ops.room is owed */
	int finishing; /* image_recv_finish() was called: the last job seals */
	int aborted;   /* image_recv_abort() while busy: the job's end frees */
	int result;    /* the first failure, or 0 */
	char *err;     /* ... and its message */
	/* The job: set on the loop before it is queued, results read on the loop after it
	 * returned (uv_queue_work orders both). */
	int job;        /* index of its chunk */
	int job_seals;  /* ... then image_upload_seal() */
	int job_skip;   /* an earlier failure: write nothing, seal nothing */
	int job_result;
	char *job_err;
};

static void destroy(struct image_recv *rc)
{
	image_upload_abort(rc->up);
	for (int i = 0; i < 2; i++)
		free(rc->c[i].buf);
	free(rc->err);
	free(rc->job_err);
	free(rc);
}

int image_recv_new(uv_loop_t *loop, struct image_upload *up, const struct image_recv_ops *ops, void *arg,
                   struct image_recv **ret_rc)
{
	struct image_recv *rc = calloc(1, sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	rc->loop = loop;
	rc->up = up;
	rc->ops = *ops;
	rc->arg = arg;
	rc->work.data = rc;
	*ret_rc = rc;
	return 0;
}

/* On the worker: hash and write the job's chunk, then seal when it is the last. */
static void job_run(uv_work_t *w)
{
	struct image_recv *rc = w->data;
	struct chunk *c = &rc->c[rc->job];
	rc->job_result = 0;
	if (rc->job_skip)
		return;
	if (c->len)
		rc->job_result = image_upload_write(rc->up, c->buf, c->len, &rc->job_err);
	if (rc->job_seals && rc->job_result == 0)
		image_upload_seal(rc->up); /* its result stays in up: image_upload_record reports it */
}

static void job_done(uv_work_t *w, int status);

static void submit(struct image_recv *rc, int idx, int seals)
{
	rc->job = idx;
	rc->job_seals = seals;
	rc->job_skip = rc->result < 0;
	rc->busy = 1;
	int r = uv_queue_work(rc->loop, &rc->work, job_run, job_done);
	if (r < 0) {
		/* Only for a bad argument; never seen. Fail the upload rather than lose bytes. */
		rc->busy = 0;
		if (rc->result == 0)
			rc->result = r;
	}
}

/* On the loop: the job returned. */
static void job_done(uv_work_t *w, int status)
{
	struct image_recv *rc = w->data;
	rc->busy = 0;
	rc->c[rc->job].len = 0;
	if (status < 0 && rc->job_result == 0)
		rc->job_result = status; /* cancelled: never ran */
	if (rc->job_result < 0 && rc->result == 0) {
		rc->result = rc->job_result;
		rc->err = rc->job_err;
		rc->job_err = NULL;
	}
	free(rc->job_err);
	rc->job_err = NULL;
	if (rc->aborted) {
		destroy(rc);
		return;
	}
	if (rc->job_seals) {
		rc->ops.sealed(rc->arg);
		return;
	}
	if (rc->finishing) {
		submit(rc, rc->fill, 1); /* the rest (maybe nothing), then the seal */
		if (!rc->busy)
			rc->ops.sealed(rc->arg); /* not queued: record reports why */
		return;
	}
	if (rc->result == 0 && rc->c[rc->fill].len >= IMAGE_RECV_CHUNK) {
		submit(rc, rc->fill, 0);
		rc->fill ^= 1;
	}
	if (rc->held) {
		rc->held = 0;
		rc->ops.room(rc->arg);
	}
}

int image_recv_feed(struct image_recv *rc, const char *buf, size_t len, char **ret_err)
{
	if (rc->result < 0) {
		if (ret_err) {
			*ret_err = rc->err;
			rc->err = NULL;
		}
		return rc->result;
	}
	struct chunk *c = &rc->c[rc->fill];
	if (c->len + len > c->cap) {
		size_t cap = c->len + len > IMAGE_RECV_CHUNK ? c->len + len : IMAGE_RECV_CHUNK;
		if (cap > RECV_CHUNK_MAX)
			return -ENOBUFS;
		char *nb = realloc(c->buf, cap);
		if (!nb)
			return -ENOMEM;
		c->buf = nb;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, buf, len);
	c->len += len;
	if (c->len < IMAGE_RECV_CHUNK)
		return 0;
	if (rc->busy) {
		rc->held = 1; /* the other chunk is on the worker: job_done submits this one */
		return IMAGE_RECV_HOLD;
	}
	submit(rc, rc->fill, 0);
	rc->fill ^= 1;
	return rc->result < 0 ? rc->result : 0;
}

void image_recv_finish(struct image_recv *rc)
{
	rc->finishing = 1;
	if (!rc->busy)
		submit(rc, rc->fill, 1);
	if (!rc->busy)
		rc->ops.sealed(rc->arg); /* not queued: record reports why */
}

int image_recv_record(struct image_recv *rc, char **ret_err)
{
	int r;
	if (rc->result < 0) {
		r = rc->result;
		if (ret_err) {
			*ret_err = rc->err;
			rc->err = NULL;
		}
	} else {
		r = image_upload_record(rc->up, ret_err);
		rc->up = NULL; /* freed by record */
	}
	destroy(rc);
	return r;
}

void image_recv_abort(struct image_recv *rc)
{
	if (!rc)
		return;
	if (rc->busy)
		rc->aborted = 1;
	else
		destroy(rc);
}
