/* The console views of ukrun's stdout: see conview.h. */
#include "conview.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#define BANNER_ART_LINES 6 /* under a bare "Powered by": five lines of art and the release line */

void conview_init(struct conview *v, int fd, bool app, const volatile sig_atomic_t *abort_flag)
{
	v->abort_flag = abort_flag;
	v->fd = fd;
	v->app = app;
	v->skip = 0;
	v->len = 0;
}

static int write_all(const struct conview *v, const char *p, size_t n)
{
	int fd = v->fd;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EAGAIN) {
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };

				(void)poll(&pfd, 1, 1000);
				continue;
			}
			if (errno == EINTR && !(v->abort_flag && *v->abort_flag))
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static bool starts(const char *line, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && !memcmp(line, prefix, n);
}

/* "[    0.102392] " — ukdebug's timestamp in front of every kernel message. */
static bool kernel_log(const char *p, size_t len)
{
	size_t i = 1;
	bool dot = false, digit = false;

	if (!len || p[0] != '[')
		return false;
	while (i < len && p[i] == ' ')
		i++;
	for (; i < len && p[i] != ']'; i++) {
		if (p[i] == '.' && !dot)
			dot = true;
		else if (isdigit((unsigned char)p[i]))
			digit = true;
		else
			return false;
	}
	return i + 1 < len && dot && digit && p[i + 1] == ' ';
}

bool conview_is_noise(const char *line, size_t len, int *skip_next)
{
	*skip_next = 0;
	if (len == 10 && !memcmp(line, "Powered by", 10)) {
		*skip_next = BANNER_ART_LINES;
		return true;
	}
	if (starts(line, len, "Powered by Unikraft"))
		return true;
	if (kernel_log(line, len))
		return true;
	/* SeaBIOS, when its banner is not silenced: escape codes, then its version. */
	return memmem(line, len, "SeaBIOS (version ", 17) != NULL;
}

/* One complete line of the app view (no line end). */
static int emit(struct conview *v, char *line, size_t len, bool eol)
{
	int skip;

	while (len && line[len - 1] == '\r')
		len--;
	if (starts(line, len, "Booting from ROM..")) {
		line += 18;
		len -= 18;
	}
	if (v->skip > 0) {
		v->skip--;
		return 0;
	}
	if (conview_is_noise(line, len, &skip)) {
		v->skip = skip;
		return 0;
	}
	if (!eol)
		return len ? write_all(v, line, len) : 0;
	line[len] = '\n';
	return write_all(v, line, len + 1);
}

int conview_write(void *ctx, const char *p, size_t n)
{
	struct conview *v = ctx;
	int r;

	if (!v->app)
		return write_all(v, p, n);
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;

		if (take > sizeof(v->line) - 1 - v->len) {
			/* Too long to judge: not a kernel line; pass it on as it is. */
			if (v->len && (r = write_all(v, v->line, v->len)) < 0)
				return r;
			v->len = 0;
			if ((r = write_all(v, p, take)) < 0)
				return r;
		} else {
			memcpy(v->line + v->len, p, take);
			v->len += take;
		}
		p += take;
		n -= take;
		if (nl) {
			r = emit(v, v->line, v->len, true);
			v->len = 0;
			if (r < 0)
				return r;
			p++;
			n--;
		}
	}
	return 0;
}

int conview_flush(struct conview *v)
{
	int r = 0;

	if (v->app && v->len)
		r = emit(v, v->line, v->len, false);
	v->len = 0;
	return r;
}
