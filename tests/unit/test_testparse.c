/*
 * test_testparse.c — libtest / Unikraft console parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testparse.h"

static struct testparse *parse_all(const char *text, size_t len, int finish)
{
	struct testparse *tp = testparse_new();

	assert_non_null(tp);
	testparse_feed(tp, text, len);
	if (finish)
		testparse_finish(tp);
	return tp;
}

static void expect_case(const struct testparse *tp, size_t i, const char *name, enum tp_outcome o)
{
	const struct tp_case *c = testparse_case(tp, i);

	assert_non_null(c);
	assert_string_equal(c->name, name);
	if (c->outcome != o)
		fail_msg("case %s: outcome %s, want %s", name, tp_outcome_name(c->outcome), tp_outcome_name(o));
}

static void test_simple_ok(void **state)
{
	static const char text[] =
		"\nrunning 3 tests\n"
		"test tests::alpha ... ok\n"
		"test tests::beta ... ignored, needs network\n"
		"test tests::gamma - should panic ... ok\n"
		"\n"
		"test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n";
	struct testparse *tp = parse_all(text, sizeof(text) - 1, 0);
	struct tp_summary s;

	(void)state;
	testparse_summary(tp, &s);
	assert_int_equal(s.seen_libtest, 1);
	assert_int_equal(s.result_lines, 1);
	assert_int_equal(s.result_failed, 0);
	assert_int_equal(s.announced, 3);
	assert_int_equal(s.passed, 2);
	assert_int_equal(s.failed, 0);
	assert_int_equal(s.ignored, 1);
	assert_int_equal(s.not_run, 0);
	assert_int_equal(s.complete, 1);
	assert_int_equal(s.main_returned, -1);
	assert_int_equal(testparse_ncases(tp), 3);
	expect_case(tp, 0, "tests::alpha", TP_OK);
	expect_case(tp, 1, "tests::beta", TP_IGNORED);
	expect_case(tp, 2, "tests::gamma", TP_OK);
	assert_true(testparse_case(tp, 0)->duration_s < 0);
	assert_null(testparse_case(tp, 3));
	testparse_finish(tp);
	testparse_summary(tp, &s);
	assert_int_equal(s.complete, 1);
	assert_int_equal(s.passed, 2);
	testparse_free(tp);
}

/* A transcript with most features: colour, CRLF, interleaved output, failures list, two suites. */
static const char big[] =
	"Powered by Unikraft Pan (0.17.0)\r\n"
	"\r\n"
	"running 1 test\r\n"
	"test one ... \x1b[32mok\x1b(B\x1b[m\r\n"
	"\r\n"
	"test result: \x1b[32mok\x1b(B\x1b[m. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\r\n"
	"\r\n"
	"running 4 tests\n"
	"test a ... ok <0.125s>\n"
	"test slow ... \n"
	"[    0.120000] Warn: [libposix_process] <deprecated.c @  321> stub\n"
	"ok\n"
	"test b ... FAILED\n"
	"test c ... \n"
	"some output of c\n"
	"\n"
	"failures:\n"
	"\n"
	"---- b stdout ----\n"
	"thread 'b' panicked at src/lib.rs:10:5:\n"
	"assertion `left == right` failed\n"
	"    c\n" /* inside b's block: b's output, not the name list */
	"\n"
	"failures:\n"
	"    b\n"
	"    c\n"
	"\n"
	"test result: \x1b[31mFAILED\x1b(B\x1b[m. 2 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s\n"
	"\n"
	"Info: [libukboot] <boot.c @ 402> main returned 101, halting system\n";

