/*
 * testparse_uktest.c — Unikraft's uktest framework (CONFIG_LIBUKTEST) in the
 * console: "test: SUITE->CASE" opens a case, each assertion prints a line
 * ending "[ PASSED ]" / "[ FAILED ]" (a failure adds "in FILE:LINE"), and
 * "uktest:cases: [N failed, ]M total" sums them up. Lines carry Unikraft's
 * kernel log prefix. See testparse.h.
 */
#include <string.h>

#include "testparse_int.h"

/* Unikraft's kernel log prefix "[    0.102392] Info: " (timestamp, level word), skipped. */
const char *tp_strip_klog(const char *l)
{
	const char *e, *p, *q;

	if (l[0] != '[' || !(e = strchr(l, ']')))
		return l;
	for (p = l + 1; p < e; p++)
		if (!((*p >= '0' && *p <= '9') || *p == ' ' || *p == '.'))
			return l;
	p = e + 1;
	while (*p == ' ')
		p++;
	for (q = p; *q && *q != ' ' && *q != ':'; q++)
		;
	if (*q == ':' && q > p && q - p <= 5)
		for (p = q + 1; *p == ' '; p++)
			;
	return p;
}

/* The running uktest case ends: failed if an assertion failed, else `o`. */
void tp_uk_settle(struct testparse *tp, enum tp_outcome o)
{
	if (!tp->uk_open)
		return;
	if (tp->uk_cur_failed && o == TP_OK)
		o = TP_FAILED;
	if (o != TP_OK)
		tp->uk_failed_n++;
	if (tp->uk_cur >= 0)
		tp->cases[tp->uk_cur].outcome = o;
	tp->uk_open = tp->uk_want_loc = false;
	tp->uk_cur = -1;
}

/* uktest lines (after the kernel prefix): false when `b` is not one. */
bool tp_on_uktest(struct testparse *tp, const char *b)
{
	const char *p;

	if (tp_starts_with(b, "test: ") && strstr(b + 6, "->")) {
		tp_uk_settle(tp, TP_OK);
		for (p = b + 6; *p == ' '; p++)
			;
		tp->uk_seen++;
		tp->uk_open = true;
		tp->uk_cur_failed = false;
		tp->uk_cur = tp_record_case(tp, p, strlen(p), TP_RUNNING, -1);
		tp_set_last_running(tp, p);
		return true;
	}
	if (tp->uk_open && (tp_ends_with(b, "[ FAILED ]") || tp_ends_with(b, "[ PASSED ]"))) {
		bool failed = tp_ends_with(b, "[ FAILED ]");
		tp->uk_want_loc = failed && !tp->uk_cur_failed;
		if (failed && !tp->uk_cur_failed && tp->uk_cur >= 0) {
			/* "\texpected `1 + 1` to be 3 but was 2 ....... [ FAILED ]" → the sentence */
			for (p = b; *p == '\t' || *p == ' '; p++)
				;
			const char *e = b + strlen(b) - strlen("[ FAILED ]");
			while (e > p && (e[-1] == '.' || e[-1] == ' '))
				e--;
			tp_detail_set(tp, &tp->cases[tp->uk_cur].message, p, (size_t)(e - p), MESSAGE_MAX);
		}
		tp->uk_cur_failed |= failed;
		return true;
	}
	if (tp->uk_want_loc) {
		tp->uk_want_loc = false;
		for (p = b; *p == '\t' || *p == ' '; p++)
			;
		if (tp_starts_with(p, "in ") && tp->uk_cur >= 0) {
			/* "in tests.c]:18]": the ']' stand in for colour codes */
			char loc[256];
			size_t n = 0;
			for (p += 3; *p && n < sizeof(loc) - 1; p++)
				if (*p != ']')
					loc[n++] = *p;
			tp_detail_set(tp, &tp->cases[tp->uk_cur].location, loc, n, MESSAGE_MAX);
			return true;
		}
	}
	p = strstr(b, "uktest:cases:");
	if (p) {
		tp_uk_settle(tp, TP_OK);
		tp->uk_summary = true;
		tp->uk_sum_failed = tp_count_before(p, " failed");
		tp->uk_sum_cases = tp_count_before(p, " total");
		return true;
	}
	return false;
}
