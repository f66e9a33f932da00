/*
 * driver.h — the driver table: how runnerd launches a guest.
 *
 * One driver per file (qemu.c, linuxu.c, ...), each exporting one
 * `const struct driver` listed in drivers.c. The core (runnerd/run.c) owns
 * the run; a driver only turns a `struct drv_spec` into a running guest and
 * reports console bytes, notes and exactly one outcome through callbacks on
 * the loop. Drivers never touch HTTP or sqlite, never log above debug and
 * never call exit(). A NULL slot in the table means "unsupported".
 *
 * Errors: functions return >= 0 on success, negative errno on failure, and
 * fill *ret_err (malloc'd, caller frees) with a message naming the object.
 */
#ifndef UKRUN_DRIVER_H
#define UKRUN_DRIVER_H

#include <stddef.h>
#include <uv.h>

#include "platform.h"


/* Static capabilities of a driver. */
#define DRV_CAP_ARGS (1u << 0)   /* passes arguments to the guest */
#define DRV_CAP_MEMORY (1u << 1) /* honours memory_mb */
#define DRV_CAP_VCPUS (1u << 2)  /* honours vcpus */
#define DRV_CAP_INITRD (1u << 3) /* can pass an initrd (loader mode) */
#define DRV_CAP_REMOTE (1u << 4) /* can run on another host */
#define DRV_CAP_STREAMS (1u << 5) /* reports a plain program's stdout and stderr apart (DRV_STREAM_*) */
#define DRV_CAP_STDIN (1u << 6)   /* forwards the caller's stdin (DRV_F_STDIN, `input`) */
#define DRV_CAP_BINDS (1u << 7)   /* shows host directories read-only (binds) and starts in `cwd` */

/* Flags of a drv_spec. */
#define DRV_F_UNIKRAFT (1u << 0) /* image is a Unikraft kernel: `--` argument rule, 41/42 meaning of 0x501 */
#define DRV_F_LOADER (1u << 1)   /* loader mode: image = elfloader kernel, initrd = Linux program */
#define DRV_F_ENV (1u << 2)      /* the Unikraft kernel takes `env.vars=[...]` (posix_environ's libparam) */
#define DRV_F_STDIN (1u << 3)    /* the program's stdin is a pipe fed through `input` (else /dev/null) */
#define DRV_F_STREAMS (1u << 4)  /* report stdout and stderr apart (DRV_CAP_STREAMS, plain programs only) */

/* Which output stream console bytes came from. */
enum drv_stream {
	DRV_STREAM_CONSOLE = 0, /* the one console: serial line, terminal, or stdout+stderr merged */
	DRV_STREAM_STDOUT,      /* the program's stdout (DRV_F_STREAMS) */
	DRV_STREAM_STDERR,      /* the program's stderr (DRV_F_STREAMS) */
};

/* Accelerator request for hardware-virtualising drivers. */
enum drv_accel {
	DRV_ACCEL_AUTO = 0, /* KVM when usable, else TCG; KVM failure mid-boot → retry under TCG */
	DRV_ACCEL_KVM,      /* KVM only: fail if unusable */
	DRV_ACCEL_TCG,      /* software emulation only */
};

/* What to run. Owned by the core; valid from prepare until destroy. */
struct drv_spec {
	const char *run_id;       /* short printable id, used in names (e.g. "ukrun-<id>") */
	const char *image_path;   /* kernel / ELF on the local disk, read-only */
	const char *image_name;   /* the user's file name (hint only; argv[0] for linuxu) */
	const char *initrd_path;  /* loader mode: the Linux program; else NULL */
	const char *workdir;      /* per-run private directory (sockets, pidfiles); exists */
	char *const *args;        /* guest arguments (what reaches main after argv[0]) */
	size_t nargs;
	char *const *uk_params;   /* Unikraft library parameters, placed before `--` */
	size_t nuk_params;
	char *const *env;         /* "NAME=value" for the program; the core passes it only where it can
	                           * arrive: a plain Linux program on linuxu, or DRV_F_ENV */
	size_t nenv;
	unsigned memory_mb;       /* 0 = driver default */
	unsigned vcpus;           /* 0 = driver default (1) */
	enum drv_accel accel;
	const char *machine;      /* qemu machine override ("microvm", "pc", ...); NULL = default */
	unsigned flags;           /* DRV_F_* */
	/* DRV_CAP_BINDS: host directories the program sees read-only at the same path, the
	 * directory it starts in (NULL, or not under a bind: the driver's own), and paths under
	 * those binds that it must not see (runnerd's data directory and socket). */
	char *const *binds;
	size_t nbinds;
	const char *cwd;
	char *const *hide;
	size_t nhide;
};

