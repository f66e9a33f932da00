/*
 * linuxu_sandbox.c — the linuxu driver's sandbox: probing prlimit and
 * bubblewrap on this host, choosing how a run gets limits of its own, and
 * building the command the guest's arguments are then appended to:
 *
 *   bwrap SANDBOX -- prlimit --nproc=N -- NAME
 *
 * started by cmd_start (command.c), whose child sets before it execs bwrap:
 *
 * - the per-process rlimits (data, file size, descriptors, CPU time, no
 *   core), so they hold from the sandbox's first instruction; no program in
 *   front of bwrap (util-linux setpriv, prlimit and setpriv again were, ≈ 1 ms
 *   each on a quiet machine here, more under load);
 * - as a root daemon, the run's own uid from a reserved range (no supplementary
 *   groups, gid = uid; what `setpriv --reuid U --regid U --clear-groups` did):
 *   root is exempt from RLIMIT_NPROC, and a uid of its own keeps a run's
 *   processes from counting against anyone else's;
 * - then the parent-death signal (SIGKILL; the uid change would clear an earlier one).
 *
 * - bwrap gives new namespaces (user namespace included, no network), a
 *   read-only root with a read-only /usr, the image at /run/ukrun/NAME, and
 *   writable tmpfs /tmp and /dev/shm of the run's memory each; / and /dev are
 *   remounted read-only so that nothing else can be filled. RLIMIT_FSIZE is
 *   1 MiB above the tmpfs size: a full tmpfs says ENOSPC, which a guest can
 *   handle, where a limit of the same size would kill it with SIGXFSZ first;
 *   the file size cap still bounds each file outside the mounts (memfd). It reports on
 *   --json-status-fd `{"child-pid": N}` then `{"exit-code": N}` (read by linuxu.c).
 * - The inner prlimit sets RLIMIT_NPROC inside the run's user namespace, where
 *   the kernel (>= 5.14) counts the processes of that namespace only; set
 *   outside, the limit would count every process of the uid (and become the
 *   namespace's own cap as well), which for an unprivileged daemon is all of
 *   its runs and itself. bwrap cannot set a limit, so this exec stays.
 * - NAME is found through PATH (/run/ukrun first) so the guest's argv[0] is
 *   the image's base name rather than a sandbox path.
 * - The caller's directories (drv_spec.binds) are read-only binds at the same
 *   path, runnerd's own files under them shadowed (drv_spec.hide), and the
 *   program starts in drv_spec.cwd when a bind shows it (else /tmp).
 */
#include "linuxu_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#define LINUXU_NPROC_SHARED 4096      /* when the limit counts all of the daemon's uid: a fork-bomb guard only */
#define LINUXU_NPROC_MIN 64           /* per-run budget: one process per MiB of memory, within these bounds */
#define LINUXU_NPROC_MAX 1024
#define LINUXU_NOFILE 1024            /* descriptors per process */
#define LINUXU_FSIZE_SLACK (1ull << 20) /* file size cap past the tmpfs size, so a full tmpfs says ENOSPC first */
#define LINUXU_CPU_SECONDS 3600       /* runaway guard; wall-clock timeouts belong to the core */
#define LINUXU_SANDBOX_DIR "/run/ukrun"
#define LINUXU_GUEST_PATH LINUXU_SANDBOX_DIR ":/usr/local/bin:/usr/bin:/bin"

/* Host top-level directories a dynamic program may need, mirrored as they are
 * on the host: a symlink (merged /usr) becomes the same symlink, a directory a
 * read-only bind. */
static const char *const host_dirs[] = {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"};
_Static_assert(sizeof(host_dirs) / sizeof(host_dirs[0]) == LINUXU_NHOST_DIRS,
               "struct linuxu_state is sized by LINUXU_NHOST_DIRS");
#define NHOST_DIRS LINUXU_NHOST_DIRS

/* Read-only /etc entries that keep the dynamic loader, name lookup and
 * getpwuid working; missing ones are skipped by bwrap (--ro-bind-try). */
static const char *const etc_files[] = {
	"/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
	"/etc/hosts",       "/etc/host.conf",  "/etc/nsswitch.conf", "/etc/passwd",
	"/etc/group",
};

/* Append NULL-terminated words to `c`. */
static void add(struct cmd *c, ...)
{
	va_list ap;
	va_start(ap, c);
	for (const char *a; (a = va_arg(ap, const char *));)
		cmd_arg(c, a);
	va_end(ap);
}

/* ---- probe ---- */

static void state_free(struct linuxu_state *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < NHOST_DIRS; i++)
		free(st->link_target[i]);
	free(st->limits_why);
	free(st->prlimit_path);
	free(st);
}

