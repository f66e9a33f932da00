/*
 * linuxu.c — the linuxu driver: run an x86-64 Linux ELF (a Unikraft linuxu
 * image or any Linux program) as a sandboxed process.
 *
 * The command line is `bwrap SANDBOX -- prlimit --nproc=N -- NAME ARGS`, built
 * by linuxu_sandbox.c, started by cmd_start with the run's rlimits and uid set
 * in the child before bwrap (a failure there ends the launch with the step
 * that failed), and watched through its pidfd. bwrap reports on --json-status-fd `{"child-pid": N}`
 * then `{"exit-code": N}`; the latter only once its setup reached a successful
 * execvp, which is how a sandbox failure (DRV_END_ERROR) is told from a guest
 * that exited 1.
 *
 * bwrap (0.8) reports a child killed by signal s as exit code 128+s, exactly
 * like a child that exited 128+s; the two cannot be told apart. A code
 * 128+s where s is a signal whose default action terminates is reported as
 * DRV_END_SIGNAL s (the ukrun exit code is 128+s either way).
 *
 * An image that is not an x86-64 Linux ELF (a script, a text file: a user can
 * force any file onto linuxu) is refused at prepare and ends at launch with
 * DRV_END_ERROR / ENOEXEC (exit 126) and detect's description of it, rather
 * than reaching execvp, which would hand it to /bin/sh.
 *
 * A plain program's stdout and stderr go to two pipes when the core asks for
 * them apart (DRV_F_STREAMS), each reported with its tag; their order across the
 * two is the order the loop reads them in. Otherwise (and always for a Unikraft
 * image, whose console is one stream) they share one pipe. Unikraft linuxu images
 * refuse to start without a terminal on stdin, so they get the slave of a
 * pseudo-terminal there; plain programs get a pipe fed by `input` (DRV_F_STDIN)
 * or /dev/null.
 */
#include "linuxu_int.h"
#include "detect.h"
#include "tailbuf.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define LINUXU_DEFAULT_MEMORY_MB 2048u
#define LINUXU_UK_HEAP_SLACK_MB 64u   /* Unikraft maps its heap; the rest of the process needs room too */
#define LINUXU_GRACE_MS 1000          /* after exit, how long to wait for the console to reach EOF */
#define LINUXU_DETECT_BYTES 65536u    /* head of the image read to check it is a Linux ELF */

void linuxu_set_err(char **ret_err, const char *fmt, ...)
{
	if (!ret_err)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(ret_err, fmt, ap) < 0)
		*ret_err = NULL;
	va_end(ap);
}

/* ---- pure helpers (unit-tested) ---- */

/* The guest's argv[0]: base name of the user's file name (or the path), never
 * empty, "." or "..", so it is a valid single path component. malloc'd. */
