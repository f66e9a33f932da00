/*
 * rundir.h — a run's private directory, data/runs/<id>/. Only the daemon names what is in
 * it, so nothing a user supplies can alias a file the daemon or a driver writes:
 *
 *   console.log     the console, created here exclusively (O_EXCL | O_NOFOLLOW, relative to
 *                   the directory's fd) and appended to by console.c
 *   stdout.log,     a plain program's stdout and stderr apart (runs with DRV_F_STREAMS, see
 *   stderr.log      streams.h), created and appended to the same way
 *   qemu.pid, ...   driver files, created by the drivers under fixed names (drv_spec.workdir)
 *   image/<name>    a symlink to the stored image under the user's file name, which guests
 *                   see as argv[0]; the user's name lives alone in image/
 *
 * Stored images are only ever linked, never opened for writing.
 */
#ifndef RUNNERD_RUNDIR_H
#define RUNNERD_RUNDIR_H

#include <stdint.h>

#define RUNDIR_CONSOLE "console.log"
#define RUNDIR_IMAGE_DIR "image"
#define RUNDIR_STDOUT "stdout.log"
#define RUNDIR_STDERR "stderr.log"

/* Create runs_dir/<id> (0700) with an empty console.log. A directory left there by an
 * older database is moved aside first (runs/<id>.stale-<ms>). *ret_path (malloc'd) is
 * the directory. Holds no descriptor afterwards. */
int rundir_create(const char *runs_dir, int64_t id, char **ret_path);

/* Link image/<name> → target in the run's directory; *ret_link (malloc'd) is the link's
 * path. -EINVAL for a name that is not a plain file name ("", ".", "..", '/'). */
int rundir_link_image(const char *dir, const char *name, const char *target, char **ret_link);

/* Open the run's console.log for appending (never through a symlink). Returns the fd. */
int rundir_open_console(const char *dir);

/* Create the empty log `name` (RUNDIR_STDOUT, RUNDIR_STDERR) in the run's directory,
 * exclusively. 0 or -errno. */
int rundir_create_log(const char *dir, const char *name);
/* Open log `name` of the run's directory for appending. Returns the fd. */
int rundir_open_log(const char *dir, const char *name);


#endif
