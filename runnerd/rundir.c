/* rundir.c — a run's private directory (see rundir.h). */
#include "rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int open_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int rundir_create(const char *runs_dir, int64_t id, char **ret_path)
{
	*ret_path = NULL;
	int top = open_dir(runs_dir);
	if (top < 0)
		return top;
	char name[32];
	snprintf(name, sizeof(name), "%lld", (long long)id);
	int r = mkdirat(top, name, 0700) < 0 ? -errno : 0;
	if (r == -EEXIST) {
		/* Run ids come from the database: a directory already there was left by an
		 * older database. Keep it for inspection, out of this run's way. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		char aside[64];
		snprintf(aside, sizeof(aside), "%s.stale-%lld", name,
		         (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
		if (renameat(top, name, top, aside) == 0)
			log_warn("run directory %s/%s already existed: moved to %s", runs_dir, name, aside);
		r = mkdirat(top, name, 0700) < 0 ? -errno : 0;
	}
	int dir = r < 0 ? r : -1;
	if (r == 0) {
		dir = openat(top, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		r = dir < 0 ? -errno : 0;
	}
	close(top);
	if (r < 0)
		return r;
	int fd = openat(dir, RUNDIR_CONSOLE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	r = fd < 0 ? -errno : 0;
	if (fd >= 0)
		close(fd);
	close(dir);
	if (r == 0 && asprintf(ret_path, "%s/%s", runs_dir, name) < 0) {
		*ret_path = NULL;
		r = -ENOMEM;
	}
	return r;
}

int rundir_link_image(const char *dir, const char *name, const char *target, char **ret_link)
{
	*ret_link = NULL;
	if (!name || !*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	int d = open_dir(dir);
	if (d < 0)
		return d;
	int r = 0;
	if (mkdirat(d, RUNDIR_IMAGE_DIR, 0700) < 0 && errno != EEXIST)
		r = -errno;
	int sub = r < 0 ? -1 : openat(d, RUNDIR_IMAGE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (r == 0 && sub < 0)
		r = -errno;
	if (r == 0 && symlinkat(target, sub, name) < 0)
		r = -errno;
	if (sub >= 0)
		close(sub);
	close(d);
	if (r == 0 && asprintf(ret_link, "%s/" RUNDIR_IMAGE_DIR "/%s", dir, name) < 0) {
		*ret_link = NULL;
		r = -ENOMEM;
	}
	return r;
}

int rundir_open_log(const char *dir, const char *name)
{
	int d = open_dir(dir);
	if (d < 0)
		return d;
	int fd = openat(d, name, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	int r = fd < 0 ? -errno : fd;
	close(d);
	return r;
}

int rundir_open_console(const char *dir)
{
	return rundir_open_log(dir, RUNDIR_CONSOLE);
}

int rundir_create_log(const char *dir, const char *name)
{
	int d = open_dir(dir);
	if (d < 0)
		return d;
	int fd = openat(d, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	int r = fd < 0 ? -errno : 0;
	if (fd >= 0)
		close(fd);
	close(d);
	return r;
}
