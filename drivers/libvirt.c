/*
 * libvirt.c — the libvirt driver: multiboot kernels as transient libvirt
 * domains (`ukrun-<run id>-<owner tag>`), on qemu:///system or any URI given
 * by runnerd's `libvirt-uri` setting (the local host's option), or a remote
 * host's URI (qemu+tcp://, qemu+tls://, qemu+ssh://).
 *
 * Threads: every libvirt call that may block, and libvirt's own default event
 * loop (lifecycle events, the console streams, keepalive), run on one
 * driver thread, the "libvirt thread" (libvirt_thread.c; one per process,
 * shared with the xen driver, xen.c), but the image uploads to a remote host:
 * each host has its own upload worker, so that one host receiving a big image
 * does not hold up the others' events and starts. The libuv loop
 * never calls libvirt after probe and reap (at start-up, before runnerd
 * serves): it posts commands (start, kill, quit) to the libvirt
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
 * Images: a local host boots the stored file itself, QEMU running as
 * runnerd's uid:gid through a static DAC seclabel (as the qemu driver's
 * QEMU); a remote host gets it as a volume of the `ukrun` storage pool
 * (libvirt_pool.c), uploaded once per digest.
 *
 * KVM: when libvirt cannot start the domain under KVM (e.g. /dev/kvm not
 * usable by its QEMU user) or the hypervisor pauses the guest after it ran
 * (the software KVM of DESIGN §8), the run is redone under TCG (type='qemu')
 * with a note; console bytes the first attempt delivered are not repeated.
 */
#include "libvirt_int.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- probe, reap ---- */

void lv_unprobe(void *state)
{
	struct lv_state *st = state;
	if (!st)
		return;
	lv_loop_leave(st); /* the thread drops the state's runs, timer and connection */
	while (st->jobs) { /* never joined: jobs never reached a thread */
		lv_job_release(st->jobs);
		lv_job_unlink_free(st->jobs);
	}
	if (st->wake_timer >= 0)
		virEventRemoveTimeout(st->wake_timer);
	lv_conn_close(st);
	while (st->cmds) {
		struct lv_cmd *c = st->cmds;
		st->cmds = c->next;
		free(c);
	}
	pthread_cond_destroy(&st->quit_cond);
	pthread_cond_destroy(&st->up_cond);
	pthread_mutex_destroy(&st->lock);
	free(st->uri);
	free(st->host);
	free(st->pool_path);
	free(st->conn_err);
	while (st->vol_uses) {
		struct lv_vol_use *u = st->vol_uses;
		st->vol_uses = u->next;
		free(u);
	}
	free(st);
}

