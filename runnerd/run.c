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
	struct run_host *host;
	struct driver_slot *slot;
	struct drv_instance *inst;
	struct drv_spec spec;
	struct drv_callbacks cb;
	struct console con;
	struct streams io;         /* stdout.log and stderr.log when the driver splits them */
	struct testparse *tp;
	uv_timer_t timeout_timer;
	uv_timer_t grace_timer;
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

static struct run_host *host_named(struct run_manager *mgr, const char *name)
{
	for (size_t i = 0; i < mgr->nhosts; i++)
		if (strcmp(mgr->hosts[i].name, name) == 0)
			return &mgr->hosts[i];
	return NULL;
}

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

/* Probe every driver for `host` (those that do not apply to a remote host are left out),
 * then let each remove what a dead daemon left behind there. */
static void probe_host(struct run_manager *mgr, struct run_host *host, const struct drv_host *dh,
                       const struct lost_ids *lost)
{
	for (size_t i = 0; drv_table[i] && host->nslots < sizeof(host->slots) / sizeof(host->slots[0]); i++) {
		struct driver_slot *s = &host->slots[host->nslots];
		char *info = NULL, *err = NULL;
		*s = (struct driver_slot){.drv = drv_table[i]};
		int r = s->drv->probe ? s->drv->probe(dh, &s->state, &info, &err) : -ENOTSUP;
		if (r == -ENOTSUP && dh->uri) { /* does not apply to this host */
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
			s->info = err ? err : strdup(strerror(-r));
			free(info);
			log_warn("host %s: driver %s unavailable: %s", host->name, s->drv->name, s->info);
		}
		/* Guests a dead daemon left behind (the driver knows which are ours). */
		if (s->available && s->drv->reap) {
			char *rerr = NULL;
			int n = s->drv->reap(s->state, mgr->cfg.runs_dir, (const char *const *)lost->v, lost->n, &rerr);
			if (n > 0)
				log_warn("host %s: driver %s: removed %d guest(s) left by a previous runnerd", host->name,
				         s->drv->name, n);
			else if (n < 0)
				log_warn("host %s: driver %s: cannot remove leftover guests: %s", host->name, s->drv->name,
				         rerr ? rerr : strerror(-n));
			free(rerr);
		}
	}
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
	const struct drv_host local = {.name = "local", .uri = NULL, .options = cfg->local_options};
	mgr->hosts[0] = (struct run_host){.name = strdup("local"), .capacity = cfg->max_concurrent};
	mgr->nhosts = 1;
	probe_host(mgr, &mgr->hosts[0], &local, &lost);
	for (size_t h = 0; h < cfg->nhosts && mgr->nhosts < RUN_MAX_HOSTS; h++) {
		const struct run_host_config *hc = &cfg->hosts[h];
		struct run_host *host = &mgr->hosts[mgr->nhosts++];
		*host = (struct run_host){.name = strdup(hc->name), .uri = strdup(hc->uri), .capacity = hc->capacity};
		if (store_host_put(db, hc->name, hc->uri, hc->capacity) < 0)
			log_warn("host %s: cannot record it in the store", hc->name);
		const struct drv_host dh = {.name = hc->name, .uri = hc->uri};
		probe_host(mgr, host, &dh, &lost);
	}
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
	return host_drivers(&mgr->hosts[0]);
}

