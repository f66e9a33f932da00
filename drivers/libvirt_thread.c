/*
 * libvirt_thread.c — the libvirt driver's thread (see libvirt.c): libvirt's
 * default event loop, the connection with its keepalive, the commands the
 * loop posts (start, kill, quit), each run's domain and console stream, and
 * the messages posted back to the run's uv_async. One such thread per process
 * serves every lv_state (the libvirt and xen drivers): libvirt's default event
 * loop must be registered and run by one thread only.
 *
 * The long blocking calls of a start, a remote host's image upload
 * (lv_volume_ensure) and the domain's creation (virDomainCreateXML: libvirtd
 * spawns QEMU), run on that host's own worker instead: the libvirt thread hands
 * the job over (its up_* fields, see struct lv_job) with a reference on the
 * connection, and takes it back through st->up_done and the wake-up timer to go
 * on from there (notes, LRU and quota of the pool, the console, the resume)
 * itself; the state of the pool (vol_uses, jobs) stays the libvirt thread's. The
 * domain is created paused, and lifecycle events of a job whose domain the
 * libvirt thread has not taken yet are ignored (a domain gone meanwhile fails
 * its resume).
 */
#include "libvirt_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libvirt/virterror.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *lv_error(void)
{
	const char *m = virGetLastErrorMessage();
	return m && *m ? m : "unknown libvirt error";
}

/* libvirt prints every error on stderr by default: errors are reported where understood. */
void lv_quiet_errors(void *ud, virErrorPtr e)
{
	(void)ud;
	(void)e;
}

/* ---- libvirt thread → loop ---- */

static void post(struct lv_state *st, uint64_t token, struct lv_msg *m)
{
	pthread_mutex_lock(&st->lock);
	struct drv_instance *inst = st->insts;
	while (inst && inst->token != token)
		inst = inst->next;
	if (inst) {
		m->next = NULL;
		*inst->msgs_tail = m;
		inst->msgs_tail = &m->next;
		uv_async_send(&inst->async);
		m = NULL;
	}
	pthread_mutex_unlock(&st->lock);
	if (m) { /* the run is gone: nobody wants it */
		free(m->key);
		free(m->value);
		free(m->text);
		free(m->data);
		free(m);
	}
}

static void post_note(struct lv_job *j, const char *key, const char *value, const char *text)
{
	struct lv_msg *m = calloc(1, sizeof(*m));
	if (!m)
		return;
	m->type = M_NOTE;
	m->key = key ? strdup(key) : NULL;
	m->value = value ? strdup(value) : NULL;
	m->text = text ? strdup(text) : NULL;
	post(j->st, j->token, m);
}

static void post_exit(struct lv_job *j, const struct drv_outcome *o)
{
	struct lv_msg *m = calloc(1, sizeof(*m));
	if (!m)
		return; /* out of memory: the core's timeout still ends the run */
	m->type = M_EXIT;
	m->out = *o;
	m->text = o->message ? strdup(o->message) : NULL;
	m->out.message = m->text;
	post(j->st, j->token, m);
}

/* ---- the libvirt thread: jobs ---- */

void lv_job_discard(struct lv_job *j)
{
	free(j->name);
	free(j->xml_kvm);
	free(j->xml_tcg);
	free(j->sha);
	free(j->vol);
	free(j->image);
	free(j->serial_log);
	free(j->up_err);
	free(j->up_dom_err);
	free(j->up_note);
	free(j->up_tail);
	free(j->lost);
	if (j->up_conn && virConnectClose(j->up_conn) < 0)
		virResetLastError();
	free(j);
}

void lv_job_unlink_free(struct lv_job *j)
{
	for (struct lv_job **p = &j->st->jobs; *p; p = &(*p)->next) {
		if (*p == j) {
			*p = j->next;
			break;
		}
	}
	lv_job_discard(j);
}

static void stream_close(struct lv_job *j)
{
	if (!j->stream)
		return;
	if (j->stream_cb)
		virStreamEventRemoveCallback(j->stream);
	if (virStreamAbort(j->stream) < 0)
		virResetLastError(); /* already ended with the domain */
	virStreamFree(j->stream);
	j->stream = NULL;
	j->stream_cb = 0;
}

