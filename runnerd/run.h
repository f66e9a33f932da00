/*
 * run.h — the run lifecycle: validate a request against the image store,
 * record it, queue it, start it on its driver when a slot is free, collect
 * console bytes and the outcome, decide the exit status (verdict.c) and
 * store the result. Owns per-run state (driver instance, console, timers).
 *
 * States: queued → starting → running → done | error | timeout | cancelled
 * (and `lost` for runs a dead daemon left behind).
 */
#ifndef RUNNERD_RUN_H
#define RUNNERD_RUN_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "driver.h"
#include "image.h"
#include "store.h"

struct console;

struct run_config {
	char *runs_dir;              /* data/runs */
	unsigned default_timeout_s;  /* 300 */
	unsigned max_timeout_s;      /* 86400 */
	unsigned max_concurrent;     /* runs at once */
	unsigned max_queued;         /* waiting runs; more get 503 */
	uint64_t console_cap;        /* bytes per run */
	unsigned console_grace_ms;   /* loader mode: silence after a complete libtest run that ends it */
	unsigned loader_idle_ms;     /* loader mode: guest idle this long after that run ends it (0 = off) */
	char *const *local_options;  /* the local host's driver options ("libvirt-uri=..."), NULL-terminated */
	const struct run_host_config *hosts; /* runnerd.conf [host NAME]: remote libvirt hosts, and "local" */
	char *const *hidden;         /* paths no sandbox may see (data dir, socket), NULL-terminated */
	size_t nhosts;
};

/* A host as configured (runnerd.conf [host NAME] or POST /v1/hosts); strings borrowed. */
struct run_host_config {
	const char *name;
	const char *uri;            /* libvirt URI; NULL: this machine ("local") */
	unsigned capacity;          /* guests at once; local: 0 = max_concurrent */
	unsigned memory_mb;         /* guest memory at once; 0 = not counted */
	unsigned image_quota_mb;    /* image volumes kept in the host's pool; 0 = no quota */
	char *const *labels;        /* NULL-terminated, or NULL */
};

struct run_host;
struct run_manager;

/* A probed driver on one host. Drivers with a `health` check (libvirt, xen) that are
 * found down, or were unavailable at a remote host's probe, are probed again off the loop
 * with back-off once no run uses them. */
struct driver_slot {
	const struct driver *drv;
	void *state;
	int available;
	char *info;            /* probe summary, or why unavailable */
	unsigned nrunning;     /* runs started on it and not ended */
	int probing;           /* a worker thread is probing it again */
	uint64_t next_probe;   /* loop ms of the next probe */
	unsigned backoff_ms;
	struct run_host *host;
	struct run_manager *mgr;
	uv_work_t work;
	void *old_state, *new_state; /* the worker's input (to unprobe) and result */
	char *new_info, *new_err;
	int new_r;
};

enum run_host_health { HOST_UP, HOST_DOWN, HOST_PROBING };

/* A host runs are placed on: "local" (this machine: every local driver, capacity =
 * max_concurrent) or a remote libvirt host (the drivers that apply to its URI). Hosts are
 * allocated once and freed only when no run names them. */
struct run_host {
	char *name;
	char *uri;               /* NULL: this machine */
	unsigned capacity;       /* guests at once */
	unsigned memory_mb;      /* guest memory at once, 0 = not counted */
	unsigned image_quota_mb;
	char **labels;           /* NULL-terminated */
	char **options;          /* the drivers' options for it ("image-quota-mb=N"), NULL-terminated */
	unsigned nrunning;       /* starting or running here */
	unsigned mem_used;       /* guest memory of those runs */
	unsigned refs;           /* active runs that name it: placed here, or pinned to it */
	int api;                 /* added through POST /v1/hosts (stored, restored at start) */
	int removing;            /* DELETE ?drain=1: takes no new runs, removed after its last */
	int probing;             /* POST /v1/hosts: its first probe is under way */
	char *last_error;        /* the latest reason it was down (kept after it came back) */
	uint64_t uploads, upload_bytes, cache_hits, lost; /* for /metrics */
	struct driver_slot slots[8];
	size_t nslots;
};

#define RUN_MAX_HOSTS 256

struct run;
struct pending_end;

struct run_manager {
	uv_loop_t *loop;
	struct store *db;
	struct image_store *images;
	struct run_config cfg;
	struct run_host *hosts[RUN_MAX_HOSTS]; /* hosts[0] is "local" */
	size_t nhosts;
	int scheduling, reschedule;  /* schedule() is running / must look again */
	struct run *runs;            /* queued and active runs */
	struct pending_end *pending; /* ended runs whose end could not be stored yet (disk full) */
	unsigned nrunning, nqueued;
	unsigned nfinishing;         /* ended runs still writing their test cases */
	int stopping;
	/* Counters for /metrics. */
	uint64_t runs_created;
	uint64_t runs_finished[8];   /* by end state index (run_state_names) */
	void (*on_idle_change)(void *arg);
	void *idle_arg;
};