char *linuxu_guest_name(const struct drv_spec *spec)
{
	const char *src = spec->image_name && *spec->image_name ? spec->image_name : spec->image_path;
	const char *base = src ? strrchr(src, '/') : NULL;
	base = base ? base + 1 : src;
	if (!base || !*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		base = "guest";
	return strdup(base);
}

static int has_heap_param(const struct drv_spec *spec)
{
	for (size_t i = 0; i < spec->nuk_params; i++)
		if (strncmp(spec->uk_params[i], "linuxu.heap_size=", 17) == 0)
			return 1;
	return 0;
}

/* Guest argv after the program name. Unikraft images that parse library
 * parameters take [PARAMS..., "--", ARGS...] (only ARGS reach main); images
 * built without libukparam hand every word to main, so they get ARGS only
 * (plus PARAMS and "--" when the user insists on giving parameters).
 * `heap_mb` > 0 adds linuxu.heap_size unless the user set it. */
void linuxu_append_guest_args(struct cmd *cmd, const struct drv_spec *spec, int libparam,
                              unsigned heap_mb)
{
	int env = (spec->flags & (DRV_F_UNIKRAFT | DRV_F_ENV)) == (DRV_F_UNIKRAFT | DRV_F_ENV);
	int split = (spec->flags & DRV_F_UNIKRAFT) && (libparam || env || spec->nuk_params > 0);
	if (split) {
		for (size_t i = 0; i < spec->nuk_params; i++)
			cmd_arg(cmd, spec->uk_params[i]);
		if (env) {
			/* argv words as uklibparam tokenises them: `env.vars=[` NAME=value... `]` */
			cmd_arg(cmd, "env.vars=[");
			for (size_t i = 0; i < spec->nenv; i++)
				cmd_arg(cmd, spec->env[i]);
			cmd_arg(cmd, "]");
		}
		if (libparam && heap_mb > 0 && !has_heap_param(spec))
			cmd_argf(cmd, "linuxu.heap_size=%u", heap_mb);
		cmd_arg(cmd, "--");
	}
	for (size_t i = 0; i < spec->nargs; i++)
		cmd_arg(cmd, spec->args[i]);
}

/* Parse one line bwrap wrote on --json-status-fd. Returns a bit set: 1 when it
 * held "child-pid", 2 when it held "exit-code"; -EINVAL when not a JSON object. */
int linuxu_parse_status_line(const char *line, size_t len, long *ret_child_pid, int *ret_exit_code)
{
	json_error_t jerr;
	json_t *doc = json_loadb(line, len, 0, &jerr);
	if (!doc || !json_is_object(doc)) {
		json_decref(doc);
		return -EINVAL;
	}
	int found = 0;
	json_t *v = json_object_get(doc, "child-pid");
	if (json_is_integer(v)) {
		*ret_child_pid = (long)json_integer_value(v);
		found |= 1;
	}
	v = json_object_get(doc, "exit-code");
	if (json_is_integer(v)) {
		*ret_exit_code = (int)json_integer_value(v);
		found |= 2;
	}
	json_decref(doc);
	return found;
}

/* Signals whose default action ends the process: only these can hide behind
 * bwrap's 128+s. */
static int is_fatal_signal(int s)
{
	switch (s) {
	case SIGHUP: case SIGINT: case SIGQUIT: case SIGILL: case SIGTRAP: case SIGABRT:
	case SIGBUS: case SIGFPE: case SIGKILL: case SIGUSR1: case SIGSEGV: case SIGUSR2:
	case SIGPIPE: case SIGALRM: case SIGTERM: case SIGSTKFLT: case SIGXCPU: case SIGXFSZ:
	case SIGVTALRM: case SIGPROF: case SIGIO: case SIGPWR: case SIGSYS:
		return 1;
	default:
		return 0;
	}
}

void linuxu_map_exit_code(int code, struct drv_outcome *o)
{
	if (code > 128 && is_fatal_signal(code - 128)) {
		o->end = DRV_END_SIGNAL;
		o->value = code - 128;
	} else {
		o->end = DRV_END_EXIT;
		o->value = code;
	}
}

/* Does the ELF carry Unikraft library parameters (libukparam)? Old releases
 * emit sections "<lib>__param_arg", newer ones ".uk_libparam*". Bounded reads
 * of the section header table only. */
int linuxu_image_has_libparam(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int found = 0;
	Elf64_Shdr *sh = NULL;
	char *names = NULL;
	Elf64_Ehdr eh;
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum == 0 ||
	    eh.e_shnum > 4096 || eh.e_shstrndx >= eh.e_shnum)
		goto cleanup;
	size_t shsz = (size_t)eh.e_shnum * sizeof(Elf64_Shdr);
	sh = malloc(shsz);
	if (!sh || pread(fd, sh, shsz, (off_t)eh.e_shoff) != (ssize_t)shsz)
		goto cleanup;
	Elf64_Shdr *strsh = &sh[eh.e_shstrndx];
	if (strsh->sh_size == 0 || strsh->sh_size > (1u << 20))
		goto cleanup;
	names = malloc(strsh->sh_size + 1);
	if (!names || pread(fd, names, strsh->sh_size, (off_t)strsh->sh_offset) != (ssize_t)strsh->sh_size)
		goto cleanup;
	names[strsh->sh_size] = '\0';
	for (size_t i = 0; i < eh.e_shnum && !found; i++) {
		if (sh[i].sh_name >= strsh->sh_size)
			continue;
		const char *n = names + sh[i].sh_name;
		found = strncmp(n, ".uk_libparam", 12) == 0 || strstr(n, "__param_arg") != NULL;
	}
cleanup:
	free(names);
	free(sh);
	close(fd);
	return found;
}

/* ---- prepare ---- */