/* Release the domain handles of the current attempt (the domain itself is gone or going). */
void lv_job_release(struct lv_job *j)
{
	if (j->drain_timer >= 0)
		virEventRemoveTimeout(j->drain_timer);
	if (j->pause_timer >= 0)
		virEventRemoveTimeout(j->pause_timer);
	j->drain_timer = j->pause_timer = -1;
	stream_close(j);
	if (j->up_dom) /* created by the worker, never taken: AUTODESTROY or the caller ends it */
		virDomainFree(j->up_dom);
	j->up_dom = NULL;
	if (j->dom)
		virDomainFree(j->dom);
	j->dom = NULL;
}

/* A job that cannot go on: an error of its own, or (the host's libvirtd unreachable) a lost host. */
static void job_fail(struct lv_job *j, int err, const char *msg)
{
	if (j->dom && virDomainDestroy(j->dom) < 0)
		virResetLastError();
	lv_job_release(j);
	struct drv_outcome o = {.end = err == -ECONNREFUSED || err == -ECONNRESET ? DRV_END_HOST_LOST : DRV_END_ERROR,
	                        .value = err,
	                        .message = msg};
	post_exit(j, &o);
	lv_job_unlink_free(j);
}

static void job_create(struct lv_job *j);
static void deliver(struct lv_job *j, const char *buf, size_t n);
static int upload_queue(struct lv_job *j, char **ret_err);

/* Deliver what QEMU's serial log holds beyond the bytes the stream brought (this
 * attempt's). A log shorter than that was rotated by virtlogd: nothing to add. */
static void recover_tail(struct lv_job *j)
{
	int fd = j->serial_log ? open(j->serial_log, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0)
		return;
	char buf[65536];
	if (lseek(fd, (off_t)j->bytes, SEEK_SET) == (off_t)j->bytes) {
		ssize_t n;
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			deliver(j, buf, (size_t)n);
	}
	close(fd);
}

static void job_end(struct lv_job *j)
{
	lv_job_release(j);
	int retrying = j->retry && !j->facts.killed;
	if (j->remote_log && !j->tail_done && !retrying) {
		/* The host worker reads the rest back from the pool (job_back comes here again). */
		char *err = NULL;
		j->finishing = 1;
		if (upload_queue(j, &err) == 0) {
			free(err);
			return;
		}
		free(err);
		j->finishing = 0;
		j->tail_done = 1;
	}
	if (!j->remote_log)
		recover_tail(j);
	if (j->retry && !j->facts.killed) {
		if (j->unikraft)
			__atomic_store_n(&j->st->kvm_fails_unikraft, 1, __ATOMIC_RELAXED);
		post_note(j, "accel", "tcg", "KVM could not run this guest (the hypervisor paused it); retrying under TCG");
		j->retry = j->kvm = j->running = j->stopped = j->eof = 0;
		j->facts = (struct lv_end_facts){.stopped = -1};
		j->skip = j->delivered;
		j->bytes = 0;
		job_create(j);
		return;
	}
	struct drv_outcome o;
	lv_classify_end(&j->facts, &o);
	post_exit(j, &o);
	lv_job_unlink_free(j);
}

static void on_drain(int timer, void *opaque)
{
	struct lv_job *j = opaque;
	(void)timer;
	j->eof = 1;
	job_end(j);
}

/* The domain has stopped: end once the console has delivered its last bytes. */
static void job_maybe_end(struct lv_job *j)
{
	if (!j->stopped)
		return;
	if (!j->eof && j->stream) {
		if (j->drain_timer < 0)
			j->drain_timer = virEventAddTimeout(LV_DRAIN_MS, on_drain, j, NULL);
		if (j->drain_timer >= 0)
			return;
	}
	job_end(j);
}

static void deliver(struct lv_job *j, const char *buf, size_t n)
{
	if (j->facts.rebooted)
		return; /* what follows a reset is the guest booting again, not its output */
	uint64_t pos = j->bytes;
	j->bytes += n;
	if (pos < j->skip) { /* a TCG rerun repeats what the KVM attempt already delivered */
		size_t drop = j->skip - pos < n ? (size_t)(j->skip - pos) : n;
		buf += drop;
		n -= drop;
	}
	if (!n)
		return;
	struct lv_msg *m = calloc(1, sizeof(*m));
	if (!m || !(m->data = malloc(n))) {
		free(m);
		return;
	}
	m->type = M_CONSOLE;
	memcpy(m->data, buf, n);
	m->len = n;
	j->delivered += n;
	post(j->st, j->token, m);
}

