/*
 * libvirt.c — the libvirt driver: multiboot kernels as transient libvirt
 * domains (`ukrun-<run id>-<owner tag>`), on qemu:///system or any URI given
 * by runnerd's `libvirt-uri` setting (environment UKRUN_LIBVIRT_URI).
 *
 * Threads: every libvirt call that may block, and libvirt's own default event
 * loop (lifecycle events, the console streams, keepalive), run on one
 * driver thread, the "libvirt thread". The libuv loop never calls libvirt
 * after probe: it posts commands (start, kill, forget) to the libvirt
 * thread, which wakes through a libvirt timer, and the libvirt thread posts
 * messages (console bytes, notes, started, exit) to each run's uv_async.
 * A libvirtd that stops answering is cut off by keepalive (5 s × 3) and
 * every run on it ends with DRV_END_ERROR naming the URI.
 *
 * Domains start paused with VIR_DOMAIN_START_AUTODESTROY: the console stream
 * is attached before the first guest instruction, and libvirtd destroys the
 * domain by itself when runnerd's connection goes away (runnerd killed).
 * What a dead daemon still left behind (libvirtd restarted meanwhile) is
 * removed at the next start by `reap`, which only touches domains whose
 * <metadata> names this daemon (host name + runs directory).
 *
 * KVM: when libvirt cannot start the domain under KVM (e.g. /dev/kvm not
 * usable by its QEMU user) or the hypervisor pauses the guest after it ran
 * (the software KVM of DESIGN §8), the run is redone under TCG (type='qemu')
 * with a note; console bytes the first attempt delivered are not repeated.
 */
#include "libvirt_int.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qemu_int.h" /* QEMU_QBOOT_ROM */

#define LV_KEEPALIVE_INTERVAL_S 5
#define LV_KEEPALIVE_COUNT 3
#define LV_DRAIN_MS 3000 /* after the Stopped event: wait at most this for the console's end */
#define LV_PAUSE_MS 1000 /* a pause with no Crashed event within this is an emulation failure */

struct lv_job;

struct lv_state {
	char *uri;
	int local;
	int kvm;                /* libvirt offers type='kvm' here */
	int kvm_fails_unikraft; /* KVM already failed a Unikraft guest (atomic: read on the loop) */
	char *host;             /* this machine's name, part of the ownership mark */
	char *pool_path;        /* remote hosts: target directory of the image pool */
	virConnectPtr conn;     /* libvirt thread (and probe/reap before runs) */
	int conn_dead;
	char *conn_err;
	pthread_t thread;
	int thread_started;
	int quit;
	int wake_timer;
	pthread_mutex_t lock;   /* guards cmds and insts */
	struct lv_cmd *cmds, **cmds_tail;
	struct drv_instance *insts;
	struct lv_job *jobs;    /* libvirt thread only */
	uint64_t next_token;
};

enum lv_msg_type { M_CONSOLE, M_NOTE, M_STARTED, M_EXIT };

struct lv_msg {
	struct lv_msg *next;
	enum lv_msg_type type;
	struct drv_outcome out;
	char *key, *value, *text; /* note; exit message in text */
	char *data;               /* console */
	size_t len;
};

enum lv_cmd_type { C_START, C_KILL, C_QUIT };

struct lv_cmd {
	struct lv_cmd *next;
	enum lv_cmd_type type;
	uint64_t token;
	struct lv_job *job; /* C_START: handed to the libvirt thread */
};

/* One run as the libvirt thread sees it. */
struct lv_job {
	struct lv_job *next;
	struct lv_state *st;
	uint64_t token;
	char *name, *xml_kvm, *xml_tcg;
	char *sha, *image; /* remote hosts: the volume to ensure, uploaded from `image` */
	int kvm, accel_auto, unikraft;
	virDomainPtr dom;
	virStreamPtr stream;
	int stream_cb;
	int drain_timer, pause_timer;
	int running, stopped, eof, retry, started_sent;
	struct lv_end_facts facts;
	uint64_t bytes, skip, delivered;
};

/* One run as the loop sees it. */
struct drv_instance {
	struct drv_instance *next; /* st->insts */
	struct lv_state *st;
	const struct drv_spec *spec;
	uint64_t token;
	char *name, *xml_kvm, *xml_tcg;
	char *sha; /* remote hosts: the image's digest (its volume's name) */
	int kvm;
	uv_async_t async;
	struct lv_msg *msgs, **msgs_tail; /* under st->lock */
	struct drv_callbacks cb;
	int launched, reported, destroyed;
};

