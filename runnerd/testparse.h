/*
 * testparse.h — incremental parser of guest console text: libtest output
 * (Rust `cargo test` binaries), Rust panics and Unikraft crash / exit logs.
 *
 * The core feeds console bytes as they arrive, in chunks of any size; the
 * parser keeps per-test outcomes for GET /v1/runs/{id}/tests and a summary
 * that verdict.c turns into an exit code, and that tells the core when a
 * guest that never exits (stock elfloader) has finished its test run.
 * Formats: libtest's pretty, terse (-q) and JSON (--format json, one object per
 * line, read with jansson) output, and Unikraft's uktest framework
 * (CONFIG_LIBUKTEST: "test: SUITE->CASE", assertion lines, "uktest:cases:"),
 * with or without Unikraft's kernel log prefix and CRLF line ends. A failed
 * case keeps its panic (or failed assertion) message, location and captured
 * output ("---- NAME stdout ----" blocks, the JSON "stdout" field).
 * Memory is bounded: lines are capped at TESTPARSE_LINE_MAX bytes (JSON lines
 * at TESTPARSE_JSON_LINE_MAX), details at TESTPARSE_DETAIL_MAX per case, and
 * at most TESTPARSE_MAX_CASES cases are recorded (counts continue past that).
 */
#ifndef UKRUN_TESTPARSE_H
#define UKRUN_TESTPARSE_H

#include <stddef.h>

#include <jansson.h>

#define TESTPARSE_LINE_MAX 4096      /* longer lines are cut and parsed as this prefix */
#define TESTPARSE_JSON_LINE_MAX (1u << 20) /* a line starting with '{' (libtest JSON) may grow to this */
#define TESTPARSE_MAX_CASES 100000   /* recorded cases; later ones only count */
#define TESTPARSE_DETAIL_MAX (64u << 10) /* bytes of captured output (and of message) kept per case */

enum tp_outcome {
	TP_OK,
	TP_FAILED,
	TP_IGNORED,
	TP_CRASHED, /* the guest died while the test was running */
	TP_RUNNING, /* started, no result yet */
	TP_NOT_RUN, /* announced but never started (only ever a count today) */
};

struct tp_case {
	char *name;
	enum tp_outcome outcome;
	double duration_s; /* from libtest --report-time ("ok <0.012s>"), else -1 */
	char *message;     /* failed/crashed: the panic or failed assertion message, else NULL */
	char *location;    /* where it panicked / failed ("src/lib.rs:9:5", "tests.c:18"), else NULL */
	char *output;      /* failed: its captured output, else NULL */
};

struct testparse; /* opaque */

struct tp_summary {
	int seen_libtest;  /* any "running N tests" */
	int result_lines;  /* number of "test result:" lines */
	int result_failed; /* any "test result: FAILED" */
	int announced, passed, failed, ignored, not_run; /* aggregate over suites; crashed cases count as failed */
	int panicked;      /* Rust panic text seen */
	int crashed;       /* Unikraft crash text seen */
	int main_returned; /* "main returned N" from Unikraft's log; -1 when not seen */
	int list_end;      /* "N tests, M benchmarks" (--list) seen */
	int complete;      /* the last suite has its "test result:" line (or a --list ended) and no test runs */
	int running;       /* cases started without a result (0 after testparse_finish) */
	char last_running[128]; /* the latest case that started without a result, still running or
	                         * crashed by testparse_finish; "" if none (truncated name) */
	int uk_cases;      /* uktest cases: from its "uktest:cases:" summary, else those seen */
	int uk_failed;     /* uktest cases that failed (a failed assertion), likewise */
};

/* A new parser, or NULL when out of memory. */
struct testparse *testparse_new(void);

/* Free the parser and its cases; NULL is a no-op. */
void testparse_free(struct testparse *tp);

/* Feed console bytes; lines may be split anywhere across calls. */
void testparse_feed(struct testparse *tp, const char *buf, size_t len);

/* The console has ended: parse a final unterminated line, mark running cases
 * crashed and the rest of each unfinished suite not run. Idempotent. */
void testparse_finish(struct testparse *tp);

/* Fill *ret with the aggregate view so far. */
void testparse_summary(const struct testparse *tp, struct tp_summary *ret);

/* Recorded cases, in the order they started. */
size_t testparse_ncases(const struct testparse *tp);
/* Case i (< testparse_ncases), or NULL. Valid until the next feed/finish/free. */
const struct tp_case *testparse_case(const struct testparse *tp, size_t i);

/* The framework seen: "libtest", "uktest", or NULL when neither. */
const char *testparse_framework(const struct testparse *tp);

/* The parsed tests as store_run_set_tests takes them: {"framework", "not_run" (announced tests
 * that never started, unnamed), "cases": [{name, outcome, duration_s?, message?, location?,
 * output?}]}; NULL when out of memory. Call after testparse_finish. */
json_t *testparse_json(const struct testparse *tp);

/* "ok", "failed", "ignored", "crashed", "running", "not_run". */
const char *tp_outcome_name(enum tp_outcome o);

#endif