static void check_big(const struct testparse *tp)
{
	struct tp_summary s;

	testparse_summary(tp, &s);
	assert_int_equal(s.seen_libtest, 1);
	assert_int_equal(s.result_lines, 2);
	assert_int_equal(s.result_failed, 1);
	assert_int_equal(s.announced, 5);
	assert_int_equal(s.passed, 3);
	assert_int_equal(s.failed, 2);
	assert_int_equal(s.not_run, 0);
	assert_int_equal(s.panicked, 1);
	assert_int_equal(s.crashed, 0);
	assert_int_equal(s.main_returned, 101);
	assert_int_equal(s.complete, 1);
	assert_int_equal(s.running, 0);
	assert_int_equal(testparse_ncases(tp), 5);
	expect_case(tp, 0, "one", TP_OK);
	expect_case(tp, 1, "a", TP_OK);
	assert_true(testparse_case(tp, 1)->duration_s > 0.12 && testparse_case(tp, 1)->duration_s < 0.13);
	expect_case(tp, 2, "slow", TP_OK);
	expect_case(tp, 3, "b", TP_FAILED);
	expect_case(tp, 4, "c", TP_FAILED);
}

static void same(const struct testparse *a, const struct testparse *b)
{
	struct tp_summary sa, sb;

	testparse_summary(a, &sa);
	testparse_summary(b, &sb);
	assert_memory_equal(&sa, &sb, sizeof(sa));
	assert_int_equal(testparse_ncases(a), testparse_ncases(b));
	for (size_t i = 0; i < testparse_ncases(a); i++) {
		assert_string_equal(testparse_case(a, i)->name, testparse_case(b, i)->name);
		assert_int_equal(testparse_case(a, i)->outcome, testparse_case(b, i)->outcome);
	}
}

static void test_big_whole(void **state)
{
	struct testparse *tp = parse_all(big, sizeof(big) - 1, 1);

	(void)state;
	check_big(tp);
	testparse_free(tp);
}

static void test_chunking(void **state)
{
	size_t len = sizeof(big) - 1;
	struct testparse *whole = parse_all(big, len, 1);

	(void)state;
	for (size_t cut = 0; cut <= len; cut++) {
		struct testparse *tp = testparse_new();
		testparse_feed(tp, big, cut);
		testparse_feed(tp, big + cut, len - cut);
		testparse_finish(tp);
		same(whole, tp);
		testparse_free(tp);
	}
	/* One byte at a time. */
	{
		struct testparse *tp = testparse_new();
		for (size_t i = 0; i < len; i++)
			testparse_feed(tp, big + i, 1);
		testparse_finish(tp);
		same(whole, tp);
		check_big(tp);
		testparse_free(tp);
	}
	testparse_free(whole);
}

static void test_multi_suite(void **state)
{
	static const char text[] =
		"running 2 tests\ntest x ... ok\ntest y ... ok\n\n"
		"test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n"
		"running 3 tests\ntest p ... ok\ntest q ... FAILED\ntest r ... ignored\n\n"
		"test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 2 filtered out; finished in 0.00s\n\n"
		"running 0 tests\n\n"
		"test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n";
	struct testparse *tp = parse_all(text, sizeof(text) - 1, 0);
	struct tp_summary s;

	(void)state;
	testparse_summary(tp, &s);
	assert_int_equal(s.result_lines, 3);
	assert_int_equal(s.result_failed, 1);
	assert_int_equal(s.announced, 5);
	assert_int_equal(s.passed, 3);
	assert_int_equal(s.failed, 1);
	assert_int_equal(s.ignored, 1);
	assert_int_equal(s.complete, 1);
	assert_int_equal(testparse_ncases(tp), 5);
	expect_case(tp, 3, "q", TP_FAILED);
	testparse_free(tp);

	/* A suite that starts but never ends makes the whole run incomplete. */
	static const char cut[] =
		"running 1 test\ntest x ... ok\n\n"
		"test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n"
		"running 2 tests\ntest y ... ok\n";
	tp = parse_all(cut, sizeof(cut) - 1, 0);
	testparse_summary(tp, &s);
	assert_int_equal(s.complete, 0);
	assert_int_equal(s.not_run, 1);
	testparse_finish(tp);
	testparse_summary(tp, &s);
	assert_int_equal(s.complete, 0);
	assert_int_equal(s.passed, 2);
	assert_int_equal(s.not_run, 1);
	testparse_free(tp);
}

