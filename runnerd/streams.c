/* streams.c — a run's stdout and stderr logs (see streams.h). */
#include "streams.h"

#include <stdio.h>
#include <string.h>

#include "rundir.h"

const char *streams_file(enum drv_stream stream)
{
	return stream == DRV_STREAM_STDERR ? RUNDIR_STDERR : RUNDIR_STDOUT;
}

int streams_init(struct streams *s, const char *dir, uint64_t cap, int split)
{
	memset(s, 0, sizeof(*s));
	s->con[0].fd = s->con[1].fd = -1;
	if (!split)
		return 0;
	for (int i = 0; i < 2; i++) {
		const char *name = streams_file(i ? DRV_STREAM_STDERR : DRV_STREAM_STDOUT);
		char path[4096];
		int r = rundir_create_log(dir, name);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (r == 0)
			r = console_init(&s->con[i], path, cap);
		if (r < 0) {
			if (i)
				console_close(&s->con[0]);
			return r;
		}
	}
	s->split = 1;
	return 0;
}

int streams_open(struct streams *s, const char *dir)
{
	for (int i = 0; s->split && i < 2; i++) {
		if (s->con[i].fd >= 0)
			continue; /* a retried run keeps its logs open */
		int fd = rundir_open_log(dir, streams_file(i ? DRV_STREAM_STDERR : DRV_STREAM_STDOUT));
		if (fd < 0)
			return fd;
		console_attach_fd(&s->con[i], fd);
	}
	return 0;
}

void streams_batch(struct streams *s, uv_loop_t *loop)
{
	for (int i = 0; s->split && i < 2; i++)
		(void)console_batch(&s->con[i], loop); /* unbatched on ENOMEM */
}

void streams_append(struct streams *s, enum drv_stream stream, const char *buf, size_t len)
{
	if (s->split && stream != DRV_STREAM_CONSOLE)
		console_append(&s->con[stream == DRV_STREAM_STDERR], buf, len);
}

void streams_close(struct streams *s)
{
	for (int i = 0; s->split && i < 2; i++) {
		console_end(&s->con[i]);
		console_close(&s->con[i]);
	}
	s->split = 0;
}

struct console *streams_live(struct streams *s, enum drv_stream stream)
{
	if (!s->split || stream == DRV_STREAM_CONSOLE)
		return NULL;
	return &s->con[stream == DRV_STREAM_STDERR];
}