/* A validated request (strings owned by the caller). */
struct run_request {
	char image[65];
	char loader[65];            /* "" unless loader mode */
	const char *name;
	enum drv_platform platform; /* NONE = from the image */
	char **args;
	size_t nargs;
	char **uk_params;
	size_t nuk_params;
	char **env;                 /* "NAME=value", in the request's order */
	size_t nenv;
	unsigned memory_mb, vcpus, timeout_s; /* 0 = defaults */
	enum drv_accel accel;
	const char *machine;
	const char *driver;         /* NULL = the host's first driver serving the platform */
	const char *host;           /* NULL = any host that fits (labels, drivers, capacity) */
	char **require;             /* host labels the run needs (NULL-terminated), or NULL */
	int priority;               /* higher first; FIFO within one priority */
	unsigned retries;           /* attempts allowed again after a lost host */
	int success_code;           /* -1 = none */
	json_t *labels;             /* object of strings or NULL */
	int want_stdin;             /* the client will send the program's stdin (run_input) */
	char **binds;               /* absolute host directories shown read-only (policy checked by api.c) */
	size_t nbinds;
	const char *cwd;            /* absolute: where the program starts, or NULL */
};

extern const char *const run_state_names[];

/* Probe every compiled-in driver (blocking, at start-up) and mark lost runs. */
int run_manager_init(struct run_manager *mgr, uv_loop_t *loop, struct store *db,
                     struct image_store *images, const struct run_config *cfg);
/* Start a stop: no new runs (-ESHUTDOWN), queued runs end at once (125, "runnerd stopped
 * before the run started"); running guests go on to their own end. */
void run_manager_drain(struct run_manager *mgr);
/* Kill every active run as stopped (state error, 125, "runnerd stopped before the run
 * ended"); their ends are recorded as the loop keeps running. */
void run_manager_stop(struct run_manager *mgr);
void run_manager_fini(struct run_manager *mgr);
/* Periodic upkeep (once a second): the store's disk reserve, and ends of runs that could
 * not be recorded yet are written again until they are. */
void run_manager_maintain(struct run_manager *mgr);
/* Counters and gauges for /metrics. */
struct run_stats {
	uint64_t created;
	uint64_t finished[8]; /* by state index (run_state_names) */
	unsigned queued, running;
};
void run_manager_stats(const struct run_manager *mgr, struct run_stats *ret);
/* The local drivers: [{name, platforms, available, info | reason}] (a new array). */
json_t *run_manager_drivers(const struct run_manager *mgr);
/* Every host with its capacity, load and drivers; each driver with `available` and
 * `info` (its probe summary) or, when unavailable, `reason` (why). A new array. */
json_t *run_manager_hosts(const struct run_manager *mgr);
/* Why a queued run waits ("waiting for a host with label kvm"), or NULL. */
const char *run_waiting(const struct run_manager *mgr, int64_t id);
/* Add a host at run time (POST /v1/hosts): stored, then probed off the loop (health
 * "probing" until then). -EEXIST when the name is taken, -EINVAL bad values, -ENOSPC too
 * many hosts; *ret_err explains. */
int run_host_add(struct run_manager *mgr, const struct run_host_config *hc, char **ret_err);
/* Remove a host added at run time. -ENOENT unknown, -EPERM "local" or from runnerd.conf,
 * -EBUSY it has active runs (unless `drain`: it takes no new runs, its queued pinned runs
 * end, and it goes after its last running one: returns 1). 0 when removed at once. */
int run_host_remove(struct run_manager *mgr, const char *name, int drain, char **ret_err);
/* One host's JSON (as GET /v1/hosts lists it), or NULL when unknown. */
json_t *run_manager_host(const struct run_manager *mgr, const char *name);

/* Active runs: queued, running, and ended ones still recording their results. */
unsigned run_manager_active(const struct run_manager *mgr);

/* Record and queue a run. Errors: -ENOENT image missing, -ENOEXEC image not runnable on
 * the platform, -ENODEV driver unavailable here, -EAGAIN queue full, -EINVAL bad values,
 * -ESHUTDOWN stopping. *ret_err explains. */
int run_create(struct run_manager *mgr, const struct run_request *req, int64_t *ret_id,
               char **ret_err);
/* Cancel an active run: -ENOENT when it is not active. */
int run_cancel(struct run_manager *mgr, int64_t id);
/* The live console of an active run, or NULL. */
struct console *run_console(struct run_manager *mgr, int64_t id);
/* Path of a run's console log (malloc'd). */
char *run_console_path(const struct run_manager *mgr, int64_t id);
/* Path of a run's log of `stream` (DRV_STREAM_STDOUT/STDERR; malloc'd), which exists only
 * for a run with separate streams. */
char *run_stream_path(const struct run_manager *mgr, int64_t id, enum drv_stream stream);
/* The live log of `stream` of an active run with separate streams, or NULL. */
struct console *run_stream_console(struct run_manager *mgr, int64_t id, enum drv_stream stream);
/* Feed `len` bytes to an active run's stdin; len 0 closes it (EOF). -ENOENT: no active
 * run; -ENOTSUP: the run takes no stdin; -EAGAIN: not started yet or too much queued
 * (nothing taken, try again); -EPIPE: its stdin is closed. */
int run_input(struct run_manager *mgr, int64_t id, const char *buf, size_t len);

#endif
