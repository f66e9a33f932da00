/* datalock.c — one runnerd per data directory (see datalock.h). */
#include "datalock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define LOCK_NAME "runnerd.lock"

int datalock_take(const char *data_dir, const char *socket_path, char **ret_err)
{
	char *path = NULL;
	*ret_err = NULL;
	if (asprintf(&path, "%s/" LOCK_NAME, data_dir) < 0)
		return -ENOMEM;
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		int r = -errno;
		if (asprintf(ret_err, "cannot open the lock file '%s': %s", path, strerror(-r)) < 0)
			*ret_err = NULL;
		free(path);
		return r;
	}
	int r = 0;
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		r = -errno;
		char held[512] = "";
		ssize_t n = pread(fd, held, sizeof(held) - 1, 0);
		held[n > 0 ? n : 0] = '\0';
		long pid = 0;
		char sock[400] = "?";
		sscanf(held, "pid %ld socket %399[^\n]", &pid, sock);
		if (r == -EWOULDBLOCK) {
			if (asprintf(ret_err, "another runnerd (pid %ld, socket %s) already uses the data directory '%s'",
			             pid, sock, data_dir) < 0)
				*ret_err = NULL;
		} else if (asprintf(ret_err, "cannot lock '%s': %s", path, strerror(-r)) < 0) {
			*ret_err = NULL;
		}
		close(fd);
		free(path);
		return r;
	}
	char line[512];
	int len = snprintf(line, sizeof(line), "pid %ld socket %s\n", (long)getpid(), socket_path);
	if (ftruncate(fd, 0) < 0 || pwrite(fd, line, (size_t)len, 0) != len)
		r = -errno; /* informational only: the lock itself is held */
	(void)r;
	free(path);
	return fd;
}
