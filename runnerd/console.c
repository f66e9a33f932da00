/* console.c — console capture and followers (see console.h). */
#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FOLLOW_CHUNK (64 * 1024)
#define PEND_MIN 4096

struct follower {
	struct follower *next;
	struct console *live; /* NULL once the run's console is closed */
	const struct console_sink *sink;
	void *ctx;
	int fd;
	int in_resume;        /* inside resume(): a free only marks it gone */
	int gone;
	uint64_t offset;
	uint64_t end;         /* known final size when !live */
};

/* The batching timer, apart from the console so the console's owner can free it at
 * once: the handle frees itself when closed. */
struct console_batcher {
	uv_timer_t timer;
	struct console *con; /* NULL once the console is closed */
};

/* Bytes the follower may send from memory: [win_start, win_end) is at `win`. */
struct window {
	const char *buf;
	uint64_t start, end;
};

static int resume(struct follower *f, const struct window *w);

int console_init(struct console *con, const char *path, uint64_t cap)
{
	memset(con, 0, sizeof(*con));
	con->fd = -1;
	con->path = strdup(path);
	con->cap = cap;
	return con->path ? 0 : -ENOMEM;
}

void console_attach_fd(struct console *con, int fd)
{
	if (con->fd >= 0)
		close(con->fd);
	con->fd = fd;
}

int console_open(struct console *con, const char *path, uint64_t cap)
{
	int r = console_init(con, path, cap);
	if (r < 0)
		return r;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		free(con->path);
		con->path = NULL;
		return r;
	}
	console_attach_fd(con, fd);
	return 0;
}

static void on_batch_timer(uv_timer_t *t)
{
	struct console_batcher *b = t->data;
	if (!b->con)
		return;
	console_flush(b->con);
	/* A quiet console holds no buffer. */
	free(b->con->pend);
	b->con->pend = NULL;
	b->con->pend_alloc = 0;
}

int console_batch(struct console *con, uv_loop_t *loop)
{
	if (con->batch)
		return 0;
	struct console_batcher *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	uv_timer_init(loop, &b->timer);
	b->timer.data = b;
	b->con = con;
	con->batch = b;
	return 0;
}

static void on_batcher_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Write `len` bytes (the ones at [stored, stored + len) of the log) to the file, then
 * feed the followers, from `buf` those that have caught up. Unwritten bytes are dropped:
 * size goes back to what the file holds. */
static void store(struct console *con, const char *buf, size_t len)
{
	uint64_t start = con->stored;
	size_t left = len;
	const char *p = buf;
	while (left) {
		ssize_t w = con->fd >= 0 ? write(con->fd, p, left) : -1;
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (!con->write_error)
				con->write_error = con->fd < 0 ? EBADF : w < 0 ? errno : EIO;
			con->dropped += left;
			con->size -= left;
			break;
		}
		con->stored += (uint64_t)w;
		p += w;
		left -= (size_t)w;
	}
	struct window win = { buf, start, con->stored };
	for (struct follower *f = con->followers, *next; f; f = next) {
		next = f->next; /* resume may free f */
		resume(f, &win);
	}
}

void console_flush(struct console *con)
{
	if (con->batch)
		uv_timer_stop(&con->batch->timer);
	if (!con->pend_len)
		return;
	size_t n = con->pend_len;
	con->pend_len = 0;
	store(con, con->pend, n);
}

/* Keep `len` bytes pending; 0, or -ENOMEM (the caller stores them at once). */
static int pend(struct console *con, const char *buf, size_t len)
{
	if (con->pend_len + len > con->pend_alloc) {
		size_t want = con->pend_alloc ? con->pend_alloc : PEND_MIN;
		while (want < con->pend_len + len)
			want *= 2;
		char *n = realloc(con->pend, want);
		if (!n)
			return -ENOMEM;
		con->pend = n;
		con->pend_alloc = want;
	}
	memcpy(con->pend + con->pend_len, buf, len);
	con->pend_len += len;
	if (!uv_is_active((uv_handle_t *)&con->batch->timer))
		uv_timer_start(&con->batch->timer, on_batch_timer, CONSOLE_BATCH_MS, 0);
	return 0;
}

void console_append(struct console *con, const char *buf, size_t len)
{
	size_t take = len;
	if (con->cap && con->size + take > con->cap)
		take = con->size >= con->cap ? 0 : (size_t)(con->cap - con->size);
	con->dropped += len - take;
	if (!take)
		return;
	con->size += take;
	if (con->batch) {
		if (con->pend_len + take > CONSOLE_BATCH_BYTES)
			console_flush(con);
		if (take < CONSOLE_BATCH_BYTES && pend(con, buf, take) == 0) {
			if (con->pend_len >= CONSOLE_BATCH_BYTES)
				console_flush(con);
			return;
		}
	}
	store(con, buf, take);
}

