/*
 * linuxu_int.h — internals of the linuxu driver, shared between its files
 * (linuxu.c: prepare, launch and the run; linuxu_sandbox.c: probing prlimit,
 * bwrap and the uid switch, which binds a run gets, building their command; linuxu_stdin.c:
 * the program's stdin) and its unit tests.
 */
#ifndef UKRUN_LINUXU_INT_H
#define UKRUN_LINUXU_INT_H

#include <stddef.h>
#include <stdint.h>

#include "command.h"
#include "driver.h"

#define LINUXU_STATUS_MAX 4096 /* bwrap writes two short JSON lines */
#define LINUXU_TAIL_MAX 1024   /* console tail kept to explain a sandbox failure */
#define LINUXU_NHOST_DIRS 6    /* host top-level directories mirrored in the sandbox */
#define LINUXU_STDIN_MAX (1u << 20) /* stdin bytes queued and not yet read by the program */

/* Per-run uids of a root daemon: a reserved range above systemd's container
 * range (524288-1879048191) and below 2^31, which no distribution assigns. */
#define LINUXU_UID_BASE 1879048192u /* 0x70000000 */
#define LINUXU_UID_COUNT 65536u

/* Child fds of the bwrap process. */
#define LINUXU_FD_STATUS 3 /* --json-status-fd */
#define LINUXU_FD_IMAGE 4  /* --ro-bind-data source when the image is not executable */

/* How a run gets a process budget of its own (the run's "limits" fact).
 * RLIMIT_NPROC counts the processes of a uid; since Linux 5.14 it counts them
 * per user namespace too, so a limit set inside the run's own user namespace
 * counts that run's processes only. Root is exempt from it altogether. */
enum linuxu_limits {
	LINUXU_LIMITS_NONE,   /* root daemon that cannot switch uid: no process limit holds */
	LINUXU_LIMITS_UID,    /* root daemon: the sandbox runs as a per-run uid (in its own user namespace) */
	LINUXU_LIMITS_USERNS, /* unprivileged daemon: the run's own user namespace */
	LINUXU_LIMITS_SHARED, /* kernel < 5.14: the limit counts all processes of the daemon's uid */
};

/* What probe found on this host (the driver's global state). */
struct linuxu_state {
	char *link_target[LINUXU_NHOST_DIRS]; /* symlink target, or NULL */
	int is_dir[LINUXU_NHOST_DIRS];
	enum linuxu_limits limits;
	char *limits_why;   /* LINUXU_LIMITS_SHARED/NONE: why no better mechanism works */
	char *prlimit_path; /* prlimit as seen inside the sandbox (under /usr or a mirrored dir) */
	unsigned uid_next;  /* LINUXU_LIMITS_UID: next slot to try (starts at random) */
	unsigned char uid_used[LINUXU_UID_COUNT / 8];
};

/* What one sandbox gets (linuxu_sandbox_cmd). */
struct linuxu_sandbox {
	const char *image_path; /* bound at /run/ukrun/NAME, or copied from fd LINUXU_FD_IMAGE */
	const char *name;       /* the guest's argv[0] */
	int copy_image;
	int use_pty;                    /* TERM is set: the guest gets a terminal on stdin */
	unsigned long long limit_bytes; /* data size, each writable tmpfs; file size + 1 MiB */
	unsigned nproc;                 /* processes (RLIMIT_NPROC, set inside the user namespace) */
	unsigned uid;                   /* LINUXU_LIMITS_UID: run as this uid; else 0 */
	char *const *env;               /* "NAME=value" set in the process environment */
	size_t nenv;
	char *const *binds;             /* host directories shown read-only at the same path */
	size_t nbinds;
	const char *cwd;                /* start here when under a bind; else /tmp */
	char *const *hide;              /* under a bind, shadowed: directories by an empty tmpfs, others by /dev/null */
	size_t nhide;
};

/* One run: the command, its libuv handles and what bwrap reported. */
struct drv_instance {
	struct cmd *cmd;
	char *image_path;
	char *note; /* told to the user at launch */
	char *bind_note; /* binds the run's uid cannot read, left out (told at launch) */
	char **binds;    /* the binds shown (a NULL-terminated copy) */
	size_t nbinds;
	char *refusal; /* set: the image cannot run here; launch reports it (exit 126) */
	int use_pty;
	int copy_image;
	int split;      /* stderr on a pipe of its own (DRV_F_STREAMS) */
	int want_stdin; /* stdin is a pipe fed by `input` (DRV_F_STDIN) */
	struct linuxu_state *st; /* owner of `uid` */
	unsigned uid;            /* per-run uid taken from st, or 0 */
	unsigned nproc;
	char limits_value[16]; /* the run's "limits" fact */
	char *limits_note;     /* why that budget is not the run's own, or NULL */

