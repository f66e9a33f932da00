/* Auto-spawn of a per-user runnerd: see autospawn.h. */
#include "autospawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mkdirp.h"
#include "monoclock.h"
#include "opts.h"

#define STEP_MS 50
#define READY_MS 15000    /* how long a fresh daemon may take to answer /healthz */
#define LOCK_WAIT_MS 20000 /* another ukrun holding the lock is waiting READY_MS itself */
#define HEALTH_TIMEOUT_MS 1000L

extern char **environ;

int autospawn_probe(const char *socket_path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r = 0;

	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EINTR)
			continue;
		r = -errno;
		break;
	}
	close(fd);
	return r;
}

static bool executable(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

int autospawn_find_runnerd(char *buf, size_t len)
{
	static const char *const beside[] = { "runnerd", "../sbin/runnerd", "../libexec/ukrun/runnerd" };
	const char *env = getenv("UKRUN_RUNNERD");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		if ((size_t)snprintf(buf, len, "%s", env) >= len)
			return -ENAMETOOLONG;
		return executable(buf) ? 0 : -ENOENT;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash;

		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			for (size_t i = 0; i < sizeof(beside) / sizeof(beside[0]); i++) {
				if ((size_t)snprintf(buf, len, "%s/%s", self, beside[i]) < len && executable(buf))
					return 0;
			}
		}
	}
	env = getenv("PATH");
	for (const char *p = env ? env : ""; *p;) {
		const char *end = strchrnul(p, ':');

		if (end > p && (size_t)snprintf(buf, len, "%.*s/runnerd", (int)(end - p), p) < len &&
		    buf[0] == '/' && executable(buf))
			return 0;
		p = *end ? end + 1 : end;
	}
	return -ENOENT;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	(void)nanosleep(&ts, NULL); /* a signal cuts it short; callers check their flag */
}

static bool stopped(const struct httpc *h)
{
	return h->abort_flag && *h->abort_flag;
}

/* mkdir -p with 0700 for what we create; the socket's own directory must be ours,
 * or another user could hand us a daemon of their choosing. */
static int prepare_dir(const char *socket_path)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;

	if ((size_t)snprintf(dir, sizeof(dir), "%s", socket_path) >= sizeof(dir))
		return -ENAMETOOLONG;
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0; /* "/runnerd.sock": nothing to create */
	*slash = '\0';
	int r = mkdir_p(dir, 0700);
	if (r < 0)
		return r;
	if (lstat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (st.st_uid != geteuid())
		return -EPERM;
	return 0;
}

static int take_lock(struct httpc *h, const char *socket_path, int *ret_fd)
{
	char path[PATH_MAX];
	uint64_t deadline = mono_ms() + LOCK_WAIT_MS;
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s.lock", socket_path) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		if (e != EWOULDBLOCK && e != EINTR) {
			close(fd);
			return -e;
		}
		if (stopped(h) || mono_ms() > deadline) {
			close(fd);
			return stopped(h) ? -EINTR : -ETIMEDOUT;
		}
		sleep_ms(STEP_MS);
	}
	*ret_fd = fd;
	return 0;
}

static int spawn_runnerd(const char *exe, const char *socket_path, pid_t *ret_pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, defaults;
	char data_dir[PATH_MAX];
	const char *env = getenv("UKRUN_DATA_DIR");
	char *argv[7];
	int argc = 0, r;

	argv[argc++] = (char *)exe;
	argv[argc++] = "--user";
	argv[argc++] = "--socket";
	argv[argc++] = (char *)socket_path;
	if (env && *env) {
		/* The daemon runs in / so that it does not pin the caller's working directory. */
		if (env[0] == '/')
			r = snprintf(data_dir, sizeof(data_dir), "%s", env);
		else {
			char cwd[PATH_MAX];

			if (!getcwd(cwd, sizeof(cwd)))
				return -errno;
			r = snprintf(data_dir, sizeof(data_dir), "%s/%s", cwd, env);
		}
		if (r < 0 || (size_t)r >= sizeof(data_dir))
			return -ENAMETOOLONG;
		argv[argc++] = "--data-dir";
		argv[argc++] = data_dir;
	}
	argv[argc] = NULL;

	sigemptyset(&none);
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE); /* we ignore it; exec would keep that */
	sigaddset(&defaults, SIGINT);
	sigaddset(&defaults, SIGTERM);
	sigaddset(&defaults, SIGHUP);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (!r)
		r = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (!r)
		r = posix_spawn_file_actions_adddup2(&fa, 1, 2);
	if (!r) /* cargo's pipes and jobserver fds are not always close-on-exec */
		r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	if (!r)
		r = posix_spawn_file_actions_addchdir_np(&fa, "/");
	if (!r)
		r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (!r)
		r = posix_spawnattr_setsigmask(&attr, &none);
	if (!r)
		r = posix_spawnattr_setsigdefault(&attr, &defaults);
	if (!r)
		r = posix_spawn(ret_pid, exe, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return -r;
}

static bool healthy(struct httpc *h)
{
	struct httpc_resp resp;
	long saved = h->timeout_ms;
	bool ok;
	int r;

	h->timeout_ms = HEALTH_TIMEOUT_MS;
	r = httpc_json(h, "GET", "/healthz", NULL, &resp);
	h->timeout_ms = saved;
	ok = r == 0 && resp.status == 200;
	httpc_resp_clear(&resp);
	return ok;
}