static void on_stream(virStreamPtr s, int events, void *opaque)
{
	struct lv_job *j = opaque;
	char buf[65536];
	for (;;) {
		int n = virStreamRecv(s, buf, sizeof(buf));
		if (n > 0) {
			deliver(j, buf, (size_t)n);
			continue;
		}
		if (n == -2 && !(events & (VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP)))
			return; /* nothing more for now */
		break; /* end of stream (0), error (-1) or hang-up */
	}
	virResetLastError();
	stream_close(j);
	j->eof = 1;
	job_maybe_end(j);
}

/* The guest stayed paused with no Crashed event: KVM could not emulate it. */
static void on_paused(int timer, void *opaque)
{
	struct lv_job *j = opaque;
	virEventRemoveTimeout(timer);
	j->pause_timer = -1;
	if (j->facts.crashed || j->stopped || j->facts.killed || !j->dom)
		return;
	/* Events can arrive late under load (the Suspended of our paused start after our
	 * Resumed, a Crashed well after its pause): ask libvirt what the guest is now. */
	int state = -1, reason = -1;
	if (virDomainGetState(j->dom, &state, &reason, 0) < 0)
		virResetLastError();
	if (state == VIR_DOMAIN_RUNNING)
		return;
	if (state == VIR_DOMAIN_CRASHED || (state == VIR_DOMAIN_PAUSED && reason == VIR_DOMAIN_PAUSED_CRASHED) ||
	    (state == VIR_DOMAIN_SHUTOFF && reason == VIR_DOMAIN_SHUTOFF_CRASHED)) {
		j->facts.crashed = 1; /* a guest panic: libvirt's Crashed event is on its way */
		return;
	}
	if (state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_SHUTDOWN)
		return; /* it has ended: its Stopped event decides */
	/* A panic pauses the guest before libvirt records why (QEMU's STOP comes before its
	 * GUEST_PANICKED, and a loaded libvirtd handles them late): look again a few times
	 * before calling it an emulation failure. */
	if (state == VIR_DOMAIN_PAUSED && reason != VIR_DOMAIN_PAUSED_USER && ++j->pause_checks < LV_PAUSE_CHECKS) {
		j->pause_timer = virEventAddTimeout(LV_PAUSE_MS, on_paused, j, NULL);
		return;
	}
	j->running = 0;
	if (j->kvm && j->accel_auto)
		j->retry = 1;
	else
		j->facts.paused = 1;
	if (virDomainDestroy(j->dom) < 0)
		virResetLastError();
}

static struct lv_job *job_by_name(struct lv_state *st, const char *name)
{
	struct lv_job *j = st->jobs;
	while (j && (!name || strcmp(j->name, name) != 0))
		j = j->next;
	return j;
}

static struct lv_job *job_by_token(struct lv_state *st, uint64_t token)
{
	struct lv_job *j = st->jobs;
	while (j && j->token != token)
		j = j->next;
	return j;
}

static int on_lifecycle(virConnectPtr c, virDomainPtr dom, int event, int detail, void *opaque)
{
	struct lv_state *st = opaque;
	struct lv_job *j = job_by_name(st, virDomainGetName(dom));
	(void)c;
	if (!j || !j->dom)
		return 0; /* not ours, or an attempt already released */
	switch (event) {
	case VIR_DOMAIN_EVENT_RESUMED:
		j->running = 1;
		break;
	case VIR_DOMAIN_EVENT_SUSPENDED:
		/* Paused after our resume: QEMU pauses on a guest panic just before the
		 * Crashed event, and on a KVM internal error with nothing after it. Wait
		 * a moment for the Crashed event before calling it an emulation failure. */
		if (j->running && !j->facts.killed && j->pause_timer < 0)
			j->pause_timer = virEventAddTimeout(LV_PAUSE_MS, on_paused, j, NULL);
		break;
	case VIR_DOMAIN_EVENT_CRASHED:
		j->facts.crashed = 1;
		break;
	case VIR_DOMAIN_EVENT_SHUTDOWN:
		if (detail != VIR_DOMAIN_EVENT_SHUTDOWN_HOST)
			j->facts.shutdown = 1;
		break;
	case VIR_DOMAIN_EVENT_STOPPED:
		j->facts.stopped = detail;
		j->stopped = 1;
		job_maybe_end(j);
		break;
	default:
		break;
	}
	return 0;
}

