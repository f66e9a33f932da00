/* run.c — run lifecycle, queue and scheduler (see run.h). */
#include "run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "console.h"
#include "streams.h"
#include "detect.h"
#include "errmsg.h"
#include "log.h"
#include "mkdirp.h"
#include "rundir.h"
#include "testparse.h"
#include "verdict.h"

enum run_state { RS_QUEUED, RS_STARTING, RS_RUNNING, RS_DONE, RS_ERROR, RS_TIMEOUT, RS_CANCELLED, RS_LOST };

const char *const run_state_names[] = {"queued",  "starting", "running",   "done",
                                       "error",   "timeout",  "cancelled", "lost"};

struct run {
	struct run *next;
	struct run_manager *mgr;
	int64_t id;
	char id_str[24];
	enum run_state state;
	struct run_host *host;     /* where it runs (NULL while queued unless pinned) */
	struct run_host *pin;      /* the host the request named, or NULL */
	struct driver_slot *slot;  /* its driver there (NULL while queued) */
	const struct driver *drv;  /* slot->drv, kept until the instance is destroyed */
	struct drv_instance *inst;
	enum drv_platform platform;
	char *driver;              /* the driver the request named, or NULL */
	char **require;            /* host labels it needs */
	unsigned need_caps;        /* DRV_CAP_* the request needs */
	int priority;
	unsigned retries_left, attempts;
	unsigned mem_mb;           /* guest memory it is counted for on its host */
	char waiting[240];         /* queued: why it is not placed yet */
	struct drv_spec spec;
	struct drv_callbacks cb;
	struct console con;
	struct streams io;         /* stdout.log and stderr.log when the driver splits them */
	struct testparse *tp;
	uv_timer_t timeout_timer;
	uv_timer_t grace_timer;
	uv_timer_t idle_timer;     /* loader mode, after the summary: samples how busy the guest is */
	uint64_t idle_since;       /* loop ms from which the guest has been idle */
	uint64_t idle_busy0;       /* its busy ns then (driver guest_busy) */
	uint64_t idle_last_t, idle_last_ns; /* the previous sample */
	uv_timer_t throttle_timer; /* past the console cap: resumes reading the console */
	int throttled, throttle_noted;
	uint64_t window_start;     /* loop ms when the current throttle window began */
	size_t window_bytes;       /* console bytes past the cap read in that window */
	int handles_open;
	unsigned vflags;       /* VERDICT_F_* */
	int success_code;
	unsigned timeout_s;
	int exited;
	char last_line[240];   /* last non-empty console line (for error reasons) */
	size_t cur_len;
	char cur_line[240];
	char *name, *image_path, *initrd_path, *workdir, *machine;
	char **args, **uk_params, **env, **binds;
	char *cwd;             /* the spec's start directory (owned: the request is gone when a queued run starts) */
	struct verdict final_v; /* decided at the end, recorded by record_end */
	json_t *cases;          /* test cases being written */
	uv_work_t tests_work;
	int tests_result;
};

/* Past the console cap at most RUN_THROTTLE_BYTES are read per RUN_THROTTLE_MS (about
 * 6 MB/s), so a flooding guest slows down instead of costing the daemon a core. */
#define RUN_THROTTLE_MS 10
#define RUN_THROTTLE_BYTES (64 * 1024)

/* From this many test cases on, they are written off the loop (a worker thread). */
#define RUN_TESTS_OFFLOOP 200

/* The slot of `host` named `driver` when given (it must serve the platform), else the first serving it. */
static struct driver_slot *slot_for(struct run_host *host, enum drv_platform platform, const char *driver)
{
	for (size_t i = 0; i < host->nslots; i++)
		if ((host->slots[i].drv->platforms & (unsigned)platform) &&
		    (!driver || strcmp(host->slots[i].drv->name, driver) == 0))
			return &host->slots[i];
	return NULL;
}

static struct run_host *host_named(const struct run_manager *mgr, const char *name)
{
	for (size_t i = 0; i < mgr->nhosts; i++)
		if (strcmp(mgr->hosts[i]->name, name) == 0)
			return mgr->hosts[i];
	return NULL;
}

static int host_has_labels(const struct run_host *h, char *const *labels)
{
	for (size_t i = 0; labels && labels[i]; i++) {
		int found = 0;
		for (size_t j = 0; h->labels && h->labels[j] && !found; j++)
			found = strcmp(h->labels[j], labels[i]) == 0;
		if (!found)
			return 0;
	}
	return 1;
}

/* Probing: added at run time, first probe under way. Up: some driver there is usable (this
 * machine is always up: its drivers say for themselves). Down: a remote host none of whose
 * drivers answers (they are probed again with back-off). */
static enum run_host_health host_health(const struct run_host *h)
{
	if (h->probing)
		return HOST_PROBING;
	for (size_t i = 0; i < h->nslots; i++)
		if (h->slots[i].available)
			return HOST_UP;
	return h->uri ? HOST_DOWN : HOST_UP;
}

static const char *const host_health_names[] = {"up", "down", "probing"};

#define RUN_UK_ENV_MAX 8 /* Unikraft's default LIBPOSIX_ENVIRON_LIBPARAM_MAXCOUNT */

static char **strv_dup(char *const *v, size_t n)
{
	char **out = calloc(n + 1, sizeof(*out));
	for (size_t i = 0; out && i < n; i++)
		out[i] = strdup(v[i]);
	return out;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static size_t strv_len(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}


char *run_console_path(const struct run_manager *mgr, int64_t id)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%lld/console.log", mgr->cfg.runs_dir, (long long)id) < 0)
		return NULL;
	return p;
}

/* The ids of the runs a dead daemon left active (collected while marking them lost). */
struct lost_ids {
	char **v;
	size_t n, cap;
};

static void collect_lost(int64_t id, void *arg)
{
	struct lost_ids *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return;
		l->v = v;
		l->cap = cap;
	}
	if (asprintf(&l->v[l->n], "%lld", (long long)id) >= 0)
		l->n++;
}

#define RUN_PROBE_BACKOFF_MIN_MS 1000
#define RUN_PROBE_BACKOFF_MAX_MS 15000

static void slot_down(struct run_manager *mgr, struct driver_slot *s, const char *why)
{
	struct run_host *h = s->host;
	s->available = 0;
	char *info = strdup(why), *last = strdup(why); /* `why` may be s->info itself (host_probed) */
	free(s->info);
	s->info = info;
	free(h->last_error);
	h->last_error = last;
	s->backoff_ms = RUN_PROBE_BACKOFF_MIN_MS;
	s->next_probe = uv_now(mgr->loop) + s->backoff_ms;
}

/* Remove what a dead daemon (or a lost connection) left behind on the slot's host. */
static void slot_reap(struct run_manager *mgr, struct driver_slot *s, const struct lost_ids *lost)
{
	/* Only at start (lost non-NULL), before any run: a host added at run time may share its libvirtd with a
	 * host that runs guests of ours now. */
	if (!lost || !s->available || !s->drv->reap)
		return;
	char *rerr = NULL;
	int n = s->drv->reap(s->state, mgr->cfg.runs_dir, lost ? (const char *const *)lost->v : NULL,
	                     lost ? lost->n : 0, &rerr);
	if (n > 0)
		log_warn("host %s: driver %s: removed %d guest(s) left by a previous runnerd", s->host->name,
		         s->drv->name, n);
	else if (n < 0)
		log_warn("host %s: driver %s: cannot remove leftover guests: %s", s->host->name, s->drv->name,
		         rerr ? rerr : strerror(-n));
	free(rerr);
}

static void host_drv_host(const struct run_host *h, struct drv_host *ret)
{
	*ret = (struct drv_host){.name = h->name, .uri = h->uri, .options = h->options};
}

/* Probe every driver for `host` into host->slots (those that do not apply to a remote host
 * are left out), then let each remove what a dead daemon left behind there. Blocking: at
 * start-up, or on a worker thread into a host the loop does not see yet. */
static void probe_host(struct run_manager *mgr, struct run_host *host, const struct lost_ids *lost)
{
	struct drv_host dh;
	host_drv_host(host, &dh);
	for (size_t i = 0; drv_table[i] && host->nslots < sizeof(host->slots) / sizeof(host->slots[0]); i++) {
		struct driver_slot *s = &host->slots[host->nslots];
		char *info = NULL, *err = NULL;
		*s = (struct driver_slot){.drv = drv_table[i], .host = host, .mgr = mgr};
		int r = s->drv->probe ? s->drv->probe(&dh, &s->state, &info, &err) : -ENOTSUP;
		if (r == -ENOTSUP && dh.uri) { /* does not apply to this host */
			free(info);
			free(err);
			continue;
		}
		host->nslots++;
		s->available = r >= 0;
		if (s->available) {
			s->info = info ? info : strdup("available");
			free(err);
			log_info("host %s: driver %s: %s", host->name, s->drv->name, s->info);
		} else {
			s->state = NULL;
			s->info = err ? err : strdup(strerror(-r));
			free(info);
			log_warn("host %s: driver %s unavailable: %s", host->name, s->drv->name, s->info);
		}
		/* Guests a dead daemon left behind (the driver knows which are ours). */
		slot_reap(mgr, s, lost);
	}
}

/* On the loop, after a probe: a remote host's connection drivers that did not answer are
 * probed again, with back-off. */
static void host_probed(struct run_manager *mgr, struct run_host *host)
{
	for (size_t i = 0; i < host->nslots; i++) {
		struct driver_slot *s = &host->slots[i];
		s->host = host;
		s->mgr = mgr;
		if (!s->available && host->uri && s->drv->health)
			slot_down(mgr, s, s->info);
	}
}

