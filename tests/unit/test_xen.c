/*
 * test_xen.c — xen driver: the PV / PVH domain XML (checked by libvirt's own
 * schema through virt-xml-validate) for synthetic ELF64 kernels with Xen notes
 * and for the real Unikraft Xen image when ../shared/fixtures exists; and
 * domains started and destroyed through the driver on libvirt's test:///default
 * driver (no Xen host here), sharing the libvirt thread with the libvirt driver.
 */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <libvirt/libvirt.h>
#include <uv.h>

#include "libvirt_int.h"

#define XEN_NOTE_GUEST_OS 6u
#define XEN_NOTE_PHYS32_ENTRY 18u

static char tmpdir[] = "/tmp/test_xen.XXXXXX";

static const struct lv_xml_opts opts = {
	.name = "ukrun-7-0badf00d", .owner = "host:/var/lib/ukrun/runs", .kernel_path = "/data/runs/7/k",
	.run_as_uid = -1, .run_as_gid = -1,
};

static void put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* One Xen note at `p` (name "Xen\0", 4-byte descriptor); returns its size. */
static size_t put_note(unsigned char *p, uint32_t type, uint32_t desc)
{
	put32(p, 4);
	put32(p + 4, 4);
	put32(p + 8, type);
	memcpy(p + 12, "Xen", 4);
	put32(p + 16, desc);
	return 20;
}

/* A static x86-64 ELF64 with a PT_NOTE of Xen notes (PVH: with PHYS32_ENTRY),
 * or none at all (xen_notes = 0). Returns the file's path (static buffer per kind). */
static const char *write_elf(const char *name, int xen_notes, int pvh)
{
	static char paths[4][256];
	static int next;
	char *path = paths[next++ % 4];
	unsigned char b[4096] = {0};
	Elf64_Ehdr *eh = (Elf64_Ehdr *)b;
	Elf64_Phdr *ph = (Elf64_Phdr *)(b + sizeof(*eh));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 0x100000;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	ph[0] = (Elf64_Phdr){.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = 0, .p_vaddr = 0x100000,
	                     .p_filesz = sizeof(b), .p_memsz = sizeof(b), .p_align = 4096};
	eh->e_phnum = 1;
	if (xen_notes) {
		size_t n = put_note(b + 512, XEN_NOTE_GUEST_OS, 0);
		if (pvh)
			n += put_note(b + 512 + n, XEN_NOTE_PHYS32_ENTRY, 0x100000);
		ph[1] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 512, .p_filesz = n, .p_align = 4};
		eh->e_phnum = 2;
	}
	snprintf(path, sizeof(paths[0]), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, sizeof(b), f), sizeof(b));
	assert_int_equal(fclose(f), 0);
	return path;
}

static char *build(const struct drv_spec *s, const struct lv_xml_opts *o)
{
	char *xml = NULL, *err = NULL;
	int r = xen_build_xml(s, o, &xml, &err);
	if (r < 0)
		fail_msg("xen_build_xml: %d %s", r, err ? err : "");
	assert_null(err);
	return xml;
}

/* libvirt's schema says whether the XML is a valid domain. */
static void validate(const char *xml)
{
	if (system("command -v virt-xml-validate >/dev/null 2>&1") != 0)
		fail_msg("virt-xml-validate (libvirt-clients, with xmllint from libxml2-utils) is not installed");
	char path[300];
	snprintf(path, sizeof(path), "%s/domain.xml", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(xml, f);
	assert_int_equal(fclose(f), 0);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "virt-xml-validate %s domain >/dev/null 2>&1", path);
	if (system(cmd) != 0) {
		snprintf(cmd, sizeof(cmd), "virt-xml-validate %s domain >&2", path);
		(void)system(cmd);
		fail_msg("virt-xml-validate refused:\n%s", xml);
	}
}

