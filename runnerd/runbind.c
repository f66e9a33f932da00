/* runbind.c — the bind policy (see runbind.h). */
#include "runbind.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"

/* 1 when `path` is `dir` or inside it (both canonical). */
static int path_within(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/' || n == 1);
}

static int mode_allows(const struct stat *sb, long uid, mode_t own, mode_t other)
{
	if ((long)sb->st_uid == uid)
		return (sb->st_mode & own) == own;
	return (sb->st_mode & other) == other;
}

int runbind_readable_by(const char *path, long uid)
{
	char *real = realpath(path, NULL);
	if (!real)
		return 0;
	int ok = 1;
	struct stat sb;
	/* Every ancestor searchable, the directory itself readable and searchable. */
	for (char *p = real + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (stat(real, &sb) < 0 || !mode_allows(&sb, uid, S_IXUSR, S_IXOTH))
			ok = 0;
		*p = c;
		if (!c || !ok)
			break;
	}
	if (ok && (stat(real, &sb) < 0 || !mode_allows(&sb, uid, S_IRUSR | S_IXUSR, S_IROTH | S_IXOTH)))
		ok = 0;
	free(real);
	return ok;
}

int runbind_check(const struct run_request *req, int is_tcp, int remote_binds, long peer_uid,
                  char *const *hidden, char **ret_err)
{
	if (!req->nbinds)
		return 0;
	if (is_tcp && !remote_binds)
		return errmsg_fail(ret_err, -EINVAL, "--bind: runnerd does not show its directories to clients over "
		                   "the network (a path there names runnerd's machine, not yours; "
		                   "runnerd.conf remote-binds = true allows it)");
	if (req->nbinds > RUNBIND_MAX)
		return errmsg_fail(ret_err, -EINVAL, "--bind: at most %d directories", RUNBIND_MAX);
	for (size_t i = 0; i < req->nbinds; i++) {
		const char *b = req->binds[i];
		struct stat sb;
		if (stat(b, &sb) < 0 || !S_ISDIR(sb.st_mode))
			return errmsg_fail(ret_err, -EINVAL, "--bind %s: not a directory on runnerd's host", b);
		char *real = realpath(b, NULL);
		if (!real)
			return -ENOMEM;
		int r = 0;
		for (size_t j = 0; hidden && hidden[j] && r == 0; j++) {
			char *h = realpath(hidden[j], NULL);
			if (h && path_within(real, h))
				r = errmsg_fail(ret_err, -EINVAL, "--bind %s: inside runnerd's own files (%s)", b,
				                hidden[j]);
			free(h);
		}
		if (r == 0 && peer_uid >= 0 && peer_uid != (long)getuid() && !runbind_readable_by(real, peer_uid))
			r = errmsg_fail(ret_err, -EINVAL, "--bind %s: not readable by uid %ld, who asked for it", b,
			                peer_uid);
		free(real);
		if (r < 0)
			return r;
	}
	return 0;
}