static void test_panics(void **state)
{
	static const char *const lines[] = {
		"thread 'main' panicked at src/main.rs:2:5:\nexplicit panic\n",
		"thread 'tests::beta' panicked at 'assertion failed: false', src/lib.rs:10:9\n",
		"thread '<unnamed>' panicked at library/std/src/thread.rs:1:1:\n",
	};
	struct tp_summary s;

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct testparse *tp = parse_all(lines[i], strlen(lines[i]), 1);
		testparse_summary(tp, &s);
		assert_int_equal(s.panicked, 1);
		assert_int_equal(s.crashed, 0);
		assert_int_equal(s.seen_libtest, 0);
		assert_int_equal(s.complete, 0);
		testparse_free(tp);
	}
	struct testparse *tp = parse_all("the thread panicked\n", 20, 1);
	testparse_summary(tp, &s);
	assert_int_equal(s.panicked, 0);
	testparse_free(tp);
}

static void test_abort_mid_test(void **state)
{
	static const char text[] =
		"\nrunning 4 tests\n"
		"test alpha ... ok\n"
		"test beta ... thread 'beta' panicked at src/lib.rs:9:5:\n"
		"assertion failed: 1 == 2\n"
		"[    0.104382] CRIT: [libukdebug] <crash.c @ 185> Unikraft crash - Pan (0.17.0~eaf6fda1)\n"
		"[    0.104500] CRIT: [libukdebug] Thread \"main\"@0x40032000\n"
		"[    0.104600] CRIT: [libukdebug] RIP: 0008:000000000010a3c1";
	struct testparse *tp = parse_all(text, sizeof(text) - 1, 0);
	struct tp_summary s;

	(void)state;
	testparse_summary(tp, &s);
	assert_int_equal(s.running, 1);
	assert_string_equal(s.last_running, "beta");
	assert_int_equal(s.complete, 0);
	expect_case(tp, 1, "beta", TP_RUNNING);

	testparse_finish(tp);
	testparse_summary(tp, &s);
	assert_int_equal(s.panicked, 1);
	assert_int_equal(s.crashed, 1);
	assert_int_equal(s.running, 0);
	assert_string_equal(s.last_running, "beta");
	assert_int_equal(s.announced, 4);
	assert_int_equal(s.passed, 1);
	assert_int_equal(s.failed, 1);
	assert_int_equal(s.not_run, 2);
	assert_int_equal(s.result_lines, 0);
	assert_int_equal(s.complete, 0);
	assert_int_equal(testparse_ncases(tp), 2);
	expect_case(tp, 0, "alpha", TP_OK);
	expect_case(tp, 1, "beta", TP_CRASHED);
	testparse_free(tp);
}

static void test_crash_texts(void **state)
{
	static const char *const crashes[] = {
		"[    0.1] CRIT: [libkvmplat] Unikraft Crash - Ijiraq (0.21.0)\n",
		"CRIT: something crashed\n",
		"Kernel panic - not syncing\n",
		"Unikraft crash - Telesto",
	};
	struct tp_summary s;

	(void)state;
	for (size_t i = 0; i < sizeof(crashes) / sizeof(crashes[0]); i++) {
		struct testparse *tp = parse_all(crashes[i], strlen(crashes[i]), 1);
		testparse_summary(tp, &s);
		assert_int_equal(s.crashed, 1);
		testparse_free(tp);
	}
	struct testparse *tp = parse_all("CRIT: low memory\ncrash course\n", 30, 1);
	testparse_summary(tp, &s);
	assert_int_equal(s.crashed, 0);
	testparse_free(tp);
}

static void test_main_returned(void **state)
{
	static const char text[] = "Info: [libukboot] <boot.c @ 402> main returned 3, halting system\r\n";
	struct testparse *tp = parse_all(text, sizeof(text) - 1, 1);
	struct tp_summary s;

	(void)state;
	testparse_summary(tp, &s);
	assert_int_equal(s.main_returned, 3);
	testparse_free(tp);
	tp = parse_all("main returned x\n", 16, 1);
	testparse_summary(tp, &s);
	assert_int_equal(s.main_returned, -1);
	testparse_free(tp);
}

