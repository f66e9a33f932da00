/*
 * upload.h — getting an image into runnerd's content-addressed store.
 *
 * The client hashes the file (SHA-256, streamed), asks whether the daemon
 * already holds that digest (HEAD) and uploads it only when it does not, so
 * rerunning an unchanged test binary costs one hash and one round trip.
 */
#ifndef UKRUN_CLIENT_UPLOAD_H
#define UKRUN_CLIENT_UPLOAD_H

#include <stdint.h>

#include "httpc.h"

#define UPLOAD_HEX_SIZE 65 /* 64 lowercase hex digits + NUL */

/* SHA-256 of the whole of `fd` (read with pread from offset 0) as lowercase
 * hex into ret_hex; *ret_size gets the number of bytes hashed (may be NULL).
 * Returns 0, -EINTR when *stop became non-zero (stop may be NULL), or -errno. */
int upload_sha256_fd(int fd, const volatile sig_atomic_t *stop, char ret_hex[UPLOAD_HEX_SIZE], uint64_t *ret_size);

/* Make sure runnerd stores `size` bytes of `fd` under `hex` (file name `name`,
 * a hint for the daemon). Prints a one-line "ukrun: ..." message on failure and
 * returns 0, -EINTR (interrupted) or another negative errno. `verbosity` is an
 * OPTS_* level: notes on stderr at OPTS_VERBOSE; a progress bar for uploads of
 * 4 MiB or more when stderr is a terminal, unless OPTS_QUIET. */
int upload_image(struct httpc *h, int fd, uint64_t size, const char *name, const char *hex, int verbosity);

#endif
