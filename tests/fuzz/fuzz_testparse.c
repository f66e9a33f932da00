/*
 * fuzz_testparse.c — libFuzzer harness for runnerd/testparse.c: the input is
 * guest console text. testparse promises that lines may be split anywhere
 * across feeds, so the harness feeds the input twice — once whole, once in
 * pieces whose sizes come from the input's own bytes — and requires the same
 * summary and cases from both, before and after testparse_finish, and the
 * same again after a second (idempotent) finish.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testparse.h"

#define FAIL(...) (fprintf(stderr, "fuzz_testparse: " __VA_ARGS__), fputc('\n', stderr), abort())

static int same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void same(const struct testparse *a, const struct testparse *b, const char *when)
{
	struct tp_summary x, y;
	testparse_summary(a, &x);
	testparse_summary(b, &y);
#define SAME(f) \
	if (x.f != y.f) \
		FAIL("%s: " #f " %d whole, %d in pieces", when, (int)x.f, (int)y.f)
	SAME(seen_libtest); SAME(result_lines); SAME(result_failed); SAME(announced); SAME(passed);
	SAME(failed); SAME(ignored); SAME(not_run); SAME(panicked); SAME(crashed); SAME(main_returned);
	SAME(list_end); SAME(complete); SAME(running); SAME(uk_cases); SAME(uk_failed);
#undef SAME
	if (!memchr(x.last_running, '\0', sizeof(x.last_running)) || strcmp(x.last_running, y.last_running) != 0)
		FAIL("%s: last_running differs", when);
	size_t n = testparse_ncases(a);
	if (n != testparse_ncases(b))
		FAIL("%s: %zu cases whole, %zu in pieces", when, n, testparse_ncases(b));
	if (n > TESTPARSE_MAX_CASES)
		FAIL("%zu cases recorded", n);
	for (size_t i = 0; i < n; i++) {
		const struct tp_case *p = testparse_case(a, i), *q = testparse_case(b, i);
		if (!p || !q || !p->name || !q->name || strcmp(p->name, q->name) != 0 || p->outcome != q->outcome ||
		    memcmp(&p->duration_s, &q->duration_s, sizeof(double)) != 0)
			FAIL("%s: case %zu differs", when, i);
		if (strlen(p->name) > TESTPARSE_LINE_MAX)
			FAIL("case name of %zu bytes", strlen(p->name));
		if (!same_str(p->message, q->message) || !same_str(p->location, q->location) ||
		    !same_str(p->output, q->output))
			FAIL("%s: case %zu's details differ", when, i);
		if (p->output && strlen(p->output) > TESTPARSE_DETAIL_MAX)
			FAIL("case %zu keeps %zu bytes of output", i, strlen(p->output));
		if (!tp_outcome_name(p->outcome))
			FAIL("case %zu has no outcome name", i);
	}
	if (testparse_case(a, n))
		FAIL("a case past the end");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct testparse *whole = testparse_new(), *pieces = testparse_new();
	if (!whole || !pieces)
		FAIL("out of memory");
	testparse_feed(whole, (const char *)data, size);
	for (size_t off = 0, i = 0; off < size; i++) {
		size_t n = 1 + data[(i * 7) % size] % 64;
		if (n > size - off)
			n = size - off;
		testparse_feed(pieces, (const char *)data + off, n);
		off += n;
	}
	same(whole, pieces, "fed");
	testparse_finish(whole);
	testparse_finish(pieces);
	same(whole, pieces, "finished");
	testparse_finish(pieces);
	same(whole, pieces, "finished twice");
	json_t *j = testparse_json(whole);
	if (!j || json_array_size(json_object_get(j, "cases")) != testparse_ncases(whole))
		FAIL("testparse_json lost cases");
	json_decref(j);
	testparse_free(whole);
	testparse_free(pieces);
	return 0;
}