/* on_reboot is restart: a reset (a triple fault under a unikernel) ends the run at once. */
static void on_reboot(virConnectPtr c, virDomainPtr dom, void *opaque)
{
	struct lv_job *j = job_by_name(opaque, virDomainGetName(dom));
	(void)c;
	if (!j || !j->dom || j->facts.rebooted)
		return;
	j->facts.rebooted = 1;
	if (virDomainDestroy(j->dom) < 0)
		virResetLastError();
}

static __thread int on_libvirt_thread; /* set by loop_main */

/* The connection died (keepalive timeout, libvirtd gone): every run on it fails,
 * but a run at its upload, which the worker holds: it ends host-lost when it comes
 * back. The libvirt thread only. */
static void conn_lost(struct lv_state *st, int reason)
{
	static const char *const why[] = {"an I/O error", "end of file", "keepalive timeout", "a client request"};
	if (__atomic_load_n(&st->conn_dead, __ATOMIC_ACQUIRE))
		return;
	char *err = errmsg_printf("lost the connection to libvirtd at %s (%s)", st->uri,
	                          reason >= 0 && reason < 4 ? why[reason] : "closed");
	pthread_mutex_lock(&st->lock); /* lv_health reads it on the loop */
	free(st->conn_err);
	st->conn_err = err;
	pthread_mutex_unlock(&st->lock);
	__atomic_store_n(&st->conn_dead, 1, __ATOMIC_RELEASE);
	struct lv_job **p = &st->jobs;
	while (*p) {
		struct lv_job *j = *p;
		if (j->uploading) {
			if (!j->lost)
				j->lost = strdup(err ? err : "lost the connection to libvirtd");
			p = &j->next;
			continue;
		}
		lv_job_release(j);
		struct drv_outcome o = {.end = DRV_END_HOST_LOST, .value = -ECONNRESET, .message = err};
		post_exit(j, &o);
		lv_job_unlink_free(j);
	}
}

/* libvirt calls this on the thread that finds the connection dead: the libvirt
 * thread (keepalive, events), or an upload worker (its own call on the connection),
 * which leaves it to the libvirt thread (on_wake, before any command: nothing
 * reopens the connection meanwhile, conn_dead is not set yet). */
static void on_conn_close(virConnectPtr c, int reason, void *opaque)
{
	struct lv_state *st = opaque;
	(void)c;
	if (on_libvirt_thread) {
		conn_lost(st, reason);
		return;
	}
	pthread_mutex_lock(&st->lock);
	if (!st->conn_lost_pending) {
		st->conn_lost_pending = 1;
		st->conn_lost_reason = reason;
	}
	pthread_mutex_unlock(&st->lock);
	if (st->wake_timer >= 0)
		virEventUpdateTimeout(st->wake_timer, 0);
}

void lv_conn_close(struct lv_state *st)
{
	if (!st->conn)
		return;
	virConnectUnregisterCloseCallback(st->conn, on_conn_close);
	/* The callbacks hold the connection (and would outlive this state on the shared thread). */
	for (int i = 0; i < 2; i++)
		if (st->event_ids[i] >= 0 && virConnectDomainEventDeregisterAny(st->conn, st->event_ids[i]) < 0)
			virResetLastError();
	st->event_ids[0] = st->event_ids[1] = -1;
	if (virConnectClose(st->conn) < 0)
		virResetLastError();
	st->conn = NULL;
}