static struct run_host *host_new(const struct run_host_config *hc, unsigned capacity)
{
	struct run_host *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->name = strdup(hc->name);
	h->uri = hc->uri ? strdup(hc->uri) : NULL;
	h->capacity = capacity;
	h->memory_mb = hc->memory_mb;
	h->image_quota_mb = hc->image_quota_mb;
	h->labels = strv_dup(hc->labels, strv_len(hc->labels));
	h->options = calloc(2, sizeof(char *));
	if (h->options && hc->image_quota_mb && asprintf(&h->options[0], "image-quota-mb=%u", hc->image_quota_mb) < 0)
		h->options[0] = NULL;
	if (!h->name || (hc->uri && !h->uri) || !h->labels || !h->options) {
		free(h->name);
		free(h->uri);
		strv_free(h->labels);
		strv_free(h->options);
		free(h);
		return NULL;
	}
	return h;
}

/* After unprobe: nothing of the host's drivers is left. */
static void host_free(struct run_host *h)
{
	for (size_t i = 0; i < h->nslots; i++)
		free(h->slots[i].info);
	free(h->name);
	free(h->uri);
	free(h->last_error);
	strv_free(h->labels);
	strv_free(h->options);
	free(h);
}

static int host_store(struct run_manager *mgr, const struct run_host *h)
{
	json_t *labels = json_array();
	for (size_t i = 0; h->labels[i]; i++)
		json_array_append_new(labels, json_string(h->labels[i]));
	struct host_row row = {
		.name = h->name,
		.uri = h->uri,
		.capacity = h->capacity,
		.memory_mb = h->memory_mb,
		.labels = labels,
		.image_quota_mb = h->image_quota_mb,
		.api = h->api,
	};
	int r = store_host_put(mgr->db, &row);
	json_decref(labels);
	return r;
}

static const struct run_host_config *config_host(const struct run_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nhosts; i++)
		if (strcmp(cfg->hosts[i].name, name) == 0)
			return &cfg->hosts[i];
	return NULL;
}

struct restore_ctx {
	struct run_manager *mgr;
	const struct lost_ids *lost;
};

/* A host added through the API by an earlier runnerd (one of runnerd.conf's name wins). */
static void restore_host(const struct host_row *row, void *arg)
{
	struct restore_ctx *x = arg;
	struct run_manager *mgr = x->mgr;
	if (host_named(mgr, row->name) || mgr->nhosts == RUN_MAX_HOSTS)
		return;
	char *labels[17] = {NULL};
	size_t i, n = 0;
	json_t *v;
	json_array_foreach(row->labels, i, v)
		if (json_is_string(v) && n < 16)
			labels[n++] = (char *)json_string_value(v);
	struct run_host_config hc = {
		.name = row->name,
		.uri = row->uri,
		.memory_mb = row->memory_mb,
		.image_quota_mb = row->image_quota_mb,
		.labels = labels,
	};
	struct run_host *h = host_new(&hc, row->capacity);
	if (!h)
		return;
	h->api = 1;
	mgr->hosts[mgr->nhosts++] = h;
	log_info("host %s: restored (added through the API)", h->name);
	probe_host(mgr, h, x->lost);
	host_probed(mgr, h);
}

int run_manager_init(struct run_manager *mgr, uv_loop_t *loop, struct store *db,
                     struct image_store *images, const struct run_config *cfg)
{
	memset(mgr, 0, sizeof(*mgr));
	mgr->loop = loop;
	mgr->db = db;
	mgr->images = images;
	mgr->cfg = *cfg;
	mgr->cfg.runs_dir = strdup(cfg->runs_dir);
	int r = mkdir_exist_ok(mgr->cfg.runs_dir, 0700);
	if (r < 0)
		return r;
	struct lost_ids lost = {0};
	int nlost = store_runs_mark_lost(db, collect_lost, &lost);
	if (nlost > 0)
		log_warn("%d run(s) left active by a previous runnerd marked lost", nlost);
	/* "local": runnerd's own drivers, with [host local]'s capacity, memory and labels. */
	const struct run_host_config *lc = config_host(cfg, "local");
	struct run_host_config local = lc ? *lc : (struct run_host_config){.name = "local"};
	local.uri = NULL;
	struct run_host *h = host_new(&local, lc && lc->capacity ? lc->capacity : cfg->max_concurrent);
	if (!h)
		return -ENOMEM;
	strv_free(h->options);
	h->options = strv_dup(cfg->local_options, strv_len(cfg->local_options));
	mgr->hosts[mgr->nhosts++] = h;
	probe_host(mgr, h, &lost);
	host_probed(mgr, h);
	for (size_t i = 0; i < cfg->nhosts && mgr->nhosts < RUN_MAX_HOSTS; i++) {
		const struct run_host_config *hc = &cfg->hosts[i];
		if (!hc->uri)
			continue; /* [host local] */
		if (!(h = host_new(hc, hc->capacity)))
			return -ENOMEM;
		mgr->hosts[mgr->nhosts++] = h;
		if (host_store(mgr, h) < 0)
			log_warn("host %s: cannot record it in the store", h->name);
		probe_host(mgr, h, &lost);
		host_probed(mgr, h);
	}
	struct restore_ctx x = {mgr, &lost};
	if (store_host_list_api(db, restore_host, &x) < 0)
		log_warn("cannot read the hosts added through the API from the store");
	for (size_t i = 0; i < lost.n; i++)
		free(lost.v[i]);
	free(lost.v);
	return 0;
}

void run_manager_stats(const struct run_manager *mgr, struct run_stats *ret)
{
	ret->created = mgr->runs_created;
	memcpy(ret->finished, mgr->runs_finished, sizeof(ret->finished));
	ret->queued = mgr->nqueued;
	ret->running = mgr->nrunning;
}

static json_t *host_drivers(const struct run_host *host)
{
	static const enum drv_platform platforms[] = {DRV_PLATFORM_QEMU, DRV_PLATFORM_LINUXU, DRV_PLATFORM_XEN};
	json_t *drivers = json_array();
	for (size_t i = 0; i < host->nslots; i++) {
		const struct driver_slot *s = &host->slots[i];
		json_t *pl = json_array();
		for (size_t p = 0; p < sizeof(platforms) / sizeof(platforms[0]); p++)
			if (s->drv->platforms & (unsigned)platforms[p])
				json_array_append_new(pl, json_string(drv_platform_name(platforms[p])));
		json_array_append_new(drivers, json_pack("{s:s,s:o,s:b,s:s}", "name", s->drv->name, "platforms", pl,
		                                         "available", s->available, s->available ? "info" : "reason",
		                                         s->info ? s->info : ""));
	}
	return drivers;
}

json_t *run_manager_drivers(const struct run_manager *mgr)
{
	return host_drivers(mgr->hosts[0]);
}

static json_t *host_json(const struct run_manager *mgr, const struct run_host *h)
{
	int queued = 0;
	for (const struct run *r = mgr->runs; r; r = r->next)
		queued += r->state == RS_QUEUED && r->pin == h;
	json_t *labels = json_array();
	for (size_t i = 0; h->labels[i]; i++)
		json_array_append_new(labels, json_string(h->labels[i]));
	json_t *o = json_pack("{s:s,s:s?,s:i,s:i,s:i,s:i,s:o,s:s,s:s?,s:s,s:b,s:o}", "name", h->name, "uri", h->uri,
	                      "capacity", (int)h->capacity, "memory_mb", (int)h->memory_mb, "active", (int)h->nrunning,
	                      "queued", queued, "labels", labels, "health", host_health_names[host_health(h)],
	                      "last_error", h->last_error, "origin", h->api ? "api" : "config", "removing", h->removing,
	                      "drivers", host_drivers(h));
	json_object_set_new(o, "memory_used_mb", json_integer(h->mem_used));
	json_object_set_new(o, "images", json_pack("{s:I,s:I,s:I,s:i}", "uploads", (json_int_t)h->uploads,
	                                           "bytes_sent", (json_int_t)h->upload_bytes, "cache_hits",
	                                           (json_int_t)h->cache_hits, "quota_mb", (int)h->image_quota_mb));
	json_object_set_new(o, "lost_runs", json_integer((json_int_t)h->lost));
	return o;
}

json_t *run_manager_hosts(const struct run_manager *mgr)
{
	json_t *hosts = json_array();
	for (size_t i = 0; i < mgr->nhosts; i++)
		json_array_append_new(hosts, host_json(mgr, mgr->hosts[i]));
	return hosts;
}

json_t *run_manager_host(const struct run_manager *mgr, const char *name)
{
	const struct run_host *h = host_named(mgr, name);
	return h ? host_json(mgr, h) : NULL;
}

unsigned run_manager_active(const struct run_manager *mgr)
{
	return mgr->nrunning + mgr->nqueued + mgr->nfinishing;
}

static void notify_idle(struct run_manager *mgr)
{
	if (mgr->on_idle_change)
		mgr->on_idle_change(mgr->idle_arg);
}

static void run_free(struct run *run)
{
	testparse_free(run->tp);
	free(run->name);
	free(run->driver);
	strv_free(run->require);
	free(run->image_path);
	free(run->initrd_path);
	free(run->workdir);
	free(run->machine);
	strv_free(run->args);
	strv_free(run->uk_params);
	strv_free(run->env);
	strv_free(run->binds);
	free(run->cwd);
	free(run);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct run *run = h->data;
	if (--run->handles_open == 0)
		run_free(run);
}

static void unlink_run(struct run *run)
{
	struct run_manager *mgr = run->mgr;
	for (struct run **p = &mgr->runs; *p; p = &(*p)->next) {
		if (*p == run) {
			*p = run->next;
			break;
		}
	}
}

static void schedule(struct run_manager *mgr);

static void host_unref(struct run_manager *mgr, struct run_host *h);
static void fail_run(struct run *run, enum drv_end end, const char *message);

/* The run no longer occupies its slot (it ended, or goes back to the queue). */
static void leave_slot(struct run *run)
{
	run->mgr->nrunning--;
	run->host->nrunning--;
	run->host->mem_used -= run->mem_mb;
	run->slot->nrunning--;
	run->slot = NULL;
}

/* After its instance is destroyed: the run lets go of its hosts. */
static void release_hosts(struct run *run)
{
	struct run_host *placed = run->host, *pin = run->pin;
	run->host = run->pin = NULL;
	if (placed)
		host_unref(run->mgr, placed);
	if (pin)
		host_unref(run->mgr, pin);
}

