/*
 * test_verdict.c — every row of the exit-status contract (DESIGN §4).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "verdict.h"

/* Console evidence used by the rows. */
enum con {
	C_NULL,       /* no console summary at all */
	C_EMPTY,      /* nothing recognised */
	C_LT_OK,      /* complete libtest run, all passed */
	C_LT_FAILED,  /* complete libtest run, 1 failed */
	C_PANIC,      /* Rust panic text, no libtest */
	C_CRASH,      /* Unikraft crash text */
	C_MAIN3,      /* "main returned 3" */
	C_ABORT_MID,  /* libtest aborted during "beta": crash text, 2 not run */
	C_INCOMPLETE, /* libtest started, no result, no crash */
	C_LIST,       /* --list output ended */
	C_OK_PANIC,   /* complete ok run whose should_panic test printed panic text */
	C_UK_FAILED,  /* uktest: 1 of 11 cases failed, main returned 0 */
	C_UK_OK,      /* uktest: 11 cases, none failed, main returned 0 */
};

static void make_console(enum con c, struct tp_summary *s)
{
	memset(s, 0, sizeof(*s));
	s->main_returned = -1;
	switch (c) {
	case C_NULL:
	case C_EMPTY:
		break;
	case C_LT_OK:
		*s = (struct tp_summary){ .seen_libtest = 1, .result_lines = 1, .announced = 3, .passed = 3,
		                          .main_returned = -1, .complete = 1 };
		break;
	case C_LT_FAILED:
		*s = (struct tp_summary){ .seen_libtest = 1, .result_lines = 1, .result_failed = 1,
		                          .announced = 3, .passed = 2, .failed = 1, .panicked = 1,
		                          .main_returned = -1, .complete = 1 };
		break;
	case C_PANIC:
		s->panicked = 1;
		break;
	case C_CRASH:
		s->crashed = 1;
		break;
	case C_MAIN3:
		s->main_returned = 3;
		break;
	case C_ABORT_MID:
		*s = (struct tp_summary){ .seen_libtest = 1, .announced = 4, .passed = 1, .failed = 1,
		                          .not_run = 2, .panicked = 1, .crashed = 1, .main_returned = -1 };
		strcpy(s->last_running, "beta");
		break;
	case C_INCOMPLETE:
		*s = (struct tp_summary){ .seen_libtest = 1, .announced = 4, .passed = 1, .not_run = 3,
		                          .main_returned = -1 };
		break;
	case C_LIST:
		*s = (struct tp_summary){ .list_end = 1, .complete = 1, .main_returned = -1 };
		break;
	case C_UK_FAILED:
		*s = (struct tp_summary){ .uk_cases = 11, .uk_failed = 1, .main_returned = 0 };
		break;
	case C_UK_OK:
		*s = (struct tp_summary){ .uk_cases = 11, .main_returned = 0 };
		break;
	case C_OK_PANIC:
		*s = (struct tp_summary){ .seen_libtest = 1, .result_lines = 1, .announced = 1, .passed = 1,
		                          .panicked = 1, .main_returned = -1, .complete = 1 };
		break;
	}
}

#define UK VERDICT_F_UNIKRAFT
#define LD (VERDICT_F_UNIKRAFT | VERDICT_F_LOADER)

struct row {
	enum drv_end end;
	int value;
	enum con con;
	unsigned flags;
	int success_code;
	int code;
	const char *source;
	const char *reason_has; /* substring of the reason, or NULL */
};

