/* test_qemu.c — qemu driver: argv building, QMP event and exit classification, KVM-failure matcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "qemu_int.h"

static struct qemu_state host = {
	.binary = "qemu-system-x86_64", .version = "7.2.22", .qboot = 1, .sandbox = 1,
	.kvm = 1, .kvm_cpu = "host,-arch-capabilities",
};

/* Index of the first `word` in argv, or -1. */
static int find(char *const *argv, const char *word)
{
	for (int i = 0; argv[i]; i++)
		if (strcmp(argv[i], word) == 0)
			return i;
	return -1;
}

/* Value following option `opt` (asserting it is present). */
static const char *opt(char *const *argv, const char *o)
{
	int i = find(argv, o);
	assert_true(i >= 0);
	assert_non_null(argv[i + 1]);
	return argv[i + 1];
}

static struct cmd *build(const struct drv_spec *spec, int kvm)
{
	struct cmd *c = NULL;
	char *err = NULL;
	assert_int_equal(qemu_build_cmd(&host, spec, kvm, &c, &err), 0);
	assert_null(err);
	return c;
}

static void test_unikraft_argv(void **state)
{
	char *args[] = {"foo", "x y", "it's", "say \"hi\""};
	struct drv_spec s = {.run_id = "r1", .image_path = "/img/hello_qemu-x86_64", .workdir = "/run/w",
	                     .args = args, .nargs = 4, .flags = DRV_F_UNIKRAFT};
	struct cmd *c = build(&s, 0);
	char *const *v = cmd_argv(c);
	assert_string_equal(v[0], "qemu-system-x86_64");
	assert_true(find(v, "-nodefaults") > 0 && find(v, "-no-reboot") > 0 && find(v, "-S") > 0);
	assert_string_equal(opt(v, "-name"), "ukrun-r1");
	assert_string_equal(opt(v, "-M"), "pc"); /* Unikraft ≤ 0.16 needs SeaBIOS' memory map */
	assert_string_equal(opt(v, "-global"), "PIIX4_PM.acpi-pci-hotplug-with-bridge-support=off");
	assert_string_equal(opt(v, "-fw_cfg"), "name=etc/sercon-port,string=0");
	assert_string_equal(opt(v, "-accel"), "tcg");
	assert_string_equal(opt(v, "-cpu"), "max");
	assert_string_equal(opt(v, "-m"), "128");
	assert_string_equal(opt(v, "-smp"), "1");
	assert_string_equal(opt(v, "-serial"), "stdio");
	assert_string_equal(opt(v, "-qmp"), "unix:/run/w/qmp.sock,server=on,wait=on");
	assert_string_equal(opt(v, "-pidfile"), "/run/w/qemu.pid");
	assert_string_equal(opt(v, "-action"), "panic=shutdown");
	assert_string_equal(opt(v, "-sandbox"), "on");
	assert_string_equal(opt(v, "-kernel"), "/img/hello_qemu-x86_64");
	assert_int_equal(find(v, "-initrd"), -1);
	assert_true(find(v, "isa-debug-exit,iobase=0xf4,iosize=0x04") > 0);
	assert_true(find(v, "isa-debug-exit,iobase=0x501,iosize=0x02") > 0);
	assert_true(find(v, "pvpanic") > 0);
	/* uk_argnparse: quotes toggle, the other quote kind is literal inside; no `--`
	 * without library parameters (it would reach main). */
	assert_string_equal(opt(v, "-append"), "foo \"x y\" it\"'\"s \"say \"'\"'hi'\"'");
	cmd_free(c);
}