/* An end that could not be stored yet: kept (a copy) and written again by
 * run_manager_maintain, so no run stays `running` in the store after it ended. */
struct pending_end {
	struct pending_end *next;
	int64_t id;
	struct run_end end;
	char *exit_source, *reason;
	unsigned tries;
};

static void pending_add(struct run_manager *mgr, int64_t id, const struct run_end *end)
{
	struct pending_end *p = calloc(1, sizeof(*p));
	if (!p)
		return;
	p->id = id;
	p->end = *end;
	p->exit_source = end->exit_source ? strdup(end->exit_source) : NULL;
	p->reason = end->reason ? strdup(end->reason) : NULL;
	p->end.exit_source = p->exit_source;
	p->end.reason = p->reason;
	p->tries = 1;
	struct pending_end **tail = &mgr->pending;
	while (*tail)
		tail = &(*tail)->next;
	*tail = p;
}

static void pending_free(struct pending_end *p)
{
	free(p->exit_source);
	free(p->reason);
	free(p);
}

/* ---- host health: connection drivers probed again off the loop ---- */

static void reprobe_work(uv_work_t *w)
{
	struct driver_slot *s = w->data;
	struct drv_host dh;
	host_drv_host(s->host, &dh);
	if (s->old_state && s->drv->unprobe)
		s->drv->unprobe(s->old_state);
	s->old_state = NULL;
	s->new_state = NULL;
	s->new_info = s->new_err = NULL;
	/* No reap here: the lost connection's domains were autodestroyed with it, and another host entry of this
	 * runnerd may run guests on the same libvirtd right now (reaping killed one: libvirt_remote in CI). */
	s->new_r = s->drv->probe(&dh, &s->new_state, &s->new_info, &s->new_err);
}

static void host_maybe_free(struct run_manager *mgr, struct run_host *h);

/* The libvirt URI a slot talks to: the host's, or the local host's option for that driver (NULL: its default). */
static const char *slot_uri(const struct driver_slot *s)
{
	if (s->host->uri)
		return s->host->uri;
	struct drv_host dh;
	host_drv_host(s->host, &dh);
	return drv_host_option(&dh, strcmp(s->drv->name, "xen") == 0 ? "xen-uri" : "libvirt-uri");
}

/* Does a run of this runnerd use the same libvirtd through another host entry (or the same)? */
static int uri_busy(const struct run_manager *mgr, const struct driver_slot *s)
{
	const char *u = slot_uri(s);
	for (size_t i = 0; i < mgr->nhosts; i++)
		for (size_t j = 0; j < mgr->hosts[i]->nslots; j++) {
			const struct driver_slot *o = &mgr->hosts[i]->slots[j];
			const char *ou = slot_uri(o);
			if (o->drv == s->drv && o->nrunning && ((!u && !ou) || (u && ou && strcmp(u, ou) == 0)))
				return 1;
		}
	return 0;
}

static void reprobe_done(uv_work_t *w, int status)
{
	struct driver_slot *s = w->data;
	struct run_manager *mgr = s->mgr;
	struct run_host *h = s->host;
	s->probing = 0;
	if (status == 0 && s->new_r >= 0) {
		s->state = s->new_state;
		s->available = 1;
		free(s->info);
		s->info = s->new_info ? s->new_info : strdup("available");
		s->backoff_ms = 0;
		free(s->new_err);
		log_info("host %s: driver %s is back: %s", h->name, s->drv->name, s->info);
		/* What the lost connection left there (a libvirtd killed outright keeps its guests), unless a run of
		 * ours uses that libvirtd now through another host entry: reaping would kill it. */
		if (!uri_busy(mgr, s)) {
			struct lost_ids none = {0};
			slot_reap(mgr, s, &none);
		}
	} else {
		s->state = NULL;
		free(s->info);
		s->info = s->new_err ? s->new_err : strdup(status < 0 ? uv_strerror(status) : strerror(-s->new_r));
		free(s->new_info);
		free(h->last_error);
		h->last_error = strdup(s->info);
		s->backoff_ms = s->backoff_ms * 2 > RUN_PROBE_BACKOFF_MAX_MS ? RUN_PROBE_BACKOFF_MAX_MS
		                                                             : s->backoff_ms * 2;
		s->next_probe = uv_now(mgr->loop) + s->backoff_ms;
		log_debug("host %s: driver %s still down (next try in %u ms): %s", h->name, s->drv->name, s->backoff_ms,
		          s->info);
	}
	s->new_info = s->new_err = NULL;
	s->new_state = NULL;
	if (h->removing) {
		host_maybe_free(mgr, h);
		return;
	}
	schedule(mgr);
}

/* Probe the slot again on a worker (its old state, if any, is unprobed there first). */
static void reprobe(struct run_manager *mgr, struct driver_slot *s)
{
	s->probing = 1;
	s->old_state = s->state;
	s->state = NULL;
	s->work.data = s;
	if (uv_queue_work(mgr->loop, &s->work, reprobe_work, reprobe_done) < 0) {
		s->state = s->old_state;
		s->old_state = NULL;
		s->probing = 0;
		s->next_probe = uv_now(mgr->loop) + RUN_PROBE_BACKOFF_MAX_MS;
	}
}

/* Once a second: a usable connection driver whose health check fails is marked down (its
 * host takes no new runs there; its runs end through their driver); a down one is probed
 * again when it is due and no run uses it. */
static void check_hosts(struct run_manager *mgr)
{
	uint64_t now = uv_now(mgr->loop);
	for (size_t i = 0; i < mgr->nhosts; i++) {
		struct run_host *h = mgr->hosts[i];
		for (size_t j = 0; j < h->nslots; j++) {
			struct driver_slot *s = &h->slots[j];
			if (!s->drv->health || s->probing || h->removing)
				continue;
			if (s->available) {
				char *err = NULL;
				if (s->drv->health(s->state, &err) < 0) {
					log_warn("host %s: driver %s is down: %s", h->name, s->drv->name, err ? err : "?");
					slot_down(mgr, s, err ? err : "health check failed");
				}
				free(err);
			} else if (s->backoff_ms && s->nrunning == 0 && now >= s->next_probe) {
				reprobe(mgr, s);
			}
		}
	}
}

void run_manager_maintain(struct run_manager *mgr)
{
	store_maintain(mgr->db);
	if (!mgr->stopping)
		check_hosts(mgr);
	while (mgr->pending) {
		struct pending_end *p = mgr->pending;
		p->tries++;
		if (store_run_finish(mgr->db, p->id, &p->end) < 0)
			return; /* the store still fails: keep the order, try again later */
		log_info("run %lld: end recorded after %u tries", (long long)p->id, p->tries);
		mgr->pending = p->next;
		pending_free(p);
	}
}

/* ---- hosts added and removed at run time ---- */

struct host_job {
	uv_work_t work;
	struct run_manager *mgr;
	struct run_host *host; /* probe: a copy the loop does not see; removal: the host */
	struct run_host *target;
};

static void host_unprobe_work(uv_work_t *w)
{
	struct host_job *j = w->data;
	for (size_t i = 0; i < j->host->nslots; i++) {
		struct driver_slot *s = &j->host->slots[i];
		if (s->state && s->drv->unprobe)
			s->drv->unprobe(s->state);
		s->state = NULL;
	}
}

static void host_unprobe_done(uv_work_t *w, int status)
{
	struct host_job *j = w->data;
	(void)status;
	log_info("host %s removed", j->host->name);
	host_free(j->host);
	free(j);
}

/* A removed host goes once no run names it and no probe is under way: out of the list at
 * once, its drivers let go of off the loop. */
static void host_maybe_free(struct run_manager *mgr, struct run_host *h)
{
	if (!h->removing || h->refs || h->probing)
		return;
	for (size_t i = 0; i < h->nslots; i++)
		if (h->slots[i].probing)
			return;
	for (size_t i = 0; i < mgr->nhosts; i++) {
		if (mgr->hosts[i] == h) {
			memmove(&mgr->hosts[i], &mgr->hosts[i + 1], (mgr->nhosts - i - 1) * sizeof(mgr->hosts[0]));
			mgr->nhosts--;
			break;
		}
	}
	if (store_host_remove(mgr->db, h->name) < 0)
		log_warn("host %s: cannot record its removal", h->name);
	struct host_job *j = calloc(1, sizeof(*j));
	if (j) {
		j->mgr = mgr;
		j->host = h;
		j->work.data = j;
		if (uv_queue_work(mgr->loop, &j->work, host_unprobe_work, host_unprobe_done) == 0)
			return;
		free(j);
	}
	host_unprobe_work(&(uv_work_t){.data = &(struct host_job){.host = h}});
	host_free(h);
}

static void host_unref(struct run_manager *mgr, struct run_host *h)
{
	h->refs--;
	host_maybe_free(mgr, h);
}

static void host_probe_work(uv_work_t *w)
{
	struct host_job *j = w->data;
	probe_host(j->mgr, j->host, NULL);
}

static void host_probe_done(uv_work_t *w, int status)
{
	struct host_job *j = w->data;
	struct run_host *t = j->target;
	(void)status;
	memcpy(t->slots, j->host->slots, sizeof(t->slots));
	t->nslots = j->host->nslots;
	j->host->nslots = 0;
	for (size_t i = 0; i < t->nslots; i++)
		t->slots[i].probing = 0;
	if (!t->nslots) {
		free(t->last_error);
		t->last_error = strdup("no driver applies to this URI (libvirt: qemu+tcp://, qemu+tls://, qemu+ssh://; "
		                       "xen: xen+ssh://, ...)");
	}
	struct run_manager *mgr = j->mgr;
	host_free(j->host);
	free(j);
	t->probing = 0;
	host_probed(mgr, t);
	for (size_t i = 0; i < t->nslots; i++)
		if (!t->slots[i].available && !t->last_error)
			t->last_error = strdup(t->slots[i].info);
	log_info("host %s: probed (%s)", t->name, host_health_names[host_health(t)]);
	if (t->removing)
		host_maybe_free(mgr, t);
	else
		schedule(mgr);
}

