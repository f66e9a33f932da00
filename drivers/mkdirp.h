/*
 * mkdirp.h — `mkdir -p` (a directory and its missing parents) and its one-level form. Shared by the daemon (data and
 * socket directories, the image store) and the client (the per-user socket directory); part of
 * the small ukrun_detect library, which needs nothing else.
 */
#ifndef UKRUN_MKDIRP_H
#define UKRUN_MKDIRP_H

#include <sys/types.h>

/* Create the one directory `path` (its parent must exist) with `mode`; an existing directory
 * is success, an existing non-directory -ENOTDIR. Returns 0 or -errno. */
int mkdir_exist_ok(const char *path, mode_t mode);

/* Create `path` and every missing parent with `mode` (before the umask). An existing
 * directory is success; an existing non-directory is -ENOTDIR (also for a parent).
 * Returns 0 or -errno (-ENAMETOOLONG for a path of PATH_MAX or more, -EINVAL for NULL/""). */
int mkdir_p(const char *path, mode_t mode);

#endif