const char *linuxu_limits_name(enum linuxu_limits limits)
{
	switch (limits) {
	case LINUXU_LIMITS_UID:
		return "uid";
	case LINUXU_LIMITS_USERNS:
		return "userns";
	case LINUXU_LIMITS_SHARED:
		return "shared";
	case LINUXU_LIMITS_NONE:
	default:
		return "none";
	}
}

unsigned linuxu_nproc(enum linuxu_limits limits, unsigned memory_mb)
{
	if (limits == LINUXU_LIMITS_SHARED || limits == LINUXU_LIMITS_NONE)
		return LINUXU_NPROC_SHARED;
	if (memory_mb < LINUXU_NPROC_MIN)
		return LINUXU_NPROC_MIN;
	return memory_mb > LINUXU_NPROC_MAX ? LINUXU_NPROC_MAX : memory_mb;
}

int linuxu_uid_take(struct linuxu_state *st, unsigned *ret_uid)
{
	for (unsigned n = 0; n < LINUXU_UID_COUNT; n++) {
		unsigned i = (st->uid_next + n) % LINUXU_UID_COUNT;
		if (st->uid_used[i / 8] & (1u << (i % 8)))
			continue;
		st->uid_used[i / 8] |= (unsigned char)(1u << (i % 8));
		/* Next fit: a uid just given back is the last to be used again. */
		st->uid_next = (i + 1) % LINUXU_UID_COUNT;
		*ret_uid = LINUXU_UID_BASE + i;
		return 0;
	}
	return -EAGAIN;
}

void linuxu_uid_release(struct linuxu_state *st, unsigned uid)
{
	if (!st || uid < LINUXU_UID_BASE || uid - LINUXU_UID_BASE >= LINUXU_UID_COUNT)
		return;
	unsigned i = uid - LINUXU_UID_BASE;
	st->uid_used[i / 8] &= (unsigned char)~(1u << (i % 8));
}