static void instance_free(struct drv_instance *inst)
{
	linuxu_uid_release(inst->st, inst->uid);
	cmd_free(inst->cmd);
	free(inst->image_path);
	free(inst->note);
	free(inst->bind_note);
	for (size_t i = 0; inst->binds && inst->binds[i]; i++)
		free(inst->binds[i]);
	free(inst->binds);
	free(inst->refusal);
	free(inst->limits_note);
	free(inst);
}

/* Is the image at `path` an x86-64 Linux ELF? 0 if so; -ENOEXEC with a
 * malloc'd reason in *ret_why when it is not; another -errno when it cannot
 * be read. Reads the head only: that is where the ELF and program headers are. */
static int image_check(const char *path, const char *name, char **ret_why)
{
	*ret_why = NULL;
	unsigned char *buf = malloc(LINUXU_DETECT_BYTES);
	if (!buf)
		return -ENOMEM;
	int r = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, buf, LINUXU_DETECT_BYTES, 0) : -1;
	if (n < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	struct detect_result d;
	if (r == 0 && detect_buffer(buf, (size_t)n, name, &d) == 0 && d.platform != DRV_PLATFORM_LINUXU) {
		if (asprintf(ret_why, "'%s' is not an x86-64 Linux program: %s", name, d.summary) < 0) {
			*ret_why = NULL; /* asprintf leaves it undefined */
			r = -ENOMEM;
		} else {
			r = -ENOEXEC;
		}
	}
	free(buf);
	return r;
}

static int linuxu_prepare(void *state, const struct drv_spec *spec, struct drv_instance **ret_inst,
                          char **ret_err)
{
	struct linuxu_state *st = state;
	if (!spec->image_path) {
		linuxu_set_err(ret_err, "linuxu: no image given");
		return -EINVAL;
	}
	struct stat sb;
	if (stat(spec->image_path, &sb) < 0) {
		int e = -errno;
		linuxu_set_err(ret_err, "Image '%s': %s", spec->image_path, strerror(-e));
		return e;
	}
	if (!S_ISREG(sb.st_mode)) {
		linuxu_set_err(ret_err, "Image '%s' is not a regular file", spec->image_path);
		return -EINVAL;
	}
	if (spec->flags & DRV_F_LOADER) {
		linuxu_set_err(ret_err, "linuxu cannot run loader mode (it needs the qemu driver)");
		return -EOPNOTSUPP;
	}

	struct drv_instance *inst = calloc(1, sizeof(*inst));
	char *name = linuxu_guest_name(spec);
	if (!inst || !name) {
		free(inst);
		free(name);
		return -ENOMEM;
	}
	/* bwrap resolves a relative bind source against its own cwd. */
	inst->image_path = realpath(spec->image_path, NULL);
	inst->use_pty = !!(spec->flags & DRV_F_UNIKRAFT);
	inst->split = !inst->use_pty && (spec->flags & DRV_F_STREAMS);
	inst->want_stdin = !inst->use_pty && (spec->flags & DRV_F_STDIN);
	inst->copy_image = (sb.st_mode & 0111) == 0 || access(spec->image_path, X_OK) < 0;
	int r = image_check(spec->image_path, name, &inst->refusal);
	if (r < 0 && r != -ENOEXEC) {
		linuxu_set_err(ret_err, "Image '%s': %s", spec->image_path, strerror(-r));
		free(name);
		instance_free(inst);
		return r;
	}
	if (r == -ENOEXEC) {
		/* Nothing to build: launch reports the refusal as the run's end. */
		free(name);
		*ret_inst = inst;
		return 0;
	}
	enum linuxu_limits limits = st ? st->limits : LINUXU_LIMITS_NONE;
	if (limits == LINUXU_LIMITS_UID) {
		if ((r = linuxu_uid_take(st, &inst->uid)) < 0) {
			linuxu_set_err(ret_err, "linuxu: all %u per-run uids are in use", LINUXU_UID_COUNT);
			free(name);
			instance_free(inst);
			return r;
		}
		inst->st = st;
		/* The store may be closed to other uids; bwrap reads the image from an fd. */
		inst->copy_image = 1;
	}
	snprintf(inst->limits_value, sizeof(inst->limits_value), "%s", linuxu_limits_name(limits));
	if (st && st->limits_why &&
	    asprintf(&inst->limits_note, "the run's process limit is not its own: %s", st->limits_why) < 0)
		inst->limits_note = NULL;

	int libparam = (spec->flags & DRV_F_UNIKRAFT) && linuxu_image_has_libparam(spec->image_path);
	unsigned mem = spec->memory_mb ? spec->memory_mb : LINUXU_DEFAULT_MEMORY_MB;
	unsigned heap_mb = libparam ? spec->memory_mb : 0;
	unsigned long long limit = (unsigned long long)(mem + (heap_mb ? LINUXU_UK_HEAP_SLACK_MB : 0)) << 20;
	if ((spec->flags & DRV_F_UNIKRAFT) && !libparam && spec->nuk_params > 0 &&
	    asprintf(&inst->note, "image '%s' has no library-parameter support: "
	             "its main sees the parameters and '--'", name) < 0)
		inst->note = NULL;

	inst->nproc = linuxu_nproc(limits, mem);
	if (linuxu_plan_binds(inst, spec) < 0) {
		free(name);
		instance_free(inst);
		return -ENOMEM;
	}
	struct linuxu_sandbox box = {
		.image_path = inst->image_path ? inst->image_path : spec->image_path,
		.name = name,
		.copy_image = inst->copy_image,
		.use_pty = inst->use_pty,
		.limit_bytes = limit,
		.nproc = inst->nproc,
		.uid = inst->uid,
		/* A Unikraft image's environment travels as a library parameter instead. */
		.env = (spec->flags & DRV_F_UNIKRAFT) ? NULL : spec->env,
		.nenv = (spec->flags & DRV_F_UNIKRAFT) ? 0 : spec->nenv,
		.binds = inst->binds,
		.nbinds = inst->nbinds,
		.cwd = spec->cwd,
		.hide = spec->hide,
		.nhide = spec->nhide,
	};
	struct cmd *c = linuxu_sandbox_cmd(st, &box);
	linuxu_append_guest_args(c, spec, libparam, heap_mb);
	cmd_die_with_daemon(c);
	inst->cmd = c;
	free(name);
	if (!inst->image_path) {
		instance_free(inst);
		return -ENOMEM;
	}
	*ret_inst = inst;
	return 0;
}