	uv_loop_t *loop;
	struct drv_callbacks cb;
	uv_poll_t proc; /* the sandbox's pidfd (cmd_start): readable once it exited */
	int pidfd;
	pid_t pid;      /* bwrap, leader of its own session and process group */
	uv_pipe_t console;
	uv_pipe_t errpipe; /* the program's stderr when split */
	uv_pipe_t stdin_pipe;
	uv_shutdown_t stdin_shutdown;
	size_t stdin_queued; /* bytes given to uv_write and not yet written */
	int stdin_eof;       /* EOF asked (or the pipe failed): no more input */
	uv_pipe_t status;
	uv_pipe_t ptym;
	uv_timer_t grace;
	int nhandles; /* open uv handles; freed when 0 after destroy */
	int proc_open, console_open, status_open, ptym_open, grace_open, err_open, stdin_open;

	int launched, exited, reported, kill_requested, destroyed;
	int64_t exit_status;
	int term_signal;

	long child_pid;
	int have_exit_code;
	int exit_code;
	char sbuf[LINUXU_STATUS_MAX];
	size_t slen;

	char tail[LINUXU_TAIL_MAX];
	size_t tail_len;

	char rbuf[65536];
	char pbuf[1024];
};

/* ---- linuxu_sandbox.c ---- */

/* Check that prlimit and bwrap work here (bwrap can create namespaces) and
 * record the host's top-level directory layout in a malloc'd struct
 * linuxu_state (*ret_state). Returns 0 with *ret_info, or a negative errno
 * with *ret_err. */
int linuxu_probe(void **ret_state, char **ret_info, char **ret_err);

/* Free a state from linuxu_probe (NULL is a no-op). */
void linuxu_unprobe(void *state);

/* The command `bwrap SANDBOX -- prlimit NPROC -- NAME`, ready for the guest's
 * arguments (see struct linuxu_sandbox), with the rlimits and (sb->uid) the uid that
 * cmd_start sets before the exec. Every writable mount is a tmpfs of `limit_bytes`;
 * the rest is read-only.
 * `st` may be NULL (no host directories mirrored, prlimit from PATH). */
struct cmd *linuxu_sandbox_cmd(const struct linuxu_state *st, const struct linuxu_sandbox *sb);

/* The run's process budget for `memory_mb` of memory under `limits`. */
unsigned linuxu_nproc(enum linuxu_limits limits, unsigned memory_mb);

/* Take a free per-run uid (LINUXU_LIMITS_UID) into *ret_uid: 0, or -EAGAIN
 * when all LINUXU_UID_COUNT are in use. */
int linuxu_uid_take(struct linuxu_state *st, unsigned *ret_uid);

/* Give back a uid from linuxu_uid_take (0 is a no-op). */
void linuxu_uid_release(struct linuxu_state *st, unsigned uid);

/* The name of a limits mechanism ("uid", "userns", "shared", "none"). */
const char *linuxu_limits_name(enum linuxu_limits limits);

/* The binds the run can use (inst->binds, a copy): all of the spec's, except under a
 * per-run uid those it could not reach, which inst->bind_note names. 0 or -ENOMEM. */
int linuxu_plan_binds(struct drv_instance *inst, const struct drv_spec *spec);

/* ---- linuxu_stdin.c ---- */

/* The driver's `input` (driver.h). */
int linuxu_input(struct drv_instance *inst, const char *buf, size_t len);

/* ---- linuxu.c ---- */

/* Close one of the run's handles once (the flag says it is open); freed when all are. */
void linuxu_close_handle(struct drv_instance *inst, uv_handle_t *h, int *open_flag);

/* Set *ret_err (when ret_err is not NULL) to a malloc'd message. */
void linuxu_set_err(char **ret_err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The guest's argv[0], a single valid path component (malloc'd; NULL = ENOMEM). */
char *linuxu_guest_name(const struct drv_spec *spec);

/* Append the guest's arguments to `cmd`: [PARAMS..., "--", ARGS...] for a
 * Unikraft image with libukparam (`libparam`), with linuxu.heap_size=`heap_mb`
 * added when > 0 and not given; ARGS only otherwise. */
void linuxu_append_guest_args(struct cmd *cmd, const struct drv_spec *spec, int libparam,
                              unsigned heap_mb);

/* 1 when the ELF at `path` carries Unikraft library parameters, else 0. */
int linuxu_image_has_libparam(const char *path);

/* Parse one --json-status-fd line: a bit set (1 = child-pid, 2 = exit-code
 * found), or -EINVAL when it is not a JSON object. */
int linuxu_parse_status_line(const char *line, size_t len, long *ret_child_pid, int *ret_exit_code);

/* Map bwrap's exit code to an outcome (128+s of a fatal signal = DRV_END_SIGNAL s). */
void linuxu_map_exit_code(int code, struct drv_outcome *o);

/* 1 when a process of a uid of its own (neither owner nor group) can reach and list
 * directory `path`: every directory on the way searchable by others, itself readable. */
int linuxu_dir_open_to_others(const char *path);

/* 1 when `path` is `dir` or below it. */
int linuxu_path_within(const char *path, const char *dir);

/* Consume the complete lines in inst->sbuf (calls cb.started on child-pid). */
void linuxu_status_consume(struct drv_instance *inst);

#endif
