/*
 * fuzz_detect.c — libFuzzer harness for drivers/detect.c: the input is an
 * image file. It is probed as a buffer with no name and with each platform
 * suffix the tie-break rule knows, and as a file (a memfd written with the
 * same bytes) through detect_file, and scanned piece by piece (detect_scan_feed) as an
 * upload is, both of which must agree with detect_buffer.
 * detect's contract: never fails on garbage, always a NUL-terminated,
 * non-empty summary, a known platform.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "detect.h"

#define FAIL(...) (fprintf(stderr, "fuzz_detect: " __VA_ARGS__), fputc('\n', stderr), abort())

static int memfd = -1;
static char memfd_path[64];

static const char *const hints[] = {
	NULL, "app_qemu-x86_64", "app_kvm-x86_64", "app_xen-x86_64", "app_linuxu-x86_64", "app_fc-x86_64",
	"app.dbg",
};

static void check(const struct detect_result *r, const char *hint)
{
	if (!memchr(r->summary, '\0', sizeof(r->summary)) || !r->summary[0])
		FAIL("bad summary with hint %s", hint ? hint : "(none)");
	if (r->platform != DRV_PLATFORM_NONE && !drv_platform_name(r->platform))
		FAIL("unknown platform %d", (int)r->platform);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	memfd = memfd_create("fuzz_detect", MFD_CLOEXEC);
	if (memfd < 0)
		FAIL("memfd_create: %s", strerror(errno));
	snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct detect_result r, f;
	for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++) {
		if (detect_buffer(size ? data : NULL, size, hints[i], &r) != 0)
			FAIL("detect_buffer failed on %zu bytes", size);
		check(&r, hints[i]);
	}
	if (ftruncate(memfd, 0) < 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
		FAIL("memfd write: %s", strerror(errno));
	if (detect_file(memfd_path, hints[1], &f) != 0)
		FAIL("detect_file failed on %zu bytes", size);
	check(&f, hints[1]);
	detect_buffer(size ? data : NULL, size, hints[1], &r);
	if (r.platform != f.platform || r.flags != f.flags || strcmp(r.summary, f.summary) != 0)
		FAIL("detect_file says %d/%#x '%s', detect_buffer %d/%#x '%s'", (int)f.platform, f.flags, f.summary,
		     (int)r.platform, r.flags, r.summary);
	/* Scanned in pieces as an upload arrives (split where the first byte says, then the rest
	 * in 7-byte pieces), the probe gives detect_buffer's answer. */
	struct detect_scan sc = { 0 };
	size_t cut = size ? data[0] % (size + 1) : 0;
	detect_scan_feed(&sc, data, cut);
	for (size_t off = cut; off < size; off += 7)
		detect_scan_feed(&sc, data + off, size - off < 7 ? size - off : 7);
	if (detect_buffer_scanned(size ? data : NULL, size, hints[1], &sc, &f) != 0)
		FAIL("detect_buffer_scanned failed on %zu bytes", size);
	if (r.platform != f.platform || r.flags != f.flags || strcmp(r.summary, f.summary) != 0)
		FAIL("scanned in pieces: %d/%#x '%s', detect_buffer %d/%#x '%s'", (int)f.platform, f.flags, f.summary,
		     (int)r.platform, r.flags, r.summary);
	return 0;
}