/* ---- run ---- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct drv_instance *inst = h->data;
	if (h == (uv_handle_t *)&inst->proc)
		close_fd(&inst->pidfd); /* only once nothing polls it */
	if (--inst->nhandles == 0 && inst->destroyed)
		instance_free(inst);
}

void linuxu_close_handle(struct drv_instance *inst, uv_handle_t *h, int *open_flag)
{
	if (!*open_flag)
		return;
	*open_flag = 0;
	if (h->type == UV_NAMED_PIPE || h->type == UV_TTY)
		uv_read_stop((uv_stream_t *)h);
	uv_close(h, on_handle_closed);
}

static void close_io(struct drv_instance *inst)
{
	linuxu_close_handle(inst, (uv_handle_t *)&inst->console, &inst->console_open);
	linuxu_close_handle(inst, (uv_handle_t *)&inst->errpipe, &inst->err_open);
	linuxu_close_handle(inst, (uv_handle_t *)&inst->stdin_pipe, &inst->stdin_open);
	linuxu_close_handle(inst, (uv_handle_t *)&inst->status, &inst->status_open);
	linuxu_close_handle(inst, (uv_handle_t *)&inst->ptym, &inst->ptym_open);
	linuxu_close_handle(inst, (uv_handle_t *)&inst->grace, &inst->grace_open);
}

/* The last "bwrap: ..." line of the console tail: bwrap's own reason. */
static void sandbox_reason(const struct drv_instance *inst, char *out, size_t cap)
{
	out[0] = '\0';
	size_t i = inst->tail_len;
	while (i > 0) {
		size_t end = i;
		while (end > 0 && inst->tail[end - 1] == '\n')
			end--;
		size_t start = end;
		while (start > 0 && inst->tail[start - 1] != '\n')
			start--;
		if (end > start && end - start > 7 && memcmp(inst->tail + start, "bwrap: ", 7) == 0) {
			size_t n = end - start < cap - 1 ? end - start : cap - 1;
			memcpy(out, inst->tail + start, n);
			out[n] = '\0';
			return;
		}
		i = start;
	}
}