static void test_pv_xml(void **state)
{
	(void)state;
	char *args[] = {"foo", "a b", "<&>"};
	char *uk[] = {"vfs.fstab=x"};
	struct drv_spec s = {.run_id = "7", .image_path = write_elf("pv", 1, 0), .workdir = "/w", .args = args,
	                     .nargs = 3, .uk_params = uk, .nuk_params = 1, .memory_mb = 64, .vcpus = 2,
	                     .flags = DRV_F_UNIKRAFT};
	char *xml = build(&s, &opts);
	validate(xml);
	assert_non_null(strstr(xml, "<domain type='xen'>"));
	assert_non_null(strstr(xml, "<name>ukrun-7-0badf00d</name>"));
	assert_non_null(strstr(xml, "<owner>host:/var/lib/ukrun/runs</owner><id>7</id>"));
	assert_non_null(strstr(xml, "<memory unit='MiB'>64</memory>"));
	assert_non_null(strstr(xml, "<vcpu>2</vcpu>"));
	assert_non_null(strstr(xml, "<type arch='x86_64' machine='xenpv'>linux</type>"));
	assert_non_null(strstr(xml, "<kernel>/data/runs/7/k</kernel>"));
	/* The qemu driver's rules: library parameters, `--`, the quoted arguments; then XML escaping. */
	assert_non_null(strstr(xml, "<cmdline>vfs.fstab=x -- foo &quot;a b&quot; &lt;&amp;&gt;</cmdline>"));
	assert_non_null(strstr(xml, "<console type='pty'><target type='xen' port='0'/></console>"));
	assert_non_null(strstr(xml, "<on_poweroff>destroy</on_poweroff>"));
	assert_non_null(strstr(xml, "<on_crash>destroy</on_crash>"));
	assert_non_null(strstr(xml, "<on_reboot>restart</on_reboot>"));
	/* Nothing of the QEMU flavour. */
	assert_null(strstr(xml, "qemu"));
	assert_null(strstr(xml, "<serial"));
	assert_null(strstr(xml, "hvm"));
	free(xml);
}

static void test_pvh_xml(void **state)
{
	(void)state;
	struct drv_spec s = {.run_id = "8", .image_path = write_elf("pvh", 1, 1), .workdir = "/w"};
	char *xml = build(&s, &opts);
	validate(xml);
	assert_non_null(strstr(xml, "<type arch='x86_64' machine='xenpvh'>xen</type>"));
	assert_non_null(strstr(xml, "<memory unit='MiB'>128</memory>"));
	assert_non_null(strstr(xml, "<vcpu>1</vcpu>"));
	assert_null(strstr(xml, "<cmdline>")); /* no arguments: no command line */
	free(xml);
}

static void test_real_image_xml(void **state)
{
	(void)state;
	const char *img = UKRUN_SHARED_FIXTURES_DIR "/helloworld_xen-x86_64";
	if (access(img, R_OK) != 0) {
		print_message("skipped: %s absent (the shared fixtures are not on this machine)\n", img);
		skip();
	}
	char *args[] = {"hello"};
	struct drv_spec s = {.run_id = "9", .image_path = img, .image_name = "helloworld_xen-x86_64",
	                     .workdir = "/w", .args = args, .nargs = 1, .flags = DRV_F_UNIKRAFT};
	struct lv_xml_opts o = opts;
	o.kernel_path = img;
	char *xml = build(&s, &o);
	validate(xml);
	/* Its notes: GUEST_OS "Unikraft", LOADER, HYPERCALL_PAGE, XEN_VERSION; no PHYS32_ENTRY: PV. */
	assert_non_null(strstr(xml, "machine='xenpv'>linux</type>"));
	assert_non_null(strstr(xml, "<kernel>" UKRUN_SHARED_FIXTURES_DIR "/helloworld_xen-x86_64</kernel>"));
	assert_non_null(strstr(xml, "<cmdline>hello</cmdline>"));
	free(xml);
}

static void test_refusals(void **state)
{
	(void)state;
	char *xml = NULL, *err = NULL;
	/* A plain Linux ELF: no Xen notes. */
	struct drv_spec s = {.run_id = "1", .image_path = write_elf("plain", 0, 0), .workdir = "/w"};
	assert_int_equal(xen_build_xml(&s, &opts, &xml, &err), -ENOEXEC);
	assert_non_null(strstr(err, "no Xen ELF notes"));
	free(err);
	err = NULL;
	s.image_path = write_elf("pv2", 1, 0);
	s.initrd_path = "/x";
	assert_int_equal(xen_build_xml(&s, &opts, &xml, &err), -ENOTSUP);
	free(err);
	err = NULL;
	s.initrd_path = NULL;
	char *bad[] = {"a\x01"};
	s.args = bad;
	s.nargs = 1;
	assert_int_equal(xen_build_xml(&s, &opts, &xml, &err), -EINVAL);
	free(err);
	assert_null(xml);
}

