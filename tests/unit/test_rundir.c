/*
 * test_rundir.c — a run's private directory on a real file system: the console log is
 * the daemon's own file whatever name the user gave, the user's name lives alone in
 * image/, a stale directory is moved aside, and pid matching is by whole directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "driver.h"
#include "rundir.h"

struct fixture {
	char dir[64];
	char target[128];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	strcpy(fx->dir, "/tmp/ukrun-test-rundir-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->target, sizeof(fx->target), "%s/stored-image", fx->dir);
	int fd = open(fx->target, O_WRONLY | O_CREAT | O_CLOEXEC, 0400);
	if (fd < 0 || write(fd, "IMAGE", 5) != 5)
		return -1;
	close(fd);
	*state = fx;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	int r = nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return r;
}

static char *slurp(const char *path)
{
	static char buf[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void test_user_name_never_aliases(void **state)
{
	struct fixture *fx = *state;
	static const char *const names[] = {RUNDIR_CONSOLE, "qemu.pid", "qmp.sock", RUNDIR_IMAGE_DIR};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *dir = NULL, *link = NULL;
		assert_int_equal(rundir_create(fx->dir, (int64_t)i + 1, &dir), 0);
		assert_int_equal(rundir_link_image(dir, names[i], fx->target, &link), 0);
		char want[256];
		snprintf(want, sizeof(want), "%s/" RUNDIR_IMAGE_DIR "/%s", dir, names[i]);
		assert_string_equal(link, want);
		assert_string_equal(slurp(link), "IMAGE");
		/* The console is the daemon's own empty regular file, not the image. */
		int fd = rundir_open_console(dir);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "console bytes", 13), 13);
		close(fd);
		char cpath[256];
		snprintf(cpath, sizeof(cpath), "%s/" RUNDIR_CONSOLE, dir);
		struct stat st;
		assert_int_equal(lstat(cpath, &st), 0);
		assert_true(S_ISREG(st.st_mode));
		assert_string_equal(slurp(cpath), "console bytes");
		assert_string_equal(slurp(fx->target), "IMAGE");
		free(dir);
		free(link);
	}
}

static void test_bad_names(void **state)
{
	struct fixture *fx = *state;
	char *dir = NULL, *link = (char *)"x";
	assert_int_equal(rundir_create(fx->dir, 7, &dir), 0);
	static const char *const bad[] = {"", ".", "..", "a/b", "/etc/passwd"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(rundir_link_image(dir, bad[i], fx->target, &link), -EINVAL);
		assert_null(link);
	}
	free(dir);
}

static void test_console_never_through_a_link(void **state)
{
	struct fixture *fx = *state;
	char *dir = NULL;
	assert_int_equal(rundir_create(fx->dir, 3, &dir), 0);
	char cpath[256];
	snprintf(cpath, sizeof(cpath), "%s/" RUNDIR_CONSOLE, dir);
	assert_int_equal(unlink(cpath), 0);
	assert_int_equal(symlink(fx->target, cpath), 0);
	assert_int_equal(rundir_open_console(dir), -ELOOP);
	assert_string_equal(slurp(fx->target), "IMAGE");
	free(dir);
}

static void test_stale_dir_moved_aside(void **state)
{
	struct fixture *fx = *state;
	char stale[128], marker[160];
	snprintf(stale, sizeof(stale), "%s/5", fx->dir);
	assert_int_equal(mkdir(stale, 0700), 0);
	snprintf(marker, sizeof(marker), "%s/" RUNDIR_CONSOLE, stale);
	assert_int_equal(symlink(fx->target, marker), 0);
	char *dir = NULL;
	assert_int_equal(rundir_create(fx->dir, 5, &dir), 0);
	assert_string_equal(dir, stale);
	struct stat st;
	assert_int_equal(lstat(marker, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 0);
	free(dir);
	/* A runs directory that does not exist. */
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/none", fx->dir);
	assert_int_equal(rundir_create(missing, 1, &dir), -ENOENT);
	assert_null(dir);
}

static void test_cmdline_names(void **state)
{
	(void)state;
	const char *dir = "/var/lib/ukrun/runs/1";
	assert_true(drv_cmdline_names("qemu -pidfile /var/lib/ukrun/runs/1/qemu.pid", dir));
	assert_false(drv_cmdline_names("qemu -pidfile /var/lib/ukrun/runs/12/qemu.pid", dir));
	assert_false(drv_cmdline_names("qemu -kernel /var/lib/ukrun/runs/1", dir));
	assert_true(drv_cmdline_names("x /var/lib/ukrun/runs/12/a /var/lib/ukrun/runs/1/b", dir));
	assert_false(drv_cmdline_names("", dir));
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_user_name_never_aliases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_console_never_through_a_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_dir_moved_aside, setup, teardown),
		cmocka_unit_test(test_cmdline_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