/* Report once the process exited and its output is in (or the grace timer ran
 * out). Must be the last thing its caller does: the core may destroy inst in
 * cb->exit. */
static void maybe_finish(struct drv_instance *inst, int force)
{
	if (inst->reported || inst->destroyed || !inst->exited)
		return;
	if (!force && (inst->console_open || inst->err_open || inst->status_open))
		return;
	inst->reported = 1;
	close_io(inst);
	linuxu_close_handle(inst, (uv_handle_t *)&inst->proc, &inst->proc_open);

	struct drv_outcome o = {.end = DRV_END_ERROR};
	char reason[512], msg[700];
	if (inst->kill_requested) {
		o.end = DRV_END_KILLED;
		o.value = inst->term_signal;
	} else if (inst->have_exit_code) {
		linuxu_map_exit_code(inst->exit_code, &o);
	} else if (inst->term_signal) {
		snprintf(msg, sizeof(msg), "sandbox (bwrap) was killed by signal %d", inst->term_signal);
		o.message = msg;
	} else {
		sandbox_reason(inst, reason, sizeof(reason));
		snprintf(msg, sizeof(msg), "sandbox setup failed (bwrap exit status %d)%s%s",
		         (int)inst->exit_status, *reason ? ": " : "", reason);
		o.message = msg;
	}
	inst->cb.exit(inst->cb.ctx, &o);
}

static void on_grace(uv_timer_t *t)
{
	maybe_finish(t->data, 1);
}

/* The image was refused at prepare: end the run with the reason (126). */
static void on_refused(uv_timer_t *t)
{
	struct drv_instance *inst = t->data;
	if (inst->reported || inst->destroyed)
		return;
	inst->reported = 1;
	close_io(inst);
	struct drv_outcome o = {.end = DRV_END_ERROR, .value = ENOEXEC, .message = inst->refusal};
	inst->cb.exit(inst->cb.ctx, &o);
}

