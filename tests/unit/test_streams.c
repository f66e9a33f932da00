/*
 * test_streams.c — a run's stdout and stderr logs: created empty at init (so a follower
 * of a queued run finds them), each stream's bytes in its own log in order, console-only
 * bytes in neither, nothing at all for a run without separate streams.
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

#include "rundir.h"
#include "streams.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ukrun-streams-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	(void)state;
	return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *slurp(const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = calloc(1, 4096);
	size_t n = fread(buf, 1, 4095, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_split(void **state)
{
	(void)state;
	struct streams s;
	assert_int_equal(streams_init(&s, dir, 0, 1), 0);
	char *e = slurp(RUNDIR_STDERR);
	assert_non_null(e); /* exists, empty, before the run starts */
	assert_string_equal(e, "");
	free(e);
	assert_null(streams_live(&s, DRV_STREAM_CONSOLE));
	assert_non_null(streams_live(&s, DRV_STREAM_STDERR));
	assert_int_equal(streams_open(&s, dir), 0);
	streams_append(&s, DRV_STREAM_STDOUT, "out1\n", 5);
	streams_append(&s, DRV_STREAM_STDERR, "err1\n", 5);
	streams_append(&s, DRV_STREAM_CONSOLE, "console\n", 8);
	streams_append(&s, DRV_STREAM_STDOUT, "out2\n", 5);
	assert_int_equal(streams_open(&s, dir), 0); /* a retried run: the logs stay open, nothing lost */
	streams_append(&s, DRV_STREAM_STDERR, "err2\n", 5);
	streams_close(&s);
	assert_null(streams_live(&s, DRV_STREAM_STDOUT));
	char *o = slurp(RUNDIR_STDOUT);
	e = slurp(RUNDIR_STDERR);
	assert_string_equal(o, "out1\nout2\n");
	assert_string_equal(e, "err1\nerr2\n");
	free(o);
	free(e);
	/* The names are the daemon's own: a second init finds them there and refuses to reuse them. */
	assert_int_equal(streams_init(&s, dir, 0, 1), -EEXIST);
}

static void test_not_split(void **state)
{
	(void)state;
	struct streams s;
	assert_int_equal(streams_init(&s, dir, 0, 0), 0);
	assert_int_equal(streams_open(&s, dir), 0);
	streams_append(&s, DRV_STREAM_STDOUT, "x", 1);
	assert_null(streams_live(&s, DRV_STREAM_STDOUT));
	streams_close(&s);
	assert_null(slurp(RUNDIR_STDOUT));
	assert_null(slurp(RUNDIR_STDERR));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_split, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
