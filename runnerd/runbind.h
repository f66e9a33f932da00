/*
 * runbind.h — which host directories a run may see (`--bind`, the package directory).
 *
 * A bind shows a directory of runnerd's machine to the program, read-only. It is
 * honoured when the path means the same thing to the caller and to runnerd and the
 * caller could read it anyway:
 *   - on the Unix socket of a per-user daemon (the peer is runnerd's own uid): yes;
 *   - on the Unix socket, another uid (a system daemon): only a directory that uid can
 *     reach and read by its mode bits alone (owner, or "other"; groups are not trusted);
 *   - over TCP/TLS: refused, since the path names runnerd's filesystem, not the
 *     caller's, unless runnerd.conf sets `remote-binds = true`.
 * Never a path inside runnerd's data directory or its socket (run_config.hidden); those
 * under a bind are hidden again in the sandbox (drv_spec.hide).
 */
#ifndef RUNNERD_RUNBIND_H
#define RUNNERD_RUNBIND_H

#include "run.h"

#define RUNBIND_MAX 32 /* binds per run */

/* Check req->binds for a caller on `is_tcp` with uid `peer_uid` (-1: unknown). 0, or
 * -EINVAL with *ret_err naming --bind and the path. */
int runbind_check(const struct run_request *req, int is_tcp, int remote_binds, long peer_uid,
                  char *const *hidden, char **ret_err);

/* 1 when the directory at `path` can be searched and read by `uid` by the mode bits of
 * every component (owner's bits when it owns it, else other's), else 0. */
int runbind_readable_by(const char *path, long uid);

#endif