/* How a guest ended. Exactly one is reported per launch. */
enum drv_end {
	DRV_END_EXIT,       /* process exited: value = exit status */
	DRV_END_SIGNAL,     /* process killed by signal: value = signal number */
	DRV_END_DEBUG_EXIT, /* qemu isa-debug-exit: value = the value the guest wrote (QEMU status >> 1) */
	DRV_END_DEBUG_EXIT_UNKNOWN, /* QEMU ended on its own (isa-debug-exit) but the value cannot be seen (libvirt) */
	DRV_END_POWEROFF,   /* clean power-off / halt with no code (ACPI, Xen poweroff) */
	DRV_END_RESET,      /* reset / triple fault under -no-reboot (a crash for a unikernel) */
	DRV_END_PANIC,      /* guest panic device (pvpanic, Xen crash) */
	DRV_END_KILLED,     /* ended because the core asked (drv kill): timeout, cancel, console verdict */
	DRV_END_ERROR,      /* could not start or run the guest; message says why. value 0: infrastructure
	                     * failure (125); value ENOEXEC: the image cannot run on this driver (126) */
	DRV_END_HOST_LOST,  /* the host went away under the guest (its libvirtd died or cannot be reached):
	                     * nothing is known of how the guest ended; message names the host (125, state
	                     * lost, or a retry elsewhere when the run allows one) */
};

struct drv_outcome {
	enum drv_end end;
	int value;
	const char *message; /* optional detail (borrowed, valid during the callback) */
};

/* Callbacks, all called on the loop thread. `ctx` is the core's run. */
struct drv_callbacks {
	/* Guest console bytes, in order within each stream, byte-exact. Without DRV_F_STREAMS
	 * every byte is DRV_STREAM_CONSOLE; with it, the program's stdout and stderr bytes come
	 * tagged as they are read (their order across the two streams is the order of reading). */
	void (*console)(void *ctx, enum drv_stream stream, const char *buf, size_t len);
	/* A one-line diagnostic worth telling the user (e.g. "KVM failed: retrying under TCG").
	 * `key`/`value` optionally record a fact in the run (e.g. "accel", "tcg"); either may be NULL. */
	void (*note)(void *ctx, const char *key, const char *value, const char *message);
	/* The guest has started (first instruction can run). Optional for the driver to call. */
	void (*started)(void *ctx);
	/* The guest is gone and all its output was delivered. Called exactly once per launch. */
	void (*exit)(void *ctx, const struct drv_outcome *outcome);
	void *ctx;
};

struct drv_instance; /* driver-private, one per run */

/* The host a driver is probed for, with its configuration. runnerd probes every driver
 * once per host: the local host ("local", uri NULL) with runnerd's settings as options,
 * and each configured remote host with its libvirt URI. */
struct drv_host {
	const char *name;     /* "local", or the host's configured name */
	const char *uri;      /* the host's libvirt URI; NULL: this machine (each driver's own default) */
	char *const *options; /* "key=value" settings, NULL-terminated (NULL: none), e.g.
	                       * "libvirt-uri=qemu:///system", "xen-uri=xen:///system" */
};

/* The value of option `key` of `host`, or NULL. */
const char *drv_host_option(const struct drv_host *host, const char *key);

/* Flags for kill. */
#define DRV_KILL_FORCE (1u << 0) /* SIGKILL / destroy at once, no graceful shutdown */

struct driver {
	const char *name;     /* "qemu", "linuxu", ... */
	unsigned platforms;   /* DRV_PLATFORM_* served */
	unsigned caps;        /* DRV_CAP_* */

	/* Is this driver usable on `host`? Called once per host at daemon start, may block
	 * briefly (runs before the daemon serves). Stores the driver's state for that host in
	 * *ret_state (freed by `unprobe`) and a one-line human summary in *ret_info
	 * (e.g. "qemu 7.2.22, KVM usable, cpu host,-arch-capabilities"). -ENOTSUP: the driver
	 * does not apply to that host at all (a local-only driver on a remote host). */
	int (*probe)(const struct drv_host *host, void **ret_state, char **ret_info, char **ret_err);
	void (*unprobe)(void *state);

