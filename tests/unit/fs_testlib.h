/* fs_testlib.h — file-system helpers shared by unit tests that work in a private temp dir. */
#ifndef UKRUN_FS_TESTLIB_H
#define UKRUN_FS_TESTLIB_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* rm -rf PATH (a test's own temp dir: no symlink handling needed). */
static inline void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	if (!d) {
		unlink(path);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[4096];
		if (snprintf(p, sizeof(p), "%s/%s", path, e->d_name) >= (int)sizeof(p))
			continue;
		rm_rf(p);
	}
	closedir(d);
	rmdir(path);
}

#endif
