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

/* A worker job kind, each with at most one job on the pool at a time. The digest and the
 * writes run in parallel, each over the chunks in order (hashing is much faster here than
 * writing into fresh page-cache pages); the seal waits for both. */
enum { LANE_DIGEST, LANE_APPEND, LANE_SEAL, LANES };

struct lane {
	uv_work_t work;
	struct image_recv *rc;
	int kind;
	int busy;
	uint64_t done; /* chunks this lane has finished */
	/* The job: set on the loop before it is queued, results read on the loop after it
	 * returned (uv_queue_work orders both). */
	struct chunk *job;
	int result;
	char *err;
};

struct image_recv {
	uv_loop_t *loop;
	struct image_upload *up;
	struct image_recv_ops ops;
	void *arg;
	struct chunk c[IMAGE_RECV_CHUNKS];
	uint64_t filled; /* chunks handed to the lanes; chunk k lives in c[k % IMAGE_RECV_CHUNKS] */
	struct lane lane[LANES];
	int held;      /* feed answered IMAGE_RECV_HOLD: ops.room is owed */
	int finishing; /* image_recv_finish() was called: the seal follows the last chunk */
	int aborted;   /* image_recv_abort() while a job is out: the last one's end frees */
	int result;    /* the first failure, or 0 */
	char *err;     /* ... and its message */
};

static void destroy(struct image_recv *rc)
{
	image_upload_abort(rc->up);
	for (int i = 0; i < IMAGE_RECV_CHUNKS; i++)
		free(rc->c[i].buf);
	for (int i = 0; i < LANES; i++)
		free(rc->lane[i].err);
	free(rc->err);
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
	for (int i = 0; i < LANES; i++) {
		rc->lane[i].rc = rc;
		rc->lane[i].kind = i;
		rc->lane[i].work.data = &rc->lane[i];
	}
	*ret_rc = rc;
	return 0;
}

static int busy(const struct image_recv *rc)
{
	return rc->lane[LANE_DIGEST].busy || rc->lane[LANE_APPEND].busy || rc->lane[LANE_SEAL].busy;
}

/* Chunks both lanes are done with (their slots are free again). */
static uint64_t released(const struct image_recv *rc)
{
	uint64_t d = rc->lane[LANE_DIGEST].done, a = rc->lane[LANE_APPEND].done;
	return d < a ? d : a;
}

/* On the worker. */
static void job_run(uv_work_t *w)
{
	struct lane *l = w->data;
	struct image_upload *up = l->rc->up;
	l->result = 0;
	if (l->kind == LANE_DIGEST)
		image_upload_digest(up, l->job->buf, l->job->len);
	else if (l->kind == LANE_APPEND)
		l->result = image_upload_append(up, l->job->buf, l->job->len, &l->err);
	else
		image_upload_seal(up); /* its result stays in up: image_upload_record reports it */
}

static void job_done(uv_work_t *w, int status);

static void submit(struct lane *l, struct chunk *job)
{
	l->job = job;
	l->busy = 1;
	int r = uv_queue_work(l->rc->loop, &l->work, job_run, job_done);
	if (r < 0) {
		/* Only for a bad argument; never seen. Fail the upload rather than lose bytes. */
		l->busy = 0;
		if (l->rc->result == 0)
			l->rc->result = r;
	}
}

/* Give each idle lane its next job. */
static void kick(struct image_recv *rc)
{
	if (rc->result < 0)
		return;
	for (int i = LANE_DIGEST; i <= LANE_APPEND; i++) {
		struct lane *l = &rc->lane[i];
		if (!l->busy && l->done < rc->filled)
			submit(l, &rc->c[l->done % IMAGE_RECV_CHUNKS]);
	}
	if (rc->finishing && !busy(rc) && released(rc) == rc->filled)
		submit(&rc->lane[LANE_SEAL], NULL);
}

/* The chunk being filled is full (or the body ended): hand it to the lanes when its
 * successor's slot is free (or none is needed). 1 when handed. */
static int advance(struct image_recv *rc)
{
	struct chunk *c = &rc->c[rc->filled % IMAGE_RECV_CHUNKS];
	if (!rc->finishing && c->len < IMAGE_RECV_CHUNK)
		return 0;
	if (!rc->finishing && rc->filled + 1 - released(rc) >= IMAGE_RECV_CHUNKS)
		return 0; /* every other slot is still on a lane */
	if (c->len || !rc->finishing)
		rc->filled++;
	return 1;
}

/* On the loop: a job returned. */
static void job_done(uv_work_t *w, int status)
{
	struct lane *l = w->data;
	struct image_recv *rc = l->rc;
	l->busy = 0;
	if (status < 0 && l->result == 0)
		l->result = status; /* cancelled: never ran */
	if (l->result < 0 && rc->result == 0) {
		rc->result = l->result;
		rc->err = l->err;
		l->err = NULL;
	}
	free(l->err);
	l->err = NULL;
	if (l->kind != LANE_SEAL)
		l->done++;
	if (rc->aborted) {
		if (!busy(rc))
			destroy(rc);
		return;
	}
	if (l->kind == LANE_SEAL) {
		rc->ops.sealed(rc->arg);
		return;
	}
	if (released(rc) == l->done)
		l->job->len = 0; /* both lanes are through this chunk: its slot is free */
	if (rc->result < 0) {
		if (rc->finishing && !busy(rc))
			rc->ops.sealed(rc->arg); /* nothing more to run: record reports why */
		else if (rc->held) {
			rc->held = 0;
			rc->ops.room(rc->arg); /* the next feed reports the failure */
		}
		return;
	}
	int go_on = rc->held && advance(rc);
	kick(rc);
	if (rc->finishing && !busy(rc))
		rc->ops.sealed(rc->arg); /* the seal could not be queued: record reports why */
	else if (go_on) {
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
	struct chunk *c = &rc->c[rc->filled % IMAGE_RECV_CHUNKS];
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
	if (!advance(rc)) {
		rc->held = 1; /* job_done hands this chunk on and calls ops.room */
		return IMAGE_RECV_HOLD;
	}
	kick(rc);
	return rc->result < 0 ? rc->result : 0;
}

void image_recv_finish(struct image_recv *rc)
{
	rc->finishing = 1;
	rc->held = 0; /* no more bytes: nothing to resume */
	if (rc->result == 0)
		advance(rc);
	kick(rc);
	if (!busy(rc))
		rc->ops.sealed(rc->arg); /* a failure before: nothing to run, record reports why */
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
	if (busy(rc))
		rc->aborted = 1;
	else
		destroy(rc);
}
