/*
 * procbusy.h — how much a local process has computed: the sum over its threads of the time they
 * ran on a CPU and the time they were runnable but waiting for one (/proc/PID/task/N/schedstat).
 * A guest whose vCPUs are halted adds (almost) nothing; one that computes adds about the wall
 * time — but a thread's run-queue wait is added only when it next gets a CPU, so a starved
 * thread shows nothing meanwhile: see proc_active_threads. The qemu driver reports
 * it so the core can see a loader-mode kernel idle after its program ended.
 */
#ifndef UKRUN_PROCBUSY_H
#define UKRUN_PROCBUSY_H

#include <stdint.h>
#include <sys/types.h>

/* Run + run-queue wait time of all of `pid`'s threads so far, in ns. 0, or -ESRCH (no such
 * process), -ENOTSUP (no schedstat: a kernel without CONFIG_SCHED_INFO), or another negative
 * errno. Reads a few small /proc files: cheap enough for the loop every few milliseconds. */
int proc_busy_ns(pid_t pid, uint64_t *ret_ns);

/* How many of `pid`'s threads are active now: running or runnable (state R) or in
 * uninterruptible sleep (D: a page fault, I/O). schedstat adds a thread's run-queue wait only
 * when it next gets a CPU, and never counts D, so a thread starved of a CPU, or stuck in the
 * kernel, shows no growth at all meanwhile: a caller looking for idleness must check this too.
 * -errno on error. */
int proc_active_threads(pid_t pid);

/* Both in one walk of /proc/PID/task (either pointer may be NULL): what a caller sampling
 * every few milliseconds uses. 0 or -errno as proc_busy_ns. */
int proc_sample(pid_t pid, uint64_t *ret_ns, int *ret_active);

#endif
