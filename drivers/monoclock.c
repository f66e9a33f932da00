/* monoclock.c — monotonic milliseconds (see monoclock.h). */
#include "monoclock.h"

#include <time.h>

uint64_t mono_ms(void)
{
	struct timespec ts;

	/* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
