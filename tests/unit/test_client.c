/* Unit tests of the ukrun client's pure parts: the command line, the run spec
 * it becomes, the socket path, run records → exit status, SHA-256. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "cmds.h"
#include "opts.h"
#include "runner.h"
#include "upload.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void clear_env(void)
{
	static const char *const vars[] = { "UKRUN_PLATFORM", "UKRUN_TIMEOUT", "UKRUN_LOADER", "UKRUN_SOCKET",
					    "XDG_RUNTIME_DIR", "UKRUN_MEMORY", "UKRUN_LABELS", "CARGO", "NEXTEST",
					    "GITHUB_SHA", "GITHUB_RUN_ID", "GITHUB_REPOSITORY", "CI_JOB_ID",
					    "CI_COMMIT_SHA", "CI_PIPELINE_ID", "BUILDKITE_BUILD_ID" };

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static int setup(void **state)
{
	clear_env();
	return 0;
}

static void test_options_then_image_then_guest_args(void **state)
{
	char *argv[] = { "ukrun", "--platform", "qemu", "--timeout", "5m", "-v", "--memory=1G", "--vcpus", "2",
			 "img", "--nocapture", "mytest", "--timeout", "9" };
	struct opts o;
	char err[OPTS_ERR_MAX];

	assert_int_equal(opts_parse(&o, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(o.platform, "qemu");
	assert_int_equal(o.timeout_s, 300);
	assert_int_equal(o.memory_mb, 1024);
	assert_int_equal(o.vcpus, 2);
	assert_int_equal(o.verbosity, OPTS_VERBOSE);
	assert_string_equal(o.image, "img");
	assert_int_equal(o.nargs, 4);
	assert_string_equal(o.args[0], "--nocapture");
	assert_string_equal(o.args[1], "mytest");
	assert_string_equal(o.args[2], "--timeout"); /* the guest's, not ukrun's */
	assert_string_equal(o.args[3], "9");
	opts_free(&o);
}

