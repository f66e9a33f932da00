/* qmp.c — minimal QMP client (see qmp.h). */
#include "qmp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* QMP replies and events are small; anything longer is dropped, not buffered. */
#define QMP_LINE_MAX (64 * 1024)
/* QEMU with `wait=on` blocks right after creating the socket until someone connects, so the
 * poll interval adds straight to its start-up: 1 ms while QEMU normally appears, 5 ms later. */
#define QMP_RETRY_MS 1
#define QMP_RETRY_SLOW_MS 5
#define QMP_RETRY_FAST_FOR_MS 500

enum qmp_phase {
	QMP_CONNECTING,
	QMP_GREETING, /* connected, waiting for {"QMP": ...} */
	QMP_CAPS,     /* qmp_capabilities and cont sent */
	QMP_CONT,     /* qmp_capabilities answered, cont pending */
	QMP_RUNNING,  /* events only */
};

struct qmp {
	uv_loop_t *loop;
	struct qmp_callbacks cb;
	struct sockaddr_un addr;
	uint64_t deadline;
	uint64_t fast_until; /* poll the socket every QMP_RETRY_MS until then */
	enum qmp_phase phase;
	uv_timer_t timer;
	uv_pipe_t pipe;
	int pipe_inited;
	int open_handles; /* handles whose close callback is pending or not yet closed */
	int finished;     /* closed callback delivered (or suppressed) */
	int release;      /* qmp_close called: free once the handles are closed */
	uv_write_t wreq;
	char rbuf[4096];
	char *line;
	size_t len;
	int discarding; /* current line overflowed: skip to the next newline */
};

static void on_handle_closed(uv_handle_t *h)
{
	struct qmp *q = h->data;
	if (--q->open_handles == 0 && q->release) {
		free(q->line);
		free(q);
	}
}

static void shut_handles(struct qmp *q)
{
	if (!uv_is_closing((uv_handle_t *)&q->timer))
		uv_close((uv_handle_t *)&q->timer, on_handle_closed);
	if (q->pipe_inited && !uv_is_closing((uv_handle_t *)&q->pipe))
		uv_close((uv_handle_t *)&q->pipe, on_handle_closed);
}

static void finish(struct qmp *q, int status)
{
	if (q->finished)
		return;
	q->finished = 1;
	shut_handles(q);
	if (q->cb.closed)
		q->cb.closed(q->cb.ctx, status);
}

static void on_write(uv_write_t *req, int status)
{
	struct qmp *q = req->data;
	if (status < 0 && status != UV_ECANCELED)
		finish(q, status);
}

static void send_cmd(struct qmp *q, const char *text)
{
	/* String literals only: the buffer must outlive the write. */
	uv_buf_t b = uv_buf_init((char *)text, (unsigned)strlen(text));
	q->wreq.data = q;
	int r = uv_write(&q->wreq, (uv_stream_t *)&q->pipe, &b, 1, on_write);
	if (r < 0)
		finish(q, r);
}

