/*
 * test_testreport.c — the client's test report: summary line, table and JUnit XML (escaping, counts, outcomes).
 * The XML's validity against the JUnit schema is checked with xmllint in tests/integration/test_results.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testreport.h"

static json_t *doc(void)
{
	json_t *t = json_loads(
		"{\"id\": \"7\", \"framework\": \"libtest\", \"cases\": ["
		"{\"name\": \"m::ok1\", \"outcome\": \"ok\", \"duration_s\": 0.5},"
		"{\"name\": \"m::bad\", \"outcome\": \"failed\", \"message\": \"a < b & \\\"c\\\"\\nline2\","
		" \"location\": \"src/m.rs:1:2\", \"output\": \"out\\u001b[0m <x>\"},"
		"{\"name\": \"top\", \"outcome\": \"crashed\", \"message\": null},"
		"{\"name\": \"m::later\", \"outcome\": \"not_run\"},"
		"{\"name\": \"m::ign\", \"outcome\": \"ignored\"}],"
		"\"summary\": {\"ok\": 1, \"failed\": 1, \"ignored\": 1, \"crashed\": 1, \"running\": 0, \"not_run\": 3,"
		" \"total\": 7, \"crashed_in\": \"top\"}}",
		0, NULL);
	assert_non_null(t);
	return t;
}

static char *render(int (*fn)(FILE *, const json_t *, const json_t *), const json_t *t, const json_t *run)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(fn(f, t, run), 0);
	fclose(f);
	return buf;
}

static void test_summary(void **state)
{
	json_t *t = doc();
	char buf[512];

	(void)state;
	testreport_summary(t, buf, sizeof(buf));
	assert_string_equal(buf, "libtest: 1 ok, 1 failed, 1 ignored, 1 crashed, 3 not run (7 tests); the run crashed "
	                         "during top, the tests after it did not run");
	testreport_summary(t, buf, 20); /* truncates, never overruns */
	assert_int_equal(strlen(buf), 19);
	json_decref(t);
}

static void test_junit(void **state)
{
	json_t *t = doc();
	json_t *run = json_pack("{s:s,s:i,s:i,s:s}", "name", "my<bin>", "exit_code", 134, "duration_ms", 1500,
	                        "exit_source", "signal");
	char *x = render(testreport_junit, t, run);

	(void)state;
	assert_non_null(strstr(x, "<testsuite name=\"my&lt;bin&gt;\" tests=\"5\" failures=\"1\" errors=\"1\" "
	                          "skipped=\"2\" time=\"1.500\" id=\"7\" package=\"libtest\">"));
	assert_non_null(strstr(x, "<testcase name=\"ok1\" classname=\"m\" time=\"0.500000\"/>"));
	assert_non_null(strstr(x, "<failure message=\"a &lt; b &amp; &quot;c&quot;&#10;line2\" type=\"panic\">"
	                          "src/m.rs:1:2: a &lt; b &amp; \"c\"\nline2</failure>"));
	/* ESC cannot appear in XML 1.0 at all */
	assert_non_null(strstr(x, "<system-out>out?[0m &lt;x&gt;</system-out>"));
	assert_non_null(strstr(x, "<testcase name=\"top\" classname=\"my&lt;bin&gt;\">\n      <error message=\"the "
	                          "program crashed during this test\" type=\"crash\">"));
	assert_non_null(strstr(x, "<testcase name=\"later\" classname=\"m\">\n      <skipped message=\"not run"));
	assert_non_null(strstr(x, "<testcase name=\"ign\" classname=\"m\">\n      <skipped/>"));
	assert_non_null(strstr(x, "<property name=\"ukrun.exit_code\" value=\"134\"/>"));
	assert_null(strstr(x, "\x1b"));
	free(x);
	json_decref(run);
	json_decref(t);
}

static void test_print(void **state)
{
	json_t *t = doc();
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	testreport_print(f, t);
	fclose(f);
	assert_non_null(strstr(buf, "ok       m::ok1 (0.500s)\n"));
	assert_non_null(strstr(buf, "FAILED   m::bad\n         at src/m.rs:1:2\n         a < b & \"c\"\n         line2\n"));
	assert_non_null(strstr(buf, "CRASHED  top\n"));
	assert_non_null(strstr(buf, "not run  m::later\n"));
	free(buf);
	json_decref(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_junit),
		cmocka_unit_test(test_print),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
