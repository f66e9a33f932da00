/* drivers.c — the explicit list of compiled-in drivers. */
#include "driver.h"

#include <string.h>

const struct driver *const drv_table[] = {
	&drv_qemu,
	&drv_linuxu,
	&drv_libvirt, /* after qemu: never the default for a platform, chosen by name (--driver libvirt) */
	&drv_xen,     /* Xen PV/PVH images, through libvirt's libxl driver (shares libvirt's thread) */
	NULL,
};

const struct driver *drv_for_platform(enum drv_platform platform)
{
	for (size_t i = 0; drv_table[i]; i++)
		if (drv_table[i]->platforms & (unsigned)platform)
			return drv_table[i];
	return NULL;
}

static const struct {
	enum drv_platform platform;
	const char *name;
} platform_names[] = {
	{DRV_PLATFORM_QEMU, "qemu"},
	{DRV_PLATFORM_LINUXU, "linuxu"},
	{DRV_PLATFORM_XEN, "xen"},
};

enum drv_platform drv_platform_from_name(const char *name)
{
	if (!name)
		return DRV_PLATFORM_NONE;
	for (size_t i = 0; i < sizeof(platform_names) / sizeof(platform_names[0]); i++)
		if (strcmp(platform_names[i].name, name) == 0)
			return platform_names[i].platform;
	if (strcmp(name, "kvm") == 0)
		return DRV_PLATFORM_QEMU;
	return DRV_PLATFORM_NONE;
}

const char *drv_platform_name(enum drv_platform platform)
{
	for (size_t i = 0; i < sizeof(platform_names) / sizeof(platform_names[0]); i++)
		if (platform_names[i].platform == platform)
			return platform_names[i].name;
	return "none";
}
