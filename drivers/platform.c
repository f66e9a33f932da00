/* platform.c — platform names (see platform.h). */
#include "platform.h"

#include <stddef.h>
#include <string.h>

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
