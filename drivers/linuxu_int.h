/*
 * linuxu_int.h — internals of the linuxu driver, shared between its files
 * (linuxu.c: prepare, launch and the run; linuxu_sandbox.c: probing prlimit
 * and bwrap, building their command) and its unit tests.
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

/* Child fds of the prlimit/bwrap process. */
#define LINUXU_FD_STATUS 3 /* --json-status-fd */
#define LINUXU_FD_IMAGE 4  /* --ro-bind-data source when the image is not executable */

/* What probe found on this host (the driver's global state). */
struct linuxu_state {
	char *link_target[LINUXU_NHOST_DIRS]; /* symlink target, or NULL */
	int is_dir[LINUXU_NHOST_DIRS];
};

/* One run: the command, its libuv handles and what bwrap reported. */
struct drv_instance {
	struct cmd *cmd;
	char *image_path;
	char *note; /* told to the user at launch */
	int use_pty;
	int copy_image;

	uv_loop_t *loop;
	struct drv_callbacks cb;
	uv_process_t proc;
	uv_pipe_t console;
	uv_pipe_t status;
	uv_pipe_t ptym;
	uv_timer_t grace;
	int nhandles; /* open uv handles; freed when 0 after destroy */
	int proc_open, console_open, status_open, ptym_open, grace_open;

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

/* The command `prlimit LIMITS -- bwrap SANDBOX -- name`, ready for the guest's
 * arguments: `image_path` bound (or, with `copy_image`, copied from fd
 * LINUXU_FD_IMAGE) at /run/ukrun/`name`, memory and file size capped at
 * `limit_bytes`, TERM set when the guest gets a terminal (`use_pty`).
 * `st` may be NULL (no host directories mirrored). */
struct cmd *linuxu_sandbox_cmd(const struct linuxu_state *st, const char *image_path, const char *name,
                               int copy_image, unsigned long long limit_bytes, int use_pty);

/* ---- linuxu.c ---- */

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

/* Consume the complete lines in inst->sbuf (calls cb.started on child-pid). */
void linuxu_status_consume(struct drv_instance *inst);

#endif