static void test_list(void **state)
{
	static const char text[] = "tests::alpha: test\r\ntests::beta: test\r\nbench_x: benchmark\r\n\r\n"
	                           "2 tests, 1 benchmark\r\n";
	struct testparse *tp = parse_all(text, sizeof(text) - 1, 0);
	struct tp_summary s;

	(void)state;
	testparse_summary(tp, &s);
	assert_int_equal(s.list_end, 1);
	assert_int_equal(s.complete, 1);
	assert_int_equal(s.seen_libtest, 0);
	testparse_free(tp);

	tp = parse_all("1 test, 0 benchmarks\n", 21, 0);
	testparse_summary(tp, &s);
	assert_int_equal(s.list_end, 1);
	testparse_free(tp);

	tp = parse_all("2 tests, lots of benchmarks\n", 28, 0);
	testparse_summary(tp, &s);
	assert_int_equal(s.list_end, 0);
	testparse_free(tp);
}

static void test_long_lines(void **state)
{
	size_t n = 3 * TESTPARSE_LINE_MAX;
	char *buf = malloc(n + 200);
	struct tp_summary s;
	struct testparse *tp;

	(void)state;
	assert_non_null(buf);
	/* A recognisable prefix survives the cut; the rest of the long line is dropped. */
	strcpy(buf, "thread 'main' panicked at ");
	memset(buf + strlen(buf), 'x', n);
	strcpy(buf + n, "\nrunning 1 test\ntest only ... ok\n");
	tp = testparse_new();
	for (size_t i = 0; i < strlen(buf); i += 1000)
		testparse_feed(tp, buf + i, strlen(buf) - i < 1000 ? strlen(buf) - i : 1000);
	testparse_summary(tp, &s);
	assert_int_equal(s.panicked, 1);
	assert_int_equal(s.seen_libtest, 1);
	assert_int_equal(s.passed, 1);
	assert_int_equal(testparse_ncases(tp), 1);
	expect_case(tp, 0, "only", TP_OK);
	testparse_free(tp);

	/* A line of exactly the cap is whole, and the next one is parsed normally. */
	memset(buf, 'y', TESTPARSE_LINE_MAX);
	strcpy(buf + TESTPARSE_LINE_MAX, "\nmain returned 4\n");
	tp = parse_all(buf, strlen(buf), 1);
	testparse_summary(tp, &s);
	assert_int_equal(s.main_returned, 4);
	testparse_free(tp);
	free(buf);
}

static void test_case_cap(void **state)
{
	struct testparse *tp = testparse_new();
	char line[64];
	struct tp_summary s;
	const int total = TESTPARSE_MAX_CASES + 5;

	(void)state;
	testparse_feed(tp, "running 100005 tests\n", 21);
	for (int i = 0; i < total; i++) {
		int k = snprintf(line, sizeof(line), "test t%d ... %s\n", i, i == total - 1 ? "" : "ok");
		testparse_feed(tp, line, (size_t)k);
	}
	testparse_summary(tp, &s);
	assert_int_equal(testparse_ncases(tp), TESTPARSE_MAX_CASES);
	assert_int_equal(s.passed, total - 1);
	assert_int_equal(s.running, 1);
	assert_string_equal(s.last_running, "t100004");
	testparse_feed(tp, "ok\n", 3);
	testparse_summary(tp, &s);
	assert_int_equal(s.passed, total);
	assert_int_equal(s.running, 0);
	testparse_free(tp);
}

static void test_misc(void **state)
{
	struct tp_summary s;

	(void)state;
	testparse_free(NULL);
	testparse_feed(NULL, "x", 1);
	testparse_finish(NULL);
	assert_int_equal(testparse_ncases(NULL), 0);
	assert_null(testparse_case(NULL, 0));
	testparse_summary(NULL, &s);
	assert_int_equal(s.main_returned, -1);
	assert_string_equal(tp_outcome_name(TP_OK), "ok");
	assert_string_equal(tp_outcome_name(TP_FAILED), "failed");
	assert_string_equal(tp_outcome_name(TP_IGNORED), "ignored");
	assert_string_equal(tp_outcome_name(TP_CRASHED), "crashed");
	assert_string_equal(tp_outcome_name(TP_RUNNING), "running");
	assert_string_equal(tp_outcome_name(TP_NOT_RUN), "not_run");

	/* Plain output is not libtest; a bare "ok" with nothing running means nothing. */
	struct testparse *tp = parse_all("Hello world!\nok\ntest of nothing\n", 32, 1);
	testparse_summary(tp, &s);
	assert_int_equal(s.seen_libtest, 0);
	assert_int_equal(s.complete, 0);
	assert_int_equal(testparse_ncases(tp), 0);
	testparse_free(tp);

	/* NUL bytes and stray escapes do not derail parsing. */
	static const char odd[] = "\0\x1b\x1b[\nrunning 1 test\ntest z\0 ... ok\n\x1b";
	tp = parse_all(odd, sizeof(odd) - 1, 1);
	testparse_summary(tp, &s);
	assert_int_equal(s.seen_libtest, 1);
	assert_int_equal(s.passed, 1);
	expect_case(tp, 0, "z?", TP_OK);
	testparse_free(tp);
}

