/*
 * tailbuf.h — a bounded tail buffer: the last `cap` bytes of a stream, in a buffer its owner
 * embeds (a guest's console, QEMU's stderr) to explain an end afterwards. Part of the small
 * ukrun_detect library, which needs nothing else.
 */
#ifndef UKRUN_TAILBUF_H
#define UKRUN_TAILBUF_H

#include <stddef.h>

/* Append `n` bytes at `data` to the `*len` bytes held in `buf` (capacity `cap`), dropping the
 * oldest bytes so that at most `cap` remain: afterwards `buf` holds the last min(cap, total)
 * bytes of the stream, oldest first. `data` may be NULL when `n` is 0. */
void tailbuf_append(char *buf, size_t cap, size_t *len, const void *data, size_t n);

#endif
