/* test_mkdirp.c — mkdir -p on a real temporary directory: parents, existing paths, files in the way, bad input. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
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

#include "mkdirp.h"

static char root[] = "/tmp/ukrun-test-mkdirp.XXXXXX";

static int is_dir_mode(const char *path, mode_t mode)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == mode;
}

static void test_parents(void **state)
{
	char p[PATH_MAX];

	(void)state;
	umask(022);
	snprintf(p, sizeof(p), "%s/a/b//c/", root);
	assert_int_equal(mkdir_p(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/a", root);
	assert_true(is_dir_mode(p, 0700));
	snprintf(p, sizeof(p), "%s/a/b/c", root);
	assert_true(is_dir_mode(p, 0700));
	/* Again: everything exists, still success. */
	assert_int_equal(mkdir_p(p, 0700), 0);
	/* Relative paths work from the current directory. */
	assert_int_equal(chdir(root), 0);
	assert_int_equal(mkdir_p("rel/x", 0750), 0);
	assert_true(is_dir_mode("rel/x", 0750));
}

static void test_in_the_way(void **state)
{
	char p[PATH_MAX];
	FILE *f;

	(void)state;
	snprintf(p, sizeof(p), "%s/file", root);
	f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(mkdir_p(p, 0700), -ENOTDIR);
	snprintf(p, sizeof(p), "%s/file/sub", root);
	assert_int_equal(mkdir_p(p, 0700), -ENOTDIR);
}

static void test_one_level(void **state)
{
	char p[PATH_MAX];

	(void)state;
	snprintf(p, sizeof(p), "%s/one", root);
	assert_int_equal(mkdir_exist_ok(p, 0700), 0);
	assert_true(is_dir_mode(p, 0700));
	assert_int_equal(mkdir_exist_ok(p, 0700), 0);
	/* No parents made. */
	snprintf(p, sizeof(p), "%s/two/three", root);
	assert_int_equal(mkdir_exist_ok(p, 0700), -ENOENT);
	snprintf(p, sizeof(p), "%s/one/f", root);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(mkdir_exist_ok(p, 0700), -ENOTDIR);
}

static void test_bad_input(void **state)
{
	static char longp[PATH_MAX + 8];

	(void)state;
	assert_int_equal(mkdir_p(NULL, 0700), -EINVAL);
	assert_int_equal(mkdir_p("", 0700), -EINVAL);
	memset(longp, 'a', sizeof(longp) - 1);
	assert_int_equal(mkdir_p(longp, 0700), -ENAMETOOLONG);
	assert_int_equal(mkdir_p("/proc/ukrun-no-such/x", 0700), -ENOENT);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(root) ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(chdir("/"), 0);
	return nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parents),
		cmocka_unit_test(test_in_the_way),
		cmocka_unit_test(test_one_level),
		cmocka_unit_test(test_bad_input),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