/* Open (or reopen after a loss) the connection with keepalive and our event callbacks. */
int lv_conn_open(struct lv_state *st, char **ret_err)
{
	if (st->conn && !__atomic_load_n(&st->conn_dead, __ATOMIC_ACQUIRE))
		return 0;
	lv_conn_close(st);
	__atomic_store_n(&st->conn_dead, 0, __ATOMIC_RELEASE);
	st->conn = virConnectOpen(st->uri);
	if (!st->conn) {
		*ret_err = errmsg_printf("libvirtd unreachable at %s: %s", st->uri, lv_error());
		return -ECONNREFUSED;
	}
	/* An in-process hypervisor driver (test:///) has no link to keep alive. */
	int ka = virConnectSetKeepAlive(st->conn, LV_KEEPALIVE_INTERVAL_S, LV_KEEPALIVE_COUNT);
	if (ka < 0 && virGetLastErrorCode() == VIR_ERR_NO_SUPPORT && st->test_host) {
		virResetLastError();
		ka = 0;
	}
	st->event_ids[0] = st->event_ids[1] = -1;
	if (ka < 0 || virConnectRegisterCloseCallback(st->conn, on_conn_close, st, NULL) < 0 ||
	    (st->event_ids[0] = virConnectDomainEventRegisterAny(st->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
	                                                         VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), st,
	                                                         NULL)) < 0 ||
	    (st->event_ids[1] = virConnectDomainEventRegisterAny(st->conn, NULL, VIR_DOMAIN_EVENT_ID_REBOOT,
	                                                         VIR_DOMAIN_EVENT_CALLBACK(on_reboot), st,
	                                                         NULL)) < 0) {
		*ret_err = errmsg_printf("libvirt at %s: cannot set up keepalive and domain events: %s", st->uri,
		                       lv_error());
		lv_conn_close(st);
		return -EIO;
	}
	return 0;
}

/* ---- the host worker: uploads and domain starts ---- */

/* On the host worker: the domain, created paused (libvirtd spawns QEMU: the slow part of a
 * start). KVM refused at create → TCG, noted when the job is back. */
static void worker_create(struct lv_job *j)
{
	/* libvirt's test:/// driver (the xen driver's tests) runs no guest and refuses
	 * both flags: its domain is created running, with nothing to resume. */
	const unsigned flags = j->st->test_host ? 0 : VIR_DOMAIN_START_PAUSED | VIR_DOMAIN_START_AUTODESTROY;
	j->up_dom = virDomainCreateXML(j->up_conn, j->kvm ? j->xml_kvm : j->xml_tcg, flags);
	if (!j->up_dom && j->kvm && j->accel_auto) {
		j->up_note = errmsg_printf("libvirt could not start the domain under KVM (%s); retrying under TCG",
		                           lv_error());
		j->kvm = 0;
		j->up_dom = virDomainCreateXML(j->up_conn, j->xml_tcg, flags);
	}
	if (!j->up_dom)
		j->up_dom_err = errmsg_printf("libvirt could not start domain %s at %s: %s", j->name, j->st->uri,
		                              lv_error());
	virResetLastError();
}