static void test_unikraft_params_and_kvm(void **state)
{
	char *args[] = {"a"};
	char *ukp[] = {"vfs.fstab=[]"};
	struct drv_spec s = {.run_id = "r2", .image_path = "/i", .workdir = "/w", .args = args, .nargs = 1,
	                     .uk_params = ukp, .nuk_params = 1, .memory_mb = 64, .vcpus = 2,
	                     .flags = DRV_F_UNIKRAFT};
	struct cmd *c = build(&s, 1);
	char *const *v = cmd_argv(c);
	assert_string_equal(opt(v, "-append"), "vfs.fstab=[] -- a");
	assert_string_equal(opt(v, "-accel"), "kvm");
	assert_string_equal(opt(v, "-cpu"), "host,-arch-capabilities");
	assert_string_equal(opt(v, "-m"), "64");
	assert_string_equal(opt(v, "-smp"), "2");
	cmd_free(c);
}

static void test_plain_argv(void **state)
{
	char *args[] = {"one", "two"};
	struct drv_spec s = {.run_id = "r3", .image_path = "/k.bin", .workdir = "/w", .args = args, .nargs = 2};
	struct cmd *c = build(&s, 0);
	char *const *v = cmd_argv(c);
	assert_string_equal(opt(v, "-M"), "pc");
	assert_string_equal(opt(v, "-bios"), QEMU_QBOOT_ROM);
	assert_int_equal(find(v, "-fw_cfg"), -1);
	assert_string_equal(opt(v, "-append"), "one two");
	/* pc (either firmware) drops the ACPI PCI hotplug tables; other machines get no PIIX4 globals. */
	assert_string_equal(opt(v, "-global"), "PIIX4_PM.acpi-pci-hotplug-with-bridge-support=off");
	assert_string_equal(v[find(v, "-global") + 2], "-global");
	assert_string_equal(v[find(v, "-global") + 3], "PIIX4_PM.acpi-root-pci-hotplug=off");
	cmd_free(c);

	struct drv_spec none = {.run_id = "r3", .image_path = "/k.bin", .workdir = "/w", .machine = "microvm"};
	c = build(&none, 0);
	v = cmd_argv(c);
	assert_string_equal(opt(v, "-M"), "microvm");
	assert_int_equal(find(v, "-global"), -1);
	assert_int_equal(find(v, "-append"), -1);
	assert_int_equal(find(v, "-fw_cfg"), -1);
	cmd_free(c);
}

static void test_loader_argv(void **state)
{
	char *args[] = {"--nocapture", "x y"};
	struct drv_spec s = {.run_id = "r4", .image_path = "/elfloader", .initrd_path = "/store/ab12",
	                     .workdir = "/w", .args = args, .nargs = 2, .flags = DRV_F_LOADER};
	struct cmd *c = build(&s, 0);
	char *const *v = cmd_argv(c);
	assert_string_equal(opt(v, "-kernel"), "/elfloader");
	assert_string_equal(opt(v, "-initrd"), "/store/ab12");
	assert_string_equal(opt(v, "-m"), "256");
	assert_string_equal(opt(v, "-M"), "pc");
	/* elfloader (raw ELF mode): every word becomes argv[1..], `--` included. */
	assert_string_equal(opt(v, "-append"), "--nocapture \"x y\"");
	cmd_free(c);
}

/* The default machine follows the Unikraft release in the image's banner: pc + qboot from 0.17
 * (same console as SeaBIOS, faster), pc + SeaBIOS for 0.16 (asserts on qboot) and unknown. */
