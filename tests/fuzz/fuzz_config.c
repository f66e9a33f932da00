/*
 * fuzz_config.c — libFuzzer harness for runnerd/config.c: the input is a
 * runnerd.conf. It is written to a memfd and read through config_read, the
 * same call runnerd's main makes (libinih's ini_parse and runnerd's key
 * callback). A file that is accepted must leave only values in the ranges
 * config_apply allows.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

#define FAIL(...) (fprintf(stderr, "fuzz_config: " __VA_ARGS__), fputc('\n', stderr), abort())

static int memfd = -1;
static char memfd_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	memfd = memfd_create("runnerd.conf", MFD_CLOEXEC);
	if (memfd < 0)
		FAIL("memfd_create: %s", strerror(errno));
	snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c = { .user_mode = 1, .idle_timeout_s = -1, .run_timeout_s = 300, .max_queued = 1000,
	                    .console_cap = 16u << 20, .max_image_size = 1ull << 30, .console_grace_ms = 2000,
	                    .log_level = LOG_INFO };
	if (ftruncate(memfd, 0) < 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
		FAIL("memfd write: %s", strerror(errno));
	int r = config_read(&c, memfd_path);
	if (r < 0)
		FAIL("config_read could not read its file (%d)", r);
	if (r == 0 && (c.run_timeout_s > 7 * 86400 || c.max_concurrent > 1024 || c.max_queued > 1000000 ||
	               c.console_cap > (1ull << 40) || c.max_image_size > (1ull << 40) ||
	               c.console_grace_ms > 3600000 || c.idle_timeout_s > 365 * 86400 || c.idle_timeout_s < -1 ||
	               c.log_level > LOG_DEBUG))
		FAIL("an accepted file set a value out of range");
	config_free(&c);
	return 0;
}
