/*
 * verdict.h — the exit-status contract (DESIGN §4) as one pure function.
 *
 * Given how the driver says the guest ended, what the console parser saw and
 * what kind of image ran, decide the exit code ukrun reports, which evidence
 * decided it ("source", stored as the run's exit_source) and a short human
 * sentence for the run record and the client's stderr.
 */
#ifndef UKRUN_VERDICT_H
#define UKRUN_VERDICT_H

#include "driver.h"
#include "testparse.h"

#define VERDICT_F_UNIKRAFT (1u << 0)    /* image is Unikraft: debug-exit 41 = clean halt, 42 = crash */
#define VERDICT_F_LOADER (1u << 1)      /* loader mode: an elfloader kernel runs a Linux program */
#define VERDICT_F_TIMEOUT (1u << 2)     /* the core killed it for the timeout */
#define VERDICT_F_CANCEL (1u << 3)      /* cancelled by a user */
#define VERDICT_F_CONSOLE_END (1u << 4) /* the core ended it after a complete libtest run and silence */
#define VERDICT_F_STOP (1u << 5)        /* runnerd stopped (SIGTERM after the drain): not the guest's verdict */

/* Exit codes with a fixed meaning. */
#define VERDICT_TEST_FAILED 101 /* libtest's failure code, also a Rust panic */
#define VERDICT_TIMEOUT 124     /* as timeout(1) */
#define VERDICT_RUNNER 125      /* runner / infrastructure error */
#define VERDICT_NOT_RUNNABLE 126
#define VERDICT_CANCELLED 130
#define VERDICT_CRASH 134       /* guest crash, as SIGABRT */
#define VERDICT_DEBUG_EXIT_UNKNOWN 1 /* isa-debug-exit with a value the driver cannot see (libvirt) */

struct verdict {
	int exit_code;
	/* static string: "process", "signal", "debug-exit", "console", "lifecycle",
	 * "timeout", "cancel", "runner", "image", "debug-exit-unknown" */
	const char *source;
	char reason[256];
};

/* Decide the exit status of a run. `console` may be NULL (no console
 * evidence); it should be taken after testparse_finish. `flags` are
 * VERDICT_F_*. `success_code` is -1 or a debug-exit value that maps to 0
 * (bootimage's test-success-exit-code). Always fills *ret. In loader mode a
 * value-41 halt without a complete test run gives 126 with a reason starting
 * "elfloader failed: "; the caller may append the console's error line. */
void verdict_decide(const struct drv_outcome *o, const struct tp_summary *console, unsigned flags,
                    int success_code, struct verdict *ret);

#endif
