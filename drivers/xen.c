/*
 * xen.c — the Xen driver: Unikraft `_xen-x86_64` images (and any x86-64 ELF
 * with Xen notes) as transient domains of libvirt's libxl driver, on
 * xen:///system or the URI of runnerd's `xen-uri` setting (the local host's
 * option), or a remote host's xen+ssh:// / xen+tls:// URI.
 *
 * Everything but the domain XML is the libvirt driver's (libvirt.c,
 * libvirt_thread.c): the same libvirt thread and event loop (one per
 * process), the same commands, console stream, lifecycle events, ownership
 * metadata, `ukrun-<id>-<owner tag>` names, reaping and storage pool for
 * remote hosts. This file adds the Xen flavour: its URI, a probe that says
 * why Xen is missing, and the XML:
 *
 *   PV  (Xen notes, no PHYS32_ENTRY): <type arch='x86_64' machine='xenpv'>linux</type>
 *   PVH (XEN_ELFNOTE_PHYS32_ENTRY):   <type arch='x86_64' machine='xenpvh'>xen</type>
 *
 * with the kernel booted directly, the arguments in <cmdline> by the qemu
 * driver's rules (Unikraft `--`), the Xen PV console, on_poweroff and
 * on_crash destroy (libxl reports them as Stopped Shutdown / Stopped Crashed:
 * DRV_END_POWEROFF / DRV_END_PANIC) and on_reboot restart (the reboot event:
 * DRV_END_RESET), as on the libvirt driver.
 */
#include "errmsg.h"
#include "libvirt_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "detect.h"
#include "qemu_int.h" /* qemu_build_append: the same argument rules as the qemu driver */

#define XEN_DEFAULT_URI "xen:///system"
#define XEN_URI_OPTION "xen-uri" /* the local host's option (runnerd --xen-uri / runnerd.conf) */

int xen_build_xml(const struct drv_spec *spec, const struct lv_xml_opts *o, char **ret_xml, char **ret_err)
{
	if (!o->name || !o->owner || !o->kernel_path || !spec->image_path)
		return errmsg_fail(ret_err, -EINVAL, "xen: the run has no domain name, owner or kernel");
	if (spec->initrd_path)
		return errmsg_fail(ret_err, -ENOTSUP, "xen: loader mode (an initrd) is for the qemu driver only");
	if (spec->machine)
		return errmsg_fail(ret_err, -EINVAL, "xen: machine types are for the qemu and libvirt drivers only");
	struct detect_result d;
	int r = detect_file(spec->image_path, spec->image_name, &d);
	if (r < 0)
		return errmsg_fail(ret_err, r, "xen: cannot read the image");
	int pvh = !!(d.flags & DETECT_PVH);
	if (!pvh && !(d.flags & DETECT_XEN_PV)) {
		char *m = NULL;
		if (ret_err && asprintf(&m, "xen: the image has no Xen ELF notes (%s): not a Xen PV or PVH kernel",
		                        d.summary) >= 0)
			*ret_err = m;
		return -ENOEXEC;
	}
	char *append = NULL;
	r = qemu_build_append(spec, &append, ret_err);
	if (r < 0)
		return r;
	if (!lv_xml_text_ok(append) || !lv_xml_text_ok(o->kernel_path)) {
		free(append);
		return errmsg_fail(ret_err, -EINVAL, "xen: arguments and paths must not contain control characters");
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f) {
		free(append);
		return -ENOMEM;
	}
	/* libvirt's test:/// driver stands in for libxl in the tests: its domains are
	 * type='test' and its Xen guests i686 only, so the arch is left to it. */
	fprintf(f, "<domain type='%s'>\n", o->test_host ? "test" : "xen");
	lv_xml_name_meta(f, o->name, o->owner, spec->run_id);
	fprintf(f, "  <memory unit='MiB'>%u</memory>\n", spec->memory_mb ? spec->memory_mb : 128);
	fprintf(f, "  <vcpu>%u</vcpu>\n", spec->vcpus ? spec->vcpus : 1);
	fprintf(f, "  <os>\n    <type%s machine='%s'>%s</type>\n", o->test_host ? "" : " arch='x86_64'",
	        pvh ? "xenpvh" : "xenpv", pvh ? "xen" : "linux");
	fputs("    <kernel>", f);
	lv_xml_esc(f, o->kernel_path);
	fputs("</kernel>\n", f);
	if (*append) {
		fputs("    <cmdline>", f);
		lv_xml_esc(f, append);
		fputs("</cmdline>\n", f);
	}
	fputs("  </os>\n"
	      "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
	      "  <on_crash>destroy</on_crash>\n"
	      "  <devices>\n"
	      "    <console type='pty'><target type='xen' port='0'/></console>\n"
	      "  </devices>\n"
	      "</domain>\n", f);
	fclose(f);
	free(append);
	if (!buf)
		return -ENOMEM;
	*ret_xml = buf;
	return 0;
}

/* xen:///, xen+ssh://, xen+tcp://, xen+tls://, and libvirt's test driver (the tests). */
static int xen_uri_ok(const char *uri)
{
	return strncmp(uri, "xen", 3) == 0;
}

static const struct lv_flavor xen_flavor = {
	.name = "xen",
	.default_uri = XEN_DEFAULT_URI,
	.uri_option = XEN_URI_OPTION,
	.uri_ok = xen_uri_ok,
	.local_uri = "xen:///",
	.hv_name = "Xen",
	.xen = 1,
	.build_xml = xen_build_xml,
};

static int xen_probe(const struct drv_host *host, void **ret_state, char **ret_info, char **ret_err)
{
	const char *uri = lv_host_uri(&xen_flavor, host, ret_err);
	if (!uri)
		return -ENOTSUP;
	/* A local Xen host is a dom0: without /proc/xen there is no hypervisor to ask. */
	if (strncmp(uri, "xen:///", 7) == 0 && access("/proc/xen", F_OK) != 0) {
		*ret_err = errmsg_printf("no Xen hypervisor: /proc/xen absent (this machine is not a Xen dom0; "
		                       "%s needs Xen and libvirt's libxl driver)", uri);
		return -ENODEV;
	}
	char *err = NULL;
	int r = lv_probe_with(&xen_flavor, host, ret_state, ret_info, &err);
	if (r < 0) {
		*ret_err = errmsg_printf("no usable Xen host: %s", err ? err : "unknown error");
		free(err);
	}
	return r;
}

const struct driver drv_xen = {
	.name = "xen",
	.platforms = DRV_PLATFORM_XEN,
	.caps = DRV_CAP_ARGS | DRV_CAP_MEMORY | DRV_CAP_VCPUS,
	.probe = xen_probe,
	.unprobe = lv_unprobe,
	.prepare = lv_prepare,
	.launch = lv_launch,
	.kill = lv_kill,
	.destroy = lv_destroy,
	.reap = lv_reap,
	.health = lv_health,
};