static void test_unikraft_release(void **state)
{
	static const char a[] = "\0junk Unikraft halted\0Powered by Unikraft Telesto (0.16.3~e453b74a)\0";
	static const char b[] = "xx Unikraft Calypso 0.17.0~eaf6fda1 yy";
	static const char c[] = "Unikraft Unikraft 1.2";
	static const char none[] = "Unikraft halted. Unikraft";
	assert_int_equal(qemu_unikraft_release(a, sizeof(a) - 1), 16);
	assert_int_equal(qemu_unikraft_release(b, sizeof(b) - 1), 17);
	assert_int_equal(qemu_unikraft_release(c, sizeof(c) - 1), 102);
	assert_int_equal(qemu_unikraft_release(none, sizeof(none) - 1), -1);
	assert_int_equal(qemu_unikraft_release(b, 22), -1); /* the buffer ends at "0." */

	const char *const banners[] = {"Unikraft Calypso 0.17.0~eaf6fda1", "Unikraft Telesto 0.16.3~e453b74a", ""};
	const char *const want_bios[] = {QEMU_QBOOT_ROM, NULL, NULL};
	for (int i = 0; i < 3; i++) {
		char path[] = "/tmp/ukrun-test-qemu-XXXXXX";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		assert_true(write(fd, "\177ELF", 4) == 4);
		assert_true(write(fd, banners[i], strlen(banners[i]) + 1) == (ssize_t)strlen(banners[i]) + 1);
		close(fd);
		struct drv_spec s = {.run_id = "r9", .image_path = path, .workdir = "/w", .flags = DRV_F_UNIKRAFT};
		struct cmd *cm = build(&s, 1);
		char *const *v = cmd_argv(cm);
		assert_string_equal(opt(v, "-M"), "pc");
		if (want_bios[i]) {
			assert_string_equal(opt(v, "-bios"), want_bios[i]);
			assert_int_equal(find(v, "-fw_cfg"), -1);
		} else {
			assert_int_equal(find(v, "-bios"), -1);
			assert_string_equal(opt(v, "-fw_cfg"), "name=etc/sercon-port,string=0");
		}
		cmd_free(cm);
		/* The same kernel in loader mode follows the same rule. */
		s.flags = DRV_F_LOADER;
		s.initrd_path = "/store/prog";
		cm = build(&s, 0);
		v = cmd_argv(cm);
		assert_int_equal(find(v, "-bios") >= 0, want_bios[i] != NULL);
		cmd_free(cm);
		unlink(path);
	}
}

static void test_bad_specs(void **state)
{
	struct cmd *c = NULL;
	char *err = NULL;
	char *empty[] = {""};
	struct drv_spec s = {.run_id = "r", .image_path = "/i", .workdir = "/w", .args = empty, .nargs = 1,
	                     .flags = DRV_F_UNIKRAFT};
	assert_int_equal(qemu_build_cmd(&host, &s, 0, &c, &err), -EINVAL);
	assert_non_null(err);
	free(err);
	err = NULL;

	char *spaced[] = {"a b"};
	struct drv_spec p = {.run_id = "r", .image_path = "/i", .workdir = "/w", .args = spaced, .nargs = 1};
	assert_int_equal(qemu_build_cmd(&host, &p, 0, &c, &err), -EINVAL);
	free(err);
	err = NULL;

	struct drv_spec l = {.run_id = "r", .image_path = "/i", .workdir = "/w", .flags = DRV_F_LOADER};
	assert_int_equal(qemu_build_cmd(&host, &l, 0, &c, &err), -EINVAL);
	free(err);
	err = NULL;

	struct drv_spec comma = {.run_id = "r", .image_path = "/i", .workdir = "/w,x"};
	assert_int_equal(qemu_build_cmd(&host, &comma, 0, &c, &err), -EINVAL);
	free(err);
}

static enum qmp_guest_event classify(const char *name, const char *data_json)
{
	json_t *d = data_json ? json_loads(data_json, 0, NULL) : NULL;
	enum qmp_guest_event ev = qmp_event_classify(name, d);
	json_decref(d);
	return ev;
}

static void test_qmp_classify(void **state)
{
	assert_int_equal(classify("SHUTDOWN", "{\"guest\":true,\"reason\":\"guest-shutdown\"}"), QMP_EV_POWEROFF);
	assert_int_equal(classify("SHUTDOWN", "{\"guest\":true,\"reason\":\"guest-reset\"}"), QMP_EV_RESET);
	assert_int_equal(classify("SHUTDOWN", "{\"guest\":true,\"reason\":\"guest-panic\"}"), QMP_EV_PANIC);
	assert_int_equal(classify("GUEST_PANICKED", "{\"action\":\"poweroff\"}"), QMP_EV_PANIC);
	assert_int_equal(classify("SHUTDOWN", "{\"guest\":false,\"reason\":\"host-signal\"}"), QMP_EV_NONE);
	assert_int_equal(classify("SHUTDOWN", NULL), QMP_EV_NONE);
	assert_int_equal(classify("RESUME", NULL), QMP_EV_NONE);
	assert_int_equal(classify(NULL, NULL), QMP_EV_NONE);
}