static void test_cargo_style_invocation(void **state)
{
	char *argv[] = { "ukrun", "target/debug/deps/foo-123", "--nocapture", "-q", "--", "x" };
	struct opts o;
	char err[OPTS_ERR_MAX];

	assert_int_equal(opts_parse(&o, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(o.image, "target/debug/deps/foo-123");
	assert_int_equal(o.verbosity, OPTS_NORMAL);
	assert_int_equal(o.timeout_s, -1);
	assert_int_equal(o.nargs, 4);
	assert_string_equal(o.args[1], "-q");
	assert_string_equal(o.args[2], "--");
	opts_free(&o);
}

static void test_double_dash_ends_options(void **state)
{
	char *argv[] = { "ukrun", "-q", "--", "--odd-name", "a" };
	struct opts o;
	char err[OPTS_ERR_MAX];

	assert_int_equal(opts_parse(&o, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_int_equal(o.verbosity, OPTS_QUIET);
	assert_string_equal(o.image, "--odd-name");
	assert_int_equal(o.nargs, 1);
	assert_string_equal(o.args[0], "a");
	opts_free(&o);
}

static void test_repeatable_and_no_args(void **state)
{
	char *argv[] = { "ukrun", "--uk-param", "vfs.fstab=[]", "--uk-param=env.vars=[A=1]", "--label", "ci=1",
			 "--label=job=x=y", "--success-code", "33", "--accel", "tcg", "--machine", "microvm",
			 "--loader", "k", "--socket", "/s", "--driver", "libvirt", "--host", "local",
			 "--cacert=/ca.pem", "prog" };
	struct opts o;
	char err[OPTS_ERR_MAX];

	assert_int_equal(opts_parse(&o, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_int_equal(o.nuk_params, 2);
	assert_string_equal(o.uk_params[1], "env.vars=[A=1]");
	assert_int_equal(o.nlabels, 2);
	assert_string_equal(o.labels[1], "job=x=y");
	assert_int_equal(o.success_code, 33);
	assert_string_equal(o.accel, "tcg");
	assert_string_equal(o.machine, "microvm");
	assert_string_equal(o.driver, "libvirt");
	assert_string_equal(o.loader, "k");
	assert_string_equal(o.socket, "/s");
	assert_string_equal(o.cacert, "/ca.pem");
	assert_string_equal(o.image, "prog");
	assert_int_equal(o.nargs, 0);
	json_t *spec = opts_run_spec(&o, "aa", "prog", NULL);
	assert_string_equal(json_string_value(json_object_get(spec, "driver")), "libvirt");
	assert_string_equal(json_string_value(json_object_get(spec, "host")), "local");
	json_decref(spec);
	opts_free(&o);
}

static void expect_usage_error(char **argv, int argc, const char *needle)
{
	struct opts o;
	char err[OPTS_ERR_MAX] = "";

	assert_int_equal(opts_parse(&o, argc, argv, err, sizeof(err)), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("message '%s' lacks '%s'", err, needle);
	opts_free(&o);
}

static void test_usage_errors(void **state)
{
	char *a1[] = { "ukrun", "--bogus", "img" };
	char *a2[] = { "ukrun", "--timeout" };
	char *a3[] = { "ukrun", "--platform", "xen", "img" };
	char *a4[] = { "ukrun", "-q" };
	char *a5[] = { "ukrun", "--label", "=v", "img" };
	char *a6[] = { "ukrun", "--timeout", "0", "img" };
	char *a7[] = { "ukrun", "--timeout", "-5", "img" };
	char *a8[] = { "ukrun", "--vcpus", "2x", "img" };
	char *a9[] = { "ukrun", "-x", "img" };
	char *a10[] = { "ukrun", "--quiet=1", "img" };
	char *a11[] = { "ukrun", "--loader", "k", "--platform", "linuxu", "img" };
	char *a12[] = { "ukrun", "--success-code", "", "img" };

	expect_usage_error(a1, ARGC(a1), "--bogus");
	expect_usage_error(a2, ARGC(a2), "needs a value");
	expect_usage_error(a3, ARGC(a3), "qemu or linuxu");
	expect_usage_error(a4, ARGC(a4), "missing IMAGE");
	expect_usage_error(a5, ARGC(a5), "--label");
	expect_usage_error(a6, ARGC(a6), "--timeout");
	expect_usage_error(a7, ARGC(a7), "--timeout");
	expect_usage_error(a8, ARGC(a8), "--vcpus");
	expect_usage_error(a9, ARGC(a9), "'-x'");
	expect_usage_error(a10, ARGC(a10), "takes no value");
	expect_usage_error(a11, ARGC(a11), "conflicts");
	expect_usage_error(a12, ARGC(a12), "--success-code");
}

static void test_help_and_version_need_no_image(void **state)
{
	char *a1[] = { "ukrun", "-h" };
	char *a2[] = { "ukrun", "-qV" };
	struct opts o;
	char err[OPTS_ERR_MAX];

	assert_int_equal(opts_parse(&o, ARGC(a1), a1, err, sizeof(err)), 0);
	assert_true(o.help);
	opts_free(&o);
	assert_int_equal(opts_parse(&o, ARGC(a2), a2, err, sizeof(err)), 0);
	assert_true(o.version);
	assert_int_equal(o.verbosity, OPTS_QUIET);
	opts_free(&o);
}

static void test_environment_defaults(void **state)
{
	char *a1[] = { "ukrun", "img" };
	char *a2[] = { "ukrun", "--platform", "qemu", "--timeout", "7", "--loader", "mine", "img" };
	struct opts o;
	char err[OPTS_ERR_MAX];

	setenv("UKRUN_PLATFORM", "linuxu", 1);
	setenv("UKRUN_TIMEOUT", "2m", 1);
	setenv("UKRUN_LOADER", "", 1);
	assert_int_equal(opts_parse(&o, ARGC(a1), a1, err, sizeof(err)), 0);
	assert_int_equal(opts_apply_env(&o, err, sizeof(err)), 0);
	assert_string_equal(o.platform, "linuxu");
	assert_int_equal(o.timeout_s, 120);
	assert_null(o.loader); /* empty means unset */
	opts_free(&o);

	setenv("UKRUN_PLATFORM", "qemu", 1);
	setenv("UKRUN_LOADER", "/k/elfloader", 1);
	assert_int_equal(opts_parse(&o, ARGC(a1), a1, err, sizeof(err)), 0);
	assert_int_equal(opts_apply_env(&o, err, sizeof(err)), 0);
	assert_string_equal(o.loader, "/k/elfloader");
	opts_free(&o);

	/* the command line wins */
	setenv("UKRUN_PLATFORM", "linuxu", 1);
	assert_int_equal(opts_parse(&o, ARGC(a2), a2, err, sizeof(err)), 0);
	assert_int_equal(opts_apply_env(&o, err, sizeof(err)), 0);
	assert_string_equal(o.platform, "qemu");
	assert_int_equal(o.timeout_s, 7);
	assert_string_equal(o.loader, "mine");
	opts_free(&o);

	setenv("UKRUN_TIMEOUT", "soon", 1);
	unsetenv("UKRUN_LOADER");
	assert_int_equal(opts_parse(&o, ARGC(a1), a1, err, sizeof(err)), 0);
	assert_int_equal(opts_apply_env(&o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "UKRUN_TIMEOUT"));
	opts_free(&o);
	clear_env();
}

static void test_durations_and_sizes(void **state)
{
	long v;

	assert_int_equal(opts_parse_duration("45", &v), 0);
	assert_int_equal(v, 45);
	assert_int_equal(opts_parse_duration("45s", &v), 0);
	assert_int_equal(v, 45);
	assert_int_equal(opts_parse_duration("2h", &v), 0);
	assert_int_equal(v, 7200);
	assert_int_equal(opts_parse_duration("169h", &v), -EINVAL);
	assert_int_equal(opts_parse_duration("1ms", &v), -EINVAL);
	assert_int_equal(opts_parse_duration(" 1", &v), -EINVAL);
	assert_int_equal(opts_parse_duration("", &v), -EINVAL);
	assert_int_equal(opts_parse_duration("99999999999999999999", &v), -EINVAL);
	assert_int_equal(opts_parse_mib("256", &v), 0);
	assert_int_equal(v, 256);
	assert_int_equal(opts_parse_mib("2G", &v), 0);
	assert_int_equal(v, 2048);
	assert_int_equal(opts_parse_mib("0", &v), -EINVAL);
	assert_int_equal(opts_parse_mib("1T", &v), -EINVAL);
	assert_int_equal(opts_check_label("a.b/c-d_e=any value"), 0);
	assert_int_equal(opts_check_label("novalue="), 0);
	assert_int_equal(opts_check_label("nokey"), -EINVAL);
	assert_int_equal(opts_check_label("sp ace=1"), -EINVAL);
	assert_int_equal(opts_check_label("k=line\nbreak"), -EINVAL);
}

/* $UKRUN_MEMORY, quiet under cargo/nextest, CI variables and $UKRUN_LABELS as labels (--label wins). */
static void test_environment_cli(void **state)
{
	char *argv[] = { "ukrun", "--label", "tier=3", "img" };
	char *verbose[] = { "ukrun", "-v", "img" };
	char *memory[] = { "ukrun", "--memory", "99999", "img" };
	char *vcpus[] = { "ukrun", "--vcpus", "65", "img" };
	struct opts o;
	char err[OPTS_ERR_MAX] = "";
	json_t *spec, *labels;

	setenv("UKRUN_MEMORY", "96", 1);
	setenv("CARGO", "/usr/bin/cargo", 1);
	setenv("GITHUB_SHA", "0123abc", 1);
	setenv("CI_JOB_ID", "7", 1);
	setenv("BUILDKITE_BUILD_ID", "bad\nvalue", 1); /* not usable as a label value: skipped */
	setenv("UKRUN_LABELS", "team=rt,tier=2", 1);
	assert_int_equal(opts_parse(&o, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_int_equal(opts_apply_env(&o, err, sizeof(err)), 0);
	assert_int_equal(o.memory_mb, 96);
	assert_int_equal(o.verbosity, OPTS_QUIET);
	spec = opts_run_spec(&o, "aa", "img", NULL);
	labels = json_object_get(spec, "labels");
	assert_int_equal(json_object_size(labels), 4);
	assert_string_equal(json_string_value(json_object_get(labels, "GITHUB_SHA")), "0123abc");
	assert_string_equal(json_string_value(json_object_get(labels, "CI_JOB_ID")), "7");
	assert_string_equal(json_string_value(json_object_get(labels, "team")), "rt");
	assert_string_equal(json_string_value(json_object_get(labels, "tier")), "3");
	json_decref(spec);
	opts_free(&o);

	unsetenv("CARGO");
	setenv("NEXTEST", "1", 1);
	assert_int_equal(opts_parse(&o, ARGC(verbose), verbose, err, sizeof(err)), 0);
	assert_int_equal(opts_apply_env(&o, err, sizeof(err)), 0);
	assert_int_equal(o.verbosity, OPTS_VERBOSE); /* -v wins over nextest's quiet */
	opts_free(&o);

	setenv("UKRUN_LABELS", "novalue", 1);
	assert_int_equal(opts_parse(&o, ARGC(verbose), verbose, err, sizeof(err)), 0);
	assert_int_equal(opts_apply_env(&o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "$UKRUN_LABELS"));
	opts_free(&o);

	expect_usage_error(memory, ARGC(memory), "--memory: expected MiB (or NG), at most 65536");
	expect_usage_error(vcpus, ARGC(vcpus), "--vcpus: expected 1..64");
}

static void test_did_you_mean(void **state)
{
	assert_string_equal(cmds_suggest("pss"), "ps");
	assert_string_equal(cmds_suggest("shwo"), "show"); /* a transposition is one edit */
	assert_string_equal(cmds_suggest("imags"), "images");
	assert_string_equal(cmds_suggest("deamon"), "daemon");
	assert_string_equal(cmds_suggest("cancle"), "cancel");
	assert_null(cmds_suggest("zzzzzz"));
	assert_null(cmds_suggest("hello_qemu-x86_64"));
	assert_true(cmds_is("runs") && cmds_is("rm") && cmds_is("hosts") && cmds_is("daemon"));
	assert_false(cmds_is("./ps"));
}

static void test_run_spec(void **state)
{
	char *argv[] = { "ukrun", "--timeout", "10", "--uk-param", "vfs.fstab=[]", "--label", "ci=1", "--label",
			 "ci=2", "--success-code", "0", "img", "--nocapture", "" };
	struct opts o;
	char err[OPTS_ERR_MAX];
	json_t *spec, *args;

	assert_int_equal(opts_parse(&o, ARGC(argv), argv, err, sizeof(err)), 0);
	spec = opts_run_spec(&o, "aa", "img", NULL);
	assert_non_null(spec);
	assert_string_equal(json_string_value(json_object_get(spec, "image")), "aa");
	assert_string_equal(json_string_value(json_object_get(spec, "name")), "img");
	args = json_object_get(spec, "args");
	assert_int_equal(json_array_size(args), 2);
	assert_string_equal(json_string_value(json_array_get(args, 0)), "--nocapture");
	assert_string_equal(json_string_value(json_array_get(args, 1)), ""); /* empty args survive */
	assert_int_equal(json_integer_value(json_object_get(spec, "timeout_s")), 10);
	assert_int_equal(json_integer_value(json_object_get(spec, "success_code")), 0);
	assert_string_equal(json_string_value(json_array_get(json_object_get(spec, "uk_params"), 0)), "vfs.fstab=[]");
	assert_string_equal(json_string_value(json_object_get(json_object_get(spec, "labels"), "ci")), "2");
	assert_null(json_object_get(spec, "platform"));
	assert_null(json_object_get(spec, "loader"));
	assert_null(json_object_get(spec, "memory_mb"));
	assert_null(json_object_get(spec, "vcpus"));
	assert_null(json_object_get(spec, "accel"));
	assert_null(json_object_get(spec, "machine"));
	assert_null(json_object_get(spec, "driver")); /* default: the daemon picks by platform */
	json_decref(spec);

	/* loader mode: the program is the image, the kernel is the loader, platform qemu */
	spec = opts_run_spec(&o, "prog", "img", "kern");
	assert_string_equal(json_string_value(json_object_get(spec, "loader")), "kern");
	assert_string_equal(json_string_value(json_object_get(spec, "image")), "prog");
	assert_string_equal(json_string_value(json_object_get(spec, "platform")), "qemu");
	json_decref(spec);
	opts_free(&o);

	/* no guest arguments: still an (empty) array */
	char *a2[] = { "ukrun", "img" };
	assert_int_equal(opts_parse(&o, ARGC(a2), a2, err, sizeof(err)), 0);
	spec = opts_run_spec(&o, "aa", "img", NULL);
	assert_true(json_is_array(json_object_get(spec, "args")));
	assert_int_equal(json_array_size(json_object_get(spec, "args")), 0);
	assert_null(json_object_get(spec, "timeout_s"));
	assert_null(json_object_get(spec, "success_code"));
	assert_null(json_object_get(spec, "labels"));
	json_decref(spec);
	opts_free(&o);
}

static void test_socket_path(void **state)
{
	char buf[PATH_MAX], want[PATH_MAX + 32], cwd[PATH_MAX];
	char longp[200];

	assert_int_equal(opts_socket_path("/x/s.sock", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/x/s.sock");
	setenv("UKRUN_SOCKET", "/env/s.sock", 1);
	setenv("XDG_RUNTIME_DIR", "/run/user/7", 1);
	assert_int_equal(opts_socket_path(NULL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/env/s.sock");
	assert_int_equal(opts_socket_path("/opt/s", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/opt/s");
	unsetenv("UKRUN_SOCKET");
	assert_int_equal(opts_socket_path(NULL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/run/user/7/ukrun/runnerd.sock");
	setenv("XDG_RUNTIME_DIR", "", 1);
	assert_int_equal(opts_socket_path(NULL, buf, sizeof(buf)), 0);
	snprintf(want, sizeof(want), "/tmp/ukrun-%u/runnerd.sock", (unsigned)getuid());
	assert_string_equal(buf, want);
	/* relative paths are made absolute: the daemon runs in / */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(opts_socket_path("rel.sock", buf, sizeof(buf)), 0);
	snprintf(want, sizeof(want), "%s/rel.sock", cwd);
	assert_string_equal(buf, want);
	/* sockaddr_un holds 108 bytes */
	memset(longp, 'a', sizeof(longp));
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(opts_socket_path(longp, buf, sizeof(buf)), -ENAMETOOLONG);
	assert_int_equal(opts_socket_path("/x/s.sock", buf, 4), -ENAMETOOLONG);
	clear_env();
}

static int status_of(const char *json, bool *final)
{
	json_t *rec = json_loads(json, 0, NULL);
	int s;

	assert_non_null(rec);
	s = runner_exit_status(rec, final);
	json_decref(rec);
	return s;
}

static void test_exit_status_from_record(void **state)
{
	bool final;

	assert_int_equal(status_of("{\"state\":\"done\",\"exit_code\":0}", &final), 0);
	assert_true(final);
	assert_int_equal(status_of("{\"state\":\"done\",\"exit_code\":101}", &final), 101);
	assert_int_equal(status_of("{\"state\":\"done\",\"exit_code\":256}", &final), 1);
	assert_int_equal(status_of("{\"state\":\"done\",\"exit_code\":-3}", &final), 1);
	assert_int_equal(status_of("{\"state\":\"done\",\"exit_code\":null}", &final), 125);
	assert_int_equal(status_of("{\"state\":\"timeout\",\"exit_code\":124}", &final), 124);
	assert_int_equal(status_of("{\"state\":\"timeout\",\"exit_code\":null}", &final), 124);
	assert_int_equal(status_of("{\"state\":\"cancelled\"}", &final), 130);
	assert_int_equal(status_of("{\"state\":\"error\",\"exit_code\":126}", &final), 126);
	assert_int_equal(status_of("{\"state\":\"error\",\"exit_code\":3}", &final), 125);
	assert_int_equal(status_of("{\"state\":\"error\",\"exit_code\":null}", &final), 125);
	assert_int_equal(status_of("{\"state\":\"lost\",\"exit_code\":null}", &final), 125);
	assert_true(final);
	assert_int_equal(status_of("{\"state\":\"running\",\"exit_code\":null}", &final), 0);
	assert_false(final);
	status_of("{\"state\":\"queued\"}", &final);
	assert_false(final);
	status_of("{\"state\":\"starting\"}", &final);
	assert_false(final);
	assert_int_equal(status_of("{}", &final), 125);
	assert_true(final);
}

static void test_run_ids(void **state)
{
	char longid[80];

	assert_true(runner_id_valid("01HZX3K9Q8ABCDEF"));
	assert_true(runner_id_valid("42"));
	assert_true(runner_id_valid("a-b_c"));
	assert_false(runner_id_valid(""));
	assert_false(runner_id_valid(NULL));
	assert_false(runner_id_valid("../x"));
	assert_false(runner_id_valid("a?b"));
	memset(longid, 'a', sizeof(longid));
	longid[sizeof(longid) - 1] = '\0';
	assert_false(runner_id_valid(longid));
}

static void check_digest(const void *data, size_t len, const char *want)
{
	char hex[UPLOAD_HEX_SIZE];
	uint64_t size = 0;
	int fd = memfd_create("t", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(upload_sha256_fd(fd, NULL, hex, &size), 0);
	assert_string_equal(hex, want);
	assert_int_equal(size, len);
	close(fd);
}

static void test_sha256(void **state)
{
	size_t big = (3u << 20) + 17; /* spans several read chunks */
	char *buf = malloc(big);
	volatile sig_atomic_t stop = 1;
	char hex[UPLOAD_HEX_SIZE];
	int fd;

	check_digest("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	check_digest("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_non_null(buf);
	memset(buf, 'a', big);
	fd = memfd_create("t", MFD_CLOEXEC);
	assert_int_equal(write(fd, buf, big), (ssize_t)big);
	assert_int_equal(upload_sha256_fd(fd, &stop, hex, NULL), -EINTR);
	close(fd);
	free(buf);
}

/* --bind, --no-bind and the package directory: what the run spec's "binds" and "cwd" hold. */
static void test_binds(void **state)
{
	char *argv[] = { "ukrun", "--bind", "/srv/data", "--bind", "rel", "img" };
	char *argv_nb[] = { "ukrun", "--no-bind", "img" };
	char cwd[4096], want[4200];
	struct opts o;
	char err[OPTS_ERR_MAX];
	json_t *b, *spec;

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	unsetenv("CARGO_MANIFEST_DIR");
	assert_int_equal(opts_parse(&o, ARGC(argv), argv, err, sizeof(err)), 0);
	b = opts_binds(&o);
	assert_int_equal(json_array_size(b), 3);
	assert_string_equal(json_string_value(json_array_get(b, 0)), cwd); /* the working directory first */
	assert_string_equal(json_string_value(json_array_get(b, 1)), "/srv/data");
	snprintf(want, sizeof(want), "%s/rel", cwd);
	assert_string_equal(json_string_value(json_array_get(b, 2)), want); /* made absolute */
	json_decref(b);
	setenv("CARGO_MANIFEST_DIR", "/pkg/dir", 1);
	b = opts_binds(&o);
	assert_string_equal(json_string_value(json_array_get(b, 0)), "/pkg/dir");
	json_decref(b);
	spec = opts_run_spec(&o, "aa", "img", NULL);
	assert_string_equal(json_string_value(json_object_get(spec, "cwd")), cwd);
	assert_null(json_object_get(spec, "stdin"));
	json_decref(spec);
	o.remote = true; /* over TCP: only what --bind names */
	o.want_stdin = true;
	spec = opts_run_spec(&o, "aa", "img", NULL);
	assert_int_equal(json_array_size(json_object_get(spec, "binds")), 2);
	assert_true(json_is_true(json_object_get(spec, "stdin")));
	json_decref(spec);
	opts_free(&o);

	assert_int_equal(opts_parse(&o, ARGC(argv_nb), argv_nb, err, sizeof(err)), 0);
	assert_true(o.no_bind);
	spec = opts_run_spec(&o, "aa", "img", NULL);
	assert_null(json_object_get(spec, "binds")); /* nothing to show: no binds, no cwd */
	assert_null(json_object_get(spec, "cwd"));
	json_decref(spec);
	opts_free(&o);
	unsetenv("CARGO_MANIFEST_DIR");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_options_then_image_then_guest_args, setup),
		cmocka_unit_test_setup(test_binds, setup),
		cmocka_unit_test_setup(test_cargo_style_invocation, setup),
		cmocka_unit_test_setup(test_double_dash_ends_options, setup),
		cmocka_unit_test_setup(test_repeatable_and_no_args, setup),
		cmocka_unit_test_setup(test_usage_errors, setup),
		cmocka_unit_test_setup(test_help_and_version_need_no_image, setup),
		cmocka_unit_test_setup(test_environment_defaults, setup),
		cmocka_unit_test_setup(test_durations_and_sizes, setup),
		cmocka_unit_test_setup(test_run_spec, setup),
		cmocka_unit_test_setup(test_environment_cli, setup),
		cmocka_unit_test_setup(test_did_you_mean, setup),
		cmocka_unit_test_setup(test_socket_path, setup),
		cmocka_unit_test_setup(test_exit_status_from_record, setup),
		cmocka_unit_test_setup(test_run_ids, setup),
		cmocka_unit_test_setup(test_sha256, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
