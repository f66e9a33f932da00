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

const char *drv_host_option(const struct drv_host *host, const char *key)
{
	size_t n = strlen(key);
	for (size_t i = 0; host && host->options && host->options[i]; i++)
		if (strncmp(host->options[i], key, n) == 0 && host->options[i][n] == '=')
			return host->options[i] + n + 1;
	return NULL;
}
