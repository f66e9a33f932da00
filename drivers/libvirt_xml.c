/*
 * libvirt_xml.c — the pure parts of the libvirt driver: the transient
 * domain's XML, its name, the ownership mark and the end classifier.
 *
 * The domain boots the kernel directly (<os><kernel>, <cmdline> built by the
 * qemu driver's argument rules), with <acpi/> (without it a Unikraft clean
 * halt is invisible to libvirt), a panic device (pvpanic at 0x505, so a
 * Unikraft crash is "Crashed Panicked") and on_reboot=restart so a triple
 * fault shows as a reboot event instead of a power-off. The isa-debug-exit
 * devices come through <qemu:commandline>; for Unikraft images only the 0xf4
 * one: Unikraft writes 41/42 to 0x501 before it tries pvpanic and ACPI, and
 * libvirt cannot report the value written, so leaving 0x501 unbacked lets
 * the crash / halt reach the devices that libvirt does report.
 */
#include "errmsg.h"
#include "libvirt_int.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_int.h" /* qemu_build_append: the same argument rules as the qemu driver */

/* Text with XML's five special characters escaped (control characters other than
 * tab/newline cannot appear in XML 1.0 at all: refused by the caller's checks). */
void lv_xml_esc(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '\'': fputs("&apos;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
	}
}

int lv_xml_text_ok(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
			return 0;
	return 1;
}

void lv_xml_name_meta(FILE *f, const char *name, const char *owner, const char *run_id)
{
	fputs("  <name>", f);
	lv_xml_esc(f, name);
	fputs("</name>\n  <metadata>\n    <" LV_META_PREFIX ":run xmlns:" LV_META_PREFIX "='" LV_META_NS "'>"
	      "<owner>", f);
	lv_xml_esc(f, owner);
	fputs("</owner><id>", f);
	lv_xml_esc(f, run_id);
	fputs("</id></" LV_META_PREFIX ":run>\n  </metadata>\n", f);
}

static void qemu_arg(FILE *f, const char *v)
{
	fputs("    <qemu:arg value='", f);
	lv_xml_esc(f, v);
	fputs("'/>\n", f);
}

int lv_build_xml(const struct drv_spec *spec, const struct lv_xml_opts *o, char **ret_xml,
                 char **ret_err)
{
	int unikraft = !!(spec->flags & (DRV_F_UNIKRAFT | DRV_F_LOADER));
	if (!o->name || !o->owner || !o->kernel_path)
		return errmsg_fail(ret_err, -EINVAL, "libvirt: the run has no domain name, owner or kernel");
	const char *machine = spec->machine ? spec->machine : "pc";
	if (strcmp(machine, "qboot") == 0 || strncmp(machine, "microvm", 7) == 0)
		return errmsg_fail(ret_err, -EINVAL,
		            "libvirt: machine types qboot and microvm are for the qemu driver only (use pc or q35)");
	char *append = NULL;
	int r = qemu_build_append(spec, &append, ret_err);
	if (r < 0)
		return r;
	if (!lv_xml_text_ok(append) || !lv_xml_text_ok(o->kernel_path) || !lv_xml_text_ok(o->initrd_path)) {
		free(append);
		return errmsg_fail(ret_err, -EINVAL, "libvirt: arguments and paths must not contain control characters");
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f) {
		free(append);
		return -ENOMEM;
	}
	fprintf(f, "<domain type='%s' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n",
	        o->kvm ? "kvm" : "qemu");
	lv_xml_name_meta(f, o->name, o->owner, spec->run_id);
	fprintf(f, "  <memory unit='MiB'>%u</memory>\n",
	        spec->memory_mb ? spec->memory_mb : (spec->flags & DRV_F_LOADER) ? 256 : 128);
	fprintf(f, "  <vcpu>%u</vcpu>\n", spec->vcpus ? spec->vcpus : 1);
	fputs("  <os>\n    <type arch='x86_64' machine='", f);
	lv_xml_esc(f, machine);
	fputs("'>hvm</type>\n", f);
	fputs("    <kernel>", f);
	lv_xml_esc(f, o->kernel_path);
	fputs("</kernel>\n", f);
	if (o->initrd_path) {
		fputs("    <initrd>", f);
		lv_xml_esc(f, o->initrd_path);
		fputs("</initrd>\n", f);
	}
	if (*append) {
		fputs("    <cmdline>", f);
		lv_xml_esc(f, append);
		fputs("</cmdline>\n", f);
	}
	fputs("  </os>\n  <features><acpi/></features>\n", f);
	/* TCG: every feature QEMU can emulate (as the qemu driver's -cpu max); KVM: QEMU's
	 * default model (`host` aborts on these machines, DESIGN §8). */
	if (!o->kvm)
		fputs("  <cpu mode='maximum'/>\n", f);
	fputs("  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
	      "  <on_crash>destroy</on_crash>\n", f);
	fputs("  <devices>\n"
	      "    <controller type='usb' model='none'/>\n"
	      "    <memballoon model='none'/>\n"
	      "    <serial type='pty'>", f);
	if (o->serial_log && lv_xml_text_ok(o->serial_log)) {
		fputs("<log file='", f);
		lv_xml_esc(f, o->serial_log);
		fputs("' append='off'/>", f);
	}
	fputs("<target port='0'/></serial>\n"
	      "    <console type='pty'><target type='serial' port='0'/></console>\n"
	      "    <panic model='isa'><address type='isa' iobase='0x505'/></panic>\n"
	      "  </devices>\n", f);
	if (o->run_as_uid >= 0)
		fprintf(f, "  <seclabel type='static' model='dac' relabel='no'><label>+%d:+%d</label></seclabel>\n",
		        o->run_as_uid, o->run_as_gid);
	fputs("  <qemu:commandline>\n", f);
	qemu_arg(f, "-device");
	qemu_arg(f, "isa-debug-exit,iobase=0xf4,iosize=0x04");
	if (!unikraft) {
		qemu_arg(f, "-device");
		qemu_arg(f, "isa-debug-exit,iobase=0x501,iosize=0x02");
	}
	/* SeaBIOS: no banner or escape sequences on the serial port. */
	qemu_arg(f, "-fw_cfg");
	qemu_arg(f, "name=etc/sercon-port,string=0");
	fputs("  </qemu:commandline>\n</domain>\n", f);
	fclose(f);
	free(append);
	if (!buf)
		return -ENOMEM;
	*ret_xml = buf;
	return 0;
}

