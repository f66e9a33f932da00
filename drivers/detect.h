/*
 * detect.h — image probing: which platform can run this file?
 *
 * Shared by the client (warnings, platform guess) and the daemon (auto
 * platform, 126 for images nothing can run). Pure functions over bytes: the
 * input is untrusted, every offset is bounds-checked, garbage never fails the
 * call but yields DRV_PLATFORM_NONE with a summary saying why.
 *
 * Rules (DESIGN §5 and §7): a multiboot v1 header in the first 8 KiB → qemu
 * (also for Unikraft's ELF32 wrapper); an x86-64 ELF with a Xen PHYS32_ENTRY
 * note → qemu (PVH); an x86-64 ELF64 with other Xen notes → xen; a multiboot2
 * header without either of the first two → none (QEMU's -kernel has no
 * multiboot2 loader; the summary says so); any other x86-64 ELF64 executable
 * (static, static-pie, dynamic) without a multiboot2 header → linuxu;
 * anything else → none. File-name suffixes (_qemu-, _kvm-, _xen-, _linuxu-, _fc-) only
 * break ties between platforms the bytes already allow.
 */
#ifndef UKRUN_DETECT_H
#define UKRUN_DETECT_H

#include <stddef.h>

#include "platform.h"

#define DETECT_MULTIBOOT (1u << 0)     /* multiboot v1 header: magic, valid checksum, 4-aligned, first 8 KiB */
#define DETECT_PVH (1u << 1)           /* ELF note XEN_ELFNOTE_PHYS32_ENTRY (type 18, name "Xen") */
#define DETECT_XEN_PV (1u << 2)        /* ELF64 with "Xen" notes but no PHYS32_ENTRY */
#define DETECT_ELF64 (1u << 3)         /* ELFCLASS64 */
#define DETECT_STATIC (1u << 4)        /* ET_EXEC without PT_INTERP */
#define DETECT_STATIC_PIE (1u << 5)    /* ET_DYN with an entry point, without PT_INTERP */
#define DETECT_DYNAMIC (1u << 6)       /* has PT_INTERP */
#define DETECT_UNIKRAFT (1u << 7)      /* .uk_* section, "Unikraft"/"Powered by" bytes or a Unikraft name suffix */
#define DETECT_ELF32_WRAPPER (1u << 8) /* ELF32 around a multiboot kernel (Unikraft >= 0.16.2 qemu images) */
#define DETECT_MULTIBOOT2 (1u << 9)    /* multiboot2 header (i386): magic, valid checksum, 8-aligned, first 32 KiB */
#define DETECT_UK_ENV (1u << 10)        /* Unikraft library parameters of posix_environ (`env.vars=[...]`) */

/* Bytes detect_file reads at most; ELF parts past this are treated as absent. */
#define DETECT_MAX_READ (64u << 20)

struct detect_result {
	enum drv_platform platform; /* DRV_PLATFORM_NONE = not runnable (exit 126) */
	unsigned flags;             /* DETECT_* */
	char summary[200];          /* what it is, or why it is not runnable */
};

/* Probe `len` bytes at `buf`. `name_hint` (the user's file name, may be NULL)
 * breaks ties only. Returns 0 and fills *ret, or -EINVAL for NULL buf/ret
 * (buf may be NULL when len is 0). Never fails on garbage. */
int detect_buffer(const void *buf, size_t len, const char *name_hint, struct detect_result *ret);

/* The byte-string part of the probe ("Unikraft" or "Powered by" anywhere in the first
 * DETECT_MAX_READ bytes) done piece by piece as the bytes arrive (an upload), so the probe
 * of the whole need not scan them again. Zero-initialise, feed every piece in order. */
struct detect_scan {
	int found;
	unsigned long long seen; /* bytes scanned */
	unsigned char tail[9];   /* the last bytes seen (a string may continue in the next piece) */
	size_t tail_len;
};
void detect_scan_feed(struct detect_scan *s, const void *buf, size_t len);
/* detect_buffer() with the byte-string answer taken from `scan`, which was fed exactly
 * these `len` bytes (NULL: scan them as detect_buffer does). Same result. */
int detect_buffer_scanned(const void *buf, size_t len, const char *name_hint, const struct detect_scan *scan,
                          struct detect_result *ret);

/* Read up to DETECT_MAX_READ bytes of `path` and probe them (name_hint as
 * above; NULL means the basename of `path`). Returns 0, -EINVAL for NULL
 * args, or -errno when the file cannot be opened or read. */
int detect_file(const char *path, const char *name_hint, struct detect_result *ret);

#endif