	/* Validate the spec and build everything (argv, XML) with no side effects. */
	int (*prepare)(void *state, const struct drv_spec *spec, struct drv_instance **ret_inst,
	               char **ret_err);

	/* Start the guest asynchronously on `loop`. On success the driver reports through `cb`
	 * and calls cb->exit exactly once. On failure nothing is reported (cb->exit is not called). */
	int (*launch)(struct drv_instance *inst, uv_loop_t *loop, const struct drv_callbacks *cb,
	              char **ret_err);

	/* Stop the guest; it still ends through cb->exit (end = DRV_END_KILLED). Idempotent.
	 * Resumes a throttled console, so the guest's end is seen. */
	int (*kill)(struct drv_instance *inst, unsigned flags);

	/* Stop (paused = 1) or resume (0) reading the guest's console, so a guest writing
	 * faster than the core wants blocks on its full output pipe instead of costing the
	 * daemon a core (the core throttles past the console cap). Idempotent. */
	int (*throttle)(struct drv_instance *inst, int paused);

	/* Write `len` bytes to the program's stdin (DRV_F_STDIN); len 0 closes it (EOF). The
	 * driver copies the bytes. Returns how many bytes are queued and not yet taken by the
	 * program (the caller holds back past a bound), -EPIPE once the program's stdin is
	 * closed (by EOF, or the program exited or closed it). */
	int (*input)(struct drv_instance *inst, const char *buf, size_t len);

	/* How much the guest has computed so far, in ns: the CPU time of its process's threads plus
	 * the time they were runnable and waiting for a host CPU (procbusy.h), plus a second for
	 * each reading that finds one of them running, runnable or in uninterruptible sleep
	 * (schedstat adds run-queue wait only once a thread runs again, and never counts D). It hardly moves while the guest's vCPUs are halted. The core samples it in loader mode to end a run soon
	 * after libtest's summary once the kernel idles (a stock elfloader never exits). Called on
	 * the loop, must not block. -ENOTSUP (or NULL): the driver cannot tell; the core then waits
	 * for the console grace period. */
	int (*guest_busy)(struct drv_instance *inst, uint64_t *ret_ns);

	/* Release everything. Safe after cb->exit, after a failed launch, or after prepare only.
	 * Frees asynchronously if handles must close; the core never touches inst afterwards. */
	void (*destroy)(struct drv_instance *inst);

	/* Remove what a dead daemon left behind: guest processes named by pidfiles in the
	 * workdirs of the runs it left active (`lost_ids`, their workdirs are
	 * runs_dir/<id>), libvirt domains it owned. Called once at daemon start after probe,
	 * before any run; `runs_dir` names the daemon's runs (the parent of every
	 * spec->workdir), which tells this daemon's leftovers from another's. Returns how
	 * many guests it removed, or a negative errno with *ret_err. */
	int (*reap)(void *state, const char *runs_dir, const char *const *lost_ids, size_t nlost, char **ret_err);

	/* Is the host still reachable? Called on the loop about once a second; must not block.
	 * 0, or a negative errno with *ret_err (e.g. the connection to a remote libvirtd died).
	 * A host found down takes no new runs; once its runs are gone the core unprobes it and
	 * probes it again, with back-off, until it answers. NULL: always healthy. */
	int (*health)(void *state, char **ret_err);
};

extern const struct driver drv_qemu;
extern const struct driver drv_linuxu;
extern const struct driver drv_libvirt;
extern const struct driver drv_xen;

/* All compiled-in drivers, NULL-terminated (drivers.c). */
extern const struct driver *const drv_table[];

/* Kill the processes a dead daemon left behind in the workdirs of runs `ids`
 * (runs_dir/<id>): each pid named by the file `pidfile` there whose process still names
 * that workdir as a whole path component on its command line (a recycled pid is
 * spared). Returns how many were killed (pidreap.c). */
int drv_reap_pidfiles(const char *runs_dir, const char *const *ids, size_t nids, const char *pidfile);
/* 1 when `cmdline` (a process's command line, NULs made spaces) names directory `dir`
 * as a whole path component, "DIR/...": run 1's directory never matches run 12's. */
int drv_cmdline_names(const char *cmdline, const char *dir);

/* The driver serving `platform`, or NULL. */
const struct driver *drv_for_platform(enum drv_platform platform);


#endif