/* Counts from untrusted result lines saturate instead of overflowing (found by fuzz_testparse). */
static void test_huge_counts(void **state)
{
	static const char line[] =
		"test result: ok. 999999999 passed; 999999999 failed; 999999999 ignored; 0 measured; "
		"0 filtered out; finished in 0.00s\n";
	char text[sizeof(line) * 3];
	struct tp_summary s;

	(void)state;
	snprintf(text, sizeof(text), "%s%s%s", line, line, line);
	struct testparse *tp = parse_all(line, sizeof(line) - 1, 0);
	testparse_summary(tp, &s);
	assert_int_equal(s.announced, INT_MAX); /* 3 x 999999999 */
	assert_int_equal(s.passed, 999999999);
	testparse_free(tp);
	tp = parse_all(text, strlen(text), 1);
	testparse_summary(tp, &s);
	assert_int_equal(s.result_lines, 3);
	assert_int_equal(s.announced, INT_MAX);
	assert_int_equal(s.passed, INT_MAX);
	assert_int_equal(s.failed, INT_MAX);
	assert_int_equal(s.ignored, INT_MAX);
	testparse_free(tp);
}

/* ---- per-test details, on real captures (tests/unit/data/README.md) ---- */

static char *slurp(const char *dir, const char *name, size_t *ret_len)
{
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*ret_len = (size_t)n;
	return buf;
}

/* `text` as a Unikraft console shows it: a banner and kernel log lines first, CRLF line ends,
 * fed in 7-byte chunks. */
static struct testparse *parse_as_console(const char *text, size_t len)
{
	static const char pre[] = "[    0.000000] Info: [libukconsole] <console.c @  176> Registered con0: COM1\r\n"
	                          "Powered by\r\no.   .o       _ _               __ _\r\n"
	                          "                Calypso 0.17.0~eaf6fda1\r\n"
	                          "[    0.115743] Info: [libukboot] <boot.c @  493> Calling main(1, ['t'])\r\n";
	struct testparse *tp = testparse_new();
	char *crlf = malloc(2 * len + sizeof(pre));
	size_t n = 0;

	assert_non_null(tp);
	assert_non_null(crlf);
	memcpy(crlf, pre, sizeof(pre) - 1);
	n = sizeof(pre) - 1;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\n')
			crlf[n++] = '\r';
		crlf[n++] = text[i];
	}
	for (size_t i = 0; i < n; i += 7)
		testparse_feed(tp, crlf + i, n - i < 7 ? n - i : 7);
	free(crlf);
	testparse_finish(tp);
	return tp;
}

static const struct tp_case *case_named(const struct testparse *tp, const char *name)
{
	for (size_t i = 0; i < testparse_ncases(tp); i++)
		if (strcmp(testparse_case(tp, i)->name, name) == 0)
			return testparse_case(tp, i);
	fail_msg("no case %s", name);
	return NULL;
}

static const char fails_eq_msg[] = "assertion `left == right` failed: math is broken\n  left: 2\n right: 3";