int lv_health(void *state, char **ret_err)
{
	struct lv_state *st = state;
	if (!__atomic_load_n(&st->conn_dead, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&st->lock);
	*ret_err = st->conn_err ? strdup(st->conn_err) : errmsg_printf("lost the connection to libvirtd at %s", st->uri);
	pthread_mutex_unlock(&st->lock);
	return -ECONNRESET;
}

const char *lv_host_uri(const struct lv_flavor *fl, const struct drv_host *host, char **ret_err)
{
	if (host && host->uri) {
		if (fl->uri_ok && !fl->uri_ok(host->uri)) {
			*ret_err = errmsg_printf("%s: host %s's URI %s is not for this driver", fl->name, host->name,
			                         host->uri);
			return NULL;
		}
		return host->uri;
	}
	const char *opt = drv_host_option(host, fl->uri_option);
	return opt && *opt ? opt : fl->default_uri;
}

int lv_probe_with(const struct lv_flavor *fl, const struct drv_host *host, void **ret_state, char **ret_info,
                  char **ret_err)
{
	const char *uri = lv_host_uri(fl, host, ret_err);
	if (!uri)
		return -ENOTSUP;
	struct lv_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->fl = fl;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->quit_cond, NULL);
	pthread_cond_init(&st->up_cond, NULL);
	st->cmds_tail = &st->cmds;
	st->up_queue_tail = &st->up_queue;
	st->wake_timer = -1;
	st->event_ids[0] = st->event_ids[1] = -1;
	st->uri = strdup(uri);
	st->local = strncmp(st->uri, fl->local_uri, strlen(fl->local_uri)) == 0 ||
	            (!fl->xen && strncmp(st->uri, "qemu+unix:///", 13) == 0) ||
	            strncmp(st->uri, "test:///", 8) == 0; /* libvirt's in-process test driver (the xen tests) */
	st->test_host = strncmp(st->uri, "test:", 5) == 0;
	char hostname[HOST_NAME_MAX + 1] = "";
	gethostname(hostname, sizeof(hostname) - 1);
	st->host = strdup(hostname);
	virSetErrorFunc(NULL, lv_quiet_errors);
	int r = lv_loop_init(ret_err);
	if (r == 0)
		r = lv_conn_open(st, ret_err);
	if (r == 0 && !st->local)
		r = lv_pool_setup(st->conn, &st->pool_path, ret_err);
	const char *quota = drv_host_option(host, LV_QUOTA_OPTION);
	if (quota)
		st->quota_bytes = strtoull(quota, NULL, 10) << 20;
	if (r < 0) {
		lv_unprobe(st);
		return r;
	}
	if (!fl->xen) {
		char *caps = virConnectGetDomainCapabilities(st->conn, NULL, "x86_64", NULL, "kvm", 0);
		st->kvm = caps != NULL;
		free(caps);
		virResetLastError();
	}
	unsigned long lib = 0, hv = 0;
	virConnectGetLibVersion(st->conn, &lib);
	virConnectGetVersion(st->conn, &hv);
	r = lv_loop_join(st, ret_err);
	if (r < 0) {
		lv_unprobe(st);
		return r;
	}
	*ret_info = errmsg_printf("libvirt %lu.%lu.%lu at %s (%s %lu.%lu.%lu), %s, %s host", lib / 1000000,
	                        lib / 1000 % 1000, lib % 1000, st->uri, fl->hv_name, hv / 1000000, hv / 1000 % 1000,
	                        hv % 1000, fl->xen ? "Xen PV/PVH" : st->kvm ? "KVM offered" : "TCG only",
	                        st->local ? "local" : "remote");
	*ret_state = st;
	return 0;
}

static int lv_probe(const struct drv_host *host, void **ret_state, char **ret_info, char **ret_err)
{
	return lv_probe_with(&lv_flavor_libvirt, host, ret_state, ret_info, ret_err);
}

/* "<host>:<canonical runs dir>": what marks this daemon's domains. */
static char *owner_of(const struct lv_state *st, const char *runs_dir)
{
	char real[PATH_MAX];
	return errmsg_printf("%s:%s", st->host, realpath(runs_dir, real) ? real : runs_dir);
}