int run_host_add(struct run_manager *mgr, const struct run_host_config *hc, char **ret_err)
{
	if (mgr->stopping)
		return errmsg_fail(ret_err, -ESHUTDOWN, "runnerd is shutting down");
	if (host_named(mgr, hc->name))
		return errmsg_fail(ret_err, -EEXIST, "host %s exists already", hc->name);
	if (mgr->nhosts == RUN_MAX_HOSTS)
		return errmsg_fail(ret_err, -ENOSPC, "this runnerd has %d hosts already", RUN_MAX_HOSTS);
	if (!hc->uri)
		return errmsg_fail(ret_err, -EINVAL, "a host needs the URI of its libvirtd");
	struct run_host *t = host_new(hc, hc->capacity);
	struct run_host *copy = host_new(hc, hc->capacity);
	struct host_job *j = calloc(1, sizeof(*j));
	if (!t || !copy || !j) {
		free(j);
		if (t)
			host_free(t);
		if (copy)
			host_free(copy);
		return -ENOMEM;
	}
	t->api = 1;
	t->probing = 1;
	int r = host_store(mgr, t);
	if (r < 0) {
		host_free(t);
		host_free(copy);
		free(j);
		return errmsg_fail(ret_err, r, "cannot record host %s: %s", hc->name, strerror(-r));
	}
	*j = (struct host_job){.mgr = mgr, .host = copy, .target = t};
	j->work.data = j;
	mgr->hosts[mgr->nhosts++] = t;
	if (uv_queue_work(mgr->loop, &j->work, host_probe_work, host_probe_done) < 0) {
		host_probe_work(&j->work);
		host_probe_done(&j->work, 0);
	}
	log_info("host %s added (%s, capacity %u): probing", t->name, t->uri, t->capacity);
	return 0;
}

int run_host_remove(struct run_manager *mgr, const char *name, int drain, char **ret_err)
{
	struct run_host *h = host_named(mgr, name);
	if (!h || h->removing)
		return errmsg_fail(ret_err, -ENOENT, "no host %s", name);
	if (!h->api)
		return errmsg_fail(ret_err, -EPERM, "host %s is %s: it cannot be removed at run time", name,
		                   h->uri ? "defined in runnerd.conf (remove it there)" : "this machine");
	unsigned queued = 0;
	for (struct run *r = mgr->runs; r; r = r->next)
		queued += r->state == RS_QUEUED && r->pin == h;
	if ((h->nrunning || queued) && !drain)
		return errmsg_fail(ret_err, -EBUSY, "host %s has %u running and %u queued run(s) (?drain=1 removes it "
		                   "after its running ones)", name, h->nrunning, queued);
	h->removing = 1;
	/* Its queued pinned runs cannot go anywhere else. */
	struct run *run = mgr->runs;
	while (run) {
		struct run *next = run->next;
		if (run->state == RS_QUEUED && run->pin == h && !run->exited) {
			store_run_add_note(mgr->db, run->id, "its host was removed before the run started");
			fail_run(run, DRV_END_ERROR, "its host was removed before the run started");
		}
		run = next;
	}
	int waiting = h->refs > 0;
	host_maybe_free(mgr, h);
	return waiting;
}

/* Record the end, release everything, free the run once its timers are closed. */
/* The recorded end: store it, tell the followers, release the guest, free the run once
 * its timers are closed. */
static void record_end(struct run *run)
{
	struct run_manager *mgr = run->mgr;
	const struct verdict *v = &run->final_v;
	enum run_state state = run->state;
	console_flush(&run->con); /* its size, drops and write error are final */
	if (run->con.write_error) {
		char note[200];
		snprintf(note, sizeof(note), "console log: cannot write (%s): %llu bytes not stored",
		         strerror(run->con.write_error), (unsigned long long)run->con.dropped);
		store_run_add_note(mgr->db, run->id, note);
	} else if (run->con.dropped) {
		char note[160];
		snprintf(note, sizeof(note), "console capped at %llu bytes: %llu later bytes dropped",
		         (unsigned long long)run->con.cap, (unsigned long long)run->con.dropped);
		store_run_add_note(mgr->db, run->id, note);
	}
	struct run_end end = {
		.state = run_state_names[state],
		.has_exit_code = 1,
		.exit_code = v->exit_code,
		.exit_source = v->source,
		.reason = v->reason,
		.console_bytes = (int64_t)run->con.size,
		.console_truncated = run->con.dropped > 0,
	};
	int r = store_run_finish(mgr->db, run->id, &end);
	if (r < 0) {
		log_error("run %s: cannot record its end yet (%s): retrying every second", run->id_str, strerror(-r));
		pending_add(mgr, run->id, &end);
	}
	mgr->runs_finished[state]++;
	log_info("run %s %s: exit %d (%s) %s", run->id_str, run_state_names[state], v->exit_code, v->source,
	         v->reason);
	/* Followers finish only now, so a client that saw the console end reads the final record. */
	console_end(&run->con);
	console_close(&run->con);
	streams_close(&run->io);
	if (run->inst && run->drv->destroy)
		run->drv->destroy(run->inst);
	run->inst = NULL;
	release_hosts(run);
	unlink_run(run);
	uv_close((uv_handle_t *)&run->timeout_timer, on_handle_closed);
	uv_close((uv_handle_t *)&run->grace_timer, on_handle_closed);
	uv_close((uv_handle_t *)&run->idle_timer, on_handle_closed);
	uv_close((uv_handle_t *)&run->throttle_timer, on_handle_closed);
	schedule(mgr);
	notify_idle(mgr);
}

/* Many test cases are written on a worker thread, on a connection of its own. */
static void tests_work(uv_work_t *w)
{
	struct run *run = w->data;
	run->tests_result = store_run_set_tests_at(store_path(run->mgr->db), run->id, run->cases);
}

static void tests_done(uv_work_t *w, int status)
{
	struct run *run = w->data;
	if (status < 0 || run->tests_result < 0)
		log_error("run %s: failed to store its %zu test cases: %s", run->id_str,
		          json_array_size(json_object_get(run->cases, "cases")),
		          strerror(status < 0 ? -status : -run->tests_result));
	json_decref(run->cases);
	run->cases = NULL;
	run->mgr->nfinishing--;
	record_end(run);
}

/* The run has ended (exit, failure, cancel): record its test cases, then its end. */
static void run_end(struct run *run, enum run_state state, const struct verdict *v)
{
	struct run_manager *mgr = run->mgr;
	if (run->state == RS_QUEUED)
		mgr->nqueued--;
	else
		leave_slot(run);
	run->state = state;
	run->final_v = *v;
	testparse_finish(run->tp);
	size_t ncases = testparse_ncases(run->tp);
	if (ncases >= RUN_TESTS_OFFLOOP) {
		run->cases = testparse_json(run->tp);
		run->tests_work.data = run;
		if (run->cases && uv_queue_work(mgr->loop, &run->tests_work, tests_work, tests_done) == 0) {
			mgr->nfinishing++;
			return;
		}
	} else if (ncases || testparse_framework(run->tp)) {
		run->cases = testparse_json(run->tp);
	}
	if (run->cases && store_run_set_tests(mgr->db, run->id, run->cases) < 0)
		log_error("run %s: failed to store test cases", run->id_str);
	json_decref(run->cases);
	run->cases = NULL;
	record_end(run);
}

static struct run *find_run(struct run_manager *mgr, int64_t id)
{
	for (struct run *r = mgr->runs; r; r = r->next)
		if (r->id == id)
			return r;
	return NULL;
}

/* ---- driver callbacks ---- */

static void track_lines(struct run *run, const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if (c == '\n' || c == '\r') {
			if (run->cur_len) {
				memcpy(run->last_line, run->cur_line, run->cur_len);
				run->last_line[run->cur_len] = '\0';
			}
			run->cur_len = 0;
		} else if (run->cur_len < sizeof(run->cur_line) - 1 && (unsigned char)c >= 0x20) {
			run->cur_line[run->cur_len++] = c;
		}
	}
}

static void on_grace(uv_timer_t *t)
{
	struct run *run = t->data;
	if (run->exited || !run->inst)
		return;
	run->vflags |= VERDICT_F_CONSOLE_END;
	store_run_add_note(run->mgr->db, run->id,
	                   "the program's libtest run completed and the guest then stayed silent: "
	                   "ended it (the kernel reports no exit status)");
	run->drv->kill(run->inst, DRV_KILL_FORCE);
}

/* The guest counts as idle while its busy time grows by at most a tenth of the time passed
 * (a halted guest: ~0; QEMU's own timers: ~2 %), sampled every RUN_IDLE_POLL_MS; a guest that
 * computes, or waits for a host CPU, grows by about the time passed. */
#define RUN_IDLE_POLL_MS 10
#define RUN_IDLE_SHARE 10

static void on_idle_poll(uv_timer_t *t)
{
	struct run *run = t->data;
	if (run->exited || !run->inst)
		return;
	uint64_t ns, now = uv_now(run->mgr->loop);
	if (run->drv->guest_busy(run->inst, &ns) < 0) {
		uv_timer_stop(&run->idle_timer); /* cannot tell any more: the grace timer decides */
		return;
	}
	uint64_t dt_ns = (now - run->idle_last_t) * 1000000u;
	int busy = ns - run->idle_last_ns > dt_ns / RUN_IDLE_SHARE;
	run->idle_last_t = now;
	run->idle_last_ns = ns;
	if (busy || run->throttled) {
		/* Computing, or blocked on a console we stopped reading: not idle. */
		run->idle_since = now;
		run->idle_busy0 = ns;
		return;
	}
	uint64_t idle_ms = now - run->idle_since;
	if (idle_ms < run->mgr->cfg.loader_idle_ms ||
	    (ns - run->idle_busy0) > idle_ms * 1000000u / RUN_IDLE_SHARE)
		return;
	uv_timer_stop(&run->idle_timer);
	uv_timer_stop(&run->grace_timer);
	run->vflags |= VERDICT_F_CONSOLE_END;
	char note[200];
	snprintf(note, sizeof(note),
	         "the program's libtest run completed and the guest then idled (its vCPUs halted) for %llu ms: "
	         "ended it (the kernel reports no exit status)",
	         (unsigned long long)idle_ms);
	store_run_add_note(run->mgr->db, run->id, note);
	run->drv->kill(run->inst, DRV_KILL_FORCE);
}

