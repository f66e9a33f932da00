/*
 * linuxu_sandbox.c — the linuxu driver's sandbox: probing prlimit and
 * bubblewrap on this host, and building the `prlimit LIMITS -- bwrap SANDBOX
 * -- NAME` command that the guest's arguments are then appended to.
 *
 * - prlimit (util-linux) sets the rlimits and execs bwrap, so they apply to
 *   the whole sandbox from its first instruction without any code running
 *   between fork and exec in the daemon.
 * - bwrap gives new namespaces (no network), a tmpfs root with a read-only
 *   /usr, the image at /run/ukrun/NAME, and reports on --json-status-fd
 *   `{"child-pid": N}` then `{"exit-code": N}` (read by linuxu.c).
 * - bwrap execs NAME through PATH (/run/ukrun first) so the guest's argv[0]
 *   is the image's base name rather than a sandbox path.
 */
#include "linuxu_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINUXU_NPROC 4096             /* fork-bomb guard, per real uid (ignored for root) */
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
	free(st);
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
	add(c, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true", NULL);
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
	if (asprintf(ret_info, "%s, namespaces ok", version) < 0)
		*ret_info = NULL;
	free(version);
	*ret_state = st;
	return 0;
}

void linuxu_unprobe(void *state)
{
	state_free(state);
}

/* ---- command ---- */

static void append_sandbox(struct cmd *c, const struct linuxu_state *st, const char *image_path,
                           const char *name, int copy_image, unsigned long long limit_bytes,
                           int use_pty)
{
	/* Run by root, bwrap would keep the caller's capabilities in the sandbox. */
	add(c, "bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
	    "--hostname", "ukrun", "--ro-bind", "/usr", "/usr", NULL);
	for (size_t i = 0; st && i < NHOST_DIRS; i++) {
		if (st->link_target[i])
			add(c, "--symlink", st->link_target[i], host_dirs[i], NULL);
		else if (st->is_dir[i])
			add(c, "--ro-bind", host_dirs[i], host_dirs[i], NULL);
	}
	for (size_t i = 0; i < sizeof(etc_files) / sizeof(etc_files[0]); i++)
		add(c, "--ro-bind-try", etc_files[i], etc_files[i], NULL);
	add(c, "--proc", "/proc", "--dev", "/dev", "--size", NULL);
	cmd_argf(c, "%llu", limit_bytes);
	add(c, "--tmpfs", "/tmp", NULL);
	if (copy_image) {
		/* Not executable on the host: bwrap copies it into the sandbox as 0555
		 * (a read-only bind keeps the host mode, and execvp would then fall
		 * through PATH to a host program of the same name). */
		add(c, "--perms", "0555", "--ro-bind-data", NULL);
		cmd_argf(c, "%d", LINUXU_FD_IMAGE);
	} else {
		add(c, "--ro-bind", image_path, NULL);
	}
	cmd_argf(c, "%s/%s", LINUXU_SANDBOX_DIR, name);
	add(c, "--chdir", "/tmp", "--clearenv", "--setenv", "PATH", LINUXU_GUEST_PATH, "--setenv", "HOME",
	    "/tmp", "--setenv", "LANG", "C.UTF-8", NULL);
	if (use_pty)
		add(c, "--setenv", "TERM", "dumb", NULL);
	add(c, "--json-status-fd", NULL);
	cmd_argf(c, "%d", LINUXU_FD_STATUS);
	add(c, "--", name, NULL);
}

struct cmd *linuxu_sandbox_cmd(const struct linuxu_state *st, const char *image_path, const char *name,
                               int copy_image, unsigned long long limit_bytes, int use_pty)
{
	/* prlimit sets soft = hard so the guest cannot raise them back. */
	struct cmd *c = cmd_new("prlimit");
	cmd_argf(c, "--data=%llu", limit_bytes);
	cmd_argf(c, "--fsize=%llu", limit_bytes);
	cmd_argf(c, "--nproc=%d", LINUXU_NPROC);
	cmd_argf(c, "--cpu=%d", LINUXU_CPU_SECONDS);
	cmd_arg(c, "--core=0"); /* a crashing test must not fill the host's core dump store */
	cmd_arg(c, "--");
	append_sandbox(c, st, image_path, name, copy_image, limit_bytes, use_pty);
	return c;
}
