/* test_procbusy.c — a process's busy time (run + run-queue wait, procbusy.h): it grows while the
 * process computes, stays put while it is blocked, and a process that is gone is -ESRCH. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "procbusy.h"

static void sleep_ms(long ms)
{
	nanosleep(&(struct timespec){ .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 }, NULL);
}

static uint64_t cpu_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* This process: 30 ms of CPU time show as at least 30 ms of busy time. */
static void test_self_computing(void **state)
{
	(void)state;
	uint64_t a, b;
	assert_int_equal(proc_busy_ns(getpid(), &a), 0);
	uint64_t c0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
	while (cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - c0 < 30000000u)
		;
	assert_int_equal(proc_busy_ns(getpid(), &b), 0);
	assert_true(b - a >= 30000000u);
}

/* A child blocked in read(2) on a pipe nobody writes: its busy time does not move at all, however
 * long it waits; once it computes, it does. */
static void test_blocked_child(void **state)
{
	(void)state;
	int p[2], q[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(q), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char c;
		close(p[1]);
		close(q[0]);
		if (write(q[1], "r", 1) != 1) /* about to block */
			_exit(1);
		if (read(p[0], &c, 1) != 1)
			_exit(1);
		uint64_t c0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
		while (cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - c0 < 40000000u)
			;
		_exit(0);
	}
	close(p[0]);
	close(q[1]);
	char c;
	assert_int_equal(read(q[0], &c, 1), 1);
	sleep_ms(20); /* let it reach read(2) and block */
	uint64_t a, b;
	assert_int_equal(proc_busy_ns(pid, &a), 0);
	sleep_ms(60);
	assert_int_equal(proc_busy_ns(pid, &b), 0);
	assert_true(b - a < 1000000u); /* blocked: nothing, bar a reading right at its last wake-up */
	assert_int_equal(write(p[1], "g", 1), 1);
	/* It now computes 40 ms of CPU time; sample until it has shown at least 20 ms of it. */
	uint64_t x = b;
	for (int i = 0; i < 400 && x - b < 20000000u; i++) {
		sleep_ms(5);
		if (proc_busy_ns(pid, &x) < 0)
			break;
	}
	assert_true(x - b >= 20000000u);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(proc_busy_ns(pid, &x), -ESRCH);
	close(p[1]);
	close(q[0]);
}

/* A process waiting in vfork(2) for its child is in uninterruptible sleep (D) and one that
 * computes is running (R): both counted; one asleep in read(2) is not. */
static void test_blocked_threads(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char c;
		close(p[1]);
		if (read(p[0], &c, 1) != 1) /* asleep (S) until the parent writes */
			_exit(1);
		if (vfork() == 0) { /* the parent waits in D until this child exits */
			sleep_ms(300);
			_exit(0);
		}
		_exit(0);
	}
	close(p[0]);
	sleep_ms(30);
	assert_int_equal(proc_active_threads(pid), 0);
	assert_int_equal(write(p[1], "g", 1), 1);
	int seen = 0;
	for (int i = 0; i < 100 && !seen; i++) {
		sleep_ms(2);
		seen = proc_active_threads(pid) > 0;
	}
	assert_true(seen);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	close(p[1]);
	pid = fork(); /* computes until killed */
	assert_true(pid >= 0);
	if (pid == 0)
		for (;;)
			;
	seen = 0;
	for (int i = 0; i < 100 && !seen; i++) {
		sleep_ms(2);
		seen = proc_active_threads(pid) > 0;
	}
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(seen);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self_computing),
		cmocka_unit_test(test_blocked_child),
		cmocka_unit_test(test_blocked_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
