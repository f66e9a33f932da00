/* command.c — argv builder and spawner over uv_spawn (see command.h). */
#include "command.h"
#include "monoclock.h"

#include <errno.h>
#include <ctype.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD_MAX_FDS 10
#define CMD_MAX_RLIMITS 8

struct cmd {
	char **argv;
	size_t argc, argv_cap;
	char **env;
	size_t envc, env_cap;
	uv_stdio_container_t stdio[CMD_MAX_FDS];
	int nstdio;
	int pdeathsig;
	char *cwd; /* NULL = the daemon's (/) */
	struct {
		int resource;
		rlim_t value;
	} rlimits[CMD_MAX_RLIMITS]; /* set between fork and exec (cmd_start, cmd_run_sync) */
	int nrlimits;
	int set_user; /* cmd_user: switch to uid/gid, no groups, between fork and exec */
	uid_t uid;
	gid_t gid;
};

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q)
		abort(); /* out of memory: nothing sensible left to do */
	return q;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		abort();
	return d;
}

static void vec_push(char ***vec, size_t *n, size_t *cap, char *s)
{
	if (*n + 2 > *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*vec = xrealloc(*vec, *cap * sizeof(**vec));
	}
	(*vec)[(*n)++] = s;
	(*vec)[*n] = NULL;
}