/* Loader mode, libtest's last summary just printed (or more bytes after it): wait for the
 * guest to go idle, sampled from now on, or for silence as long as the grace period. */
static void await_console_end(struct run *run)
{
	uv_timer_start(&run->grace_timer, on_grace, run->mgr->cfg.console_grace_ms, 0);
	uint64_t ns;
	if (!run->mgr->cfg.loader_idle_ms || !run->drv->guest_busy || run->drv->guest_busy(run->inst, &ns) < 0)
		return;
	run->idle_since = run->idle_last_t = uv_now(run->mgr->loop);
	run->idle_busy0 = run->idle_last_ns = ns;
	uv_timer_start(&run->idle_timer, on_idle_poll, RUN_IDLE_POLL_MS, RUN_IDLE_POLL_MS);
}

static void on_unthrottle(uv_timer_t *t)
{
	struct run *run = t->data;
	run->throttled = 0;
	if (!run->exited && run->inst)
		run->drv->throttle(run->inst, 0);
}

/* Past the cap every byte is dropped: read the console only now and then. The guest
 * blocks on its full pipe meanwhile; its verdict is unchanged (every byte still reaches
 * the test parser), it only takes longer. */
static void throttle_console(struct run *run, size_t len)
{
	const struct driver *drv = run->drv;
	if (run->throttled || run->exited || !run->inst || !drv->throttle || !run->con.cap ||
	    run->con.size < run->con.cap)
		return;
	uint64_t now = uv_now(run->mgr->loop);
	if (now - run->window_start >= RUN_THROTTLE_MS) {
		run->window_start = now;
		run->window_bytes = 0;
	}
	run->window_bytes += len;
	if (run->window_bytes < RUN_THROTTLE_BYTES || drv->throttle(run->inst, 1) < 0)
		return;
	run->throttled = 1;
	run->window_bytes = 0;
	run->window_start = now + RUN_THROTTLE_MS;
	uv_timer_start(&run->throttle_timer, on_unthrottle, RUN_THROTTLE_MS, 0);
	if (!run->throttle_noted) {
		run->throttle_noted = 1;
		store_run_add_note(run->mgr->db, run->id,
		                   "console past its cap: the guest's output is now read at about 6 MB/s");
	}
}

static void on_console(void *ctx, enum drv_stream stream, const char *buf, size_t len)
{
	struct run *run = ctx;
	console_append(&run->con, buf, len);
	streams_append(&run->io, stream, buf, len);
	throttle_console(run, len);
	testparse_feed(run->tp, buf, len);
	track_lines(run, buf, len);
	if ((run->vflags & VERDICT_F_LOADER) && !run->exited) {
		/* A stock elfloader kernel idles forever after the program exits: once libtest
		 * has printed its last summary, the guest idling (its vCPUs halted) for
		 * loader_idle_ms, or else silence for the grace period, ends the run. Any later
		 * byte restarts the wait. */
		struct tp_summary s;
		testparse_summary(run->tp, &s);
		if (s.complete) {
			await_console_end(run);
		} else {
			uv_timer_stop(&run->grace_timer);
			uv_timer_stop(&run->idle_timer);
		}
	}
}

static void on_note(void *ctx, const char *key, const char *value, const char *message)
{
	struct run *run = ctx;
	/* Image transfers to the run's host, for /metrics. */
	if (key && value && run->host && strcmp(key, "image_upload") == 0) {
		run->host->uploads++;
		run->host->upload_bytes += strtoull(value, NULL, 10);
	} else if (key && run->host && strcmp(key, "image_cache") == 0) {
		run->host->cache_hits++;
	}
	if (key && value && store_run_set_fact(run->mgr->db, run->id, key, value) < 0)
		log_warn("run %s: cannot record %s=%s", run->id_str, key, value);
	if (message) {
		store_run_add_note(run->mgr->db, run->id, message);
		log_info("run %s: %s", run->id_str, message);
	}
}

static void on_started(void *ctx)
{
	struct run *run = ctx;
	if (run->state == RS_STARTING) {
		run->state = RS_RUNNING;
		store_run_set_state(run->mgr->db, run->id, "running");
	}
}

/* The run's host was lost under it and the run allows another attempt: back to the queue,
 * for any host that fits (its pinned host only, when it names one). The console log goes
 * on (the new attempt's bytes follow the old ones); the test results are the new attempt's. */
static void retry_run(struct run *run, const struct drv_outcome *o)
{
	struct run_manager *mgr = run->mgr;
	char note[512];
	snprintf(note, sizeof(note), "attempt %u on host %s lost (%s): queued again (%u retr%s left after this one)",
	         run->attempts, run->host->name, o->message ? o->message : "host lost", run->retries_left - 1,
	         run->retries_left - 1 == 1 ? "y" : "ies");
	store_run_add_note(mgr->db, run->id, note);
	log_warn("run %s: %s", run->id_str, note);
	char off[32];
	snprintf(off, sizeof(off), "%llu", (unsigned long long)run->con.size);
	char key[48];
	snprintf(key, sizeof(key), "attempt_%u_console_offset", run->attempts + 1);
	store_run_set_fact(mgr->db, run->id, key, off);
	run->retries_left--;
	run->host->lost++;
	uv_timer_stop(&run->timeout_timer);
	uv_timer_stop(&run->grace_timer);
	uv_timer_stop(&run->idle_timer);
	uv_timer_stop(&run->throttle_timer);
	run->throttled = 0;
	leave_slot(run);
	if (run->inst && run->drv->destroy)
		run->drv->destroy(run->inst);
	run->inst = NULL;
	struct run_host *placed = run->host;
	run->host = NULL;
	host_unref(mgr, placed);
	testparse_free(run->tp);
	run->tp = testparse_new();
	run->cur_len = 0;
	run->last_line[0] = '\0';
	run->state = RS_QUEUED;
	mgr->nqueued++;
	store_run_set_state(mgr->db, run->id, "queued");
	schedule(mgr);
}

static void on_exit_cb(void *ctx, const struct drv_outcome *o)
{
	struct run *run = ctx;
	if (run->exited)
		return;
	/* The driver saw its host go: no run goes there until it is probed again. */
	if (o->end == DRV_END_HOST_LOST && run->slot && run->slot->available && run->slot->drv->health) {
		log_warn("host %s: driver %s is down: %s", run->host->name, run->drv->name, o->message ? o->message : "lost");
		slot_down(run->mgr, run->slot, o->message ? o->message : "the host was lost");
	}
	if (o->end == DRV_END_HOST_LOST && run->retries_left &&
	    !(run->vflags & (VERDICT_F_CANCEL | VERDICT_F_TIMEOUT | VERDICT_F_STOP)) && !run->mgr->stopping) {
		retry_run(run, o);
		return;
	}
	run->exited = 1;
	uv_timer_stop(&run->timeout_timer);
	uv_timer_stop(&run->grace_timer);
	uv_timer_stop(&run->idle_timer);
	uv_timer_stop(&run->throttle_timer);
	testparse_finish(run->tp);
	struct tp_summary sum;
	testparse_summary(run->tp, &sum);
	struct verdict v;
	verdict_decide(o, &sum, run->vflags, run->success_code, &v);
	if (v.exit_code == 126 && (run->vflags & VERDICT_F_LOADER) && run->last_line[0]) {
		size_t n = strlen(v.reason);
		snprintf(v.reason + n, sizeof(v.reason) - n, ": %s", run->last_line);
	}
	enum run_state st = RS_DONE;
	if (o->end == DRV_END_ERROR)
		st = RS_ERROR;
	else if (o->end == DRV_END_HOST_LOST) {
		st = RS_LOST;
		run->host->lost++;
	}
	else if (o->end == DRV_END_KILLED && (run->vflags & VERDICT_F_STOP))
		st = RS_ERROR;
	else if (o->end == DRV_END_KILLED && (run->vflags & VERDICT_F_CANCEL))
		st = RS_CANCELLED;
	else if (o->end == DRV_END_KILLED && (run->vflags & VERDICT_F_TIMEOUT))
		st = RS_TIMEOUT;
	run_end(run, st, &v);
}

static void on_timeout(uv_timer_t *t)
{
	struct run *run = t->data;
	if (run->exited || !run->inst)
		return;
	run->vflags |= VERDICT_F_TIMEOUT;
	char note[96];
	snprintf(note, sizeof(note), "timeout after %u s: guest killed", run->timeout_s);
	store_run_add_note(run->mgr->db, run->id, note);
	run->drv->kill(run->inst, DRV_KILL_FORCE);
}

/* End a run that never reached its driver (or whose launch failed). */
static void fail_run(struct run *run, enum drv_end end, const char *message)
{
	struct drv_outcome o = {.end = end, .value = 0, .message = message};
	run->exited = 1;
	struct tp_summary sum;
	testparse_summary(run->tp, &sum);
	struct verdict v;
	verdict_decide(&o, &sum, run->vflags, run->success_code, &v);
	if (message && o.end == DRV_END_ERROR)
		snprintf(v.reason, sizeof(v.reason), "%s", message);
	run_end(run, end == DRV_END_KILLED && !(run->vflags & VERDICT_F_STOP) ? RS_CANCELLED : RS_ERROR, &v);
}