int lv_reap(void *state, const char *runs_dir, const char *const *lost_ids, size_t nlost, char **ret_err)
{
	(void)lost_ids; /* domains carry their owner: every one of ours goes, lost run or not */
	(void)nlost;
	struct lv_state *st = state;
	char *owner = owner_of(st, runs_dir);
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(st->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
	if (n < 0 || !owner) {
		*ret_err = errmsg_printf("libvirt at %s: cannot list domains: %s", st->uri, lv_error());
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
	free(inst->serial_log);
	free(inst);
}

int lv_prepare(void *state, const struct drv_spec *spec, struct drv_instance **ret_inst, char **ret_err)
{
	struct lv_state *st = state;
	if (spec->flags & DRV_F_LOADER) {
		*ret_err = errmsg_printf("%s: loader mode needs the program's exit status from isa-debug-exit, "
		                       "which libvirt does not report: use the qemu driver", st->fl->name);
		return -ENOTSUP;
	}
	if (!spec->workdir || !spec->image_path || !spec->run_id) {
		*ret_err = errmsg_printf("%s: the run has no image, workdir or id", st->fl->name);
		return -EINVAL;
	}
	int kvm = 0;
	switch (st->fl->xen ? DRV_ACCEL_TCG : spec->accel) { /* Xen: no accelerator choice */
	case DRV_ACCEL_KVM:
		if (!st->kvm) {
			*ret_err = errmsg_printf("libvirt: KVM requested but %s offers only TCG", st->uri);
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
	/* SeaBIOS, not qboot as on the qemu driver: a triple fault restarts the guest
	 * (on_reboot=restart, the only way libvirt tells a reset from a power-off), and
	 * qboot re-runs the kernel before the reboot event has stopped it. */
	/* QEMU exits at once on an isa-debug-exit write, and the pty drops what the console
	 * stream had not read yet: QEMU's own copy (virtlogd's file) recovers that tail, read
	 * directly on a local host, as a volume of the image pool on a remote one. */
	if (st->fl->xen)
		o.run_as_uid = o.run_as_gid = -1; /* libxl: no QEMU process, no DAC label */
	o.test_host = st->test_host;
	if (st->local && !st->fl->xen)
		inst->serial_log = errmsg_printf("%s/serial.log", spec->workdir);
	else if (!st->fl->xen && !st->test_host && inst->name && st->pool_path)
		/* Remote host: the copy goes into the image pool, a volume runnerd can read back
		 * (lv_log_fetch) and removes at the run's end. */
		inst->serial_log = errmsg_printf("%s/%s" LV_LOG_SUFFIX, st->pool_path, inst->name);
	o.serial_log = inst->serial_log;
	char *kernel = NULL;
	int r = inst->name && (st->fl->xen || st->test_host || inst->serial_log || (!st->local && !st->pool_path))
	            ? 0 : -ENOMEM;
	if (r == 0 && !st->local) {
		/* Remote host: the image's volume (named by its digest, the store file's name),
		 * labelled for QEMU by libvirt itself. */
		char real[PATH_MAX];
		const char *base = realpath(spec->image_path, real) ? strrchr(real, '/') : NULL;
		if (!base || strlen(base + 1) != 64) {
			*ret_err = errmsg_printf("%s: cannot name the volume of %s", st->fl->name, spec->image_path);
			r = -EINVAL;
		} else {
			inst->sha = strdup(base + 1);
			kernel = errmsg_printf("%s/%s", st->pool_path, base + 1);
			o.kernel_path = kernel;
			o.run_as_uid = o.run_as_gid = -1;
			r = inst->sha && kernel ? 0 : -ENOMEM;
		}
	}
	if (r == 0 && st->kvm) {
		o.kvm = 1;
		r = st->fl->build_xml(spec, &o, &inst->xml_kvm, ret_err);
	}
	if (r == 0) {
		o.kvm = 0;
		r = st->fl->build_xml(spec, &o, &inst->xml_tcg, ret_err);
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
			inst->cb.console(inst->cb.ctx, DRV_STREAM_CONSOLE, m->data, m->len);
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

int lv_launch(struct drv_instance *inst, uv_loop_t *loop, const struct drv_callbacks *cb, char **ret_err)
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
		.serial_log = inst->serial_log ? strdup(inst->serial_log) : NULL,
		.remote_log = inst->serial_log && !st->local,
		.image = inst->sha ? realpath(inst->spec->image_path, NULL) : NULL,
	};
	if (!j->name || !j->xml_tcg || (inst->xml_kvm && !j->xml_kvm) || (inst->sha && (!j->sha || !j->image)) ||
	    (inst->serial_log && !j->serial_log)) {
		lv_job_discard(j);
		return -ENOMEM;
	}
	int r = uv_async_init(loop, &inst->async, on_async);
	if (r < 0) {
		lv_job_discard(j);
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
	r = lv_cmd_post(st, C_START, j->token, j);
	if (r < 0) {
		lv_job_discard(j);
		*ret_err = strdup("libvirt: out of memory");
	}
	return r; /* on failure destroy unregisters and closes the handle */
}

int lv_kill(struct drv_instance *inst, unsigned flags)
{
	(void)flags; /* a transient unikernel has nothing to shut down gracefully: destroy */
	if (!inst->launched || inst->reported)
		return 0;
	return lv_cmd_post(inst->st, C_KILL, inst->token, NULL);
}

static void on_inst_closed(uv_handle_t *h)
{
	inst_free(h->data);
}

void lv_destroy(struct drv_instance *inst)
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
		lv_cmd_post(st, C_KILL, inst->token, NULL);
	uv_close((uv_handle_t *)&inst->async, on_inst_closed);
}

/* Any URI but a Xen one (qemu, qemu+tcp/tls/ssh/unix, test:///). */
static int lv_uri_ok(const char *uri)
{
	return strncmp(uri, "xen", 3) != 0;
}

const struct lv_flavor lv_flavor_libvirt = {
	.name = "libvirt",
	.default_uri = LV_DEFAULT_URI,
	.uri_option = LV_URI_OPTION,
	.uri_ok = lv_uri_ok,
	.local_uri = "qemu:///",
	.hv_name = "QEMU",
	.build_xml = lv_build_xml,
};

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
	.health = lv_health,
};