static void handle_line(struct qmp *q, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *msg = json_loadb(text, len, 0, &jerr);
	if (!msg || !json_is_object(msg)) {
		json_decref(msg);
		return; /* not ours to judge: QMP only ever sends objects */
	}
	json_t *ev = json_object_get(msg, "event");
	if (json_is_string(ev)) {
		if (q->cb.event)
			q->cb.event(q->cb.ctx, json_string_value(ev), json_object_get(msg, "data"));
	} else if (json_object_get(msg, "QMP") && q->phase == QMP_GREETING) {
		/* Both commands in one write: QEMU dispatches a monitor's commands in order, so
		 * `cont` runs once negotiation is over (one round trip less before the guest runs). */
		q->phase = QMP_CAPS;
		send_cmd(q, "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"cont\"}\n");
	} else if (json_object_get(msg, "error")) {
		finish(q, -EPROTO);
	} else if (json_object_get(msg, "return")) {
		if (q->phase == QMP_CAPS) {
			q->phase = QMP_CONT; /* cont went with qmp_capabilities */
		} else if (q->phase == QMP_CONT) {
			q->phase = QMP_RUNNING;
			if (q->cb.ready)
				q->cb.ready(q->cb.ctx);
		}
	}
	json_decref(msg);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct qmp *q = h->data;
	*buf = uv_buf_init(q->rbuf, sizeof(q->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct qmp *q = s->data;
	if (nread < 0) {
		/* EOF before the handshake finished means QEMU went away early. */
		if (nread == UV_EOF)
			finish(q, q->phase == QMP_RUNNING ? 0 : -ECONNRESET);
		else
			finish(q, (int)nread);
		return;
	}
	for (ssize_t i = 0; i < nread && !q->finished; i++) {
		char c = buf->base[i];
		if (c == '\n') {
			if (!q->discarding)
				handle_line(q, q->line, q->len);
			q->len = 0;
			q->discarding = 0;
		} else if (!q->discarding) {
			if (q->len == QMP_LINE_MAX) {
				q->discarding = 1;
				q->len = 0;
			} else {
				q->line[q->len++] = c;
			}
		}
	}
}

static uint64_t now_ms(const struct qmp *q)
{
	return uv_now(q->loop);
}

static void on_retry(uv_timer_t *t)
{
	struct qmp *q = t->data;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		finish(q, -errno);
		return;
	}
	/* A Unix connect completes at once or fails at once; QEMU's accept may come later. */
	if (connect(fd, (struct sockaddr *)&q->addr, sizeof(q->addr)) < 0) {
		int e = errno;
		close(fd);
		if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN) {
			finish(q, -e);
		} else if (now_ms(q) >= q->deadline) {
			finish(q, -ETIMEDOUT);
		} else {
			uv_timer_start(&q->timer, on_retry, now_ms(q) < q->fast_until ? QMP_RETRY_MS : QMP_RETRY_SLOW_MS, 0);
		}
		return;
	}
	int r = uv_pipe_init(q->loop, &q->pipe, 0);
	if (r < 0) {
		close(fd);
		finish(q, r);
		return;
	}
	q->pipe.data = q;
	q->pipe_inited = 1;
	q->open_handles++;
	r = uv_pipe_open(&q->pipe, fd);
	if (r < 0) {
		close(fd);
		finish(q, r);
		return;
	}
	q->phase = QMP_GREETING;
	r = uv_read_start((uv_stream_t *)&q->pipe, on_alloc, on_read);
	if (r < 0)
		finish(q, r);
}

int qmp_connect(uv_loop_t *loop, const char *path, unsigned timeout_ms,
                const struct qmp_callbacks *cb, struct qmp **ret_qmp)
{
	struct qmp *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	if (strlen(path) >= sizeof(q->addr.sun_path)) {
		free(q);
		return -ENAMETOOLONG;
	}
	q->line = malloc(QMP_LINE_MAX);
	if (!q->line) {
		free(q);
		return -ENOMEM;
	}
	q->loop = loop;
	q->cb = *cb;
	q->addr.sun_family = AF_UNIX;
	strcpy(q->addr.sun_path, path);
	uv_update_time(loop);
	q->deadline = uv_now(loop) + timeout_ms;
	q->fast_until = uv_now(loop) + QMP_RETRY_FAST_FOR_MS;
	uv_timer_init(loop, &q->timer);
	q->timer.data = q;
	q->open_handles = 1;
	uv_timer_start(&q->timer, on_retry, 0, 0);
	*ret_qmp = q;
	return 0;
}

int qmp_connected(const struct qmp *qmp)
{
	return qmp && qmp->phase != QMP_CONNECTING;
}

void qmp_close(struct qmp *qmp)
{
	if (!qmp)
		return;
	qmp->finished = 1; /* no callbacks after close */
	qmp->release = 1;
	if (qmp->open_handles == 0) {
		free(qmp->line);
		free(qmp);
		return;
	}
	shut_handles(qmp);
}

enum qmp_guest_event qmp_event_classify(const char *name, const json_t *data)
{
	if (!name)
		return QMP_EV_NONE;
	if (strcmp(name, "GUEST_PANICKED") == 0)
		return QMP_EV_PANIC;
	if (strcmp(name, "SHUTDOWN") != 0)
		return QMP_EV_NONE;
	const char *reason = json_string_value(json_object_get(data, "reason"));
	if (!reason)
		return QMP_EV_NONE;
	if (strcmp(reason, "guest-shutdown") == 0)
		return QMP_EV_POWEROFF;
	if (strcmp(reason, "guest-reset") == 0)
		return QMP_EV_RESET;
	if (strcmp(reason, "guest-panic") == 0)
		return QMP_EV_PANIC;
	return QMP_EV_NONE; /* host-signal, host-qmp-quit, ...: our own doing */
}