/* The two failed tests of the demo crate, whatever the format. */
static void expect_demo_failures(const struct testparse *tp)
{
	const struct tp_case *c = case_named(tp, "tests::fails_eq");
	struct tp_summary s;

	assert_int_equal(c->outcome, TP_FAILED);
	assert_non_null(c->message);
	assert_string_equal(c->message, fails_eq_msg);
	assert_string_equal(c->location, "src/lib.rs:11:9");
	assert_non_null(c->output);
	assert_non_null(strstr(c->output, "about to compare\n"));
	assert_non_null(strstr(c->output, "panicked at src/lib.rs:11:9:"));
	c = case_named(tp, "tests::panics_plain");
	assert_int_equal(c->outcome, TP_FAILED);
	assert_string_equal(c->message, "boom");
	assert_string_equal(c->location, "src/lib.rs:20:9");
	testparse_summary(tp, &s);
	assert_int_equal(s.result_failed, 1);
	assert_int_equal(s.passed, 1);
	assert_int_equal(s.failed, 2);
	assert_int_equal(s.ignored, 1);
	assert_int_equal(s.complete, 1);
	assert_string_equal(testparse_framework(tp), "libtest");
}

static void test_pretty_details(void **state)
{
	size_t len;
	char *text = slurp(UKRUN_UNIT_DATA_DIR, "libtest_pretty.txt", &len);
	struct testparse *tp;

	(void)state;
	assert_non_null(text);
	tp = parse_as_console(text, len);
	assert_int_equal(testparse_ncases(tp), 4);
	expect_demo_failures(tp);
	assert_int_equal(case_named(tp, "tests::passes")->outcome, TP_OK);
	assert_null(case_named(tp, "tests::passes")->message);
	assert_null(case_named(tp, "tests::passes")->output);
	assert_int_equal(case_named(tp, "tests::skipped")->outcome, TP_IGNORED);
	/* the block's own lines, no trailing blank line, nothing of the failures list */
	assert_null(strstr(case_named(tp, "tests::panics_plain")->output, "failures"));
	assert_int_not_equal(case_named(tp, "tests::panics_plain")->output[strlen(case_named(tp, "tests::panics_plain")->output) - 1], '\n');
	testparse_free(tp);
	free(text);
}

static void test_terse_details(void **state)
{
	size_t len;
	char *text = slurp(UKRUN_UNIT_DATA_DIR, "libtest_terse.txt", &len);
	struct testparse *tp;

	(void)state;
	assert_non_null(text);
	tp = parse_as_console(text, len);
	/* terse output names only the failed tests */
	assert_int_equal(testparse_ncases(tp), 2);
	expect_demo_failures(tp);
	testparse_free(tp);
	free(text);
}

static void test_json_details(void **state)
{
	size_t len;
	char *text = slurp(UKRUN_UNIT_DATA_DIR, "libtest_json.txt", &len);
	struct testparse *tp;
	struct tp_summary s;

	(void)state;
	assert_non_null(text);
	tp = parse_as_console(text, len);
	assert_int_equal(testparse_ncases(tp), 4);
	expect_demo_failures(tp);
	assert_int_equal(case_named(tp, "tests::passes")->outcome, TP_OK);
	assert_true(case_named(tp, "tests::passes")->duration_s >= 0);
	assert_true(case_named(tp, "tests::fails_eq")->duration_s > 0);
	assert_int_equal(case_named(tp, "tests::skipped")->outcome, TP_IGNORED);
	testparse_summary(tp, &s);
	assert_int_equal(s.announced, 4);
	testparse_free(tp);

	/* a suite cut before its end: the running test crashed, the rest were not run */
	static const char cut[] = "{ \"type\": \"suite\", \"event\": \"started\", \"test_count\": 3 }\n"
	                          "{ \"type\": \"test\", \"event\": \"started\", \"name\": \"a\" }\n"
	                          "{ \"type\": \"test\", \"name\": \"a\", \"event\": \"ok\" }\n"
	                          "{ \"type\": \"test\", \"event\": \"started\", \"name\": \"b\" }\n"
	                          "{ \"type\": \"test\", \"name\": \"b\", \"event\": \"timeout\" }\n"
	                          "{ not json at all\n";
	tp = parse_as_console(cut, sizeof(cut) - 1);
	testparse_summary(tp, &s);
	expect_case(tp, 0, "a", TP_OK);
	expect_case(tp, 1, "b", TP_CRASHED);
	assert_int_equal(s.not_run, 1);
	assert_int_equal(s.complete, 0);
	testparse_free(tp);
	free(text);
}

