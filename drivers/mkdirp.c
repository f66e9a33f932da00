/* mkdirp.c — mkdir -p (see mkdirp.h). */
#include "mkdirp.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

/* EEXIST counts only when what exists is a directory. */
int mkdir_exist_ok(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len;

	if (!path || !*path)
		return -EINVAL;
	len = strlen(path);
	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		int r = mkdir_exist_ok(buf, mode);
		*p = '/';
		if (r < 0)
			return r;
	}
	return mkdir_exist_ok(buf, mode);
}
