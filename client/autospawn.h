/*
 * autospawn.h — a per-user runnerd on demand, like sccache's server.
 *
 * When nothing listens on the Unix socket, the first ukrun takes a lock next
 * to it (`<socket>.lock`, so concurrent cargo test binaries start one daemon,
 * not ten), spawns `runnerd --user --socket PATH` detached in its own session
 * with stdio on /dev/null and no inherited fds (cargo must not wait for the
 * daemon to close its pipes), and waits until /healthz answers.
 */
#ifndef UKRUN_CLIENT_AUTOSPAWN_H
#define UKRUN_CLIENT_AUTOSPAWN_H

#include <stdbool.h>
#include <stddef.h>

#include "httpc.h"

/* Try to connect to the Unix socket. Returns 0 when something accepts, else
 * -errno of connect(2) (-ENOENT: no socket; -ECONNREFUSED: stale socket). */
int autospawn_probe(const char *socket_path);

/* Locate the runnerd executable: $UKRUN_RUNNERD, else beside this ukrun
 * (dirname of /proc/self/exe), its ../sbin/ and ../libexec/ukrun/, else $PATH.
 * Returns 0 with the path in buf, -ENOENT, or -ENAMETOOLONG. */
int autospawn_find_runnerd(char *buf, size_t len);

/* Make sure a runnerd serves `socket_path` (h must point at it), starting one
 * when nobody listens (ENOENT/ECONNREFUSED). Waits up to 15 s for /healthz.
 * Prints a one-line "ukrun: ..." message on failure, and the daemon's pid when
 * `verbose`. Returns 0, -EINTR when h->abort_flag was raised, or -errno. */
int autospawn_ensure(struct httpc *h, const char *socket_path, int verbose);

/* Set up `h` (httpc_init) for runnerd: over TCP when $UKRUN_URL is set and no
 * `socket_opt` (--socket) was given, with $UKRUN_TOKEN as bearer token, the CA
 * file `cacert_opt` (--cacert) or $UKRUN_CA_FILE for https, and no spawning; else over the Unix socket (opts_socket_path), through
 * autospawn_ensure when `spawn`. `stop` becomes h->abort_flag. Prints a
 * one-line message on failure. Returns 0 or a negative errno; free `h` with
 * httpc_free() in every case. */
int autospawn_connect(struct httpc *h, const char *socket_opt, const char *cacert_opt, bool spawn, int verbose,
		      const volatile sig_atomic_t *stop);

#endif