static void test_nocapture_details(void **state)
{
	size_t len;
	char *text = slurp(UKRUN_UNIT_DATA_DIR, "libtest_nocap.txt", &len);
	struct testparse *tp;

	(void)state;
	assert_non_null(text);
	tp = parse_as_console(text, len);
	assert_int_equal(testparse_ncases(tp), 4);
	assert_string_equal(case_named(tp, "tests::fails_eq")->message, fails_eq_msg);
	assert_string_equal(case_named(tp, "tests::panics_plain")->message, "boom");
	assert_int_equal(case_named(tp, "tests::panics_plain")->outcome, TP_FAILED);
	assert_int_equal(case_named(tp, "tests::passes")->outcome, TP_OK);
	testparse_free(tp);
	free(text);
}

static void test_uktest_capture(void **state)
{
	size_t len;
	char *text = slurp(UKRUN_SHARED_FIXTURES_DIR, "uktest_qemu-x86_64-norng.console.txt", &len);
	struct testparse *tp;
	struct tp_summary s;
	const struct tp_case *c;

	(void)state;
	if (!text) {
		print_message("skipped: %s/uktest_qemu-x86_64-norng.console.txt is absent\n", UKRUN_SHARED_FIXTURES_DIR);
		skip();
	}
	tp = testparse_new();
	for (size_t i = 0; i < len; i += 5)
		testparse_feed(tp, text + i, len - i < 5 ? len - i : 5);
	testparse_finish(tp);
	testparse_summary(tp, &s);
	assert_int_equal(testparse_ncases(tp), 11);
	assert_int_equal(s.uk_cases, 11);
	assert_int_equal(s.uk_failed, 1);
	assert_int_equal(s.main_returned, 0);
	assert_int_equal(s.seen_libtest, 0);
	assert_string_equal(testparse_framework(tp), "uktest");
	expect_case(tp, 0, "uktest_myself_testsuite->uktest_test_sanity", TP_OK);
	c = case_named(tp, "ukrun_demo->fails_on_purpose");
	assert_int_equal(c->outcome, TP_FAILED);
	assert_string_equal(c->message, "expected `1 + 1` to be 3 but was 2");
	assert_string_equal(c->location, "tests.c:18");
	assert_int_equal(case_named(tp, "ukrun_demo->adds")->outcome, TP_OK);
	assert_null(case_named(tp, "ukrun_demo->adds")->message);
	assert_int_equal(case_named(tp, "uk_console_testsuite->uk_console_test_enumerate_devices")->outcome, TP_OK);
	for (size_t i = 0; i < testparse_ncases(tp); i++)
		if (strcmp(testparse_case(tp, i)->name, "ukrun_demo->fails_on_purpose") != 0)
			assert_int_equal(testparse_case(tp, i)->outcome, TP_OK);
	testparse_free(tp);
	free(text);
}

/* panic=abort on Unikraft: the panic, then the kernel's crash lines; later tests never run. */
static void test_crash_mid_run(void **state)
{
	static const char lt[] = "\nrunning 4 tests\n"
	                         "test a ... ok\n"
	                         "test b ... \n"
	                         "thread 'b' (1) panicked at src/lib.rs:7:5:\n"
	                         "[1, 2] index out of bounds\n"
	                         "[    0.2] CRIT: [libkvmplat] <trace.c @  42> Unikraft crash - Calypso 0.17.0\n";
	static const char uk[] = "[    0.1] Info: test:\x1b[0m s->one\r\n"
	                         "[    0.1] Info: \texpected `1` to be 1 and was 1 ....... [ PASSED ]\r\n"
	                         "[    0.1] Info: test:\x1b[0m s->two\r\n"
	                         "[    0.2] CRIT: [libkvmplat] <traps.c @ 91> Unikraft crash - page fault\r\n";
	struct testparse *tp;
	struct tp_summary s;

	(void)state;
	tp = parse_as_console(lt, sizeof(lt) - 1);
	testparse_summary(tp, &s);
	assert_int_equal(testparse_ncases(tp), 2);
	expect_case(tp, 0, "a", TP_OK);
	expect_case(tp, 1, "b", TP_CRASHED);
	assert_string_equal(testparse_case(tp, 1)->message, "[1, 2] index out of bounds");
	assert_string_equal(testparse_case(tp, 1)->location, "src/lib.rs:7:5");
	assert_int_equal(s.not_run, 2);
	assert_int_equal(s.crashed, 1);
	assert_string_equal(s.last_running, "b");
	testparse_free(tp);

	tp = parse_all(uk, sizeof(uk) - 1, 1);
	testparse_summary(tp, &s);
	expect_case(tp, 0, "s->one", TP_OK);
	expect_case(tp, 1, "s->two", TP_CRASHED);
	assert_non_null(strstr(testparse_case(tp, 1)->message, "Unikraft crash - page fault"));
	assert_int_equal(s.uk_failed, 1);
	assert_int_equal(s.uk_cases, 2);
	testparse_free(tp);
}