char *lv_domain_name(const char *run_id, const char *owner)
{
	/* FNV-1a: a stable short tag of the owner, not a security boundary (the
	 * metadata decides what a daemon may reap). */
	uint32_t h = 2166136261u;
	for (const char *p = owner; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	char *s = NULL;
	if (asprintf(&s, LV_NAME_PREFIX "%s-%08x", run_id, h) < 0)
		return NULL;
	return s;
}

static char *unescape(const char *s, size_t n)
{
	static const struct {
		const char *ent;
		char c;
	} ents[] = {{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&apos;", '\''}, {"&quot;", '"'}};
	char *out = malloc(n + 1), *w = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t k, el = 0;
		for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
			el = strlen(ents[k].ent);
			if (i + el <= n && memcmp(s + i, ents[k].ent, el) == 0)
				break;
		}
		if (k < sizeof(ents) / sizeof(ents[0])) {
			*w++ = ents[k].c;
			i += el;
		} else {
			*w++ = s[i++];
		}
	}
	*w = '\0';
	return out;
}

char *lv_meta_owner(const char *meta_xml)
{
	/* libvirt hands the element back re-serialised, with its own namespace prefix
	 * on the root only: <owner> stays unprefixed. */
	const char *a = meta_xml ? strstr(meta_xml, "<owner>") : NULL;
	if (!a)
		return NULL;
	a += strlen("<owner>");
	const char *b = strstr(a, "</owner>");
	return b ? unescape(a, (size_t)(b - a)) : NULL;
}

void lv_classify_end(const struct lv_end_facts *f, struct drv_outcome *ret_out)
{
	*ret_out = (struct drv_outcome){.end = DRV_END_ERROR};
	if (f->killed) {
		ret_out->end = DRV_END_KILLED;
	} else if (f->rebooted) {
		ret_out->end = DRV_END_RESET;
	} else if (f->crashed || f->stopped == VIR_DOMAIN_EVENT_STOPPED_CRASHED) {
		ret_out->end = DRV_END_PANIC;
	} else if (f->paused) {
		ret_out->message = "the hypervisor paused the guest (an emulation failure such as a KVM internal error)";
	} else if (f->shutdown || f->stopped == VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN) {
		ret_out->end = DRV_END_POWEROFF;
	} else if (f->stopped == VIR_DOMAIN_EVENT_STOPPED_FAILED) {
		/* QEMU ended by itself: isa-debug-exit (or QEMU failing). libvirt daemonises
		 * QEMU and never sees its exit status, so the value written is unknown. */
		ret_out->end = DRV_END_DEBUG_EXIT_UNKNOWN;
		ret_out->message = "QEMU ended on its own (an isa-debug-exit write, or QEMU failed); "
		                   "libvirt does not report QEMU's exit status, so the value is unknown";
	} else if (f->stopped == VIR_DOMAIN_EVENT_STOPPED_DESTROYED) {
		ret_out->message = "the domain was destroyed by someone other than ukrun";
	} else if (f->stopped >= 0) {
		ret_out->value = f->stopped;
		ret_out->message = "the domain stopped for a reason ukrun does not expect (migrated, saved, ...)";
	} else {
		ret_out->message = "the domain ended without a lifecycle event";
	}
}