static void start(struct run *run, struct run_host *host, struct driver_slot *slot)
{
	struct run_manager *mgr = run->mgr;
	const struct driver *drv = slot->drv;
	char *err = NULL;
	mgr->nqueued--;
	mgr->nrunning++;
	run->host = host;
	run->slot = slot;
	run->drv = drv;
	host->refs++;
	host->nrunning++;
	host->mem_used += run->mem_mb;
	slot->nrunning++;
	run->attempts++;
	run->waiting[0] = '\0';
	run->state = RS_STARTING;
	store_run_set_placement(mgr->db, run->id, host->name, drv->name);
	store_run_set_state(mgr->db, run->id, "starting");
	/* Only now does the run hold a descriptor: queued runs hold none (a retried run keeps its log open). */
	int r = run->con.fd >= 0 ? 0 : rundir_open_console(run->workdir);
	if (r < 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "Failed to open the console log of run %s: %s", run->id_str, strerror(-r));
		fail_run(run, DRV_END_ERROR, msg);
		return;
	}
	if (run->con.fd < 0)
		console_attach_fd(&run->con, r);
	if ((r = streams_open(&run->io, run->workdir)) < 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "Failed to open the stream logs of run %s: %s", run->id_str, strerror(-r));
		fail_run(run, DRV_END_ERROR, msg);
		return;
	}
	r = drv->prepare(slot->state, &run->spec, &run->inst, &err);
	if (r >= 0) {
		uv_timer_start(&run->timeout_timer, on_timeout, (uint64_t)run->timeout_s * 1000, 0);
		r = drv->launch(run->inst, mgr->loop, &run->cb, &err);
	}
	if (r < 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "driver %s failed to start the guest: %s", drv->name,
		         err ? err : strerror(-r));
		free(err);
		fail_run(run, DRV_END_ERROR, msg);
		return;
	}
	free(err);
	log_info("run %s started on %s (host %s)", run->id_str, drv->name, host->name);
}

/* Guests see the image's path as argv[0]: QEMU puts the kernel path first on the multiboot
 * command line, and the elfloader hands that word to the program it loads. Show them the
 * user's file name, through a link in the run's image/ directory (rundir.h), not the
 * store's digest path. In loader mode the kernel is linked under the program's name for
 * the same reason. A name that cannot be linked keeps the store's path. */
static void name_image(struct run *run)
{
	char *link = NULL;
	if (rundir_link_image(run->workdir, run->name, run->image_path, &link) == 0) {
		free(run->image_path);
		run->image_path = link;
		run->spec.image_path = link;
	}
}

/* What keeps hosts from taking a run, counted over the hosts looked at. */
struct misfit {
	unsigned hosts, labels, nodriver, down, full, memory;
	const struct run_host *down_host; /* one of the down hosts, named in the reason */
};

static void join_labels(char *const *labels, char *buf, size_t n)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; labels && labels[i] && off < n; i++)
		off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? ", " : "", labels[i]);
}

/* Why no host takes `run` now, as the user should read it. */
static void explain_wait(const struct run *run, const struct misfit *m, char *buf, size_t n)
{
	char labels[160];
	join_labels(run->require, labels, sizeof(labels));
	const char *pl = run->require && run->require[0] && run->require[1] ? "labels" : "label";
	if (run->pin && m->labels)
		snprintf(buf, n, "waiting: host %s lacks %s %s", run->pin->name, pl, labels);
	else if (run->pin && m->down)
		snprintf(buf, n, "waiting for host %s, which is down: %s", run->pin->name,
		         run->pin->last_error ? run->pin->last_error : "no driver there answers");
	else if (run->pin && m->nodriver)
		snprintf(buf, n, "waiting: host %s has no usable driver for this run", run->pin->name);
	else if (run->pin && m->memory)
		snprintf(buf, n, "waiting for %u MB of guest memory on host %s (%u of %u MB in use)", run->mem_mb,
		         run->pin->name, run->pin->mem_used, run->pin->memory_mb);
	else if (run->pin)
		snprintf(buf, n, "waiting for a free slot on host %s (%u of %u running)", run->pin->name,
		         run->pin->nrunning, run->pin->capacity);
	else if (m->labels == m->hosts)
		snprintf(buf, n, "waiting for a host with %s %s", pl, labels);
	else if (m->down && !m->full && !m->memory)
		snprintf(buf, n, "waiting for a host%s%s%s: every matching host is down (%s: %s)", labels[0] ? " with " : "",
		         labels[0] ? pl : "", labels[0] ? " " : "", m->down_host->name,
		         m->down_host->last_error ? m->down_host->last_error : "no driver answers");
	else if (m->full == 0 && m->memory)
		snprintf(buf, n, "waiting for %u MB of guest memory on a matching host", run->mem_mb);
	else if (m->full)
		snprintf(buf, n, "waiting for a free slot: %u matching host%s full", m->full + m->memory,
		         m->full + m->memory == 1 ? " is" : "s are");
	else
		snprintf(buf, n, "waiting: no host has a usable driver for this run");
}

/* Can `slot` on its host run it (drivers and capabilities; not load or health)? */
static int slot_serves(const struct driver_slot *slot, unsigned need_caps)
{
	return slot && (slot->drv->caps & need_caps) == need_caps;
}

/* The host and driver that take `run` now: among the healthy hosts with its labels, a
 * driver for its platform and room for it, the least loaded (by the share of its capacity
 * in use; the first listed on a tie). 0, or -EAGAIN with *m saying why none. */
static int place(struct run_manager *mgr, const struct run *run, struct run_host **ret_host,
                 struct driver_slot **ret_slot, struct misfit *m)
{
	struct run_host *best = NULL;
	struct driver_slot *best_slot = NULL;
	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < mgr->nhosts; i++) {
		struct run_host *h = mgr->hosts[i];
		if ((run->pin && h != run->pin) || h->removing)
			continue;
		m->hosts++;
		if (!host_has_labels(h, run->require)) {
			m->labels++;
			continue;
		}
		struct driver_slot *slot = slot_for(h, run->platform, run->driver);
		if (!slot_serves(slot, run->need_caps)) {
			m->nodriver++;
			continue;
		}
		if (!slot->available) {
			m->down++;
			m->down_host = h;
			continue;
		}
		if (h->nrunning >= h->capacity) {
			m->full++;
			continue;
		}
		if (h->memory_mb && h->mem_used + run->mem_mb > h->memory_mb) {
			m->memory++;
			continue;
		}
		/* h->nrunning / h->capacity < best's, without division */
		if (!best || (uint64_t)h->nrunning * best->capacity < (uint64_t)best->nrunning * h->capacity) {
			best = h;
			best_slot = slot;
		}
	}
	if (!best)
		return -EAGAIN;
	*ret_host = best;
	*ret_slot = best_slot;
	return 0;
}

/* Start queued runs while hosts have room: the highest priority first, the oldest first
 * within a priority; a run no host takes now waits (its reason kept for the API) without
 * holding back runs other hosts can take. Re-entered from a start that fails at once (its
 * end schedules again): the outer pass just looks again. */
static void schedule(struct run_manager *mgr)
{
	if (mgr->scheduling) {
		mgr->reschedule = 1;
		return;
	}
	mgr->scheduling = 1;
	do {
		mgr->reschedule = 0;
		struct run *pick = NULL;
		struct run_host *pick_host = NULL;
		struct driver_slot *pick_slot = NULL;
		for (struct run *r = mgr->runs; r; r = r->next) {
			if (r->state != RS_QUEUED || r->exited)
				continue;
			struct run_host *h;
			struct driver_slot *slot;
			struct misfit m;
			if (pick && (r->priority < pick->priority || (r->priority == pick->priority && r->id > pick->id)))
				continue; /* cannot beat the pick: its wait reason is from the last pass */
			if (place(mgr, r, &h, &slot, &m) < 0) {
				explain_wait(r, &m, r->waiting, sizeof(r->waiting));
				continue;
			}
			pick = r;
			pick_host = h;
			pick_slot = slot;
		}
		if (pick && !mgr->stopping) {
			start(pick, pick_host, pick_slot);
			mgr->reschedule = 1;
		}
	} while (mgr->reschedule && !mgr->stopping);
	mgr->scheduling = 0;
}

const char *run_waiting(const struct run_manager *mgr, int64_t id)
{
	for (const struct run *r = mgr->runs; r; r = r->next)
		if (r->id == id)
			return r->state == RS_QUEUED && r->waiting[0] ? r->waiting : NULL;
	return NULL;
}

/* The stored, verified record of an image: platform and DETECT_* flags. */
static int image_info(struct run_manager *mgr, const char *sha, enum drv_platform *ret_platform,
                      unsigned *ret_flags, char **ret_summary)
{
	struct image_info info;
	int r = image_verify(mgr->images, sha, &info);
	if (r < 0)
		return r;
	*ret_platform = drv_platform_from_name(info.platform);
	*ret_flags = info.flags;
	if (ret_summary) {
		*ret_summary = info.summary;
		info.summary = NULL;
	}
	image_info_clear(&info);
	return 0;
}

/* What a request resolves to before anything is recorded: the platform, the driver that
 * runs it (checked against the request through its DRV_CAP_* capabilities) and the flags
 * the driver and the verdict need. */
struct run_plan {
	enum drv_platform platform;
	struct run_host *host;      /* the first host that can take it (its record's host while queued) */
	struct run_host *pin;       /* the host the request names, or NULL */
	struct driver_slot *slot;   /* its driver there */
	unsigned need_caps;         /* DRV_CAP_* the request needs */
	unsigned mem_mb;            /* guest memory counted on its host */
	unsigned vflags, dflags; /* VERDICT_F_*, DRV_F_* */
	unsigned timeout_s;
};

/* Resolve `req`: its images (verified), platform, driver and capabilities. Nothing is
 * recorded. Errors as run_create's. */