static const struct row rows[] = {
	/* process */
	{ DRV_END_EXIT, 0, C_EMPTY, 0, -1, 0, "process", "status 0" },
	{ DRV_END_EXIT, 7, C_LT_FAILED, 0, -1, 7, "process", "status 7" },
	{ DRV_END_EXIT, 101, C_CRASH, 0, -1, 101, "process", NULL },
	{ DRV_END_SIGNAL, SIGSEGV, C_EMPTY, 0, -1, 139, "signal", "SIGSEGV" },
	{ DRV_END_SIGNAL, SIGKILL, C_NULL, 0, -1, 137, "signal", "signal 9" },
	/* plain debug-exit (bootimage convention) */
	{ DRV_END_DEBUG_EXIT, 7, C_EMPTY, 0, -1, 7, "debug-exit", "guest wrote 7 to isa-debug-exit" },
	/* libvirt: QEMU ended through isa-debug-exit, value not visible: the console, else a documented 1 */
	{ DRV_END_DEBUG_EXIT_UNKNOWN, 0, C_EMPTY, 0, -1, 1, "debug-exit-unknown", "cannot see the value" },
	{ DRV_END_DEBUG_EXIT_UNKNOWN, 0, C_NULL, 0, 7, 1, "debug-exit-unknown", NULL },
	{ DRV_END_DEBUG_EXIT_UNKNOWN, 0, C_LT_OK, 0, -1, 0, "console", "value not visible" },
	{ DRV_END_DEBUG_EXIT_UNKNOWN, 0, C_LT_FAILED, 0, -1, 101, "console", NULL },
	{ DRV_END_DEBUG_EXIT, 0x10, C_EMPTY, 0, 0x10, 0, "debug-exit", "success code" },
	{ DRV_END_DEBUG_EXIT, 0x11, C_EMPTY, 0, 0x10, 0x11, "debug-exit", NULL },
	{ DRV_END_DEBUG_EXIT, 41, C_LT_OK, 0, -1, 41, "debug-exit", NULL },
	{ DRV_END_DEBUG_EXIT, 42, C_EMPTY, 0, -1, 42, "debug-exit", NULL },
	/* Unikraft on qemu */
	{ DRV_END_DEBUG_EXIT, 41, C_EMPTY, UK, -1, 0, "debug-exit", "halted cleanly" },
	{ DRV_END_DEBUG_EXIT, 41, C_NULL, UK, -1, 0, "debug-exit", "halted cleanly" },
	{ DRV_END_DEBUG_EXIT, 41, C_LT_OK, UK, -1, 0, "console", "3 passed" },
	{ DRV_END_DEBUG_EXIT, 41, C_LT_FAILED, UK, -1, 101, "console",
	  "Unikraft halted cleanly; libtest reported 1 failed test" },
	{ DRV_END_DEBUG_EXIT, 41, C_OK_PANIC, UK, -1, 0, "console", NULL },
	{ DRV_END_DEBUG_EXIT, 41, C_PANIC, UK, -1, 101, "console", "panic" },
	{ DRV_END_DEBUG_EXIT, 41, C_MAIN3, UK, -1, 3, "console", "main returned 3" },
	{ DRV_END_DEBUG_EXIT, 41, C_CRASH, UK, -1, 134, "console", "crash" },
	{ DRV_END_DEBUG_EXIT, 41, C_INCOMPLETE, UK, -1, 101, "console", "not run" },
	{ DRV_END_DEBUG_EXIT, 41, C_UK_FAILED, UK, -1, 101, "console", "uktest reported 1 failed case of 11" },
	{ DRV_END_DEBUG_EXIT, 41, C_UK_OK, UK, -1, 0, "console", "main returned 0" },
	{ DRV_END_POWEROFF, 0, C_UK_FAILED, UK, -1, 101, "console", "uktest reported 1 failed case" },
	{ DRV_END_EXIT, 0, C_UK_FAILED, UK, -1, 101, "console", "uktest reported 1 failed case" },
	{ DRV_END_EXIT, 3, C_UK_FAILED, UK, -1, 3, "process", NULL },
	{ DRV_END_DEBUG_EXIT, 42, C_EMPTY, UK, -1, 134, "debug-exit", "crashed" },
	{ DRV_END_DEBUG_EXIT, 42, C_ABORT_MID, UK, -1, 134, "debug-exit", "test beta" },
	{ DRV_END_DEBUG_EXIT, 42, C_EMPTY, UK, 42, 0, "debug-exit", NULL }, /* success code wins */
	{ DRV_END_DEBUG_EXIT, 5, C_LT_OK, UK, -1, 5, "debug-exit", NULL },
	/* loader mode */
	{ DRV_END_DEBUG_EXIT, 0, C_LT_OK, LD, -1, 0, "debug-exit", "status 0" },
	{ DRV_END_DEBUG_EXIT, 101, C_LT_FAILED, LD, -1, 101, "debug-exit", "status 101" },
	{ DRV_END_DEBUG_EXIT, 7, C_EMPTY, LD, -1, 7, "debug-exit", "status 7" },
	{ DRV_END_DEBUG_EXIT, 41, C_LT_OK, LD, -1, 0, "console", "passed" },
	{ DRV_END_DEBUG_EXIT, 41, C_LT_FAILED, LD, -1, 101, "console", "1 failed test" },
	{ DRV_END_DEBUG_EXIT, 41, C_EMPTY, LD, -1, 126, "debug-exit", "elfloader failed: " },
	{ DRV_END_DEBUG_EXIT, 41, C_NULL, LD, -1, 126, "debug-exit", "elfloader failed: " },
	{ DRV_END_DEBUG_EXIT, 41, C_PANIC, LD, -1, 126, "debug-exit", "elfloader failed: " },
	{ DRV_END_DEBUG_EXIT, 42, C_ABORT_MID, LD, -1, 134, "debug-exit", "while running test beta" },
	{ DRV_END_DEBUG_EXIT, 42, C_NULL, LD, -1, 134, "debug-exit", "crashed" },
	/* lifecycle */
	{ DRV_END_POWEROFF, 0, C_EMPTY, 0, -1, 0, "lifecycle", "powered off" },
	{ DRV_END_POWEROFF, 0, C_NULL, UK, -1, 0, "lifecycle", NULL },
	{ DRV_END_POWEROFF, 0, C_LT_OK, UK, -1, 0, "console", "passed" },
	{ DRV_END_POWEROFF, 0, C_LT_FAILED, 0, -1, 101, "console", "1 failed test" },
	{ DRV_END_POWEROFF, 0, C_PANIC, 0, -1, 101, "console", "panic" },
	{ DRV_END_POWEROFF, 0, C_CRASH, UK, -1, 134, "console", "crash" },
	{ DRV_END_POWEROFF, 0, C_MAIN3, UK, -1, 3, "console", NULL },
	{ DRV_END_POWEROFF, 0, C_LIST, 0, -1, 0, "console", "test list" },
	{ DRV_END_RESET, 0, C_EMPTY, UK, -1, 134, "lifecycle", "reset" },
	{ DRV_END_RESET, 0, C_LT_OK, 0, -1, 134, "lifecycle", NULL },
	{ DRV_END_PANIC, 0, C_NULL, 0, -1, 134, "lifecycle", "panic" },
	/* killed by the core */
	{ DRV_END_KILLED, 0, C_EMPTY, VERDICT_F_TIMEOUT, -1, 124, "timeout", "killed after timeout" },
	{ DRV_END_KILLED, 0, C_ABORT_MID, UK | VERDICT_F_TIMEOUT, -1, 124, "timeout", "beta" },
	{ DRV_END_KILLED, 0, C_LT_FAILED, VERDICT_F_CANCEL, -1, 130, "cancel", "cancelled" },
	{ DRV_END_KILLED, 0, C_LT_OK, LD | VERDICT_F_CONSOLE_END, -1, 0, "console", "passed" },
	{ DRV_END_KILLED, 0, C_LT_FAILED, LD | VERDICT_F_CONSOLE_END, -1, 101, "console", "1 failed" },
	{ DRV_END_KILLED, 0, C_EMPTY, 0, -1, 125, "runner", NULL },
	/* infrastructure */
	{ DRV_END_ERROR, 0, C_NULL, 0, -1, 125, "runner", "failed" },
	{ DRV_END_ERROR, 0, C_LT_OK, UK, -1, 125, "runner", NULL },
	{ DRV_END_ERROR, ENOEXEC, C_NULL, 0, -1, 126, "image", "not runnable: " },
};