static void test_end_mapping(void **state)
{
	(void)state;
	/* libxl: poweroff → Stopped Shutdown, crash → Stopped Crashed, reboot → the reboot event. */
	struct drv_outcome o;
	lv_classify_end(&(struct lv_end_facts){.stopped = VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN}, &o);
	assert_int_equal(o.end, DRV_END_POWEROFF);
	lv_classify_end(&(struct lv_end_facts){.stopped = VIR_DOMAIN_EVENT_STOPPED_CRASHED}, &o);
	assert_int_equal(o.end, DRV_END_PANIC);
	lv_classify_end(&(struct lv_end_facts){.rebooted = 1, .stopped = VIR_DOMAIN_EVENT_STOPPED_DESTROYED}, &o);
	assert_int_equal(o.end, DRV_END_RESET);
}

/* ---- through the driver on libvirt's test:///default ---- */

struct run {
	int started, exited;
	struct drv_outcome out;
	char notes[2048];
};

static void cb_console(void *ctx, enum drv_stream stream, const char *buf, size_t len)
{
	(void)ctx;
	(void)stream;
	(void)buf;
	(void)len;
}

static void cb_note(void *ctx, const char *key, const char *value, const char *msg)
{
	struct run *r = ctx;
	(void)key;
	(void)value;
	if (msg && strlen(r->notes) + strlen(msg) + 2 < sizeof(r->notes)) {
		strcat(r->notes, msg);
		strcat(r->notes, "\n");
	}
}

static void cb_started(void *ctx)
{
	((struct run *)ctx)->started = 1;
}

static void cb_exit(void *ctx, const struct drv_outcome *o)
{
	struct run *r = ctx;
	r->exited++;
	r->out = *o;
	r->out.message = NULL;
}