void console_end(struct console *con)
{
	console_flush(con);
	con->ended = 1;
	for (struct follower *f = con->followers, *next; f; f = next) {
		next = f->next;
		resume(f, NULL);
	}
}

void console_close(struct console *con)
{
	console_flush(con);
	if (con->batch) {
		con->batch->con = NULL;
		uv_close((uv_handle_t *)&con->batch->timer, on_batcher_closed);
		con->batch = NULL;
	}
	struct follower *f = con->followers;
	con->followers = NULL;
	while (f) {
		struct follower *next = f->next;
		f->live = NULL;
		f->end = con->stored;
		f->next = NULL;
		resume(f, NULL);
		f = next;
	}
	if (con->fd >= 0)
		close(con->fd);
	con->fd = -1;
	free(con->path);
	con->path = NULL;
	free(con->pend);
	con->pend = NULL;
	con->pend_alloc = 0;
}

static void unlink_live(struct follower *f)
{
	if (!f->live)
		return;
	for (struct follower **p = &f->live->followers; *p; p = &(*p)->next) {
		if (*p == f) {
			*p = f->next;
			break;
		}
	}
	f->live = NULL;
}

static void follower_free(struct follower *f)
{
	unlink_live(f);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
}

void console_follower_free(struct follower *f)
{
	if (!f)
		return;
	if (f->in_resume) {
		f->gone = 1;
		return;
	}
	follower_free(f);
}

/* Send what the file holds past f->offset while the sink keeps up, from `w` what it
 * holds, from the file the rest; finish at the end. 1 when `f` was freed. */
static int resume(struct follower *f, const struct window *w)
{
	char buf[FOLLOW_CHUNK];
	size_t sent = 0;
	f->in_resume = 1;
	/* At most about a chunk per call: with many followers one turn of the loop stays
	 * short, and a sink that took bytes calls back (it drains). */
	while (!f->gone && sent < FOLLOW_CHUNK) {
		uint64_t avail_end = f->live ? f->live->stored : f->end;
		if (f->offset >= avail_end) {
			if (f->live && !f->live->ended)
				break; /* wait for more bytes */
			const struct console_sink *sink = f->sink;
			void *ctx = f->ctx;
			follower_free(f);
			sink->end(ctx);
			return 1;
		}
		if (f->sink->queued(f->ctx) >= CONSOLE_SINK_HIGH_WATER)
			break; /* console_follower_resume when the sink drains */
		if (w && f->offset >= w->start && f->offset < w->end) {
			/* Caught up: the bytes just stored, from memory. */
			uint64_t to = w->end < avail_end ? w->end : avail_end;
			uint64_t from = f->offset;
			f->offset = to;
			sent += (size_t)(to - from);
			f->sink->write(f->ctx, w->buf + (from - w->start), (size_t)(to - from));
			continue;
		}
		uint64_t to = avail_end;
		if (w && f->offset < w->start && w->start < to)
			to = w->start; /* the file up to the window, then the window */
		size_t want = to - f->offset > sizeof(buf) ? sizeof(buf) : (size_t)(to - f->offset);
		ssize_t n = pread(f->fd, buf, want, (off_t)f->offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* The file is shorter than recorded (removed or truncated): end the stream. */
			if (f->live)
				unlink_live(f);
			f->end = f->offset;
			w = NULL;
			continue;
		}
		f->offset += (uint64_t)n;
		sent += (size_t)n;
		f->sink->write(f->ctx, buf, (size_t)n);
	}
	f->in_resume = 0;
	if (f->gone) {
		follower_free(f);
		return 1;
	}
	return 0;
}

void console_follower_resume(struct follower *f)
{
	resume(f, NULL);
}

int console_follow(struct console *live, const char *path, uint64_t offset, const struct console_sink *sink,
                   void *ctx, struct follower **ret_f)
{
	struct follower *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (f->fd < 0) {
		int r = -errno;
		free(f);
		return r;
	}
	f->sink = sink;
	f->ctx = ctx;
	f->offset = offset;
	if (live) {
		f->live = live;
		f->next = live->followers;
		live->followers = f;
	} else {
		struct stat stbuf;
		f->end = fstat(f->fd, &stbuf) == 0 ? (uint64_t)stbuf.st_size : 0;
	}
	*ret_f = f;
	return 0;
}