static void test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		struct drv_outcome o = { .end = r->end, .value = r->value, .message = NULL };
		struct tp_summary s;
		struct verdict v;

		make_console(r->con, &s);
		verdict_decide(&o, r->con == C_NULL ? NULL : &s, r->flags, r->success_code, &v);
		if (v.exit_code != r->code || strcmp(v.source, r->source) != 0 ||
		    (r->reason_has && !strstr(v.reason, r->reason_has)))
			fail_msg("row %zu: got %d/%s \"%s\", want %d/%s \"%s\"", i, v.exit_code, v.source,
			         v.reason, r->code, r->source, r->reason_has ? r->reason_has : "");
		assert_true(v.reason[0] != '\0');
	}
}

static void test_error_message(void **state)
{
	struct drv_outcome o = { .end = DRV_END_ERROR, .value = 0, .message = "qemu-system-x86_64 not found" };
	struct verdict v;

	(void)state;
	verdict_decide(&o, NULL, 0, -1, &v);
	assert_int_equal(v.exit_code, 125);
	assert_string_equal(v.reason, "qemu-system-x86_64 not found");
}

static void test_null_outcome(void **state)
{
	struct verdict v;

	(void)state;
	verdict_decide(NULL, NULL, 0, -1, &v);
	assert_int_equal(v.exit_code, 125);
	assert_string_equal(v.source, "runner");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_error_message),
		cmocka_unit_test(test_null_outcome),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