/* Run the loop until `flag` is set (bounded: 2000 × 5 ms polls, then the test fails). */
static void spin(uv_loop_t *loop, const int *flag)
{
	for (int i = 0; i < 2000 && !*flag; i++) {
		uv_run(loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	assert_true(*flag);
}

/* Active domains on test:///default (shared by every connection of this process) named `name`. */
static int domain_count(const char *name)
{
	virConnectPtr c = virConnectOpen("test:///default");
	assert_non_null(c);
	virDomainPtr d = virDomainLookupByName(c, name);
	int n = d && virDomainIsActive(d) == 1;
	if (d)
		virDomainFree(d);
	virResetLastError();
	virConnectClose(c);
	return n;
}

/* Start a domain for `image` through the xen driver, check it runs, kill it: a clean end, no domain left. */
static void run_once(void *xst, uv_loop_t *loop, const char *image, const char *run_id)
{
	char workdir[300];
	snprintf(workdir, sizeof(workdir), "%s/runs/%s", tmpdir, run_id);
	assert_int_equal(mkdir(workdir, 0700), 0);
	char *args[] = {"hello"};
	struct drv_spec s = {.run_id = run_id, .image_path = image, .workdir = workdir, .args = args, .nargs = 1,
	                     .flags = DRV_F_UNIKRAFT};
	struct drv_instance *inst = NULL;
	char *err = NULL;
	if (drv_xen.prepare(xst, &s, &inst, &err) < 0)
		fail_msg("prepare: %s", err);
	struct run r = {0};
	struct drv_callbacks cb = {.console = cb_console, .note = cb_note, .started = cb_started, .exit = cb_exit,
	                           .ctx = &r};
	if (drv_xen.launch(inst, loop, &cb, &err) < 0)
		fail_msg("launch: %s", err);
	spin(loop, &r.started);
	/* The notes come with the start: the domain's name and host, and that test:/// has no console. */
	for (int i = 0; i < 100 && !strstr(r.notes, "(Xen)"); i++) {
		uv_run(loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	assert_non_null(strstr(r.notes, "offers no console"));
	const char *name = strstr(r.notes, "domain ukrun-");
	assert_non_null(name);
	char dom[64];
	assert_int_equal(sscanf(name, "domain %63s", dom), 1);
	assert_int_equal(strncmp(dom, "ukrun-", 6), 0);
	assert_int_equal(domain_count(dom), 1);
	assert_int_equal(drv_xen.kill(inst, 0), 0);
	spin(loop, &r.exited);
	assert_int_equal(r.exited, 1);
	assert_int_equal(r.out.end, DRV_END_KILLED);
	assert_int_equal(domain_count(dom), 0);
	drv_xen.destroy(inst);
	uv_run(loop, UV_RUN_NOWAIT);
}

static void test_test_driver(void **state)
{
	(void)state;
	char runs[300];
	snprintf(runs, sizeof(runs), "%s/runs", tmpdir);
	assert_int_equal(mkdir(runs, 0700), 0);
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	/* Both drivers of libvirt in one process, on one libvirt thread. */
	char *const options[] = {"libvirt-uri=test:///default", "xen-uri=test:///default", NULL};
	const struct drv_host local = {.name = "local", .options = options};
	void *lst = NULL, *xst = NULL;
	char *info = NULL, *err = NULL;
	if (drv_libvirt.probe(&local, &lst, &info, &err) < 0)
		fail_msg("libvirt probe: %s", err);
	free(info);
	info = NULL;
	if (drv_xen.probe(&local, &xst, &info, &err) < 0)
		fail_msg("xen probe: %s", err);
	assert_non_null(strstr(info, "at test:///default (Xen "));
	free(info);
	assert_true(drv_xen.reap(xst, runs, NULL, 0, &err) >= 0);
	run_once(xst, &loop, write_elf("pv-run", 1, 0), "1");
	/* The libvirt driver lets go of the shared thread: the xen driver's runs go on. */
	drv_libvirt.unprobe(lst);
	run_once(xst, &loop, write_elf("pvh-run", 1, 1), "2");
	drv_xen.unprobe(xst);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A remote host's URI picks the flavour: the xen driver does not apply to a qemu+tcp://
 * host, nor the libvirt driver to a xen+ssh:// one, and the local-only drivers to neither. */
static void test_probe_remote_flavour(void **state)
{
	(void)state;
	const struct drv_host kvm_host = {.name = "kvm1", .uri = "qemu+tcp://127.0.0.1:1/system"};
	const struct drv_host xen_host = {.name = "xen1", .uri = "xen+ssh://root@xen1/system"};
	void *st = NULL;
	char *info = NULL, *err = NULL;
	assert_int_equal(drv_xen.probe(&kvm_host, &st, &info, &err), -ENOTSUP);
	assert_non_null(strstr(err, "host kvm1's URI qemu+tcp://127.0.0.1:1/system is not for this driver"));
	free(err);
	err = NULL;
	assert_int_equal(drv_libvirt.probe(&xen_host, &st, &info, &err), -ENOTSUP);
	free(err);
	err = NULL;
	assert_int_equal(drv_qemu.probe(&kvm_host, &st, &info, &err), -ENOTSUP);
	assert_int_equal(drv_linuxu.probe(&kvm_host, &st, &info, &err), -ENOTSUP);
	assert_null(st);
	assert_null(info);
	free(err);
}

/* Without a Xen host: unavailable, with a reason that names Xen and what is missing. */
static void test_probe_no_xen(void **state)
{
	(void)state;
	if (access("/proc/xen", F_OK) == 0) {
		print_message("skipped: this machine is a Xen host (/proc/xen exists)\n");
		skip();
	}
	const struct drv_host local = {.name = "local"};
	void *st = NULL;
	char *info = NULL, *err = NULL;
	assert_true(drv_xen.probe(&local, &st, &info, &err) < 0);
	assert_null(st);
	assert_non_null(strstr(err, "no Xen hypervisor: /proc/xen absent"));
	assert_null(strchr(err, '\n'));
	free(err);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pv_xml),       cmocka_unit_test(test_pvh_xml),
		cmocka_unit_test(test_real_image_xml), cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_end_mapping),  cmocka_unit_test(test_test_driver),
		cmocka_unit_test(test_probe_no_xen),
		cmocka_unit_test(test_probe_remote_flavour),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
