/*
 * testparse_int.h — internals shared by the console parser's modules:
 * testparse.c (lines, libtest's text output, panics, the summary),
 * testparse_json.c (libtest --format json events, the parsed tests as JSON)
 * and testparse_uktest.c (Unikraft's uktest framework). Not for other modules.
 */
#ifndef UKRUN_TESTPARSE_INT_H
#define UKRUN_TESTPARSE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "testparse.h"

#define NAME_MAX_LEN 1024            /* longer test names are cut */
#define NAME_BUDGET (16u << 20)      /* total bytes of recorded names */
#define DETAIL_BUDGET (32u << 20)    /* total bytes of recorded messages, locations and output */
#define MESSAGE_MAX 4096             /* bytes of a panic message kept */

struct suite {
	bool open;        /* a suite exists (announced or implied by a test line) */
	bool result_seen; /* its "test result:" line arrived */
	int announced;
	int ok, failed, ignored, crashed; /* per-case outcomes seen */
	int started;      /* cases seen (any outcome, including running) */
	int res_passed, res_failed, res_ignored; /* from the result line */
};

struct testparse {
	char *line;       /* the line being gathered; grows up to the line cap */
	size_t linelen, linecap;
	bool overlong; /* dropping bytes until the next newline */

	struct tp_case *cases;
	size_t ncases, capcases;
	size_t name_bytes;
	size_t detail_bytes;
	long cap_case;    /* case whose "---- NAME stdout ----" block is being captured, or -1 */
	long msg_case;    /* case taking the lines of a panic message, or -1 */

	/* uktest: the case now running (-1 none) and whether one of its assertions failed. */
	long uk_cur;
	bool uk_open, uk_cur_failed, uk_want_loc;
	int uk_seen, uk_failed_n;
	bool uk_summary;  /* its "uktest:cases:" line arrived: the counts below are uktest's own */
	int uk_sum_cases, uk_sum_failed;
	bool seen_json;   /* libtest --format json */

	/* Recorded cases still running, oldest first; plus running ones we could not record. */
	size_t *runstack;
	size_t nrun, caprun;
	int running_unrecorded;
	char last_running[128];

	struct suite cur;
	bool in_failures; /* inside libtest's "failures:" name list */

	/* Totals of finished suites. */
	int t_announced, t_passed, t_failed, t_ignored, t_not_run;

	int seen_libtest, result_lines, result_failed;
	int panicked, crashed, main_returned, list_end;
	bool list_complete; /* a --list ended after the last suite */
	bool closed_complete; /* the last folded suite had its result line */
	bool finished;
};

/* ---- helpers (testparse.c) ---- */
bool tp_starts_with(const char *s, const char *prefix);
bool tp_ends_with(const char *s, const char *suffix);
/* The number right before `word` in `line` ("3 passed"), or 0. */
int tp_count_before(const char *line, const char *word);
void tp_set_last_running(struct testparse *tp, const char *name);
/* Record a case; its index or -1 when it could not be recorded. */
long tp_record_case(struct testparse *tp, const char *name, size_t namelen, enum tp_outcome o, double dur);
/* Append n bytes to *field (as a new line when `line`), within `cap` and the total budget. */
void tp_detail_append(struct testparse *tp, char **field, const char *s, size_t n, bool line, size_t cap);
/* Set *field unless it is already set. */
void tp_detail_set(struct testparse *tp, char **field, const char *s, size_t n, size_t cap);
/* "test NAME ... REST": the case's index or -1. */
long tp_on_test_line(struct testparse *tp, const char *name, size_t namelen, const char *rest);
/* Settle the running case called `name`: its index, or -1 when none runs. */
long tp_settle_named(struct testparse *tp, const char *name, enum tp_outcome o, double dur);
void tp_open_suite(struct testparse *tp, int announced);
/* A suite's result ("test result:" line or JSON suite event). */
void tp_suite_result(struct testparse *tp, bool failed, int passed, int nfailed, int ignored);
/* Captured output handed over in one piece (JSON "stdout"): kept on case idx, its panic found. */
void tp_case_output(struct testparse *tp, long idx, const char *out);

/* ---- libtest JSON (testparse_json.c) ---- */
/* One event object per line; false when `l` is not one. */
bool tp_on_json(struct testparse *tp, const char *l);

/* ---- uktest (testparse_uktest.c) ---- */
/* `l` without Unikraft's kernel log prefix "[    0.102392] Info: " (l itself when it has none). */
const char *tp_strip_klog(const char *l);
/* The running uktest case ends: failed if an assertion failed, else `o`. */
void tp_uk_settle(struct testparse *tp, enum tp_outcome o);
/* A uktest line (after the kernel prefix); false when `b` is not one. */
bool tp_on_uktest(struct testparse *tp, const char *b);

#endif
