/*
 * verdict.c — the exit-status contract (see verdict.h and DESIGN §4).
 *
 * Evidence is ranked: what the process or the debug-exit port said is
 * better than what the console shows, and the console only decides when the
 * guest ended without a code (power-off, Unikraft's clean halt, a loader
 * halt after a complete test run, or the core ending a finished run).
 */
#include "verdict.h"

#include <errno.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define UK_HALT_CLEAN 41 /* Unikraft writes this to port 0x501 on a clean halt */
#define UK_HALT_CRASH 42 /* ... and this on a crash */

static void set(struct verdict *v, int code, const char *source, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void set(struct verdict *v, int code, const char *source, const char *fmt, ...)
{
	va_list ap;

	v->exit_code = code;
	v->source = source;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

static const char *plural(int n)
{
	return n == 1 ? "" : "s";
}

/* Only a finished libtest run (or a finished --list); -1 when there is none. */
static int libtest_code(const struct tp_summary *c, char *why, size_t n)
{
	if (!c || !c->complete)
		return -1;
	if (c->result_lines == 0) {
		snprintf(why, n, "test list printed");
		return 0;
	}
	if (c->result_failed) {
		snprintf(why, n, "libtest reported %d failed test%s", c->failed, plural(c->failed));
		return 101;
	}
	snprintf(why, n, "libtest reported %d passed, %d ignored", c->passed, c->ignored);
	return 0;
}

/* Everything the console can tell, best evidence first; -1 when it tells nothing. */
static int console_code(const struct tp_summary *c, char *why, size_t n)
{
	int code = libtest_code(c, why, n);

	if (code >= 0 || !c)
		return code;
	if (c->crashed) {
		if (c->last_running[0])
			snprintf(why, n, "the console shows a Unikraft crash during test %s", c->last_running);
		else
			snprintf(why, n, "the console shows a Unikraft crash");
		return 134;
	}
	if (c->result_failed) {
		snprintf(why, n, "libtest reported %d failed test%s", c->failed, plural(c->failed));
		return 101;
	}
	if (c->panicked) {
		snprintf(why, n, "the console shows a Rust panic");
		return 101;
	}
	if (c->uk_failed > 0) {
		/* uktest never changes Unikraft's exit path: its results are the verdict. */
		snprintf(why, n, "uktest reported %d failed case%s of %d", c->uk_failed, plural(c->uk_failed),
		         c->uk_cases);
		return VERDICT_TEST_FAILED;
	}
	if (c->main_returned >= 0) {
		snprintf(why, n, "main returned %d", c->main_returned);
		return c->main_returned & 0xff;
	}
	if (c->seen_libtest) {
		/* A halt in the middle of a test run is not a pass. */
		snprintf(why, n, "libtest output stopped before its result line (%d test%s not run)",
		         c->not_run, plural(c->not_run));
		return 101;
	}
	return -1;
}

/* A halt with no code: the console decides, else `fallback` with `what`. */
static void halt_verdict(struct verdict *v, const struct tp_summary *c, const char *what,
                         const char *fallback_source)
{
	char why[200];
	int code = console_code(c, why, sizeof(why));

	if (code >= 0)
		set(v, code, "console", "%s; %s", what, why);
	else
		set(v, 0, fallback_source, "%s", what);
}

static void crash_verdict(struct verdict *v, const struct tp_summary *c, const char *what)
{
	if (c && c->last_running[0])
		set(v, 134, "debug-exit", "%s while running test %s", what, c->last_running);
	else
		set(v, 134, "debug-exit", "%s", what);
}

static void debug_exit(struct verdict *v, int val, const struct tp_summary *c, unsigned flags,
                       int success_code)
{
	char why[200];
	int code;

	if (success_code >= 0 && val == success_code) {
		set(v, 0, "debug-exit", "guest wrote %d (the success code) to isa-debug-exit", val);
		return;
	}
	if (flags & VERDICT_F_LOADER) {
		if (val == UK_HALT_CRASH) {
			crash_verdict(v, c, "Unikraft crashed");
		} else if (val == UK_HALT_CLEAN) {
			/* The loader halts by itself only when it could not run the program to its exit. */
			code = libtest_code(c, why, sizeof(why));
			if (code >= 0)
				set(v, code, "console", "elfloader halted after the program; %s", why);
			else
				set(v, 126, "debug-exit",
				    "elfloader failed: the kernel halted without the program's exit status");
		} else {
			set(v, val, "debug-exit", "program exited with status %d", val);
		}
		return;
	}
	if (flags & VERDICT_F_UNIKRAFT) {
		if (val == UK_HALT_CLEAN) {
			code = console_code(c, why, sizeof(why));
			if (code >= 0)
				set(v, code, "console", "Unikraft halted cleanly; %s", why);
			else
				set(v, 0, "debug-exit", "Unikraft halted cleanly");
			return;
		}
		if (val == UK_HALT_CRASH) {
			crash_verdict(v, c, "Unikraft crashed");
			return;
		}
	}
	set(v, val, "debug-exit", "guest wrote %d to isa-debug-exit", val);
}

static void killed(struct verdict *v, const struct tp_summary *c, unsigned flags)
{
	char why[200];
	int code;

	if (flags & VERDICT_F_TIMEOUT) {
		if (c && c->last_running[0])
			set(v, 124, "timeout", "killed after timeout while running test %s", c->last_running);
		else
			set(v, 124, "timeout", "killed after timeout");
	} else if (flags & VERDICT_F_STOP) {
		set(v, VERDICT_RUNNER, "runner", "runnerd stopped before the run ended");
	} else if (flags & VERDICT_F_CANCEL) {
		set(v, VERDICT_CANCELLED, "cancel", "cancelled by a user");
	} else if (flags & VERDICT_F_CONSOLE_END) {
		code = console_code(c, why, sizeof(why));
		if (code >= 0)
			set(v, code, "console", "stopped after the test run ended; %s", why);
		else
			set(v, 0, "console", "stopped after the test run ended");
	} else {
		set(v, 125, "runner", "guest was killed by the runner");
	}
}

void verdict_decide(const struct drv_outcome *o, const struct tp_summary *console, unsigned flags,
                    int success_code, struct verdict *ret)
{
	if (!ret)
		return;
	memset(ret, 0, sizeof(*ret));
	if (!o) {
		set(ret, 125, "runner", "no outcome reported");
		return;
	}
	switch (o->end) {
	case DRV_END_EXIT:
		if (o->value == 0 && (flags & VERDICT_F_UNIKRAFT) && console && console->uk_failed > 0) {
			/* a linuxu Unikraft image exits 0 whatever its uktest cases did */
			set(ret, VERDICT_TEST_FAILED, "console", "process exited with status 0; uktest reported %d failed case%s of %d",
			    console->uk_failed, plural(console->uk_failed), console->uk_cases);
			break;
		}
		set(ret, o->value, "process", "process exited with status %d", o->value);
		break;
	case DRV_END_SIGNAL: {
		const char *abbrev = sigabbrev_np(o->value);
		if (abbrev)
			set(ret, 128 + o->value, "signal", "process killed by signal %d (SIG%s)", o->value,
			    abbrev);
		else
			set(ret, 128 + o->value, "signal", "process killed by signal %d", o->value);
		break;
	}
	case DRV_END_DEBUG_EXIT:
		debug_exit(ret, o->value, console, flags, success_code);
		break;
	case DRV_END_DEBUG_EXIT_UNKNOWN: {
		/* libvirt: QEMU ended through isa-debug-exit but its exit status is not visible. */
		char why[200];
		int code = console_code(console, why, sizeof(why));
		if (code >= 0)
			set(ret, code, "console", "guest ended through isa-debug-exit (value not visible); %s", why);
		else
			set(ret, VERDICT_DEBUG_EXIT_UNKNOWN, "debug-exit-unknown",
			    "guest ended through isa-debug-exit but the driver cannot see the value written");
		break;
	}
	case DRV_END_POWEROFF:
		halt_verdict(ret, console, "guest powered off", "lifecycle");
		break;
	case DRV_END_RESET:
		set(ret, 134, "lifecycle", "guest reset (triple fault or reboot; a crash for a unikernel)");
		break;
	case DRV_END_PANIC:
		set(ret, 134, "lifecycle", "guest reported a panic");
		break;
	case DRV_END_KILLED:
		killed(ret, console, flags);
		break;
	case DRV_END_ERROR:
		if (o->value == ENOEXEC) {
			set(ret, VERDICT_NOT_RUNNABLE, "image", "not runnable: %s",
			    o->message && *o->message ? o->message : "the driver cannot run this image");
			break;
		}
		set(ret, 125, "runner", "%s", o->message && *o->message ? o->message : "the driver failed to run the guest");
		break;
	case DRV_END_HOST_LOST:
		set(ret, 125, "host", "%s", o->message && *o->message ? o->message : "the host was lost");
		break;
	default:
		set(ret, 125, "runner", "%s", o->message && *o->message ? o->message : "the driver failed to run the guest");
		break;
	}
}