json_t *run_manager_hosts(const struct run_manager *mgr)
{
	json_t *hosts = json_array();
	for (size_t i = 0; i < mgr->nhosts; i++) {
		const struct run_host *h = &mgr->hosts[i];
		int queued = 0;
		for (const struct run *r = mgr->runs; r; r = r->next)
			queued += r->host == h && r->state == RS_QUEUED;
		json_array_append_new(hosts, json_pack("{s:s,s:s?,s:i,s:i,s:i,s:o}", "name", h->name, "uri", h->uri,
		                                       "capacity", (int)h->capacity, "active", (int)h->nrunning,
		                                       "queued", queued, "drivers", host_drivers(h)));
	}
	return hosts;
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
	free(run->image_path);
	free(run->initrd_path);
	free(run->workdir);
	free(run->machine);
	strv_free(run->args);
	strv_free(run->uk_params);
	strv_free(run->env);
	strv_free(run->binds);
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

void run_manager_maintain(struct run_manager *mgr)
{
	store_maintain(mgr->db);
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

/* Record the end, release everything, free the run once its timers are closed. */
/* The recorded end: store it, tell the followers, release the guest, free the run once
 * its timers are closed. */
static void record_end(struct run *run)
{
	struct run_manager *mgr = run->mgr;
	const struct verdict *v = &run->final_v;
	enum run_state state = run->state;
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
	if (run->inst && run->slot->drv->destroy)
		run->slot->drv->destroy(run->inst);
	run->inst = NULL;
	unlink_run(run);
	uv_close((uv_handle_t *)&run->timeout_timer, on_handle_closed);
	uv_close((uv_handle_t *)&run->grace_timer, on_handle_closed);
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
	if (run->state == RS_QUEUED) {
		mgr->nqueued--;
	} else {
		mgr->nrunning--;
		run->host->nrunning--;
	}
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
	run->slot->drv->kill(run->inst, DRV_KILL_FORCE);
}

static void on_unthrottle(uv_timer_t *t)
{
	struct run *run = t->data;
	run->throttled = 0;
	if (!run->exited && run->inst)
		run->slot->drv->throttle(run->inst, 0);
}

/* Past the cap every byte is dropped: read the console only now and then. The guest
 * blocks on its full pipe meanwhile; its verdict is unchanged (every byte still reaches
 * the test parser), it only takes longer. */
static void throttle_console(struct run *run, size_t len)
{
	const struct driver *drv = run->slot->drv;
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
		 * has printed its last summary, silence for the grace period ends the run. Any
		 * later byte restarts the wait. */
		struct tp_summary s;
		testparse_summary(run->tp, &s);
		if (s.complete)
			uv_timer_start(&run->grace_timer, on_grace, run->mgr->cfg.console_grace_ms, 0);
		else
			uv_timer_stop(&run->grace_timer);
	}
}

static void on_note(void *ctx, const char *key, const char *value, const char *message)
{
	struct run *run = ctx;
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

static void on_exit_cb(void *ctx, const struct drv_outcome *o)
{
	struct run *run = ctx;
	if (run->exited)
		return;
	run->exited = 1;
	uv_timer_stop(&run->timeout_timer);
	uv_timer_stop(&run->grace_timer);
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
	run->slot->drv->kill(run->inst, DRV_KILL_FORCE);
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

static void start(struct run *run)
{
	struct run_manager *mgr = run->mgr;
	const struct driver *drv = run->slot->drv;
	char *err = NULL;
	mgr->nqueued--;
	mgr->nrunning++;
	run->host->nrunning++;
	run->state = RS_STARTING;
	store_run_set_state(mgr->db, run->id, "starting");
	/* Only now does the run hold a descriptor: queued runs hold none. */
	int r = rundir_open_console(run->workdir);
	if (r < 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "Failed to open the console log of run %s: %s", run->id_str, strerror(-r));
		fail_run(run, DRV_END_ERROR, msg);
		return;
	}
	console_attach_fd(&run->con, r);
	if ((r = streams_open(&run->io, run->workdir)) < 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "Failed to open the stream logs of run %s: %s", run->id_str, strerror(-r));
		fail_run(run, DRV_END_ERROR, msg);
		return;
	}
	r = drv->prepare(run->slot->state, &run->spec, &run->inst, &err);
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
	log_info("run %s started on %s (host %s)", run->id_str, drv->name, run->host->name);
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

/* Start queued runs, oldest first, while their hosts have room. Re-entered from a start
 * that fails at once (its end schedules again): the outer pass just looks again. */
static void schedule(struct run_manager *mgr)
{
	if (mgr->scheduling) {
		mgr->reschedule = 1;
		return;
	}
	mgr->scheduling = 1;
	do {
		mgr->reschedule = 0;
		/* The list is newest-first: the last fitting queued run is the oldest. */
		struct run *pick = NULL;
		for (struct run *r = mgr->runs; r; r = r->next)
			if (r->state == RS_QUEUED && r->host->nrunning < r->host->capacity)
				pick = r;
		if (pick && !mgr->stopping) {
			start(pick);
			mgr->reschedule = 1;
		}
	} while (mgr->reschedule && !mgr->stopping);
	mgr->scheduling = 0;
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
	struct run_host *host;
	struct driver_slot *slot;
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
	struct run_host *host = host_named(mgr, req->host ? req->host : "local");
	if (!host) {
		char names[512] = "";
		for (size_t i = 0, n = 0; i < mgr->nhosts && n < sizeof(names); i++)
			n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", i ? ", " : "", mgr->hosts[i].name);
		return errmsg_fail(ret_err, -EINVAL, "unknown host '%s' (this runnerd has: %s)", req->host, names);
	}
	struct driver_slot *slot = slot_for(host, platform, req->driver);
	if (!slot && req->driver)
		return errmsg_fail(ret_err, -EINVAL, "no driver named %s serves platform %s on host %s", req->driver,
		            drv_platform_name(platform), host->name);
	if (!slot)
		return errmsg_fail(ret_err, -ENODEV, "no driver serves platform %s on host %s", drv_platform_name(platform),
		                   host->name);
	if (!slot->available)
		return errmsg_fail(ret_err, -ENODEV, "driver %s is not usable here: %s", slot->drv->name, slot->info);
	if (!loader && img_platform != platform && img_platform != DRV_PLATFORM_NONE &&
	    !(platform == DRV_PLATFORM_QEMU && img_platform == DRV_PLATFORM_XEN))
		return errmsg_fail(ret_err, -ENOEXEC, "image is a %s image, not runnable on %s",
		            drv_platform_name(img_platform), drv_platform_name(platform));
	/* What the request asks of the driver: honoured, or refused — never silently ignored. */
	unsigned caps = slot->drv->caps;
	if (loader && !(caps & DRV_CAP_INITRD))
		return errmsg_fail(ret_err, -EINVAL, "driver %s cannot pass a program to a loader kernel (loader mode)",
		            slot->drv->name);
	if (req->nargs && !(caps & DRV_CAP_ARGS))
		return errmsg_fail(ret_err, -EINVAL, "driver %s cannot pass arguments to the guest", slot->drv->name);
	if (req->memory_mb && !(caps & DRV_CAP_MEMORY))
		return errmsg_fail(ret_err, -EINVAL, "driver %s cannot honour memory_mb", slot->drv->name);
	if (req->vcpus > 1 && !(caps & DRV_CAP_VCPUS))
		return errmsg_fail(ret_err, -EINVAL, "driver %s cannot honour vcpus %u (it runs one process, not a VM)",
		            slot->drv->name, req->vcpus);
	unsigned timeout = req->timeout_s ? req->timeout_s : mgr->cfg.default_timeout_s;
	if (timeout > mgr->cfg.max_timeout_s)
		return errmsg_fail(ret_err, -EINVAL, "timeout_s %u is over the limit of %u", timeout,
		            mgr->cfg.max_timeout_s);
	*ret = (struct run_plan){
		.platform = platform,
		.host = host,
		.slot = slot,
		.vflags = vflags,
		.dflags = dflags,
		.timeout_s = timeout,
	};
	return 0;
}

static size_t strv_len(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
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
	};
	int64_t id;
	r = store_run_insert(mgr->db, &row, &id);
	if (r < 0)
		return errmsg_fail(ret_err, r, "Failed to record the run: %s", strerror(-r));

	struct run *run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->mgr = mgr;
	run->id = id;
	snprintf(run->id_str, sizeof(run->id_str), "%lld", (long long)id);
	run->slot = slot;
	run->host = plan.host;
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
	uv_timer_init(mgr->loop, &run->timeout_timer);
	uv_timer_init(mgr->loop, &run->grace_timer);
	uv_timer_init(mgr->loop, &run->throttle_timer);
	run->timeout_timer.data = run->grace_timer.data = run->throttle_timer.data = run;
	run->handles_open = 3;
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
		.cwd = nbinds ? req->cwd : NULL,
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
	r = run->image_path && run->args && run->uk_params && run->env && run->binds && cpath ? 0 : -ENOMEM;
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
	return run->slot->drv->kill(run->inst, DRV_KILL_FORCE);
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
	if (!(run->spec.flags & DRV_F_STDIN) || !run->slot->drv->input)
		return -ENOTSUP;
	if (!run->inst || run->state == RS_QUEUED)
		return -EAGAIN;
	int r = run->slot->drv->input(run->inst, buf, len);
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
				run->slot->drv->kill(run->inst, DRV_KILL_FORCE);
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
		struct run_host *host = &mgr->hosts[h];
		for (size_t i = 0; i < host->nslots; i++) {
			struct driver_slot *s = &host->slots[i];
			if (s->available && s->drv->unprobe)
				s->drv->unprobe(s->state);
			free(s->info);
		}
		free(host->name);
		free(host->uri);
	}
	while (mgr->pending) {
		struct pending_end *p = mgr->pending;
		mgr->pending = p->next;
		log_error("run %lld: its end (%s, exit %d) could not be recorded: the next start marks it lost",
		          (long long)p->id, p->end.state, p->end.exit_code);
		pending_free(p);
	}
	free(mgr->cfg.runs_dir);
}
