/*
 * qemu_int.h — internals of the qemu driver, shared between its files
 * (qemu.c: argv and runs; qemu_probe.c: host probing) and its unit tests:
 * the probed host facts, the argv builder and the pure classifiers.
 */
#ifndef UKRUN_QEMU_INT_H
#define UKRUN_QEMU_INT_H

#include <stddef.h>

#include "command.h"
#include "errmsg.h"
#include "driver.h"
#include "qmp.h"

#define QEMU_QBOOT_ROM "/usr/share/qemu/qboot.rom"

/* What probe found on this host (the driver's global state). */
struct qemu_state {
	char *binary;     /* qemu-system-x86_64 path or name */
	char *version;    /* "7.2.22" */
	int kvm;          /* /dev/kvm usable and a CPU model ran a guest */
	char *kvm_cpu;    /* -cpu value that worked under KVM; NULL = QEMU's default model */
	int qboot;        /* QEMU_QBOOT_ROM exists */
	int sandbox;      /* `-sandbox on` accepted */
	int kvm_fails_unikraft; /* KVM already failed to run a Unikraft guest here (a software KVM):
	                         * later Unikraft guests with accel auto go straight to TCG */
};

/* Find QEMU and what it can do here (the driver table's probe): fills a
 * malloc'd struct qemu_state in *ret_state and a one-line summary in
 * *ret_info. Returns 0, or a negative errno with *ret_err. */
int qemu_probe(void **ret_state, char **ret_info, char **ret_err);

/* Free a state from qemu_probe (NULL is a no-op). */
void qemu_unprobe(void *state);

/* asprintf that returns the string, or NULL when out of memory. */

/* Build the QEMU command for `spec` (accelerator `kvm` = 1 → KVM, 0 → TCG).
 * Returns 0 and *ret_cmd, or -EINVAL with *ret_err for an unusable spec. */
int qemu_build_cmd(const struct qemu_state *st, const struct drv_spec *spec, int kvm,
                   struct cmd **ret_cmd, char **ret_err);

/* The -append string for `spec` (malloc'd in *ret_append; "" when there is nothing).
 * Returns 0 or -EINVAL (an argument Unikraft's parser cannot carry, e.g. an empty one). */
int qemu_build_append(const struct drv_spec *spec, char **ret_append, char **ret_err);

/* The Unikraft release named by the first "Unikraft <Codename> M.N" (or "(M.N") in buf, as
 * 100 * M + N (0.17.0 → 17), or -1 when there is none. */
int qemu_unikraft_release(const char *buf, size_t len);

/* Unikraft images from this release on boot on pc + qboot (0.16.3 asserts there). */
#define QEMU_UK_QBOOT_MIN 17
/* Larger images are not scanned for their release (they keep SeaBIOS). */
#define QEMU_UK_SCAN_MAX (256LL << 20)

/* 1 when QEMU's stderr text shows that KVM could not run the guest. */
int qemu_kvm_failure(const char *text, size_t len);

/* 1 when QEMU's stderr text shows that -kernel could not load the image as any kernel it knows (Linux,
 * multiboot v1, PVH: hw/i386/x86.c, multiboot.c): the image is not runnable here (126), not a runner error. */
int qemu_kernel_refused(const char *text, size_t len);

/* What happened to one QEMU process, for qemu_classify_end. */
struct qemu_end_facts {
	int killed;               /* the core asked us to kill it */
	int handshake;            /* QMP handshake completed (the guest ran) */
	enum qmp_guest_event ev;  /* strongest guest event seen */
	int signal;               /* QEMU died of this signal (0 = exited) */
	int status;               /* exit status when signal == 0 */
};

/* Map the facts to an outcome (message left NULL: the caller adds stderr). */
void qemu_classify_end(const struct qemu_end_facts *f, struct drv_outcome *ret_out);

#endif