/* The pidfd is readable: the sandbox exited (reap it) or the poll failed. */
static void on_proc_exit(uv_poll_t *p, int status, int events)
{
	struct drv_instance *inst = p->data;
	int64_t exit_status = 0;
	int term_signal = 0;
	(void)events;
	int r = cmd_reap(inst->pid, &exit_status, &term_signal);
	if (r == 0 && status >= 0)
		return; /* not yet (a spurious wake-up) */
	if (r <= 0) {
		/* The pidfd cannot be watched (or the reap failed): end the sandbox rather than
		 * lose it; what cannot be reaped counts as killed, never as an exit 0. */
		cmd_kill_reap(inst->pid, &exit_status, &term_signal);
	}
	uv_poll_stop(p);
	inst->exited = 1;
	inst->exit_status = exit_status;
	inst->term_signal = term_signal;
	if (inst->destroyed) {
		linuxu_close_handle(inst, (uv_handle_t *)&inst->proc, &inst->proc_open);
		return;
	}
	if (inst->grace_open)
		uv_timer_start(&inst->grace, on_grace, LINUXU_GRACE_MS, 0);
	maybe_finish(inst, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct drv_instance *inst = h->data;
	if (h == (uv_handle_t *)&inst->console || h == (uv_handle_t *)&inst->errpipe)
		*buf = uv_buf_init(inst->rbuf, sizeof(inst->rbuf));
	else
		*buf = uv_buf_init(inst->pbuf, sizeof(inst->pbuf));
}

static void on_console(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct drv_instance *inst = s->data;
	int err = s == (uv_stream_t *)&inst->errpipe;
	if (n > 0) {
		enum drv_stream tag = !inst->split ? DRV_STREAM_CONSOLE : err ? DRV_STREAM_STDERR : DRV_STREAM_STDOUT;
		tailbuf_append(inst->tail, sizeof(inst->tail), &inst->tail_len, buf->base, (size_t)n);
		if (!inst->destroyed && !inst->reported)
			inst->cb.console(inst->cb.ctx, tag, buf->base, (size_t)n);
		return;
	}
	if (n == 0)
		return;
	if (err)
		linuxu_close_handle(inst, (uv_handle_t *)&inst->errpipe, &inst->err_open);
	else
		linuxu_close_handle(inst, (uv_handle_t *)&inst->console, &inst->console_open);
	maybe_finish(inst, 0);
}

void linuxu_status_consume(struct drv_instance *inst)
{
	char *nl;
	while ((nl = memchr(inst->sbuf, '\n', inst->slen))) {
		size_t len = (size_t)(nl - inst->sbuf);
		long pid = 0;
		int code = 0;
		int r = linuxu_parse_status_line(inst->sbuf, len, &pid, &code);
		if (r > 0 && (r & 1)) {
			inst->child_pid = pid;
			if (inst->cb.started && !inst->destroyed)
				inst->cb.started(inst->cb.ctx);
		}
		if (r > 0 && (r & 2)) {
			inst->have_exit_code = 1;
			inst->exit_code = code;
		}
		memmove(inst->sbuf, nl + 1, inst->slen - len - 1);
		inst->slen -= len + 1;
	}
}

static void on_status(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct drv_instance *inst = s->data;
	if (n > 0) {
		size_t take = (size_t)n;
		if (take > sizeof(inst->sbuf) - inst->slen)
			take = sizeof(inst->sbuf) - inst->slen;
		memcpy(inst->sbuf + inst->slen, buf->base, take);
		inst->slen += take;
		linuxu_status_consume(inst);
		if (inst->slen == sizeof(inst->sbuf))
			inst->slen = 0; /* not bwrap's format: drop rather than stall */
		return;
	}
	if (n == 0)
		return;
	if (inst->slen < sizeof(inst->sbuf)) {
		inst->sbuf[inst->slen++] = '\n'; /* a last line without newline */
		linuxu_status_consume(inst);
	}
	linuxu_close_handle(inst, (uv_handle_t *)&inst->status, &inst->status_open);
	maybe_finish(inst, 0);
}

static void on_ptym(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct drv_instance *inst = s->data;
	/* Nothing is meant to be written to the terminal; read only so a guest
	 * writing to it never blocks. EIO means every slave closed. */
	if (n < 0)
		linuxu_close_handle(inst, (uv_handle_t *)&inst->ptym, &inst->ptym_open);
}

static int open_pty(int *ret_master, int *ret_slave)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return -errno;
	char name[128];
	if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof(name)) != 0) {
		int e = -errno;
		close(m);
		return e;
	}
	int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0) {
		int e = -errno;
		close(m);
		return e;
	}
	struct termios tio;
	if (tcgetattr(s, &tio) == 0) {
		cfmakeraw(&tio);
		tio.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(s, TCSANOW, &tio);
	}
	*ret_master = m;
	*ret_slave = s;
	return 0;
}

static int open_pipe_handle(struct drv_instance *inst, uv_pipe_t *p, int fd, int *open_flag)
{
	int r = uv_pipe_init(inst->loop, p, 0);
	if (r < 0)
		return r;
	p->data = inst;
	*open_flag = 1;
	inst->nhandles++;
	r = uv_pipe_open(p, fd);
	if (r < 0) {
		close(fd); /* the handle does not own it yet */
		return r;
	}
	return 0;
}

