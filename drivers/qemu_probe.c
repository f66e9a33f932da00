/*
 * qemu_probe.c — what the qemu driver can use on this host: the QEMU binary
 * and its version, qboot, the seccomp sandbox, and whether KVM runs a guest
 * (with which CPU model). Each is found by booting a tiny multiboot kernel
 * rather than trusted from version numbers or device nodes alone.
 */
#include "qemu_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define QEMU_DEFAULT_BIN "qemu-system-x86_64"
#define QEMU_PROBE_TIMEOUT_MS 5000
#define QEMU_PROBE_VALUE 21 /* probe kernel writes this to 0xf4: QEMU exits 43 */

static char *find_in_path(const char *name)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	char *dup = strdup(path), *save = NULL;
	char *found = NULL;
	for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		char *cand = errmsg_printf("%s/%s", d, name);
		if (cand && access(cand, X_OK) == 0)
			found = cand;
		else
			free(cand);
	}
	free(dup);
	return found;
}

static int kvm_usable(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int ok = ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
	if (ok) {
		int vm = ioctl(fd, KVM_CREATE_VM, 0);
		ok = vm >= 0;
		if (vm >= 0)
			close(vm);
	}
	close(fd);
	return ok;
}

/* A multiboot kernel (a.out kludge, loaded at 1 MiB) that writes
 * QEMU_PROBE_VALUE to isa-debug-exit 0xf4 and halts. */
static int write_probe_kernel(char *path)
{
	static const unsigned char k[] = {
		0x02, 0xb0, 0xad, 0x1b, 0x00, 0x00, 0x01, 0x00, 0xfe, 0x4f, 0x51, 0xe4, /* magic, flags, sum */
		0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x10, 0x00, /* header_addr, load_addr */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* load_end, bss_end */
		0x20, 0x00, 0x10, 0x00,                         /* entry */
		0xb8, QEMU_PROBE_VALUE, 0x00, 0x00, 0x00,       /* mov eax, value */
		0xe7, 0xf4,                                     /* out 0xf4, eax */
		0xfa, 0xf4, 0xeb, 0xfd,                         /* cli; hlt; jmp hlt */
	};
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = write(fd, k, sizeof(k)) == (ssize_t)sizeof(k) ? 0 : -EIO;
	close(fd);
	if (r < 0)
		unlink(path);
	return r;
}

/* Boot the probe kernel once; 1 when it ran to its debug-exit. */
static int probe_boot(const struct qemu_state *st, const char *kernel, int kvm, const char *cpu,
                      int sandbox, char **ret_out)
{
	struct cmd *c = cmd_new(st->binary);
	const char *args[] = {"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-M", "pc",
	                      "-m", "32", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", kernel,
	                      "-accel", kvm ? "kvm" : "tcg",
	                      /* as qemu_build_cmd: no ACPI PCI hotplug tables to build */
	                      "-global", "PIIX4_PM.acpi-pci-hotplug-with-bridge-support=off",
	                      "-global", "PIIX4_PM.acpi-root-pci-hotplug=off"};
	for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
		cmd_arg(c, args[i]);
	if (st->qboot) {
		cmd_arg(c, "-bios");
		cmd_arg(c, QEMU_QBOOT_ROM);
	}
	if (cpu) {
		cmd_arg(c, "-cpu");
		cmd_arg(c, cpu);
	}
	if (sandbox) {
		cmd_arg(c, "-sandbox");
		cmd_arg(c, "on");
	}
	int r = cmd_run_sync(c, QEMU_PROBE_TIMEOUT_MS, 4096, ret_out);
	cmd_free(c);
	return r == ((QEMU_PROBE_VALUE << 1) | 1);
}

static void state_free(struct qemu_state *st)
{
	if (!st)
		return;
	free(st->binary);
	free(st->version);
	free(st->kvm_cpu);
	free(st);
}

int qemu_probe(void **ret_state, char **ret_info, char **ret_err)
{
	struct qemu_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	const char *env = getenv("UKRUN_QEMU");
	st->binary = env && *env ? strdup(env) : find_in_path(QEMU_DEFAULT_BIN);
	if (!st->binary || access(st->binary, X_OK) != 0) {
		*ret_err = errmsg_printf("qemu: '%s' not found or not executable",
		                          st->binary ? st->binary : QEMU_DEFAULT_BIN);
		state_free(st);
		return -ENOENT;
	}
	struct cmd *c = cmd_new(st->binary);
	cmd_arg(c, "--version");
	char *out = NULL;
	int r = cmd_run_sync(c, QEMU_PROBE_TIMEOUT_MS, 4096, &out);
	cmd_free(c);
	const char *v = out ? strstr(out, "version ") : NULL;
	if (r != 0 || !v) {
		*ret_err = errmsg_printf("qemu: '%s --version' failed", st->binary);
		free(out);
		state_free(st);
		return -ENOEXEC;
	}
	v += strlen("version ");
	st->version = strndup(v, strcspn(v, " \n("));
	free(out);
	st->qboot = access(QEMU_QBOOT_ROM, R_OK) == 0;

	char kernel[] = "/tmp/ukrun-qemu-probe-XXXXXX";
	r = write_probe_kernel(kernel);
	if (r < 0) {
		*ret_err = errmsg_printf("qemu: cannot write a probe kernel in /tmp: %s", strerror(-r));
		state_free(st);
		return r;
	}
	/* TCG is the floor: it must run, with or without the seccomp sandbox. */
	out = NULL;
	st->sandbox = probe_boot(st, kernel, 0, "max", 1, NULL);
	if (!st->sandbox && !probe_boot(st, kernel, 0, "max", 0, &out)) {
		*ret_err = errmsg_printf("qemu: %s cannot boot a test kernel under TCG: %.200s", st->binary,
		                          out ? out : "");
		free(out);
		unlink(kernel);
		state_free(st);
		return -ENOEXEC;
	}
	free(out);
	int have_kvm = kvm_usable();
	if (have_kvm) {
		/* QEMU 7.2 aborts with plain `host` on some hosts (MSR 0x10a); NULL = default model. */
		static const char *const cpus[] = {"host", "host,-arch-capabilities", NULL};
		for (size_t i = 0; i < sizeof(cpus) / sizeof(cpus[0]) && !st->kvm; i++) {
			if (probe_boot(st, kernel, 1, cpus[i], st->sandbox, NULL)) {
				st->kvm = 1;
				st->kvm_cpu = cpus[i] ? strdup(cpus[i]) : NULL;
			}
		}
	}
	unlink(kernel);
	if (st->kvm)
		*ret_info = errmsg_printf("qemu %s, accel kvm (cpu %s)%s", st->version,
		                           st->kvm_cpu ? st->kvm_cpu : "default", st->sandbox ? ", sandbox" : "");
	else
		*ret_info = errmsg_printf("qemu %s, tcg only (%s)%s", st->version,
		                           have_kvm ? "KVM could not run a test guest" : "no /dev/kvm",
		                           st->sandbox ? ", sandbox" : "");
	*ret_state = st;
	return 0;
}

void qemu_unprobe(void *state)
{
	state_free(state);
}
