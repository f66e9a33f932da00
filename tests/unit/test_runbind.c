/*
 * test_runbind.c — the bind policy on a real file system: refused over TCP unless
 * allowed, never inside runnerd's own files, never a non-directory, and for another
 * uid only what its mode bits let it read (a 0700 ancestor hides everything below).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "runbind.h"
#include "runspec.h"

static char top[64];

static int setup(void **state)
{
	(void)state;
	snprintf(top, sizeof(top), "/tmp/ukrun-runbind-XXXXXX");
	if (!mkdtemp(top))
		return -1;
	char p[128];
	chmod(top, 0755);
	snprintf(p, sizeof(p), "%s/open", top);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/closed", top);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/closed/inner", top);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/data", top);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/file", top);
	FILE *f = fopen(p, "w");
	if (f)
		fclose(f);
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	(void)state;
	return nftw(top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Check one bind `sub` (under top) for a caller; returns runbind_check's result. */
static int check(const char *sub, int is_tcp, int remote, long uid, char **ret_err)
{
	char path[128], data[128];
	snprintf(path, sizeof(path), "%s%s", top, sub);
	snprintf(data, sizeof(data), "%s/data", top);
	char *binds[] = {path, NULL};
	char *hidden[] = {data, NULL};
	struct run_request req = {.binds = binds, .nbinds = 1};
	*ret_err = NULL;
	return runbind_check(&req, is_tcp, remote, uid, hidden, ret_err);
}

static void test_tcp_refused_unless_allowed(void **state)
{
	(void)state;
	char *err;
	assert_int_equal(check("/open", 1, 0, -1, &err), -EINVAL);
	assert_non_null(strstr(err, "--bind"));
	assert_non_null(strstr(err, "remote-binds"));
	free(err);
	assert_int_equal(check("/open", 1, 1, -1, &err), 0);
	assert_int_equal(check("/open", 0, 0, (long)getuid(), &err), 0);
	struct run_request none = {0};
	assert_int_equal(runbind_check(&none, 1, 0, -1, NULL, &err), 0); /* no binds: nothing to refuse */
}

static void test_own_files_and_non_dirs(void **state)
{
	(void)state;
	char *err;
	assert_int_equal(check("/data", 0, 0, (long)getuid(), &err), -EINVAL);
	assert_non_null(strstr(err, "runnerd's own files"));
	free(err);
	assert_int_equal(check("/data/../data", 0, 0, (long)getuid(), &err), -EINVAL);
	free(err);
	assert_int_equal(check("/file", 0, 0, (long)getuid(), &err), -EINVAL);
	assert_non_null(strstr(err, "not a directory"));
	free(err);
	assert_int_equal(check("/missing", 0, 0, (long)getuid(), &err), -EINVAL);
	free(err);
	/* The directory holding runnerd's data may be bound (the sandbox hides the data). */
	assert_int_equal(check("", 0, 0, (long)getuid(), &err), 0);
}

static void test_other_uid_by_mode_bits(void **state)
{
	(void)state;
	char *err, path[128];
	long other = 65534; /* owns nothing here */
	if ((long)getuid() == other)
		skip();
	assert_int_equal(check("/open", 0, 0, other, &err), 0);
	assert_int_equal(check("/closed/inner", 0, 0, other, &err), -EINVAL);
	assert_non_null(strstr(err, "not readable by uid 65534"));
	free(err);
	snprintf(path, sizeof(path), "%s/closed/inner", top);
	assert_int_equal(runbind_readable_by(path, other), 0);
	assert_int_equal(runbind_readable_by(path, (long)getuid()), 1); /* the owner of every component */
	snprintf(path, sizeof(path), "%s/open", top);
	assert_int_equal(runbind_readable_by(path, other), 1);
}

static void test_runspec_fields(void **state)
{
	(void)state;
	struct run_request req;
	char *err = NULL;
	const char *ok = "{\"image\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	                 "\",\"stdin\":true,\"binds\":[\"/a/b\",\"/c\"],\"cwd\":\"/a/b/c\"}";
	assert_int_equal(runspec_parse(ok, strlen(ok), &req, &err), 0);
	assert_true(req.want_stdin);
	assert_int_equal(req.nbinds, 2);
	assert_string_equal(req.binds[1], "/c");
	assert_string_equal(req.cwd, "/a/b/c");
	runspec_free(&req);
	static const char *const bad[] = {
		"\"binds\":[\"rel\"]", "\"binds\":[\"/a/../b\"]", "\"binds\":[\"/a/.\"]", "\"binds\":\"/a\"",
		"\"cwd\":\"x\"", "\"stdin\":1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char json[256];
		snprintf(json, sizeof(json), "{\"image\":\"%s\",%s}",
		         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", bad[i]);
		err = NULL;
		assert_int_equal(runspec_parse(json, strlen(json), &req, &err), -EINVAL);
		assert_non_null(err);
		free(err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tcp_refused_unless_allowed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_own_files_and_non_dirs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_uid_by_mode_bits, setup, teardown),
		cmocka_unit_test(test_runspec_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
