/* console.c — console capture and followers (see console.h). */
#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "log.h"

#define FOLLOW_CHUNK (64 * 1024)
#define FOLLOW_HIGH_WATER (256 * 1024)

struct follower {
	struct follower *next;
	struct console *live; /* NULL once the run's console is closed */
	struct http_conn *conn;
	int fd;
	uint64_t offset;
	uint64_t end;         /* known final size when !live */
};

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

static void pump(struct follower *f);

void console_append(struct console *con, const char *buf, size_t len)
{
	size_t take = len;
	if (con->cap && con->size + take > con->cap)
		take = con->size >= con->cap ? 0 : (size_t)(con->cap - con->size);
	con->dropped += len - take;
	while (take) {
		ssize_t w = write(con->fd, buf, take);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (!con->write_error)
				con->write_error = w < 0 ? errno : EIO;
			con->dropped += take;
			break;
		}
		con->size += (uint64_t)w;
		buf += w;
		take -= (size_t)w;
	}
	for (struct follower *f = con->followers, *next; f; f = next) {
		next = f->next; /* pump may free f */
		pump(f);
	}
}

void console_end(struct console *con)
{
	con->ended = 1;
	for (struct follower *f = con->followers, *next; f; f = next) {
		next = f->next;
		pump(f);
	}
}

void console_close(struct console *con)
{
	struct follower *f = con->followers;
	con->followers = NULL;
	while (f) {
		struct follower *next = f->next;
		f->live = NULL;
		f->end = con->size;
		f->next = NULL;
		pump(f);
		f = next;
	}
	if (con->fd >= 0)
		close(con->fd);
	con->fd = -1;
	free(con->path);
	con->path = NULL;
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

static void follower_release(void *obj)
{
	follower_free(obj);
}

static void on_drain(struct http_conn *conn, void *arg)
{
	(void)conn;
	pump(arg);
}

/* Send what the file holds past f->offset while the socket keeps up; finish at the end. */
static void pump(struct follower *f)
{
	char buf[FOLLOW_CHUNK];
	for (;;) {
		uint64_t avail_end = f->live ? f->live->size : f->end;
		if (f->offset >= avail_end) {
			if (f->live && !f->live->ended)
				return; /* wait for more bytes */
			struct http_conn *conn = f->conn;
			http_conn_attach(conn, NULL, NULL);
			http_conn_on_drain(conn, NULL, NULL);
			follower_free(f);
			http_chunked_end(conn);
			return;
		}
		if (http_conn_write_queue(f->conn) >= FOLLOW_HIGH_WATER)
			return; /* on_drain calls back */
		size_t want = avail_end - f->offset > sizeof(buf) ? sizeof(buf) : (size_t)(avail_end - f->offset);
		ssize_t n = pread(f->fd, buf, want, (off_t)f->offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* The file is shorter than recorded (removed or truncated): end the stream. */
			if (f->live)
				unlink_live(f);
			f->end = f->offset;
			continue;
		}
		f->offset += (uint64_t)n;
		http_chunked_write(f->conn, buf, (size_t)n);
	}
}

int console_follow_start(struct console *live, const char *path, struct http_conn *conn,
                         uint64_t offset)
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
	f->conn = conn;
	f->offset = offset;
	if (live) {
		f->live = live;
		f->next = live->followers;
		live->followers = f;
	} else {
		struct stat stbuf;
		f->end = fstat(f->fd, &stbuf) == 0 ? (uint64_t)stbuf.st_size : 0;
	}
	http_conn_attach(conn, f, follower_release);
	http_conn_on_drain(conn, on_drain, f);
	http_chunked_begin(conn, 200, "application/octet-stream");
	pump(f);
	return 0;
}