static int linuxu_launch(struct drv_instance *inst, uv_loop_t *loop, const struct drv_callbacks *cb,
                         char **ret_err)
{
	int out[2] = {-1, -1}, errp[2] = {-1, -1}, in[2] = {-1, -1}, st[2] = {-1, -1}, ptm = -1, pts = -1, img = -1;
	int r;
	if (inst->launched) {
		linuxu_set_err(ret_err, "linuxu: instance already launched");
		return -EALREADY;
	}
	inst->loop = loop;
	inst->cb = *cb;
	if (inst->refusal) {
		/* Nothing runs; the end is reported from the loop, after launch returns. */
		if ((r = uv_timer_init(loop, &inst->grace)) < 0) {
			linuxu_set_err(ret_err, "linuxu: timer: %s", uv_strerror(r));
			return r;
		}
		inst->grace.data = inst;
		inst->grace_open = 1;
		inst->nhandles++;
		inst->launched = 1;
		inst->exited = 1; /* kill has nothing to stop */
		return uv_timer_start(&inst->grace, on_refused, 0, 0);
	}
	const char *what = "console pipe";
	if (pipe2(out, O_CLOEXEC) < 0 || (what = "status pipe", pipe2(st, O_CLOEXEC) < 0) ||
	    (what = "stderr pipe", inst->split && pipe2(errp, O_CLOEXEC) < 0) ||
	    (what = "stdin pipe", inst->want_stdin && pipe2(in, O_CLOEXEC) < 0)) {
		r = -errno;
		linuxu_set_err(ret_err, "linuxu: cannot create %s: %s", what, strerror(-r));
		goto fail;
	}
	if (inst->use_pty && (r = open_pty(&ptm, &pts)) < 0) {
		linuxu_set_err(ret_err, "linuxu: cannot open a pseudo-terminal: %s", strerror(-r));
		goto fail;
	}
	if (inst->copy_image && (img = open(inst->image_path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = -errno;
		linuxu_set_err(ret_err, "Image '%s': %s", inst->image_path, strerror(-r));
		goto fail;
	}

	if (pts >= 0)
		cmd_stdio_fd(inst->cmd, 0, pts);
	else if (in[0] >= 0)
		cmd_stdio_fd(inst->cmd, 0, in[0]);
	cmd_stdio_fd(inst->cmd, 1, out[1]);
	cmd_stdio_fd(inst->cmd, 2, errp[1] >= 0 ? errp[1] : out[1]);
	cmd_stdio_fd(inst->cmd, LINUXU_FD_STATUS, st[1]);
	if (img >= 0)
		cmd_stdio_fd(inst->cmd, LINUXU_FD_IMAGE, img);

	if ((r = uv_timer_init(loop, &inst->grace)) < 0) {
		linuxu_set_err(ret_err, "linuxu: timer: %s", uv_strerror(r));
		goto fail;
	}
	inst->grace.data = inst;
	inst->grace_open = 1;
	inst->nhandles++;
	r = cmd_start(inst->cmd, &inst->pid, &inst->pidfd, ret_err);
	if (r < 0)
		goto fail;
	r = uv_poll_init(loop, &inst->proc, inst->pidfd);
	if (r >= 0) {
		inst->proc.data = inst;
		inst->proc_open = 1; /* closing it closes the pidfd */
		inst->nhandles++;
		r = uv_poll_start(&inst->proc, UV_READABLE, on_proc_exit);
	}
	if (r < 0) {
		/* Running but not watched: stop and reap it here (SIGKILL: it is quick). */
		linuxu_set_err(ret_err, "linuxu: cannot watch the sandbox: %s", uv_strerror(r));
		cmd_kill_reap(inst->pid, NULL, NULL);
		inst->exited = 1;
		if (inst->proc_open)
			linuxu_close_handle(inst, (uv_handle_t *)&inst->proc, &inst->proc_open);
		else
			close_fd(&inst->pidfd);
		goto fail;
	}
	inst->launched = 1;
	/* The child holds its copies; ours would keep EOF from ever coming. */
	close_fd(&out[1]);
	close_fd(&errp[1]);
	close_fd(&in[0]);
	close_fd(&st[1]);
	close_fd(&pts);
	close_fd(&img);

	r = open_pipe_handle(inst, &inst->console, out[0], &inst->console_open);
	out[0] = -1;
	if (r >= 0)
		r = uv_read_start((uv_stream_t *)&inst->console, on_alloc, on_console);
	if (r >= 0) {
		r = open_pipe_handle(inst, &inst->status, st[0], &inst->status_open);
		st[0] = -1;
	}
	if (r >= 0)
		r = uv_read_start((uv_stream_t *)&inst->status, on_alloc, on_status);
	if (r >= 0 && errp[0] >= 0) {
		r = open_pipe_handle(inst, &inst->errpipe, errp[0], &inst->err_open);
		errp[0] = -1;
		if (r >= 0)
			r = uv_read_start((uv_stream_t *)&inst->errpipe, on_alloc, on_console);
	}
	if (r >= 0 && in[1] >= 0) {
		r = open_pipe_handle(inst, &inst->stdin_pipe, in[1], &inst->stdin_open);
		in[1] = -1;
	}
	if (r >= 0 && ptm >= 0) {
		r = open_pipe_handle(inst, &inst->ptym, ptm, &inst->ptym_open);
		ptm = -1;
		if (r >= 0)
			r = uv_read_start((uv_stream_t *)&inst->ptym, on_alloc, on_ptym);
	}
	if (r < 0) {
		/* The process runs but cannot be watched: stop it; destroy reaps it. */
		linuxu_set_err(ret_err, "linuxu: cannot watch the sandbox: %s", uv_strerror(r));
		inst->reported = 1; /* launch failed: cb->exit must not be called */
		kill(-inst->pid, SIGKILL);
		kill(inst->pid, SIGKILL);
		close_fd(&out[0]);
		close_fd(&errp[0]);
		close_fd(&in[1]);
		close_fd(&st[0]);
		close_fd(&ptm);
		return r;
	}
	if (cb->note) {
		cb->note(cb->ctx, "limits", inst->limits_value, inst->limits_note);
		if (inst->uid) {
			char uid[16];
			snprintf(uid, sizeof(uid), "%u", inst->uid);
			cb->note(cb->ctx, "sandbox_uid", uid, NULL);
		}
	}
	if (inst->note && cb->note)
		cb->note(cb->ctx, NULL, NULL, inst->note);
	if (inst->bind_note && cb->note)
		cb->note(cb->ctx, NULL, NULL, inst->bind_note);
	return 0;

fail:
	close_fd(&out[0]);
	close_fd(&out[1]);
	close_fd(&errp[0]);
	close_fd(&errp[1]);
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&st[0]);
	close_fd(&st[1]);
	close_fd(&ptm);
	close_fd(&pts);
	close_fd(&img);
	return r;
}

static int throttle_pipe(uv_pipe_t *p, int open, int paused)
{
	if (!open || uv_is_closing((uv_handle_t *)p))
		return 0;
	if (paused)
		return uv_read_stop((uv_stream_t *)p);
	int r = uv_read_start((uv_stream_t *)p, on_alloc, on_console);
	return r == UV_EALREADY ? 0 : r;
}

static int linuxu_throttle(struct drv_instance *inst, int paused)
{
	int r = throttle_pipe(&inst->console, inst->console_open, paused);
	int r2 = throttle_pipe(&inst->errpipe, inst->err_open, paused);
	return r < 0 ? r : r2;
}

static int linuxu_kill(struct drv_instance *inst, unsigned flags)
{
	linuxu_throttle(inst, 0); /* the pipe must drain to its EOF for the end to be reported */
	if (!inst->launched || inst->exited || inst->reported)
		return 0;
	inst->kill_requested = 1;
	/* bwrap leads its own process group; its sandboxed child runs in another
	 * session (--new-session) but dies with it (--die-with-parent, and the pid
	 * namespace dies with its init). */
	kill(-inst->pid, SIGKILL);
	kill(inst->pid, SIGKILL);
	return 0;
}

static void linuxu_destroy(struct drv_instance *inst)
{
	if (!inst)
		return;
	inst->destroyed = 1;
	close_io(inst);
	if (inst->proc_open) {
		if (!inst->exited) {
			/* Never leave a guest behind; the process handle stays open until
			 * the exit is reaped, then on_exit closes it. */
			kill(-inst->pid, SIGKILL);
			kill(inst->pid, SIGKILL);
		} else {
			linuxu_close_handle(inst, (uv_handle_t *)&inst->proc, &inst->proc_open);
		}
	}
	if (inst->nhandles == 0)
		instance_free(inst);
}

/* This machine only. No `reap`: bubblewrap runs with --die-with-parent, so a dead
 * daemon's programs die with it. */
static int linuxu_probe_host(const struct drv_host *host, void **ret_state, char **ret_info, char **ret_err)
{
	if (host && host->uri)
		return -ENOTSUP;
	return linuxu_probe(ret_state, ret_info, ret_err);
}

const struct driver drv_linuxu = {
	.name = "linuxu",
	.platforms = DRV_PLATFORM_LINUXU,
	.caps = DRV_CAP_ARGS | DRV_CAP_MEMORY | DRV_CAP_STREAMS | DRV_CAP_STDIN | DRV_CAP_BINDS,
	.probe = linuxu_probe_host,
	.unprobe = linuxu_unprobe,
	.prepare = linuxu_prepare,
	.launch = linuxu_launch,
	.kill = linuxu_kill,
	.throttle = linuxu_throttle,
	.input = linuxu_input,
	.destroy = linuxu_destroy,
};
