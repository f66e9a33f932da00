/*
 * monoclock.h — milliseconds on the monotonic clock, for deadlines and durations outside a libuv
 * loop (blocking helpers, the client). Inside the loop use uv_now(), which is the loop's cached
 * time. Part of the small ukrun_detect library, which needs nothing else.
 */
#ifndef UKRUN_MONOCLOCK_H
#define UKRUN_MONOCLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds: never goes back, unrelated to the wall clock. */
uint64_t mono_ms(void);

#endif
