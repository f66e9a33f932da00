/*
 * linuxu_stdin.c — the linuxu driver's `input`: the caller's stdin into the program's
 * stdin pipe (DRV_F_STDIN). Bytes are copied and queued with uv_write, at most
 * LINUXU_STDIN_MAX unread (then -EAGAIN, nothing taken); EOF shuts the pipe down once
 * the queued bytes are written; a failed write (the program closed its stdin or ended)
 * closes it, and later input gets -EPIPE.
 */
#include "linuxu_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct stdin_write {
	uv_write_t req;
	struct drv_instance *inst;
	size_t len;
	char data[];
};

static void stdin_fail(struct drv_instance *inst)
{
	inst->stdin_eof = 1;
	linuxu_close_handle(inst, (uv_handle_t *)&inst->stdin_pipe, &inst->stdin_open);
}

static void on_stdin_written(uv_write_t *req, int status)
{
	struct stdin_write *w = (struct stdin_write *)req;
	struct drv_instance *inst = w->inst;
	inst->stdin_queued -= w->len;
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		stdin_fail(inst); /* EPIPE: the program closed its stdin or ended */
}

static void on_stdin_shutdown(uv_shutdown_t *req, int status)
{
	(void)status;
	struct drv_instance *inst = req->data;
	linuxu_close_handle(inst, (uv_handle_t *)&inst->stdin_pipe, &inst->stdin_open);
}

int linuxu_input(struct drv_instance *inst, const char *buf, size_t len)
{
	if (!inst->want_stdin || !inst->launched)
		return -EAGAIN;
	if (inst->stdin_eof || !inst->stdin_open || inst->exited)
		return -EPIPE;
	if (len == 0) {
		inst->stdin_eof = 1;
		inst->stdin_shutdown.data = inst;
		/* Written bytes first, then the program reads EOF. */
		if (uv_shutdown(&inst->stdin_shutdown, (uv_stream_t *)&inst->stdin_pipe, on_stdin_shutdown) < 0)
			linuxu_close_handle(inst, (uv_handle_t *)&inst->stdin_pipe, &inst->stdin_open);
		return 0;
	}
	if (inst->stdin_queued >= LINUXU_STDIN_MAX)
		return -EAGAIN;
	struct stdin_write *w = malloc(sizeof(*w) + len);
	if (!w)
		return -ENOMEM;
	w->inst = inst;
	w->len = len;
	memcpy(w->data, buf, len);
	uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
	int r = uv_write(&w->req, (uv_stream_t *)&inst->stdin_pipe, &b, 1, on_stdin_written);
	if (r < 0) {
		free(w);
		stdin_fail(inst);
		return -EPIPE;
	}
	inst->stdin_queued += len;
	return (int)(inst->stdin_queued > INT32_MAX ? INT32_MAX : inst->stdin_queued);
}