static int run_resolve(struct run_manager *mgr, const struct run_request *req, struct run_plan *ret,
                       char **ret_err)
{
	enum drv_platform img_platform = DRV_PLATFORM_NONE;
	unsigned img_flags = 0, krn_flags = 0;
	char *summary = NULL;
	int loader = req->loader[0] != '\0';
	memset(ret, 0, sizeof(*ret));
	if (image_info(mgr, req->image, &img_platform, &img_flags, &summary) < 0)
		return errmsg_fail(ret_err, -ENOENT, "image %s is not stored (upload it first)", req->image);
	enum drv_platform platform = req->platform != DRV_PLATFORM_NONE ? req->platform : img_platform;
	unsigned vflags = 0, dflags = 0;
	if (loader) {
		enum drv_platform kp;
		char *ksum = NULL;
		if (image_info(mgr, req->loader, &kp, &krn_flags, &ksum) < 0) {
			free(summary);
			return errmsg_fail(ret_err, -ENOENT, "loader kernel %s is not stored (upload it first)",
			            req->loader);
		}
		int bad = kp != DRV_PLATFORM_QEMU || img_platform != DRV_PLATFORM_LINUXU;
		char *msg = NULL;
		if (bad && asprintf(&msg, "loader mode needs a qemu kernel and a Linux ELF program: kernel is %s, program is %s",
		                    ksum ? ksum : "?", summary ? summary : "?") < 0)
			msg = NULL;
		free(ksum);
		free(summary);
		if (bad) {
			*ret_err = msg;
			return -ENOEXEC;
		}
		summary = NULL;
		if (req->platform != DRV_PLATFORM_NONE && req->platform != DRV_PLATFORM_QEMU)
			return errmsg_fail(ret_err, -EINVAL, "loader mode runs on the qemu platform only");
		platform = DRV_PLATFORM_QEMU;
		vflags |= VERDICT_F_LOADER | VERDICT_F_UNIKRAFT;
		dflags |= DRV_F_LOADER | DRV_F_UNIKRAFT;
		if (krn_flags & DETECT_UK_ENV)
			dflags |= DRV_F_ENV;
	} else {
		if (img_platform == DRV_PLATFORM_NONE && req->platform == DRV_PLATFORM_NONE) {
			int r = errmsg_fail(ret_err, -ENOEXEC, "image is not runnable: %s", summary ? summary : "unknown format");
			free(summary);
			return r;
		}
		if (img_flags & DETECT_UNIKRAFT) {
			vflags |= VERDICT_F_UNIKRAFT;
			dflags |= DRV_F_UNIKRAFT;
		}
		if ((img_flags & (DETECT_UNIKRAFT | DETECT_UK_ENV)) == (DETECT_UNIKRAFT | DETECT_UK_ENV))
			dflags |= DRV_F_ENV;
		free(summary);
	}
	if (!loader && img_platform != platform && img_platform != DRV_PLATFORM_NONE &&
	    !(platform == DRV_PLATFORM_QEMU && img_platform == DRV_PLATFORM_XEN))
		return errmsg_fail(ret_err, -ENOEXEC, "image is a %s image, not runnable on %s",
		            drv_platform_name(img_platform), drv_platform_name(platform));
	struct run_host *pin = NULL;
	if (req->host) {
		pin = host_named(mgr, req->host);
		if (!pin || pin->removing) {
			char names[512] = "";
			for (size_t i = 0, n = 0; i < mgr->nhosts && n < sizeof(names); i++)
				if (!mgr->hosts[i]->removing)
					n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", n ? ", " : "",
					                      mgr->hosts[i]->name);
			return errmsg_fail(ret_err, -EINVAL, "%s host '%s' (this runnerd has: %s)",
			                   pin ? "removing" : "unknown", req->host, names);
		}
	}
	unsigned need = (loader ? DRV_CAP_INITRD : 0) | (req->nargs ? DRV_CAP_ARGS : 0) |
	                (req->memory_mb ? DRV_CAP_MEMORY : 0) | (req->vcpus > 1 ? DRV_CAP_VCPUS : 0);
	unsigned mem = req->memory_mb ? req->memory_mb : platform == DRV_PLATFORM_LINUXU ? 0 : loader ? 256 : 128;
	/* Some host must be able to take it some day (a remote host that is down may come back;
	 * a local driver that is unusable will not): else it is refused now, with the first
	 * host's reason (the pinned host, or "local"). */
	struct run_host *host = NULL;
	struct driver_slot *slot = NULL;
	int first_r = 0;
	char *first_err = NULL;
	for (size_t i = 0; i < mgr->nhosts && !slot; i++) {
		struct run_host *h = mgr->hosts[i];
		if ((pin && h != pin) || h->removing)
			continue;
		struct driver_slot *s = slot_for(h, platform, req->driver);
		int r = 0;
		char *err = NULL;
		if (!s && req->driver)
			r = errmsg_fail(&err, -EINVAL, "no driver named %s serves platform %s on host %s", req->driver,
			                drv_platform_name(platform), h->name);
		else if (!s)
			r = errmsg_fail(&err, -ENODEV, "no driver serves platform %s on host %s", drv_platform_name(platform),
			                h->name);
		else if (!s->available && !s->backoff_ms) /* not one that is down and probed again */
			r = errmsg_fail(&err, -ENODEV, "driver %s is not usable here: %s", s->drv->name, s->info);
		else if ((need & DRV_CAP_INITRD) && !(s->drv->caps & DRV_CAP_INITRD))
			r = errmsg_fail(&err, -EINVAL, "driver %s cannot pass a program to a loader kernel (loader mode)",
			                s->drv->name);
		else if ((need & DRV_CAP_ARGS) && !(s->drv->caps & DRV_CAP_ARGS))
			r = errmsg_fail(&err, -EINVAL, "driver %s cannot pass arguments to the guest", s->drv->name);
		else if ((need & DRV_CAP_MEMORY) && !(s->drv->caps & DRV_CAP_MEMORY))
			r = errmsg_fail(&err, -EINVAL, "driver %s cannot honour memory_mb", s->drv->name);
		else if ((need & DRV_CAP_VCPUS) && !(s->drv->caps & DRV_CAP_VCPUS))
			r = errmsg_fail(&err, -EINVAL, "driver %s cannot honour vcpus %u (it runs one process, not a VM)",
			                s->drv->name, req->vcpus);
		else if (h->memory_mb && mem > h->memory_mb)
			r = errmsg_fail(&err, -EINVAL, "the run needs %u MB of guest memory: host %s holds %u MB", mem,
			                h->name, h->memory_mb);
		if (r == 0) {
			host = h;
			slot = s;
		} else if (!first_r) {
			first_r = r;
			first_err = err;
		} else {
			free(err);
		}
	}
	if (!slot && first_r) {
		*ret_err = first_err;
		return first_r;
	}
	free(first_err);
	if (!slot)
		return errmsg_fail(ret_err, -ENODEV, "no host here serves platform %s", drv_platform_name(platform));
	unsigned timeout = req->timeout_s ? req->timeout_s : mgr->cfg.default_timeout_s;
	if (timeout > mgr->cfg.max_timeout_s)
		return errmsg_fail(ret_err, -EINVAL, "timeout_s %u is over the limit of %u", timeout,
		            mgr->cfg.max_timeout_s);
	*ret = (struct run_plan){
		.platform = platform,
		.host = host,
		.pin = pin,
		.slot = slot,
		.need_caps = need,
		.mem_mb = mem,
		.vflags = vflags,
		.dflags = dflags,
		.timeout_s = timeout,
	};
	return 0;
}

/* The program's streams: stdout and stderr apart, and stdin from the client, where the
 * driver can (a plain program: a Unikraft image keeps its one console and terminal). Each
 * is a fact of the run, so a client reads from the record what to follow and feed. */
static unsigned io_plan(struct run_manager *mgr, int64_t id, const struct driver *drv, unsigned dflags,
                        const struct run_request *req)
{
	unsigned f = 0;
	if (dflags & (DRV_F_UNIKRAFT | DRV_F_LOADER))
		return 0;
	if (drv->caps & DRV_CAP_STREAMS) {
		f |= DRV_F_STREAMS;
		store_run_set_fact(mgr->db, id, "streams", "stdout,stderr");
	}
	if (req->want_stdin && (drv->caps & DRV_CAP_STDIN) && drv->input) {
		f |= DRV_F_STDIN;
		store_run_set_fact(mgr->db, id, "stdin", "pipe");
	}
	return f;
}

/* How much of the request's environment can reach the program: all of it for a plain Linux
 * program on linuxu (its process environment) and for a Unikraft kernel with posix_environ's
 * `env.vars` parameter; none elsewhere, which one note on the run says. */
static size_t env_plan(struct run_manager *mgr, int64_t id, enum drv_platform platform, unsigned dflags,
                       const struct run_request *req)
{
	char msg[256];
	if (!req->nenv)
		return 0;
	if (platform == DRV_PLATFORM_LINUXU && !(dflags & DRV_F_UNIKRAFT))
		return req->nenv;
	if (!(dflags & DRV_F_ENV)) {
		snprintf(msg, sizeof(msg), "the %s cannot take an environment (no env.vars library parameter): "
		         "%zu variable(s) not passed", (dflags & DRV_F_LOADER) ? "loader kernel" : "image", req->nenv);
		store_run_add_note(mgr->db, id, msg);
		return 0;
	}
	if (req->nenv > RUN_UK_ENV_MAX) {
		snprintf(msg, sizeof(msg), "Unikraft keeps the first %d variables of env.vars by default "
		         "(LIBPOSIX_ENVIRON_LIBPARAM_MAXCOUNT): %zu were passed, from %.60s on they may be dropped",
		         RUN_UK_ENV_MAX, req->nenv, req->env[RUN_UK_ENV_MAX]);
		store_run_add_note(mgr->db, id, msg);
	}
	return req->nenv;
}

