/*
 * platform.h — the platforms an image can target, and their names. Shared by the client,
 * image detection, the drivers and the daemon; it pulls in nothing (no libuv, no driver
 * internals), so the ukrun client builds against it alone.
 */
#ifndef UKRUN_PLATFORM_H
#define UKRUN_PLATFORM_H

/* Platforms an image can target (bit values, so a driver can serve several). */
enum drv_platform {
	DRV_PLATFORM_NONE = 0,
	DRV_PLATFORM_QEMU = 1 << 0,   /* KVM/QEMU x86_64: multiboot / PVH kernels */
	DRV_PLATFORM_LINUXU = 1 << 1, /* a Linux ELF run as a sandboxed process */
	DRV_PLATFORM_XEN = 1 << 2,    /* Xen PV/PVH through libvirt libxl */
};

/* "qemu" → DRV_PLATFORM_QEMU ("kvm" too); NULL / unknown → DRV_PLATFORM_NONE. */
enum drv_platform drv_platform_from_name(const char *name);
/* "qemu", "linuxu", "xen"; "none" for anything else. */
const char *drv_platform_name(enum drv_platform platform);

#endif