/* Older Rust: "panicked at 'MESSAGE', LOCATION"; a JSON line longer than a text line. */
static void test_detail_edges(void **state)
{
	static const char old[] = "running 1 test\ntest x ... FAILED\n\nfailures:\n\n---- x stdout ----\n"
	                          "thread 'x' panicked at 'it's', broken', src/x.rs:1:2\n\nfailures:\n    x\n\n"
	                          "test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n";
	struct testparse *tp = parse_all(old, sizeof(old) - 1, 1);
	size_t huge = 3 * TESTPARSE_LINE_MAX;
	char *line = malloc(huge + 200);

	(void)state;
	expect_case(tp, 0, "x", TP_FAILED);
	assert_string_equal(testparse_case(tp, 0)->message, "it's', broken");
	assert_string_equal(testparse_case(tp, 0)->location, "src/x.rs:1:2");
	testparse_free(tp);

	assert_non_null(line);
	int n = snprintf(line, 200, "{ \"type\": \"test\", \"name\": \"y\", \"event\": \"failed\", \"stdout\": \"");
	memset(line + n, 'o', huge);
	strcpy(line + n + huge, "\" }\n");
	tp = parse_all(line, strlen(line), 1);
	expect_case(tp, 0, "y", TP_FAILED);
	assert_int_equal(strlen(testparse_case(tp, 0)->output), huge);
	testparse_free(tp);
	free(line);

	/* bytes that are not UTF-8 in a name or output still give every case in the JSON */
	static const char bad[] = "running 2 tests\ntest caf\xe9 ... FAILED\ntest ok1 ... ok\n\nfailures:\n\n"
	                          "---- caf\xe9 stdout ----\nout \xff\xfe\n\nfailures:\n    caf\xe9\n\n"
	                          "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n";
	tp = parse_all(bad, sizeof(bad) - 1, 1);
	json_t *j = testparse_json(tp);
	assert_non_null(j);
	json_t *cases = json_object_get(j, "cases");
	assert_int_equal(json_array_size(cases), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(cases, 0), "name")), "caf?");
	assert_string_equal(json_string_value(json_object_get(json_array_get(cases, 0), "output")), "out ??");
	assert_string_equal(json_string_value(json_object_get(j, "framework")), "libtest");
	assert_int_equal(json_integer_value(json_object_get(j, "not_run")), 0);
	json_decref(j);
	testparse_free(tp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_ok),
		cmocka_unit_test(test_big_whole),
		cmocka_unit_test(test_chunking),
		cmocka_unit_test(test_multi_suite),
		cmocka_unit_test(test_panics),
		cmocka_unit_test(test_abort_mid_test),
		cmocka_unit_test(test_crash_texts),
		cmocka_unit_test(test_main_returned),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_case_cap),
		cmocka_unit_test(test_misc),
		cmocka_unit_test(test_huge_counts),
		cmocka_unit_test(test_pretty_details),
		cmocka_unit_test(test_terse_details),
		cmocka_unit_test(test_json_details),
		cmocka_unit_test(test_nocapture_details),
		cmocka_unit_test(test_uktest_capture),
		cmocka_unit_test(test_crash_mid_run),
		cmocka_unit_test(test_detail_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
