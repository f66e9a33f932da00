/* test_libvirt.c — libvirt driver: domain XML, names, ownership marks and the end classifier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libvirt/libvirt.h>

#include "libvirt_int.h"

static const struct lv_xml_opts opts = {
	.name = "ukrun-7-0badf00d", .owner = "host:/var/lib/ukrun/runs", .kernel_path = "/data/runs/7/k",
	.run_as_uid = -1, .run_as_gid = -1,
};

static char *build(const struct drv_spec *s, const struct lv_xml_opts *o)
{
	char *xml = NULL, *err = NULL;
	assert_int_equal(lv_build_xml(s, o, &xml, &err), 0);
	assert_null(err);
	return xml;
}

static void test_unikraft_xml(void **state)
{
	char *args[] = {"foo", "a b", "<&>"};
	struct drv_spec s = {.run_id = "7", .image_path = "/x", .workdir = "/w", .args = args, .nargs = 3,
	                     .memory_mb = 64, .vcpus = 2, .flags = DRV_F_UNIKRAFT};
	char *xml = build(&s, &opts);
	assert_non_null(strstr(xml, "<domain type='qemu' "));
	assert_non_null(strstr(xml, "<name>ukrun-7-0badf00d</name>"));
	assert_non_null(strstr(xml, "<owner>host:/var/lib/ukrun/runs</owner><id>7</id>"));
	assert_non_null(strstr(xml, "<memory unit='MiB'>64</memory>"));
	assert_non_null(strstr(xml, "<vcpu>2</vcpu>"));
	assert_non_null(strstr(xml, "<kernel>/data/runs/7/k</kernel>"));
	/* The qemu driver's quoting, then XML escaping. */
	assert_non_null(strstr(xml, "<cmdline>foo &quot;a b&quot; &lt;&amp;&gt;</cmdline>"));
	assert_non_null(strstr(xml, "<features><acpi/></features>"));
	assert_non_null(strstr(xml, "<cpu mode='maximum'/>"));
	assert_non_null(strstr(xml, "<on_reboot>restart</on_reboot>"));
	assert_non_null(strstr(xml, "<panic model='isa'><address type='isa' iobase='0x505'/></panic>"));
	assert_non_null(strstr(xml, "isa-debug-exit,iobase=0xf4,iosize=0x04"));
	/* Unikraft: no device at 0x501, so its halt / crash reach ACPI / pvpanic, which libvirt reports. */
	assert_null(strstr(xml, "iobase=0x501"));
	assert_non_null(strstr(xml, "name=etc/sercon-port,string=0"));
	assert_null(strstr(xml, "<seclabel"));
	assert_null(strstr(xml, "<log "));
	free(xml);
}

static void test_plain_kernel_xml(void **state)
{
	struct drv_spec s = {.run_id = "7", .image_path = "/x", .workdir = "/w"};
	struct lv_xml_opts o = opts;
	o.kvm = 1;
	o.run_as_uid = 1000;
	o.serial_log = "/w/serial.log";
	o.run_as_gid = 100;
	char *xml = build(&s, &o);
	assert_non_null(strstr(xml, "<domain type='kvm' "));
	assert_null(strstr(xml, "<cpu")); /* QEMU's default model under KVM */
	assert_null(strstr(xml, "<cmdline>"));
	assert_non_null(strstr(xml, "<memory unit='MiB'>128</memory>"));
	assert_non_null(strstr(xml, "<vcpu>1</vcpu>"));
	assert_non_null(strstr(xml, "name=etc/sercon-port,string=0"));
	assert_non_null(strstr(xml, "isa-debug-exit,iobase=0x501,iosize=0x02"));
	assert_non_null(strstr(xml, "<label>+1000:+100</label>"));
	assert_non_null(strstr(xml, "<serial type='pty'><log file='/w/serial.log' append='off'/><target port='0'/></serial>"));
	free(xml);
}

static void test_refusals(void **state)
{
	char *err = NULL, *xml = NULL;
	char *empty[] = {""};
	struct drv_spec s = {.run_id = "1", .args = empty, .nargs = 1, .flags = DRV_F_UNIKRAFT};
	assert_int_equal(lv_build_xml(&s, &opts, &xml, &err), -EINVAL);
	assert_non_null(err);
	free(err);
	err = NULL;
	char *ctl[] = {"a\x01"};
	s.args = ctl;
	assert_int_equal(lv_build_xml(&s, &opts, &xml, &err), -EINVAL);
	assert_non_null(strstr(err, "control"));
	free(err);
	err = NULL;
	struct drv_spec m = {.run_id = "1", .machine = "microvm"};
	assert_int_equal(lv_build_xml(&m, &opts, &xml, &err), -EINVAL);
	free(err);
}

static void test_name_and_owner(void **state)
{
	char *a = lv_domain_name("12", "h:/a/runs"), *b = lv_domain_name("12", "h:/b/runs");
	assert_int_equal(strncmp(a, "ukrun-12-", 9), 0);
	assert_int_equal(strlen(a), strlen("ukrun-12-") + 8);
	assert_string_not_equal(a, b); /* two daemons' run 12 never collide */
	char *a2 = lv_domain_name("12", "h:/a/runs");
	assert_string_equal(a, a2);
	free(a);
	free(a2);
	free(b);
	char *o = lv_meta_owner("<ukrun:run xmlns:ukrun=\"" LV_META_NS "\"><owner>h:/x&amp;y</owner><id>3</id></ukrun:run>");
	assert_string_equal(o, "h:/x&y");
	free(o);
	assert_null(lv_meta_owner("<run><id>3</id></run>"));
	assert_null(lv_meta_owner(NULL));
}

static enum drv_end classify(struct lv_end_facts f)
{
	struct drv_outcome o;
	lv_classify_end(&f, &o);
	return o.end;
}

static void test_classify(void **state)
{
	/* What libvirt 9.0 reports, checked here: */
	assert_int_equal(classify((struct lv_end_facts){.shutdown = 1, .stopped = VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN}),
	                 DRV_END_POWEROFF);
	assert_int_equal(classify((struct lv_end_facts){.crashed = 1, .stopped = VIR_DOMAIN_EVENT_STOPPED_CRASHED}),
	                 DRV_END_PANIC);
	assert_int_equal(classify((struct lv_end_facts){.stopped = VIR_DOMAIN_EVENT_STOPPED_FAILED}),
	                 DRV_END_DEBUG_EXIT_UNKNOWN);
	assert_int_equal(classify((struct lv_end_facts){.rebooted = 1, .stopped = VIR_DOMAIN_EVENT_STOPPED_DESTROYED}),
	                 DRV_END_RESET);
	/* Our own destroy wins over what the guest did meanwhile. */
	assert_int_equal(classify((struct lv_end_facts){.killed = 1, .crashed = 1, .stopped = 1}), DRV_END_KILLED);
	assert_int_equal(classify((struct lv_end_facts){.paused = 1, .stopped = VIR_DOMAIN_EVENT_STOPPED_DESTROYED}),
	                 DRV_END_ERROR);
	assert_int_equal(classify((struct lv_end_facts){.stopped = VIR_DOMAIN_EVENT_STOPPED_DESTROYED}), DRV_END_ERROR);
	assert_int_equal(classify((struct lv_end_facts){.stopped = -1}), DRV_END_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unikraft_xml),   cmocka_unit_test(test_plain_kernel_xml),
		cmocka_unit_test(test_refusals),       cmocka_unit_test(test_name_and_owner),
		cmocka_unit_test(test_classify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