static char *lv_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *lv_asprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

static const char *lv_error(void)
{
	const char *m = virGetLastErrorMessage();
	return m && *m ? m : "unknown libvirt error";
}

/* libvirt prints every error on stderr by default: errors are reported where understood. */
static void quiet_errors(void *ud, virErrorPtr e)
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

static void job_discard(struct lv_job *j)
{
	free(j->name);
	free(j->xml_kvm);
	free(j->xml_tcg);
	free(j->sha);
	free(j->image);
	free(j);
}

static void job_unlink_free(struct lv_job *j)
{
	for (struct lv_job **p = &j->st->jobs; *p; p = &(*p)->next) {
		if (*p == j) {
			*p = j->next;
			break;
		}
	}
	job_discard(j);
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
static void job_release(struct lv_job *j)
{
	if (j->drain_timer >= 0)
		virEventRemoveTimeout(j->drain_timer);
	if (j->pause_timer >= 0)
		virEventRemoveTimeout(j->pause_timer);
	j->drain_timer = j->pause_timer = -1;
	stream_close(j);
	if (j->dom)
		virDomainFree(j->dom);
	j->dom = NULL;
}

static void job_fail(struct lv_job *j, int err, const char *msg)
{
	if (j->dom && virDomainDestroy(j->dom) < 0)
		virResetLastError();
	job_release(j);
	struct drv_outcome o = {.end = DRV_END_ERROR, .value = err, .message = msg};
	post_exit(j, &o);
	job_unlink_free(j);
}

static void job_create(struct lv_job *j);

static void job_end(struct lv_job *j)
{
	job_release(j);
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
	job_unlink_free(j);
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

/* The connection died (keepalive timeout, libvirtd gone): every run on it fails. */
static void on_conn_close(virConnectPtr c, int reason, void *opaque)
{
	struct lv_state *st = opaque;
	static const char *const why[] = {"an I/O error", "end of file", "keepalive timeout", "a client request"};
	(void)c;
	if (st->conn_dead)
		return;
	st->conn_dead = 1;
	free(st->conn_err);
	st->conn_err = lv_asprintf("lost the connection to libvirtd at %s (%s)", st->uri,
	                           reason >= 0 && reason < 4 ? why[reason] : "closed");
	while (st->jobs) {
		struct lv_job *j = st->jobs;
		job_release(j);
		struct drv_outcome o = {.end = DRV_END_ERROR, .value = -ECONNRESET, .message = st->conn_err};
		post_exit(j, &o);
		job_unlink_free(j);
	}
}

static void conn_close(struct lv_state *st)
{
	if (!st->conn)
		return;
	virConnectUnregisterCloseCallback(st->conn, on_conn_close);
	if (virConnectClose(st->conn) < 0)
		virResetLastError();
	st->conn = NULL;
}

/* Open (or reopen after a loss) the connection with keepalive and our event callbacks. */
static int conn_open(struct lv_state *st, char **ret_err)
{
	if (st->conn && !st->conn_dead)
		return 0;
	conn_close(st);
	st->conn_dead = 0;
	st->conn = virConnectOpen(st->uri);
	if (!st->conn) {
		*ret_err = lv_asprintf("libvirtd unreachable at %s: %s", st->uri, lv_error());
		return -ECONNREFUSED;
	}
	if (virConnectSetKeepAlive(st->conn, LV_KEEPALIVE_INTERVAL_S, LV_KEEPALIVE_COUNT) < 0 ||
	    virConnectRegisterCloseCallback(st->conn, on_conn_close, st, NULL) < 0 ||
	    virConnectDomainEventRegisterAny(st->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
	                                     VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), st, NULL) < 0 ||
	    virConnectDomainEventRegisterAny(st->conn, NULL, VIR_DOMAIN_EVENT_ID_REBOOT,
	                                     VIR_DOMAIN_EVENT_CALLBACK(on_reboot), st, NULL) < 0) {
		*ret_err = lv_asprintf("libvirt at %s: cannot set up keepalive and domain events: %s", st->uri,
		                       lv_error());
		conn_close(st);
		return -EIO;
	}
	return 0;
}

/* Create the domain paused, attach the console, resume. */
static void job_create(struct lv_job *j)
{
	struct lv_state *st = j->st;
	char *err = NULL, *msg = NULL;
	int r = conn_open(st, &err);
	if (r < 0) {
		job_fail(j, r, err);
		free(err);
		return;
	}
	if (j->sha) {
		int uploaded = 0;
		r = lv_volume_ensure(st->conn, j->sha, j->image, &uploaded, &err);
		if (r < 0) {
			job_fail(j, r, err);
			free(err);
			return;
		}
		if (uploaded) {
			msg = lv_asprintf("image uploaded to %s, storage pool " LV_POOL_NAME ", volume %s", st->uri, j->sha);
			post_note(j, NULL, NULL, msg);
			free(msg);
		}
		free(j->sha); /* the volume is there for a TCG rerun too */
		j->sha = NULL;
	}
	const unsigned flags = VIR_DOMAIN_START_PAUSED | VIR_DOMAIN_START_AUTODESTROY;
	j->dom = virDomainCreateXML(st->conn, j->kvm ? j->xml_kvm : j->xml_tcg, flags);
	if (!j->dom && j->kvm && j->accel_auto) {
		msg = lv_asprintf("libvirt could not start the domain under KVM (%s); retrying under TCG", lv_error());
		post_note(j, "accel", "tcg", msg);
		free(msg);
		j->kvm = 0;
		j->dom = virDomainCreateXML(st->conn, j->xml_tcg, flags);
	}
	if (!j->dom) {
		msg = lv_asprintf("libvirt could not start domain %s at %s: %s", j->name, st->uri, lv_error());
		job_fail(j, -EIO, msg);
		free(msg);
		return;
	}
	j->stream = virStreamNew(st->conn, VIR_STREAM_NONBLOCK);
	if (!j->stream || virDomainOpenConsole(j->dom, NULL, j->stream, VIR_DOMAIN_CONSOLE_FORCE) < 0 ||
	    virStreamEventAddCallback(j->stream,
	                              VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP,
	                              on_stream, j, NULL) < 0) {
		msg = lv_asprintf("libvirt could not open the console of %s: %s", j->name, lv_error());
		job_fail(j, -EIO, msg);
		free(msg);
		return;
	}
	j->stream_cb = 1;
	if (virDomainResume(j->dom) < 0) {
		msg = lv_asprintf("libvirt could not resume %s: %s", j->name, lv_error());
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
	msg = lv_asprintf("domain %s on %s under %s", j->name, st->uri, j->kvm ? "KVM" : "TCG (slower)");
	post_note(j, "accel", j->kvm ? "kvm" : "tcg", msg);
	free(msg);
	post_note(j, "libvirt_domain", j->name, NULL);
}

static void job_kill(struct lv_state *st, uint64_t token)
{
	struct lv_job *j = job_by_token(st, token);
	if (!j || j->facts.killed)
		return;
	j->facts.killed = 1;
	if (j->dom && !j->stopped && virDomainDestroy(j->dom) < 0)
		virResetLastError(); /* already gone: its Stopped event ends the job */
}

static void on_wake(int timer, void *opaque)
{
	struct lv_state *st = opaque;
	virEventUpdateTimeout(timer, -1);
	for (;;) {
		pthread_mutex_lock(&st->lock);
		struct lv_cmd *c = st->cmds;
		if (c) {
			st->cmds = c->next;
			if (!st->cmds)
				st->cmds_tail = &st->cmds;
		}
		pthread_mutex_unlock(&st->lock);
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
			__atomic_store_n(&st->quit, 1, __ATOMIC_RELEASE);
			break;
		}
		free(c);
	}
}

static void *lv_thread(void *arg)
{
	struct lv_state *st = arg;
	while (!__atomic_load_n(&st->quit, __ATOMIC_ACQUIRE))
		if (virEventRunDefaultImpl() < 0)
			virResetLastError();
	return NULL;
}

static int cmd_post(struct lv_state *st, enum lv_cmd_type type, uint64_t token, struct lv_job *job)
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

/* ---- probe, reap ---- */

static void lv_unprobe(void *state)
{
	struct lv_state *st = state;
	if (!st)
		return;
	if (st->thread_started) {
		cmd_post(st, C_QUIT, 0, NULL);
		pthread_join(st->thread, NULL);
	}
	while (st->jobs) { /* runs still alive at shutdown: the connection's end destroys them */
		job_release(st->jobs);
		job_unlink_free(st->jobs);
	}
	if (st->wake_timer >= 0)
		virEventRemoveTimeout(st->wake_timer);
	conn_close(st);
	while (st->cmds) {
		struct lv_cmd *c = st->cmds;
		st->cmds = c->next;
		free(c);
	}
	pthread_mutex_destroy(&st->lock);
	free(st->uri);
	free(st->host);
	free(st->pool_path);
	free(st->conn_err);
	free(st);
}

static int lv_probe(void **ret_state, char **ret_info, char **ret_err)
{
	static int impl_registered;
	struct lv_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	st->cmds_tail = &st->cmds;
	st->wake_timer = -1;
	const char *uri = getenv(LV_URI_ENV);
	st->uri = strdup(uri && *uri ? uri : LV_DEFAULT_URI);
	st->local = strncmp(st->uri, "qemu:///", 8) == 0 || strncmp(st->uri, "qemu+unix:///", 13) == 0;
	char host[HOST_NAME_MAX + 1] = "";
	gethostname(host, sizeof(host) - 1);
	st->host = strdup(host);
	virSetErrorFunc(NULL, quiet_errors);
	if (!impl_registered && virEventRegisterDefaultImpl() < 0) {
		*ret_err = lv_asprintf("libvirt: cannot set up its event loop: %s", lv_error());
		lv_unprobe(st);
		return -EIO;
	}
	impl_registered = 1;
	int r = conn_open(st, ret_err);
	if (r == 0 && !st->local)
		r = lv_pool_setup(st->conn, &st->pool_path, ret_err);
	if (r < 0) {
		lv_unprobe(st);
		return r;
	}
	char *caps = virConnectGetDomainCapabilities(st->conn, NULL, "x86_64", NULL, "kvm", 0);
	st->kvm = caps != NULL;
	free(caps);
	virResetLastError();
	unsigned long lib = 0, hv = 0;
	virConnectGetLibVersion(st->conn, &lib);
	virConnectGetVersion(st->conn, &hv);
	st->wake_timer = virEventAddTimeout(-1, on_wake, st, NULL);
	if (st->wake_timer < 0 || pthread_create(&st->thread, NULL, lv_thread, st) != 0) {
		*ret_err = strdup("libvirt: cannot start the driver's event thread");
		lv_unprobe(st);
		return -EAGAIN;
	}
	st->thread_started = 1;
	*ret_info = lv_asprintf("libvirt %lu.%lu.%lu at %s (QEMU %lu.%lu.%lu), %s, %s host", lib / 1000000,
	                        lib / 1000 % 1000, lib % 1000, st->uri, hv / 1000000, hv / 1000 % 1000, hv % 1000,
	                        st->kvm ? "KVM offered" : "TCG only", st->local ? "local" : "remote");
	*ret_state = st;
	return 0;
}

/* "<host>:<canonical runs dir>": what marks this daemon's domains. */
static char *owner_of(const struct lv_state *st, const char *runs_dir)
{
	char real[PATH_MAX];
	return lv_asprintf("%s:%s", st->host, realpath(runs_dir, real) ? real : runs_dir);
}

static int lv_reap(void *state, const char *runs_dir, char **ret_err)
{
	struct lv_state *st = state;
	char *owner = owner_of(st, runs_dir);
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(st->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
	if (n < 0 || !owner) {
		*ret_err = lv_asprintf("libvirt at %s: cannot list domains: %s", st->uri, lv_error());
		free(owner);
		return -EIO;
	}
	int reaped = 0;
	for (int i = 0; i < n; i++) {
		const char *name = virDomainGetName(doms[i]);
		if (name && strncmp(name, LV_NAME_PREFIX, strlen(LV_NAME_PREFIX)) == 0) {
			char *meta = virDomainGetMetadata(doms[i], VIR_DOMAIN_METADATA_ELEMENT, LV_META_NS, 0);
			char *who = lv_meta_owner(meta);
			if (who && strcmp(who, owner) == 0) {
				if (virDomainDestroy(doms[i]) == 0)
					reaped++;
			}
			free(who);
			free(meta);
			virResetLastError();
		}
		virDomainFree(doms[i]);
	}
	free(doms);
	free(owner);
	return reaped;
}

/* ---- the driver table: loop side ---- */

static void inst_free(struct drv_instance *inst)
{
	free(inst->name);
	free(inst->xml_kvm);
	free(inst->xml_tcg);
	free(inst->sha);
	free(inst);
}

static int lv_prepare(void *state, const struct drv_spec *spec, struct drv_instance **ret_inst, char **ret_err)
{
	struct lv_state *st = state;
	if (spec->flags & DRV_F_LOADER) {
		*ret_err = strdup("libvirt: loader mode needs the program's exit status from isa-debug-exit, "
		                  "which libvirt does not report: use the qemu driver");
		return -ENOTSUP;
	}
	if (!spec->workdir || !spec->image_path || !spec->run_id) {
		*ret_err = strdup("libvirt: the run has no image, workdir or id");
		return -EINVAL;
	}
	int kvm;
	switch (spec->accel) {
	case DRV_ACCEL_KVM:
		if (!st->kvm) {
			*ret_err = lv_asprintf("libvirt: KVM requested but %s offers only TCG", st->uri);
			return -ENODEV;
		}
		kvm = 1;
		break;
	case DRV_ACCEL_TCG:
		kvm = 0;
		break;
	default:
		kvm = st->kvm && !((spec->flags & DRV_F_UNIKRAFT) &&
		                   __atomic_load_n(&st->kvm_fails_unikraft, __ATOMIC_RELAXED));
		break;
	}
	struct drv_instance *inst = calloc(1, sizeof(*inst));
	char *runs_dir = strdup(spec->workdir);
	char *slash = runs_dir ? strrchr(runs_dir, '/') : NULL;
	if (!inst || !runs_dir) {
		free(inst);
		free(runs_dir);
		return -ENOMEM;
	}
	if (slash && slash != runs_dir)
		*slash = '\0';
	char *owner = owner_of(st, runs_dir);
	free(runs_dir);
	inst->st = st;
	inst->spec = spec;
	inst->kvm = kvm;
	inst->msgs_tail = &inst->msgs;
	inst->name = owner ? lv_domain_name(spec->run_id, owner) : NULL;
	/* Local host: QEMU reads the run's files as this daemon's user (as the qemu
	 * driver's QEMU does), whatever the permissions of the data directory. */
	struct lv_xml_opts o = {
		.name = inst->name, .owner = owner, .kernel_path = spec->image_path,
		.initrd_path = spec->initrd_path, .run_as_uid = (int)geteuid(), .run_as_gid = (int)getegid(),
	};
	/* As the qemu driver: qboot boots a plain multiboot kernel in ~0.1 s where SeaBIOS takes
	 * seconds under KVM; Unikraft ≤ 0.16 needs SeaBIOS' memory map (DESIGN §8). */
	if (st->local && !spec->machine && !(spec->flags & DRV_F_UNIKRAFT) && access(QEMU_QBOOT_ROM, R_OK) == 0)
		o.bios = QEMU_QBOOT_ROM;
	char *kernel = NULL;
	int r = inst->name ? 0 : -ENOMEM;
	if (r == 0 && !st->local) {
		/* Remote host: the image's volume (named by its digest, the store file's name),
		 * labelled for QEMU by libvirt itself. */
		char real[PATH_MAX];
		const char *base = realpath(spec->image_path, real) ? strrchr(real, '/') : NULL;
		if (!base || strlen(base + 1) != 64) {
			*ret_err = lv_asprintf("libvirt: cannot name the volume of %s", spec->image_path);
			r = -EINVAL;
		} else {
			inst->sha = strdup(base + 1);
			kernel = lv_asprintf("%s/%s", st->pool_path, base + 1);
			o.kernel_path = kernel;
			o.run_as_uid = o.run_as_gid = -1;
			r = inst->sha && kernel ? 0 : -ENOMEM;
		}
	}
	if (r == 0 && st->kvm) {
		o.kvm = 1;
		r = lv_build_xml(spec, &o, &inst->xml_kvm, ret_err);
	}
	if (r == 0) {
		o.kvm = 0;
		r = lv_build_xml(spec, &o, &inst->xml_tcg, ret_err);
	}
	free(owner);
	free(kernel);
	if (r < 0) {
		inst_free(inst);
		return r;
	}
	*ret_inst = inst;
	return 0;
}

static void msg_free_list(struct lv_msg *m)
{
	while (m) {
		struct lv_msg *next = m->next;
		free(m->key);
		free(m->value);
		free(m->text);
		free(m->data);
		free(m);
		m = next;
	}
}

static void on_async(uv_async_t *a)
{
	struct drv_instance *inst = a->data;
	struct lv_state *st = inst->st;
	pthread_mutex_lock(&st->lock);
	struct lv_msg *m = inst->msgs;
	inst->msgs = NULL;
	inst->msgs_tail = &inst->msgs;
	pthread_mutex_unlock(&st->lock);
	while (m && !inst->destroyed && !inst->reported) {
		struct lv_msg *next = m->next;
		m->next = NULL;
		switch (m->type) {
		case M_CONSOLE:
			inst->cb.console(inst->cb.ctx, m->data, m->len);
			break;
		case M_NOTE:
			if (inst->cb.note)
				inst->cb.note(inst->cb.ctx, m->key, m->value, m->text);
			break;
		case M_STARTED:
			if (inst->cb.started)
				inst->cb.started(inst->cb.ctx);
			break;
		case M_EXIT:
			inst->reported = 1;
			inst->cb.exit(inst->cb.ctx, &m->out); /* may destroy inst (freed on close) */
			break;
		}
		msg_free_list(m);
		m = next;
	}
	msg_free_list(m);
}

static int lv_launch(struct drv_instance *inst, uv_loop_t *loop, const struct drv_callbacks *cb, char **ret_err)
{
	struct lv_state *st = inst->st;
	if (inst->launched) {
		*ret_err = strdup("libvirt: this run was already launched");
		return -EALREADY;
	}
	struct lv_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct lv_job){
		.st = st, .name = strdup(inst->name),
		.xml_kvm = inst->xml_kvm ? strdup(inst->xml_kvm) : NULL, .xml_tcg = strdup(inst->xml_tcg),
		.kvm = inst->kvm, .accel_auto = inst->spec->accel == DRV_ACCEL_AUTO,
		.unikraft = !!(inst->spec->flags & DRV_F_UNIKRAFT), .drain_timer = -1, .pause_timer = -1,
		.facts = {.stopped = -1},
		.sha = inst->sha ? strdup(inst->sha) : NULL,
		.image = inst->sha ? realpath(inst->spec->image_path, NULL) : NULL,
	};
	if (!j->name || !j->xml_tcg || (inst->xml_kvm && !j->xml_kvm) || (inst->sha && (!j->sha || !j->image))) {
		job_discard(j);
		return -ENOMEM;
	}
	int r = uv_async_init(loop, &inst->async, on_async);
	if (r < 0) {
		job_discard(j);
		*ret_err = strdup("libvirt: cannot set up the run's wake-up handle");
		return r;
	}
	inst->async.data = inst;
	inst->cb = *cb;
	inst->launched = 1;
	pthread_mutex_lock(&st->lock);
	inst->token = j->token = ++st->next_token;
	inst->next = st->insts;
	st->insts = inst;
	pthread_mutex_unlock(&st->lock);
	r = cmd_post(st, C_START, j->token, j);
	if (r < 0) {
		job_discard(j);
		*ret_err = strdup("libvirt: out of memory");
	}
	return r; /* on failure destroy unregisters and closes the handle */
}

static int lv_kill(struct drv_instance *inst, unsigned flags)
{
	(void)flags; /* a transient unikernel has nothing to shut down gracefully: destroy */
	if (!inst->launched || inst->reported)
		return 0;
	return cmd_post(inst->st, C_KILL, inst->token, NULL);
}

static void on_inst_closed(uv_handle_t *h)
{
	inst_free(h->data);
}

static void lv_destroy(struct drv_instance *inst)
{
	if (!inst)
		return;
	if (!inst->launched) {
		inst_free(inst);
		return;
	}
	struct lv_state *st = inst->st;
	inst->destroyed = 1;
	pthread_mutex_lock(&st->lock);
	for (struct drv_instance **p = &st->insts; *p; p = &(*p)->next) {
		if (*p == inst) {
			*p = inst->next;
			break;
		}
	}
	struct lv_msg *m = inst->msgs;
	inst->msgs = NULL;
	pthread_mutex_unlock(&st->lock);
	msg_free_list(m);
	if (!inst->reported) /* still running: destroy the domain; its messages are dropped */
		cmd_post(st, C_KILL, inst->token, NULL);
	uv_close((uv_handle_t *)&inst->async, on_inst_closed);
}

const struct driver drv_libvirt = {
	.name = "libvirt",
	.platforms = DRV_PLATFORM_QEMU,
	.caps = DRV_CAP_ARGS | DRV_CAP_MEMORY | DRV_CAP_VCPUS,
	.probe = lv_probe,
	.unprobe = lv_unprobe,
	.prepare = lv_prepare,
	.launch = lv_launch,
	.kill = lv_kill,
	.destroy = lv_destroy,
	.reap = lv_reap,
};