/* Linux >= 5.14 counts RLIMIT_NPROC per user namespace (ucounts). */
static int kernel_counts_nproc_per_userns(void)
{
	struct utsname u;
	unsigned major = 0, minor = 0;
	if (uname(&u) < 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
		return 0;
	return major > 5 || (major == 5 && minor >= 14);
}

/* prlimit where the sandbox sees it: /usr is bound, /bin mirrored. */
static char *find_prlimit(void)
{
	static const char *const paths[] = {"/usr/bin/prlimit", "/bin/prlimit"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return strdup(paths[i]);
	return NULL;
}

/* Decide how runs get a process budget of their own (st->limits). A root
 * daemon checks that a sandbox can run as a reserved uid. */
static void probe_limits(struct linuxu_state *st)
{
	if (getuid() != 0) {
		if (kernel_counts_nproc_per_userns()) {
			st->limits = LINUXU_LIMITS_USERNS;
			return;
		}
		st->limits = LINUXU_LIMITS_SHARED;
		st->limits_why = strdup("this kernel (< 5.14) counts processes per uid, not per user namespace");
		return;
	}
	unsigned r = 0;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (unsigned)getpid() * 2654435761u;
	/* Several root daemons on one host rarely pick the same uids. */
	st->uid_next = r % LINUXU_UID_COUNT;
	char *out = NULL;
	/* The way a run switches (cmd_start), so a container that forbids it is found here. */
	struct cmd *c = cmd_new("bwrap");
	cmd_user(c, LINUXU_UID_BASE, LINUXU_UID_BASE);
	add(c, "--unshare-all", "--unshare-user", "--die-with-parent", "--ro-bind", "/", "/", "true", NULL);
	int rc = cmd_run_sync(c, 10000, 1024, &out);
	cmd_free(c);
	if (rc == 0) {
		st->limits = LINUXU_LIMITS_UID;
		free(out);
		return;
	}
	if (out)
		out[strcspn(out, "\r\n")] = '\0';
	st->limits = LINUXU_LIMITS_NONE;
	if (asprintf(&st->limits_why, "a sandbox cannot run as an unprivileged uid (bwrap as uid %u: %s)", LINUXU_UID_BASE,
	             out && *out ? out : rc < 0 ? strerror(-rc) : "exited with an error") < 0)
		st->limits_why = NULL;
	free(out);
}

int linuxu_probe(void **ret_state, char **ret_info, char **ret_err)
{
	char *out = NULL;
	struct cmd *c = cmd_new("prlimit");
	cmd_arg(c, "--version");
	int r = cmd_run_sync(c, 5000, 4096, &out);
	cmd_free(c);
	free(out);
	if (r != 0) {
		linuxu_set_err(ret_err, "prlimit (util-linux) not usable: %s",
		               r < 0 ? strerror(-r) : "exited with an error");
		return r < 0 ? r : -ENOENT;
	}

	out = NULL;
	c = cmd_new("bwrap");
	cmd_arg(c, "--version");
	r = cmd_run_sync(c, 5000, 256, &out);
	cmd_free(c);
	if (r != 0 || !out || strncmp(out, "bubblewrap ", 11) != 0) {
		linuxu_set_err(ret_err, "bubblewrap (bwrap) not found or not working");
		free(out);
		return -ENOENT;
	}
	out[strcspn(out, "\r\n")] = '\0';
	char *version = out;

	out = NULL;
	c = cmd_new("bwrap");
	/* --size (bwrap >= 0.8) too: every run's writable mounts need it. */
	add(c, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--size", "1048576", "--tmpfs", "/tmp",
	    "true", NULL);
	r = cmd_run_sync(c, 10000, 1024, &out);
	cmd_free(c);
	if (r != 0) {
		if (out)
			out[strcspn(out, "\r\n")] = '\0';
		linuxu_set_err(ret_err, "%s cannot create namespaces: %s", version,
		               out && *out ? out : r < 0 ? strerror(-r) : "exited with an error");
		free(out);
		free(version);
		return -EPERM;
	}
	free(out);

	/* cmd_start watches each run through a pidfd. */
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (pidfd < 0) {
		r = -errno;
		linuxu_set_err(ret_err, "this kernel cannot watch a sandbox through a pidfd (pidfd_open: %s; "
		               "Linux >= 5.3 has it)", strerror(-r));
		free(version);
		return r;
	}
	close(pidfd);

	struct linuxu_state *st = calloc(1, sizeof(*st));
	if (!st) {
		free(version);
		return -ENOMEM;
	}
	for (size_t i = 0; i < NHOST_DIRS; i++) {
		struct stat sb;
		if (lstat(host_dirs[i], &sb) < 0)
			continue;
		if (S_ISLNK(sb.st_mode)) {
			char buf[4096];
			ssize_t n = readlink(host_dirs[i], buf, sizeof(buf) - 1);
			if (n > 0) {
				buf[n] = '\0';
				st->link_target[i] = strdup(buf);
			}
		} else if (S_ISDIR(sb.st_mode)) {
			st->is_dir[i] = 1;
		}
	}
	st->prlimit_path = find_prlimit();
	if (!st->prlimit_path) {
		linuxu_set_err(ret_err, "prlimit is not in /usr/bin or /bin, where the sandbox can run it");
		state_free(st);
		free(version);
		return -ENOENT;
	}
	probe_limits(st);
	if (asprintf(ret_info, "%s, namespaces ok, per-run limits: %s%s%s", version,
	             linuxu_limits_name(st->limits), st->limits_why ? " — " : "",
	             st->limits_why ? st->limits_why : "") < 0)
		*ret_info = NULL;
	free(version);
	*ret_state = st;
	return 0;
}

void linuxu_unprobe(void *state)
{
	state_free(state);
}

/* ---- binds ---- */

int linuxu_dir_open_to_others(const char *path)
{
	char *real = realpath(path, NULL);
	struct stat sb;
	int ok = real != NULL;
	for (char *p = real ? real + 1 : NULL; ok; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		ok = stat(real, &sb) == 0 && (sb.st_mode & S_IXOTH) && (c || (sb.st_mode & S_IROTH));
		*p = c;
		if (!c)
			break;
	}
	free(real);
	return ok;
}

/* The binds the run can use: all of them, except under a per-run uid those it could not
 * reach (a home directory of mode 0700); *ret_note names the ones left out. */
int linuxu_plan_binds(struct drv_instance *inst, const struct drv_spec *spec)
{
	inst->binds = calloc(spec->nbinds + 1, sizeof(*inst->binds));
	if (!inst->binds)
		return -ENOMEM;
	char *left = NULL;
	for (size_t i = 0; i < spec->nbinds; i++) {
		if (inst->uid && !linuxu_dir_open_to_others(spec->binds[i])) {
			char *more = NULL;
			if (asprintf(&more, "%s%s%s", left ? left : "", left ? ", " : "", spec->binds[i]) < 0)
				more = NULL;
			free(left);
			left = more;
			continue;
		}
		if (!(inst->binds[inst->nbinds] = strdup(spec->binds[i])))
			break;
		inst->nbinds++;
	}
	if (left && asprintf(&inst->bind_note, "not shown to the program: %s (runnerd runs it as a uid of its own, "
	                     "which cannot read there: make the directory and those above it readable by others)",
	                     left) < 0)
		inst->bind_note = NULL;
	free(left);
	return 0;
}

/* ---- command ---- */

int linuxu_path_within(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/' || n == 1);
}

static int under_a_bind(const struct linuxu_sandbox *sb, const char *path)
{
	for (size_t i = 0; i < sb->nbinds; i++)
		if (linuxu_path_within(path, sb->binds[i]))
			return 1;
	return 0;
}

/* The caller's directories, read-only at the same path; what of runnerd lies under
 * them shadowed again: a directory by an empty read-only tmpfs, a socket or file by
 * /dev/null. */
static void append_binds(struct cmd *c, const struct linuxu_sandbox *sb)
{
	for (size_t i = 0; i < sb->nbinds; i++)
		add(c, "--ro-bind", sb->binds[i], sb->binds[i], NULL);
	for (size_t i = 0; i < sb->nhide; i++) {
		struct stat st;
		if (!under_a_bind(sb, sb->hide[i]) || lstat(sb->hide[i], &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			add(c, "--size", "4096", "--tmpfs", sb->hide[i], "--remount-ro", sb->hide[i], NULL);
		else
			add(c, "--ro-bind", "/dev/null", sb->hide[i], NULL);
	}
}

/* Where the program starts: the caller's directory when the sandbox shows it. */
static const char *start_dir(const struct linuxu_sandbox *sb)
{
	return sb->cwd && under_a_bind(sb, sb->cwd) ? sb->cwd : "/tmp";
}

static void append_sandbox(struct cmd *c, const struct linuxu_state *st, const struct linuxu_sandbox *sb)
{
	/* Run by root, bwrap would keep the caller's capabilities in the sandbox. */
	add(c, "--unshare-all", NULL);
	/* Unprivileged, bwrap implies a user namespace unless it is setuid; the
	 * process budget needs one, so ask for it. */
	if (sb->uid || (st && (st->limits == LINUXU_LIMITS_USERNS || st->limits == LINUXU_LIMITS_SHARED)))
		add(c, "--unshare-user", NULL);
	add(c, "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "ukrun", "--ro-bind",
	    "/usr", "/usr", NULL);
	for (size_t i = 0; st && i < NHOST_DIRS; i++) {
		if (st->link_target[i])
			add(c, "--symlink", st->link_target[i], host_dirs[i], NULL);
		else if (st->is_dir[i])
			add(c, "--ro-bind", host_dirs[i], host_dirs[i], NULL);
	}
	for (size_t i = 0; i < sizeof(etc_files) / sizeof(etc_files[0]); i++)
		add(c, "--ro-bind-try", etc_files[i], etc_files[i], NULL);
	/* bwrap's root and /dev are tmpfs without a size: both become read-only
	 * once set up, and the two writable places get the run's memory each. */
	add(c, "--proc", "/proc", "--dev", "/dev", "--size", NULL);
	cmd_argf(c, "%llu", sb->limit_bytes);
	add(c, "--tmpfs", "/dev/shm", "--remount-ro", "/dev", "--size", NULL);
	cmd_argf(c, "%llu", sb->limit_bytes);
	add(c, "--tmpfs", "/tmp", NULL);
	append_binds(c, sb);
	if (sb->copy_image) {
		/* Not executable on the host (or not reachable by the run's uid):
		 * bwrap copies it into the sandbox as 0555 (a read-only bind keeps
		 * the host mode, and execvp would then fall through PATH to a host
		 * program of the same name). A file of the sandbox's own root, not
		 * --ro-bind-data: that one's source is unlinked, so /proc/self/maps
		 * would name the program "... (deleted)" and a Rust backtrace could
		 * not find its symbols; the root is remounted read-only below. */
		add(c, "--perms", "0555", "--file", NULL);
		cmd_argf(c, "%d", LINUXU_FD_IMAGE);
	} else {
		add(c, "--ro-bind", sb->image_path, NULL);
	}
	cmd_argf(c, "%s/%s", LINUXU_SANDBOX_DIR, sb->name);
	add(c, "--remount-ro", "/", "--chdir", start_dir(sb), "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "LANG",
	    "C.UTF-8", NULL);
	/* The caller's variables (they may replace HOME and LANG), then PATH, which must
	 * stay ours: NAME is found through it. */
	for (size_t i = 0; i < sb->nenv; i++) {
		const char *eq = strchr(sb->env[i], '=');
		if (!eq || ((size_t)(eq - sb->env[i]) == 4 && strncmp(sb->env[i], "PATH", 4) == 0))
			continue;
		char *name = strndup(sb->env[i], (size_t)(eq - sb->env[i]));
		if (!name)
			continue;
		add(c, "--setenv", name, eq + 1, NULL);
		free(name);
	}
	add(c, "--setenv", "PATH", LINUXU_GUEST_PATH, NULL);
	if (sb->use_pty)
		add(c, "--setenv", "TERM", "dumb", NULL);
	add(c, "--json-status-fd", NULL);
	cmd_argf(c, "%d", LINUXU_FD_STATUS);
	add(c, "--", st && st->prlimit_path ? st->prlimit_path : "prlimit", NULL);
	cmd_argf(c, "--nproc=%u", sb->nproc);
	add(c, "--", sb->name, NULL);
}

struct cmd *linuxu_sandbox_cmd(const struct linuxu_state *st, const struct linuxu_sandbox *sb)
{
	/* Set by cmd_start between fork and exec: soft = hard, so the guest cannot raise them back. */
	struct cmd *c = cmd_new("bwrap");
	cmd_rlimit(c, RLIMIT_DATA, sb->limit_bytes);
	cmd_rlimit(c, RLIMIT_FSIZE, sb->limit_bytes + LINUXU_FSIZE_SLACK);
	/* Never above the daemon's own hard limit: raising it needs CAP_SYS_RESOURCE, which
	 * even a root daemon may lack (containers), and the run would then fail to start. */
	struct rlimit nofile = {.rlim_max = LINUXU_NOFILE};
	if (getrlimit(RLIMIT_NOFILE, &nofile) < 0 || nofile.rlim_max > LINUXU_NOFILE)
		nofile.rlim_max = LINUXU_NOFILE;
	cmd_rlimit(c, RLIMIT_NOFILE, nofile.rlim_max);
	cmd_rlimit(c, RLIMIT_CPU, LINUXU_CPU_SECONDS);
	cmd_rlimit(c, RLIMIT_CORE, 0); /* a crashing test must not fill the host's core dump store */
	if (sb->uid)
		cmd_user(c, sb->uid, sb->uid);
	append_sandbox(c, st, sb);
	return c;
}