struct cmd *cmd_new(const char *prog)
{
	struct cmd *cmd = calloc(1, sizeof(*cmd));
	if (!cmd)
		abort();
	cmd_arg(cmd, prog);
	const char *path = getenv("PATH");
	cmd_env(cmd, "PATH", path ? path : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
	const char *home = getenv("HOME");
	cmd_env(cmd, "HOME", home ? home : "/");
	cmd_env(cmd, "LANG", "C.UTF-8");
	for (int i = 0; i < 3; i++)
		cmd->stdio[i].flags = UV_IGNORE; /* libuv binds ignored 0-2 to /dev/null */
	cmd->nstdio = 3;
	return cmd;
}

void cmd_free(struct cmd *cmd)
{
	if (!cmd)
		return;
	for (size_t i = 0; i < cmd->argc; i++)
		free(cmd->argv[i]);
	for (size_t i = 0; i < cmd->envc; i++)
		free(cmd->env[i]);
	free(cmd->argv);
	free(cmd->env);
	free(cmd->cwd);
	free(cmd);
}

void cmd_arg(struct cmd *cmd, const char *arg)
{
	vec_push(&cmd->argv, &cmd->argc, &cmd->argv_cap, xstrdup(arg));
}

void cmd_argf(struct cmd *cmd, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		abort();
	vec_push(&cmd->argv, &cmd->argc, &cmd->argv_cap, s);
}

void cmd_cwd(struct cmd *cmd, const char *dir)
{
	free(cmd->cwd);
	cmd->cwd = dir ? xstrdup(dir) : NULL;
}

void cmd_env(struct cmd *cmd, const char *name, const char *value)
{
	size_t nlen = strlen(name);
	char *s = NULL;
	if (asprintf(&s, "%s=%s", name, value) < 0)
		abort();
	for (size_t i = 0; i < cmd->envc; i++) {
		if (strncmp(cmd->env[i], name, nlen) == 0 && cmd->env[i][nlen] == '=') {
			free(cmd->env[i]);
			cmd->env[i] = s;
			return;
		}
	}
	vec_push(&cmd->env, &cmd->envc, &cmd->env_cap, s);
}

static void stdio_grow(struct cmd *cmd, int child_fd)
{
	while (cmd->nstdio <= child_fd)
		cmd->stdio[cmd->nstdio++].flags = UV_IGNORE;
}

void cmd_stdio_fd(struct cmd *cmd, int child_fd, int fd)
{
	if (child_fd < 0 || child_fd >= CMD_MAX_FDS)
		abort(); /* programming error */
	stdio_grow(cmd, child_fd);
	cmd->stdio[child_fd].flags = UV_INHERIT_FD;
	cmd->stdio[child_fd].data.fd = fd;
}

void cmd_stdio_pipe(struct cmd *cmd, int child_fd, uv_pipe_t *stream, int readable_by_child)
{
	if (child_fd < 0 || child_fd >= CMD_MAX_FDS)
		abort();
	stdio_grow(cmd, child_fd);
	cmd->stdio[child_fd].flags =
	    UV_CREATE_PIPE | (readable_by_child ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
	cmd->stdio[child_fd].data.stream = (uv_stream_t *)stream;
}

void cmd_die_with_daemon(struct cmd *cmd)
{
	cmd->pdeathsig = 1;
}

void cmd_rlimit(struct cmd *cmd, int resource, unsigned long long value)
{
	for (int i = 0; i < cmd->nrlimits; i++) {
		if (cmd->rlimits[i].resource == resource) {
			cmd->rlimits[i].value = (rlim_t)value;
			return;
		}
	}
	if (cmd->nrlimits == CMD_MAX_RLIMITS)
		abort(); /* programming error */
	cmd->rlimits[cmd->nrlimits].resource = resource;
	cmd->rlimits[cmd->nrlimits++].value = (rlim_t)value;
}

void cmd_user(struct cmd *cmd, unsigned uid, unsigned gid)
{
	cmd->set_user = 1;
	cmd->uid = (uid_t)uid;
	cmd->gid = (gid_t)gid;
}

int cmd_rlimit_get(const struct cmd *cmd, int resource, unsigned long long *ret_value)
{
	for (int i = 0; i < cmd->nrlimits; i++) {
		if (cmd->rlimits[i].resource == resource) {
			*ret_value = (unsigned long long)cmd->rlimits[i].value;
			return 1;
		}
	}
	return 0;
}

int cmd_user_get(const struct cmd *cmd, unsigned *ret_uid, unsigned *ret_gid)
{
	if (!cmd->set_user)
		return 0;
	*ret_uid = (unsigned)cmd->uid;
	*ret_gid = (unsigned)cmd->gid;
	return 1;
}

static const char *find_setpriv(void)
{
	static const char *const paths[] = {"/usr/bin/setpriv", "/bin/setpriv"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

int cmd_spawn(struct cmd *cmd, uv_loop_t *loop, uv_process_t *proc, uv_exit_cb exit_cb,
              char **ret_err)
{
	if (cmd->nrlimits || cmd->set_user) {
		/* libuv has no hook between its fork and exec: cmd_start does this. */
		if (ret_err && asprintf(ret_err, "Failed to start '%s': limits and uid need cmd_start", cmd->argv[0]) < 0)
			*ret_err = NULL;
		return -EINVAL;
	}
	/* setpriv sets PR_SET_PDEATHSIG and execs the program: same pid, same group. */
	char *wrapped[cmd->argc + 5];
	char **argv = cmd->argv;
	const char *setpriv = cmd->pdeathsig ? find_setpriv() : NULL;
	if (setpriv) {
		wrapped[0] = (char *)setpriv;
		wrapped[1] = "--pdeathsig";
		wrapped[2] = "KILL";
		wrapped[3] = "--";
		memcpy(wrapped + 4, cmd->argv, (cmd->argc + 1) * sizeof(char *));
		argv = wrapped;
	}
	uv_process_options_t opt = {
		.exit_cb = exit_cb,
		.file = argv[0],
		.args = argv,
		.env = cmd->env,
		.cwd = cmd->cwd,
		.stdio = cmd->stdio,
		.stdio_count = cmd->nstdio,
		/* Own session + process group: kill(-pid) reaches the whole tree. */
		.flags = UV_PROCESS_DETACHED,
	};
	int r = uv_spawn(loop, proc, &opt);
	if (r < 0) {
		if (ret_err && asprintf(ret_err, "Failed to start '%s': %s", cmd->argv[0], uv_strerror(r)) < 0)
			*ret_err = NULL;
		return r;
	}
	return 0;
}

/* ---- fork + exec of our own (cmd_start, cmd_run_sync) ---- */

/* What the child failed at between fork and exec, told to the parent on a pipe. */
enum child_step {
	STEP_FDS,
	STEP_SESSION,
	STEP_CWD,
	STEP_RLIMIT,
	STEP_GROUPS,
	STEP_GID,
	STEP_UID,
	STEP_PDEATHSIG,
	STEP_EXEC,
};

struct child_report {
	int step; /* enum child_step */
	int err;  /* errno */
	int arg;  /* STEP_RLIMIT: the resource */
};

static const char *rlimit_name(int resource)
{
	switch (resource) {
	case RLIMIT_AS: return "RLIMIT_AS";
	case RLIMIT_CORE: return "RLIMIT_CORE";
	case RLIMIT_CPU: return "RLIMIT_CPU";
	case RLIMIT_DATA: return "RLIMIT_DATA";
	case RLIMIT_FSIZE: return "RLIMIT_FSIZE";
	case RLIMIT_NOFILE: return "RLIMIT_NOFILE";
	case RLIMIT_NPROC: return "RLIMIT_NPROC";
	case RLIMIT_STACK: return "RLIMIT_STACK";
	default: return "a resource limit";
	}
}

static char *report_text(const struct cmd *cmd, const struct child_report *rep)
{
	char *s = NULL;
	const char *e = strerror(rep->err);
	int r;
	switch (rep->step) {
	case STEP_RLIMIT:
		r = asprintf(&s, "cannot set %s: %s", rlimit_name(rep->arg), e);
		break;
	case STEP_GROUPS:
		r = asprintf(&s, "cannot clear the supplementary groups: %s", e);
		break;
	case STEP_GID:
		r = asprintf(&s, "cannot switch to gid %u: %s", (unsigned)cmd->gid, e);
		break;
	case STEP_UID:
		r = asprintf(&s, "cannot switch to uid %u: %s", (unsigned)cmd->uid, e);
		break;
	case STEP_CWD:
		r = asprintf(&s, "cannot enter '%s': %s", cmd->cwd ? cmd->cwd : "", e);
		break;
	case STEP_EXEC:
		r = asprintf(&s, "%s", e);
		break;
	default:
		r = asprintf(&s, "child setup: %s", e);
		break;
	}
	return r < 0 ? NULL : s;
}

/* `prog` looked up in PATH (the command's own) when it has no slash, into `buf`;
 * in the parent, since execvpe is not async-signal-safe. */
static int resolve_prog(const struct cmd *cmd, char *buf, size_t cap)
{
	const char *prog = cmd->argv[0];
	if (strchr(prog, '/'))
		return snprintf(buf, cap, "%s", prog) < (int)cap ? 0 : -ENAMETOOLONG;
	const char *path = "/usr/local/bin:/usr/bin:/bin";
	for (size_t i = 0; i < cmd->envc; i++)
		if (strncmp(cmd->env[i], "PATH=", 5) == 0)
			path = cmd->env[i] + 5;
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		if (n > 0 && snprintf(buf, cap, "%.*s/%s", (int)n, p, prog) < (int)cap && access(buf, X_OK) == 0)
			return 0;
		p += n;
		if (*p == ':')
			p++;
	}
	return -ENOENT;
}

/* Between fork and exec: async-signal-safe calls only (the daemon has threads).
 * Never returns. The ids change by raw syscalls: glibc's wrappers would try to
 * change every thread of the process, which the child no longer has. */
static void __attribute__((noreturn)) child_run(const struct cmd *cmd, const char *path, const int *map, int nmap,
                                                 int report_fd, pid_t parent)
{
	struct child_report rep = {0};
	/* The daemon's handlers and ignored signals (SIGPIPE) must not reach the program. */
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			sigaction(s, &dfl, NULL);
	int src[CMD_MAX_FDS];
	/* Every source above the child's fd range first, so no dup2 clobbers one still to come. */
	int rfd = fcntl(report_fd, F_DUPFD_CLOEXEC, nmap);
	if (rfd < 0)
		_exit(127);
	rep.step = STEP_FDS;
	for (int i = 0; i < nmap; i++)
		if ((src[i] = map[i] >= 0 ? fcntl(map[i], F_DUPFD_CLOEXEC, nmap) : -1) < 0 && map[i] >= 0)
			goto fail;
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (int i = 0; i < nmap; i++) {
		if (src[i] >= 0) {
			if (dup2(src[i], i) < 0)
				goto fail;
		} else if (i <= 2) {
			if (null < 0 || dup2(null, i) < 0)
				goto fail;
		} else {
			close(i);
		}
	}
	rep.step = STEP_SESSION;
	if (setsid() < 0)
		goto fail;
	rep.step = STEP_CWD;
	if (cmd->cwd && chdir(cmd->cwd) < 0)
		goto fail;
	rep.step = STEP_RLIMIT;
	for (int i = 0; i < cmd->nrlimits; i++) {
		struct rlimit rl = {.rlim_cur = cmd->rlimits[i].value, .rlim_max = cmd->rlimits[i].value};
		rep.arg = cmd->rlimits[i].resource;
		if (setrlimit((__rlimit_resource_t)cmd->rlimits[i].resource, &rl) < 0)
			goto fail;
	}
	if (cmd->set_user) {
		rep.step = STEP_GROUPS;
		if (syscall(SYS_setgroups, 0, NULL) < 0)
			goto fail;
		rep.step = STEP_GID;
		if (syscall(SYS_setresgid, cmd->gid, cmd->gid, cmd->gid) < 0)
			goto fail;
		rep.step = STEP_UID;
		if (syscall(SYS_setresuid, cmd->uid, cmd->uid, cmd->uid) < 0)
			goto fail;
	}
	if (cmd->pdeathsig) {
		/* After the uid change, which clears it; a daemon gone already is not told. */
		rep.step = STEP_PDEATHSIG;
		if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
			goto fail;
		if (getppid() != parent)
			_exit(127);
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	rep.step = STEP_EXEC;
	execve(path, cmd->argv, cmd->env);
fail:
	rep.err = errno;
	while (write(rfd, &rep, sizeof(rep)) < 0 && errno == EINTR)
		;
	_exit(127);
}

/* Fork, set the child up (fds from `map`: map[i] becomes child fd i, -1 = /dev/null
 * for 0-2 and closed above), exec. Returns 0 with *ret_pid once the exec happened, or
 * -errno with *ret_err saying what failed (the child is reaped). */
static int fork_exec(const struct cmd *cmd, const int *map, int nmap, pid_t *ret_pid, char **ret_err)
{
	char path[4096];
	int r = resolve_prog(cmd, path, sizeof(path));
	if (r < 0) {
		if (ret_err && asprintf(ret_err, "Failed to start '%s': %s", cmd->argv[0], strerror(-r)) < 0)
			*ret_err = NULL;
		return r;
	}
	int rp[2];
	if (pipe2(rp, O_CLOEXEC) < 0) {
		r = -errno;
		if (ret_err && asprintf(ret_err, "Failed to start '%s': %s", cmd->argv[0], strerror(-r)) < 0)
			*ret_err = NULL;
		return r;
	}
	/* No signal handler may run in the child before it has reset them. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t parent = getpid();
	/* vfork: the child borrows the daemon's memory until its exec instead of copying the page
	 * tables (fork of runnerd took 0.45 ms, the loop blocked meanwhile). child_run is safe
	 * for that: no allocation, no stdio, nothing written but its own locals and the report
	 * pipe, and it never returns (exec or _exit). The daemon's other threads run on. */
	pid_t pid = vfork();
	if (pid == 0)
		child_run(cmd, path, map, nmap, rp[1], parent);
	int fork_errno = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(rp[1]);
	if (pid < 0) {
		close(rp[0]);
		if (ret_err && asprintf(ret_err, "Failed to start '%s': fork: %s", cmd->argv[0], strerror(fork_errno)) < 0)
			*ret_err = NULL;
		return -fork_errno;
	}
	/* EOF: the exec closed the pipe. A report: the child failed and exits. */
	struct child_report rep;
	ssize_t n;
	while ((n = read(rp[0], &rep, sizeof(rep))) < 0 && errno == EINTR)
		;
	close(rp[0]);
	if (n == 0) {
		*ret_pid = pid;
		return 0;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(rep))
		rep = (struct child_report){.step = STEP_FDS, .err = EIO};
	if (ret_err) {
		char *why = report_text(cmd, &rep);
		if (asprintf(ret_err, "Failed to start '%s': %s", cmd->argv[0], why ? why : strerror(rep.err)) < 0)
			*ret_err = NULL;
		free(why);
	}
	return rep.err > 0 ? -rep.err : -EIO;
}

int cmd_start(struct cmd *cmd, pid_t *ret_pid, int *ret_pidfd, char **ret_err)
{
	int map[CMD_MAX_FDS];
	for (int i = 0; i < cmd->nstdio; i++) {
		if (cmd->stdio[i].flags == UV_IGNORE) {
			map[i] = -1;
		} else if (cmd->stdio[i].flags == UV_INHERIT_FD) {
			map[i] = cmd->stdio[i].data.fd;
		} else {
			if (ret_err && asprintf(ret_err, "Failed to start '%s': cmd_start takes no pipes", cmd->argv[0]) < 0)
				*ret_err = NULL;
			return -EINVAL;
		}
	}
	pid_t pid;
	int r = fork_exec(cmd, map, cmd->nstdio, &pid, ret_err);
	if (r < 0)
		return r;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		r = -errno;
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		if (ret_err && asprintf(ret_err, "Failed to start '%s': pidfd_open: %s", cmd->argv[0], strerror(-r)) < 0)
			*ret_err = NULL;
		return r;
	}
	*ret_pid = pid;
	*ret_pidfd = pidfd;
	return 0;
}

int cmd_reap(pid_t pid, int64_t *ret_exit_status, int *ret_term_signal)
{
	int status = 0;
	pid_t r;
	while ((r = waitpid(pid, &status, WNOHANG)) < 0 && errno == EINTR)
		;
	if (r < 0)
		return -errno;
	if (r == 0)
		return 0;
	*ret_exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
	*ret_term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	return 1;
}

void cmd_kill_reap(pid_t pid, int64_t *ret_exit_status, int *ret_term_signal)
{
	int status = 0;
	pid_t r;
	kill(-pid, SIGKILL); /* it leads its own session and process group */
	kill(pid, SIGKILL);
	while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	int exited = r == pid && WIFEXITED(status);
	if (ret_exit_status)
		*ret_exit_status = exited ? WEXITSTATUS(status) : 0;
	if (ret_term_signal)
		*ret_term_signal = exited ? 0 : r == pid && WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
}

static int needs_quote(const char *s)
{
	if (!*s)
		return 1;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || strchr("-_./=:,+@%", *s)))
			return 1;
	return 0;
}

char *cmd_to_string(const struct cmd *cmd)
{
	size_t cap = 1;
	for (size_t i = 0; i < cmd->argc; i++)
		cap += strlen(cmd->argv[i]) * 4 + 3;
	char *out = malloc(cap), *p = out;
	if (!out)
		abort();
	for (size_t i = 0; i < cmd->argc; i++) {
		const char *a = cmd->argv[i];
		if (i)
			*p++ = ' ';
		if (!needs_quote(a)) {
			p = stpcpy(p, a);
			continue;
		}
		*p++ = '\'';
		for (; *a; a++) {
			if (*a == '\'')
				p = stpcpy(p, "'\\''");
			else
				*p++ = *a;
		}
		*p++ = '\'';
	}
	*p = '\0';
	return out;
}

char *const *cmd_argv(const struct cmd *cmd)
{
	return cmd->argv;
}

int cmd_run_sync(struct cmd *cmd, unsigned timeout_ms, size_t cap, char **ret_out)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	int map[3] = {-1, pfd[1], pfd[1]};
	pid_t pid;
	char *err = NULL;
	int r0 = fork_exec(cmd, map, 3, &pid, &err);
	close(pfd[1]);
	if (r0 < 0) {
		/* The child never ran the program: why it did not is the output. */
		close(pfd[0]);
		if (ret_out)
			*ret_out = err;
		else
			free(err);
		return r0;
	}
	char *out = malloc(cap + 1);
	size_t len = 0;
	if (!out)
		abort();
	uint64_t deadline = mono_ms() + timeout_ms;
	int killed = 0;
	for (;;) {
		long long left = (long long)deadline - (long long)mono_ms();
		if (left <= 0) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			killed = 1;
			break;
		}
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		int n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			continue;
		char buf[4096];
		ssize_t r = read(pfd[0], buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		size_t take = (size_t)r;
		if (take > cap - len)
			take = cap - len;
		memcpy(out + len, buf, take);
		len += take;
	}
	close(pfd[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	out[len] = '\0';
	if (ret_out)
		*ret_out = out;
	else
		free(out);
	if (killed)
		return -ETIMEDOUT;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
