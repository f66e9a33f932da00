/* command.c — argv builder and spawner over uv_spawn (see command.h). */
#include "command.h"
#include "monoclock.h"

#include <errno.h>
#include <ctype.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD_MAX_FDS 10

struct cmd {
	char **argv;
	size_t argc, argv_cap;
	char **env;
	size_t envc, env_cap;
	uv_stdio_container_t stdio[CMD_MAX_FDS];
	int nstdio;
	int pdeathsig;
	char *cwd; /* NULL = the daemon's (/) */
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
	pid_t pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(pfd[0]);
		close(pfd[1]);
		return e;
	}
	if (pid == 0) {
		setpgid(0, 0);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execvpe(cmd->argv[0], cmd->argv, cmd->env);
		_exit(127);
	}
	close(pfd[1]);
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