int run_create(struct run_manager *mgr, const struct run_request *req, int64_t *ret_id,
               char **ret_err)
{
	if (mgr->stopping)
		return errmsg_fail(ret_err, -ESHUTDOWN, "runnerd is shutting down");
	if (mgr->nqueued >= mgr->cfg.max_queued)
		return errmsg_fail(ret_err, -EAGAIN, "the run queue is full (%u waiting)", mgr->nqueued);
	struct run_plan plan;
	int r = run_resolve(mgr, req, &plan, ret_err);
	if (r < 0)
		return r;
	int loader = req->loader[0] != '\0';
	enum drv_platform platform = plan.platform;
	struct driver_slot *slot = plan.slot;
	unsigned vflags = plan.vflags, dflags = plan.dflags, timeout = plan.timeout_s;

	static const char *const accel_names[] = {"auto", "kvm", "tcg"};
	json_t *require = NULL;
	if (req->require && req->require[0]) {
		require = json_array();
		for (size_t i = 0; req->require[i]; i++)
			json_array_append_new(require, json_string(req->require[i]));
	}
	struct run_row row = {
		.image = req->image,
		.loader = loader ? req->loader : NULL,
		.name = req->name,
		.platform = drv_platform_name(platform),
		.driver = slot->drv->name,
		.host = plan.host->name,
		.machine = req->machine,
		.accel = platform == DRV_PLATFORM_QEMU ? accel_names[req->accel] : NULL,
		.memory_mb = req->memory_mb,
		.vcpus = req->vcpus,
		.timeout_s = timeout,
		.success_code = req->success_code,
		.flags = dflags,
		.args = req->args,
		.nargs = req->nargs,
		.uk_params = req->uk_params,
		.nuk_params = req->nuk_params,
		.labels = req->labels,
		.priority = req->priority,
		.retries = req->retries,
		.require = require,
	};
	int64_t id;
	r = store_run_insert(mgr->db, &row, &id);
	json_decref(require);
	if (r < 0)
		return errmsg_fail(ret_err, r, "Failed to record the run: %s", strerror(-r));

	struct run *run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->mgr = mgr;
	run->id = id;
	snprintf(run->id_str, sizeof(run->id_str), "%lld", (long long)id);
	run->pin = plan.pin;
	if (run->pin)
		run->pin->refs++;
	run->platform = platform;
	run->driver = req->driver ? strdup(req->driver) : NULL;
	run->require = strv_dup(req->require, strv_len(req->require));
	run->need_caps = plan.need_caps;
	run->mem_mb = plan.mem_mb;
	run->priority = req->priority;
	run->retries_left = req->retries;
	run->vflags = vflags;
	run->success_code = req->success_code;
	run->timeout_s = timeout;
	run->tp = testparse_new();
	run->state = RS_QUEUED;
	run->name = req->name ? strdup(req->name) : NULL;
	if (loader) {
		run->image_path = image_path(mgr->images, req->loader);
		run->initrd_path = image_path(mgr->images, req->image);
	} else {
		run->image_path = image_path(mgr->images, req->image);
	}
	run->machine = req->machine ? strdup(req->machine) : NULL;
	run->args = strv_dup(req->args, req->nargs);
	run->uk_params = strv_dup(req->uk_params, req->nuk_params);
	size_t nenv = env_plan(mgr, id, platform, dflags, req);
	run->env = strv_dup(req->env, nenv);
	dflags |= io_plan(mgr, id, slot->drv, dflags, req);
	size_t nbinds = (slot->drv->caps & DRV_CAP_BINDS) ? req->nbinds : 0;
	run->binds = strv_dup(req->binds, nbinds);
	run->cwd = nbinds && req->cwd ? strdup(req->cwd) : NULL;
	uv_timer_init(mgr->loop, &run->timeout_timer);
	uv_timer_init(mgr->loop, &run->grace_timer);
	uv_timer_init(mgr->loop, &run->idle_timer);
	uv_timer_init(mgr->loop, &run->throttle_timer);
	run->timeout_timer.data = run->grace_timer.data = run->idle_timer.data = run->throttle_timer.data = run;
	run->handles_open = 4;
	run->spec = (struct drv_spec){
		.run_id = run->id_str,
		.image_path = run->image_path,
		.image_name = run->name,
		.initrd_path = run->initrd_path,
		.workdir = run->workdir,
		.args = run->args,
		.nargs = req->nargs,
		.uk_params = run->uk_params,
		.nuk_params = req->nuk_params,
		.env = run->env,
		.nenv = nenv,
		.memory_mb = req->memory_mb,
		.vcpus = req->vcpus,
		.accel = req->accel,
		.machine = run->machine,
		.flags = dflags,
		.binds = run->binds,
		.nbinds = nbinds,
		.cwd = run->cwd,
		.hide = mgr->cfg.hidden,
		.nhide = strv_len(mgr->cfg.hidden),
	};
	run->cb = (struct drv_callbacks){
		.console = on_console,
		.note = on_note,
		.started = on_started,
		.exit = on_exit_cb,
		.ctx = run,
	};
	run->next = mgr->runs;
	mgr->runs = run;
	mgr->nqueued++;
	mgr->runs_created++;
	store_image_touch(mgr->db, req->image);
	if (loader)
		store_image_touch(mgr->db, req->loader);

	/* The run's directory and its empty console log exist from now on (followers of a
	 * queued run read it); the write side is opened when the run starts. */
	char *cpath = run_console_path(mgr, id);
	r = run->image_path && run->args && run->uk_params && run->env && run->binds && run->require && cpath &&
	            (run->cwd || !(nbinds && req->cwd)) &&
	            (run->driver || !req->driver) ? 0 : -ENOMEM;
	if (r == 0)
		r = rundir_create(mgr->cfg.runs_dir, id, &run->workdir);
	run->spec.workdir = run->workdir;
	if (r == 0 && run->name)
		name_image(run);
	if (r == 0)
		r = console_init(&run->con, cpath, mgr->cfg.console_cap);
	if (r == 0)
		r = streams_init(&run->io, run->workdir, mgr->cfg.console_cap, !!(dflags & DRV_F_STREAMS));
	else
		run->con.fd = -1;
	if (r == 0) {
		/* Unbatched on ENOMEM. */
		(void)console_batch(&run->con, mgr->loop);
		streams_batch(&run->io, mgr->loop);
	}
	free(cpath);
	*ret_id = id;
	notify_idle(mgr);
	if (r < 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "Failed to prepare the run directory: %s", strerror(-r));
		fail_run(run, DRV_END_ERROR, msg);
		return 0;
	}
	schedule(mgr);
	return 0;
}

int run_cancel(struct run_manager *mgr, int64_t id)
{
	struct run *run = find_run(mgr, id);
	if (!run || run->exited)
		return -ENOENT;
	run->vflags |= VERDICT_F_CANCEL;
	store_run_add_note(mgr->db, run->id, "cancelled by request");
	if (run->state == RS_QUEUED || !run->inst) {
		fail_run(run, DRV_END_KILLED, "cancelled before it started");
		return 0;
	}
	return run->drv->kill(run->inst, DRV_KILL_FORCE);
}

struct console *run_console(struct run_manager *mgr, int64_t id)
{
	struct run *run = find_run(mgr, id);
	return run && !run->exited ? &run->con : NULL;
}

struct console *run_stream_console(struct run_manager *mgr, int64_t id, enum drv_stream stream)
{
	struct run *run = find_run(mgr, id);
	return run && !run->exited ? streams_live(&run->io, stream) : NULL;
}

char *run_stream_path(const struct run_manager *mgr, int64_t id, enum drv_stream stream)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%lld/%s", mgr->cfg.runs_dir, (long long)id, streams_file(stream)) < 0)
		return NULL;
	return p;
}

int run_input(struct run_manager *mgr, int64_t id, const char *buf, size_t len)
{
	struct run *run = find_run(mgr, id);
	if (!run || run->exited)
		return -ENOENT;
	if (!(run->spec.flags & DRV_F_STDIN))
		return -ENOTSUP;
	if (!run->inst || !run->drv || run->state == RS_QUEUED)
		return -EAGAIN;
	if (!run->drv->input)
		return -ENOTSUP;
	int r = run->drv->input(run->inst, buf, len);
	return r < 0 ? r : 0;
}

/* End active runs as stopped (125): queued ones always, running ones when `running`. */
static void stop_runs(struct run_manager *mgr, int running)
{
	struct run *run = mgr->runs;
	while (run) {
		struct run *next = run->next; /* fail_run unlinks run */
		int queued = run->state == RS_QUEUED || !run->inst;
		if (!run->exited && (queued || running) && !(run->vflags & VERDICT_F_STOP)) {
			run->vflags |= VERDICT_F_STOP;
			if (queued) {
				store_run_add_note(mgr->db, run->id, "runnerd stopped before the run started");
				fail_run(run, DRV_END_KILLED, "runnerd stopped before the run started");
			} else {
				store_run_add_note(mgr->db, run->id, "runnerd stopped: guest killed");
				run->drv->kill(run->inst, DRV_KILL_FORCE);
			}
		}
		run = next;
	}
}

void run_manager_drain(struct run_manager *mgr)
{
	mgr->stopping = 1;
	stop_runs(mgr, 0);
}

void run_manager_stop(struct run_manager *mgr)
{
	mgr->stopping = 1;
	stop_runs(mgr, 1);
}

void run_manager_fini(struct run_manager *mgr)
{
	for (size_t h = 0; h < mgr->nhosts; h++) {
		struct run_host *host = mgr->hosts[h];
		int busy = host->probing;
		for (size_t i = 0; i < host->nslots; i++)
			busy |= host->slots[i].probing;
		if (busy)
			continue; /* a worker still probes it: left to the process's exit */
		for (size_t i = 0; i < host->nslots; i++) {
			struct driver_slot *s = &host->slots[i];
			if (s->state && s->drv->unprobe)
				s->drv->unprobe(s->state);
		}
		host_free(host);
	}
	mgr->nhosts = 0;
	while (mgr->pending) {
		struct pending_end *p = mgr->pending;
		mgr->pending = p->next;
		log_error("run %lld: its end (%s, exit %d) could not be recorded: the next start marks it lost",
		          (long long)p->id, p->end.state, p->end.exit_code);
		pending_free(p);
	}
	free(mgr->cfg.runs_dir);
}
