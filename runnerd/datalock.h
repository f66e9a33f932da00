/*
 * datalock.h — one runnerd per data directory. The lock (flock on data/runnerd.lock) is
 * taken before anything else touches the directory: a second daemon would otherwise
 * declare the live daemon's runs `lost` and kill their guests. The lock file names the
 * holder (pid and socket) so the refusal can say who it is.
 */
#ifndef RUNNERD_DATALOCK_H
#define RUNNERD_DATALOCK_H

/* Take the lock of `data_dir` (which must exist) for this process; the returned fd
 * (O_CLOEXEC, so guests never inherit it) holds it until the process exits.
 * -EWOULDBLOCK when another process holds it: *ret_err names its pid and socket. */
int datalock_take(const char *data_dir, const char *socket_path, char **ret_err);

#endif
