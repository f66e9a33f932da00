/*
 * qmp.h — a minimal QEMU Machine Protocol client for the qemu driver.
 *
 * The driver starts QEMU with `-qmp unix:SOCK,server=on,wait=on -S`: QEMU
 * blocks until a client connects and keeps the guest paused. This client
 * connects (retrying until the socket appears), negotiates capabilities,
 * resumes the guest with `cont` and then reports events (SHUTDOWN,
 * GUEST_PANICKED) until QEMU closes the socket. Lines are bounded; one
 * libuv loop drives everything.
 */
#ifndef UKRUN_QMP_H
#define UKRUN_QMP_H

#include <jansson.h>
#include <uv.h>

struct qmp;

struct qmp_callbacks {
	/* Capabilities negotiated and `cont` acknowledged: the guest runs. */
	void (*ready)(void *ctx);
	/* An asynchronous event; `data` may be NULL (borrowed, valid during the call). */
	void (*event)(void *ctx, const char *name, json_t *data);
	/* The connection is over: 0 after a handshake and EOF, else -errno
	 * (e.g. -ETIMEDOUT when the socket never appeared). Called at most once,
	 * never after qmp_close. */
	void (*closed)(void *ctx, int status);
	void *ctx;
};

/* Start connecting to the QMP socket at `path`, retrying every few
 * milliseconds for up to `timeout_ms`. Returns 0 and *ret_qmp, or -errno
 * (e.g. -ENAMETOOLONG for a path that does not fit a sockaddr_un). */
int qmp_connect(uv_loop_t *loop, const char *path, unsigned timeout_ms,
                const struct qmp_callbacks *cb, struct qmp **ret_qmp);

/* 1 once the socket is connected (QEMU's replies and events may then still be in
 * flight: read them to the end rather than closing). */
int qmp_connected(const struct qmp *qmp);

/* Stop everything; no callback is called afterwards. Memory is released once
 * libuv has closed the handles. NULL is a no-op. */
void qmp_close(struct qmp *qmp);

/* What a QMP event means for the guest's end. */
enum qmp_guest_event {
	QMP_EV_NONE = 0,  /* not about the guest's end (RESUME, host-initiated shutdown, ...) */
	QMP_EV_POWEROFF,  /* SHUTDOWN reason guest-shutdown: ACPI power-off / halt */
	QMP_EV_RESET,     /* SHUTDOWN reason guest-reset: reset or triple fault under -no-reboot */
	QMP_EV_PANIC,     /* GUEST_PANICKED or SHUTDOWN reason guest-panic */
};

/* Classify one event by name and data (pure; data may be NULL). */
enum qmp_guest_event qmp_event_classify(const char *name, const json_t *data);

#endif