static void test_kvm_failure_matcher(void **state)
{
	const char *e1 = "KVM internal error. Suberror: 1\nextra data[0]: 0x0\n";
	const char *e2 = "qemu: warning: x\nemulation failure\nRAX=0000\n";
	const char *ok = "qemu-system-x86_64: -qmp unix:/w/qmp.sock,server=on,wait=on: info: QEMU waiting\n";
	assert_true(qemu_kvm_failure(e1, strlen(e1)));
	assert_true(qemu_kvm_failure(e2, strlen(e2)));
	assert_false(qemu_kvm_failure(ok, strlen(ok)));
	assert_false(qemu_kvm_failure(e1, 10)); /* only what was read so far counts */
}

static void test_kernel_refused_matcher(void **state)
{
	(void)state;
	const char *pvh = "qemu-system-x86_64: Error loading uncompressed kernel without PVH ELF Note\n";
	const char *raw = "qemu: invalid kernel header\n";
	const char *other = "qemu-system-x86_64: -m 99999999: Parameter 'size' expects a non-negative number\n";
	assert_true(qemu_kernel_refused(pvh, strlen(pvh)));
	assert_true(qemu_kernel_refused(raw, strlen(raw)));
	assert_false(qemu_kernel_refused(other, strlen(other)));
	assert_false(qemu_kernel_refused(pvh, 30));
}

static struct drv_outcome end_of(struct qemu_end_facts f)
{
	struct drv_outcome o;
	qemu_classify_end(&f, &o);
	return o;
}

static void test_exit_classify(void **state)
{
	struct drv_outcome o;
	o = end_of((struct qemu_end_facts){.handshake = 1, .status = 83});
	assert_int_equal(o.end, DRV_END_DEBUG_EXIT);
	assert_int_equal(o.value, 41);
	o = end_of((struct qemu_end_facts){.handshake = 1, .status = 1});
	assert_int_equal(o.end, DRV_END_DEBUG_EXIT);
	assert_int_equal(o.value, 0);
	o = end_of((struct qemu_end_facts){.handshake = 0, .status = 1}); /* QEMU failed to start */
	assert_int_equal(o.end, DRV_END_ERROR);
	o = end_of((struct qemu_end_facts){.handshake = 1, .ev = QMP_EV_POWEROFF});
	assert_int_equal(o.end, DRV_END_POWEROFF);
	o = end_of((struct qemu_end_facts){.handshake = 1, .ev = QMP_EV_RESET});
	assert_int_equal(o.end, DRV_END_RESET);
	o = end_of((struct qemu_end_facts){.handshake = 1, .ev = QMP_EV_PANIC});
	assert_int_equal(o.end, DRV_END_PANIC);
	o = end_of((struct qemu_end_facts){.handshake = 1, .killed = 1, .signal = 9});
	assert_int_equal(o.end, DRV_END_KILLED);
	o = end_of((struct qemu_end_facts){.handshake = 1, .signal = 11});
	assert_int_equal(o.end, DRV_END_ERROR);
	o = end_of((struct qemu_end_facts){.handshake = 1, .status = 0}); /* no event, no code */
	assert_int_equal(o.end, DRV_END_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unikraft_argv),   cmocka_unit_test(test_unikraft_params_and_kvm),
		cmocka_unit_test(test_plain_argv),      cmocka_unit_test(test_loader_argv),
		cmocka_unit_test(test_unikraft_release), cmocka_unit_test(test_bad_specs),       cmocka_unit_test(test_qmp_classify),
		cmocka_unit_test(test_kvm_failure_matcher), cmocka_unit_test(test_kernel_refused_matcher), cmocka_unit_test(test_exit_classify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