/* Poll until the daemon answers, it dies, or READY_MS pass (then the caller goes on
 * and its first request reports the failure). */
static int wait_ready(struct httpc *h, const char *socket_path, pid_t pid)
{
	uint64_t deadline = mono_ms() + READY_MS;

	while (mono_ms() < deadline) {
		int status;

		if (stopped(h))
			return -EINTR;
		if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
			/* 3: another runnerd holds the socket or the data directory, most likely
			 * one that is starting up: wait for it to answer instead. */
			if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
				pid = 0;
				continue;
			}
			if (WIFEXITED(status))
				fprintf(stderr, "ukrun: runnerd exited at start-up with status %d", WEXITSTATUS(status));
			else
				fprintf(stderr, "ukrun: runnerd was killed at start-up by signal %d", WTERMSIG(status));
			fprintf(stderr, " (run 'runnerd --user --socket %s' to see why)\n", socket_path);
			return -ECHILD;
		}
		if (autospawn_probe(socket_path) == 0 && healthy(h))
			return 0;
		sleep_ms(STEP_MS);
	}
	return -ETIMEDOUT;
}

int autospawn_ensure(struct httpc *h, const char *socket_path, int verbose)
{
	char exe[PATH_MAX];
	struct stat st;
	pid_t pid = 0;
	int lock_fd = -1, r;

	r = autospawn_probe(socket_path);
	if (r == 0)
		return 0;
	if (r != -ENOENT && r != -ECONNREFUSED) {
		fprintf(stderr, "ukrun: cannot connect to runnerd at %s: %s\n", socket_path, strerror(-r));
		return r;
	}
	r = prepare_dir(socket_path);
	if (r < 0) {
		fprintf(stderr, "ukrun: cannot start runnerd: directory of %s: %s\n", socket_path,
			r == -EPERM ? "owned by another user" : strerror(-r));
		return r;
	}
	r = take_lock(h, socket_path, &lock_fd);
	if (r < 0) {
		if (r != -EINTR)
			fprintf(stderr, "ukrun: cannot lock %s.lock: %s\n", socket_path, strerror(-r));
		return r;
	}
	/* Another ukrun may have started it while we waited for the lock. */
	r = autospawn_probe(socket_path);
	if (r == 0)
		goto cleanup;
	/* Under the lock, a refused connection means a daemon died without removing its
	 * socket; a fresh runnerd could not bind over it. */
	if (r == -ECONNREFUSED && lstat(socket_path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_uid == geteuid())
		(void)unlink(socket_path);
	r = autospawn_find_runnerd(exe, sizeof(exe));
	if (r < 0) {
		fprintf(stderr, "ukrun: cannot find runnerd (set $UKRUN_RUNNERD, or install it beside ukrun or in "
				"$PATH)\n");
		goto cleanup;
	}
	r = spawn_runnerd(exe, socket_path, &pid);
	if (r < 0) {
		fprintf(stderr, "ukrun: cannot start %s: %s\n", exe, strerror(-r));
		goto cleanup;
	}
	r = wait_ready(h, socket_path, pid);
	if (r == -ETIMEDOUT) {
		if (verbose)
			fprintf(stderr, "ukrun: runnerd (pid %d) is not answering on %s yet\n", (int)pid, socket_path);
		r = 0;
	} else if (r == 0 && verbose) {
		fprintf(stderr, "ukrun: started runnerd (pid %d, socket %s)\n", (int)pid, socket_path);
	}
cleanup:
	close(lock_fd);
	return r;
}

int autospawn_connect(struct httpc *h, const char *socket_opt, const char *cacert_opt, bool spawn, int verbose,
		      const volatile sig_atomic_t *stop)
{
	const char *url = getenv("UKRUN_URL");
	char path[PATH_MAX];
	int r;

	memset(h, 0, sizeof(*h));
	if (!socket_opt && url && *url) {
		r = httpc_init(h, NULL, url, getenv("UKRUN_TOKEN"));
		if (r == -EINVAL)
			fprintf(stderr, "ukrun: $UKRUN_URL must be an http:// or https:// URL "
					"(and $UKRUN_TOKEN one line)\n");
		else if (r == -ENOSYS) /* libcurl, for TCP, could not be loaded */
			fprintf(stderr, "ukrun: %s\n", h->errbuf);
		h->abort_flag = stop;
		const char *ca = cacert_opt ? cacert_opt : getenv("UKRUN_CA_FILE");
		if (r == 0 && ca && *ca) {
			if (access(ca, R_OK) < 0) {
				int e = errno;
				fprintf(stderr, "ukrun: CA file '%s': %s\n", ca, strerror(e));
				return -e;
			}
			r = httpc_set_ca_file(h, ca);
		}
		return r;
	}
	r = opts_socket_path(socket_opt, path, sizeof(path));
	if (r < 0) {
		fprintf(stderr, "ukrun: runnerd socket path: %s\n", strerror(-r));
		return r;
	}
	r = httpc_init(h, path, NULL, NULL);
	h->abort_flag = stop;
	if (r < 0 || !spawn)
		return r;
	return autospawn_ensure(h, path, verbose);
}