static void *upload_main(void *arg)
{
	struct lv_state *st = arg;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		while (!st->up_queue && !__atomic_load_n(&st->up_quit, __ATOMIC_ACQUIRE))
			pthread_cond_wait(&st->up_cond, &st->lock);
		if (__atomic_load_n(&st->up_quit, __ATOMIC_ACQUIRE))
			break; /* state_drop frees what is left */
		struct lv_job *j = st->up_queue;
		st->up_queue = j->up_next;
		if (!st->up_queue)
			st->up_queue_tail = &st->up_queue;
		pthread_mutex_unlock(&st->lock);
		if (j->finishing) {
			const char *base = strrchr(j->serial_log, '/');
			lv_log_fetch(j->up_conn, base ? base + 1 : j->serial_log, j->bytes, &j->up_tail, &j->up_tail_len);
			goto back;
		}
		j->up_r = j->sha ? lv_volume_ensure(j->up_conn, j->sha, j->image, &st->up_quit, &j->uploaded, &j->up_err)
		                 : 0;
		if (j->up_r == 0 && !__atomic_load_n(&j->facts.killed, __ATOMIC_ACQUIRE) &&
		    !__atomic_load_n(&st->up_quit, __ATOMIC_ACQUIRE))
			worker_create(j);
	back:
		if (virConnectClose(j->up_conn) < 0)
			virResetLastError();
		j->up_conn = NULL;
		pthread_mutex_lock(&st->lock);
		j->up_next = st->up_done;
		st->up_done = j;
		pthread_mutex_unlock(&st->lock);
		virEventUpdateTimeout(st->wake_timer, 0); /* removed only after the join */
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

/* Hand `j` to the host's worker (started now if need be). 0 or -errno with *ret_err. */
static int upload_queue(struct lv_job *j, char **ret_err)
{
	struct lv_state *st = j->st;
	if (!st->up_started) {
		if (pthread_create(&st->up_thread, NULL, upload_main, st) != 0) {
			*ret_err = errmsg_printf("%s: cannot start the worker thread of %s", st->fl->name, st->uri);
			return -EAGAIN;
		}
		st->up_started = 1;
	}
	if (virConnectRef(st->conn) < 0) {
		*ret_err = errmsg_printf("libvirt at %s: %s", st->uri, lv_error());
		return -EIO;
	}
	j->up_conn = st->conn;
	j->uploading = 1;
	j->up_next = NULL;
	pthread_mutex_lock(&st->lock);
	*st->up_queue_tail = j;
	st->up_queue_tail = &j->up_next;
	pthread_cond_signal(&st->up_cond);
	pthread_mutex_unlock(&st->lock);
	return 0;
}

/* The libvirt thread stops the worker, aborting an upload in progress; the jobs are
 * on st->jobs (state_drop frees them). */
static void upload_stop(struct lv_state *st)
{
	if (!st->up_started)
		return;
	pthread_mutex_lock(&st->lock);
	__atomic_store_n(&st->up_quit, 1, __ATOMIC_RELEASE);
	pthread_cond_signal(&st->up_cond);
	pthread_mutex_unlock(&st->lock);
	pthread_join(st->up_thread, NULL);
	st->up_started = 0;
	st->up_queue = st->up_done = NULL;
	st->up_queue_tail = &st->up_queue;
}

static void job_attach(struct lv_job *j);

/* Back from the worker: go on where job_create left it, or end as a kill or a loss
 * meanwhile would have ended it on this thread. */
static void job_back(struct lv_job *j)
{
	struct lv_state *st = j->st;
	char *err = NULL, *msg = NULL;
	j->uploading = 0;
	if (j->finishing) { /* the guest has ended: deliver what only QEMU's copy holds, then end */
		j->finishing = 0;
		j->tail_done = 1;
		if (j->up_tail)
			deliver(j, j->up_tail, j->up_tail_len);
		free(j->up_tail);
		j->up_tail = NULL;
		job_end(j);
		return;
	}
	if (j->lost) { /* the connection is gone, and with it (AUTODESTROY) any domain the worker made */
		lv_job_release(j);
		struct drv_outcome o = {.end = DRV_END_HOST_LOST, .value = -ECONNRESET, .message = j->lost};
		post_exit(j, &o);
		lv_job_unlink_free(j);
		return;
	}
	if (j->facts.killed) { /* as a kill of a starting job: whatever the upload gave */
		if (j->up_dom && virDomainDestroy(j->up_dom) < 0)
			virResetLastError();
		lv_job_release(j);
		struct drv_outcome o;
		lv_classify_end(&j->facts, &o);
		post_exit(j, &o);
		lv_job_unlink_free(j);
		return;
	}
	if (j->up_r < 0) {
		job_fail(j, j->up_r, j->up_err);
		return;
	}
	if (j->sha) {
		/* The facts image_upload (bytes sent) and image_cache are counted per host (/metrics). */
		char bytes[32];
		snprintf(bytes, sizeof(bytes), "%lld", j->uploaded);
		if (j->uploaded) {
			msg = errmsg_printf("image uploaded to %s, storage pool " LV_POOL_NAME ", volume %s", st->uri,
			                    j->sha);
			post_note(j, "image_upload", bytes, msg);
			free(msg);
		} else {
			post_note(j, "image_cache", "hit", NULL);
		}
		lv_volume_used(st, j->sha);
		j->vol = j->sha; /* the volume is there for a TCG rerun too */
		j->sha = NULL;
		if (j->uploaded && st->quota_bytes) {
			int n = lv_pool_prune(st, st->quota_bytes, &err);
			if (n > 0) {
				msg = errmsg_printf("image quota of %s (%llu MiB): removed %d least recently used volume(s)",
				                    st->uri, st->quota_bytes >> 20, n);
				post_note(j, NULL, NULL, msg);
				free(msg);
			}
			free(err);
		}
	}
	if (j->up_note) {
		post_note(j, "accel", "tcg", j->up_note);
		free(j->up_note);
		j->up_note = NULL;
	}
	if (!j->up_dom) {
		job_fail(j, -EIO, j->up_dom_err ? j->up_dom_err : "libvirt could not start the domain");
		return;
	}
	j->dom = j->up_dom;
	j->up_dom = NULL;
	job_attach(j);
}

/* Open the connection; the host worker uploads the image (remote hosts) and creates the domain. */
static void job_create(struct lv_job *j)
{
	char *err = NULL;
	int r = lv_conn_open(j->st, &err);
	if (r == 0)
		r = upload_queue(j, &err);
	if (r < 0) {
		job_fail(j, r, err);
		free(err);
	}
}

/* The domain is there, paused: attach the console, resume. */
static void job_attach(struct lv_job *j)
{
	struct lv_state *st = j->st;
	char *msg = NULL;
	j->stream = virStreamNew(st->conn, VIR_STREAM_NONBLOCK);
	int console = j->stream ? virDomainOpenConsole(j->dom, NULL, j->stream, VIR_DOMAIN_CONSOLE_FORCE) : -1;
	if (console < 0 && j->stream && virGetLastErrorCode() == VIR_ERR_NO_SUPPORT) {
		/* A hypervisor driver without consoles (libvirt's test:/// driver): the run
		 * goes on with no console output, and says so. */
		msg = errmsg_printf("%s at %s offers no console: the guest's output cannot be read (%s)", st->fl->name,
		                  st->uri, lv_error());
		post_note(j, NULL, NULL, msg);
		free(msg);
		virResetLastError();
		virStreamFree(j->stream);
		j->stream = NULL;
	} else if (console < 0 ||
	           virStreamEventAddCallback(j->stream,
	                                     VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP,
	                                     on_stream, j, NULL) < 0) {
		msg = errmsg_printf("libvirt could not open the console of %s: %s", j->name, lv_error());
		job_fail(j, -EIO, msg);
		free(msg);
		return;
	} else {
		j->stream_cb = 1;
	}
	if (!st->test_host && virDomainResume(j->dom) < 0) {
		msg = errmsg_printf("libvirt could not resume %s: %s", j->name, lv_error());
		job_fail(j, -EIO, msg);
		free(msg);
		return;
	}
	if (!j->started_sent) {
		j->started_sent = 1;
		struct lv_msg *m = calloc(1, sizeof(*m));
		if (m) {
			m->type = M_STARTED;
			post(st, j->token, m);
		}
	}
	if (st->fl->xen) {
		msg = errmsg_printf("domain %s on %s (Xen)", j->name, st->uri);
		post_note(j, NULL, NULL, msg);
	} else {
		msg = errmsg_printf("domain %s on %s under %s", j->name, st->uri, j->kvm ? "KVM" : "TCG (slower)");
		post_note(j, "accel", j->kvm ? "kvm" : "tcg", msg);
	}
	free(msg);
	post_note(j, "libvirt_domain", j->name, NULL);
}

static void job_kill(struct lv_state *st, uint64_t token)
{
	struct lv_job *j = job_by_token(st, token);
	if (!j || j->facts.killed)
		return;
	__atomic_store_n(&j->facts.killed, 1, __ATOMIC_RELEASE); /* at the worker: ends killed when back (job_back) */
	if (j->dom && !j->stopped && virDomainDestroy(j->dom) < 0)
		virResetLastError(); /* already gone: its Stopped event ends the job */
}

/* The thread lets go of `st`: its runs (their domains die with the connection,
 * AUTODESTROY), its wake-up timer and its connection; then unprobe may free it. */
static void state_drop(struct lv_state *st)
{
	upload_stop(st); /* its jobs are on st->jobs; nothing of theirs is posted */
	while (st->jobs) {
		lv_job_release(st->jobs);
		lv_job_unlink_free(st->jobs);
	}
	virEventRemoveTimeout(st->wake_timer);
	st->wake_timer = -1;
	lv_conn_close(st);
	pthread_mutex_lock(&st->lock);
	st->quit = 1;
	pthread_cond_signal(&st->quit_cond);
	pthread_mutex_unlock(&st->lock);
}

static void on_wake(int timer, void *opaque)
{
	struct lv_state *st = opaque;
	virEventUpdateTimeout(timer, -1);
	for (;;) {
		pthread_mutex_lock(&st->lock);
		int lost = st->conn_lost_pending, reason = st->conn_lost_reason;
		st->conn_lost_pending = 0;
		struct lv_cmd *c = st->cmds;
		if (c) {
			st->cmds = c->next;
			if (!st->cmds)
				st->cmds_tail = &st->cmds;
		}
		pthread_mutex_unlock(&st->lock);
		if (lost)
			conn_lost(st, reason);
		if (!c)
			break;
		switch (c->type) {
		case C_START:
			c->job->next = st->jobs;
			st->jobs = c->job;
			job_create(c->job);
			break;
		case C_KILL:
			job_kill(st, c->token);
			break;
		case C_QUIT:
			free(c);
			state_drop(st); /* nothing is posted after C_QUIT */
			return;
		}
		free(c);
	}
	/* Uploads done, oldest first. */
	pthread_mutex_lock(&st->lock);
	struct lv_job *done = NULL;
	while (st->up_done) {
		struct lv_job *j = st->up_done;
		st->up_done = j->up_next;
		j->up_next = done;
		done = j;
	}
	pthread_mutex_unlock(&st->lock);
	while (done) {
		struct lv_job *j = done;
		done = j->up_next;
		job_back(j);
	}
}

/* ---- the one libvirt thread of the process ---- */

static pthread_mutex_t loop_lock = PTHREAD_MUTEX_INITIALIZER;
static int loop_registered, loop_users, loop_quit, loop_timer = -1;
static pthread_t loop_thread;

int lv_loop_init(char **ret_err)
{
	pthread_mutex_lock(&loop_lock);
	int r = 0;
	if (!loop_registered) {
		if (virEventRegisterDefaultImpl() < 0) {
			*ret_err = errmsg_printf("libvirt: cannot set up its event loop: %s", lv_error());
			r = -EIO;
		} else {
			loop_registered = 1;
		}
	}
	pthread_mutex_unlock(&loop_lock);
	return r;
}

static void on_loop_timer(int timer, void *opaque)
{
	(void)opaque;
	virEventUpdateTimeout(timer, -1); /* only wakes the loop to see loop_quit */
}

static void *loop_main(void *arg)
{
	(void)arg;
	on_libvirt_thread = 1;
	while (!__atomic_load_n(&loop_quit, __ATOMIC_ACQUIRE))
		if (virEventRunDefaultImpl() < 0)
			virResetLastError();
	return NULL;
}

int lv_loop_join(struct lv_state *st, char **ret_err)
{
	pthread_mutex_lock(&loop_lock);
	int r = 0;
	st->wake_timer = virEventAddTimeout(-1, on_wake, st, NULL);
	if (st->wake_timer < 0) {
		r = -EAGAIN;
	} else if (loop_users == 0) {
		__atomic_store_n(&loop_quit, 0, __ATOMIC_RELEASE);
		loop_timer = virEventAddTimeout(-1, on_loop_timer, NULL, NULL);
		if (loop_timer < 0 || pthread_create(&loop_thread, NULL, loop_main, NULL) != 0) {
			if (loop_timer >= 0)
				virEventRemoveTimeout(loop_timer);
			loop_timer = -1;
			r = -EAGAIN;
		}
	}
	if (r == 0) {
		loop_users++;
		st->thread_started = 1;
	} else {
		*ret_err = errmsg_printf("%s: cannot start the libvirt event thread", st->fl->name);
	}
	pthread_mutex_unlock(&loop_lock);
	return r;
}

void lv_loop_leave(struct lv_state *st)
{
	if (!st->thread_started)
		return;
	if (lv_cmd_post(st, C_QUIT, 0, NULL) == 0) {
		pthread_mutex_lock(&st->lock);
		while (!st->quit)
			pthread_cond_wait(&st->quit_cond, &st->lock);
		pthread_mutex_unlock(&st->lock);
	}
	st->thread_started = 0;
	pthread_mutex_lock(&loop_lock);
	if (--loop_users == 0) {
		__atomic_store_n(&loop_quit, 1, __ATOMIC_RELEASE);
		virEventUpdateTimeout(loop_timer, 0);
		pthread_join(loop_thread, NULL);
		virEventRemoveTimeout(loop_timer);
		loop_timer = -1;
	}
	pthread_mutex_unlock(&loop_lock);
}

int lv_cmd_post(struct lv_state *st, enum lv_cmd_type type, uint64_t token, struct lv_job *job)
{
	struct lv_cmd *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = (struct lv_cmd){.type = type, .token = token, .job = job};
	pthread_mutex_lock(&st->lock);
	*st->cmds_tail = c;
	st->cmds_tail = &c->next;
	pthread_mutex_unlock(&st->lock);
	virEventUpdateTimeout(st->wake_timer, 0);
	return 0;
}
