/*
 * procbusy.c — a process's run + run-queue wait time from /proc/PID/task/N/schedstat, whose first
 * two fields are "time spent on the cpu" and "time spent waiting on a runqueue", in ns
 * (Documentation/scheduler/sched-stats.rst). Threads that ended are not counted: callers compare
 * two readings a few ms apart of a process whose threads live as long as it does (QEMU's vCPUs).
 */
#include "procbusy.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* run + wait of one thread, from an open /proc/PID/task directory. */
static int thread_busy(int taskfd, const char *tid, uint64_t *ret_ns)
{
	char path[64], buf[128];
	if (snprintf(path, sizeof(path), "%s/schedstat", tid) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = openat(taskfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) /* the thread ended (skip it), or the kernel has no schedstat */
		return faccessat(taskfd, tid, F_OK, 0) == 0 ? -ENOTSUP : -ESRCH;
	if (fd < 0)
		return errno == ESRCH ? -ESRCH : -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int err = n < 0 ? -errno : 0;
	close(fd);
	if (err)
		return err;
	buf[n] = '\0';
	uint64_t run, wait;
	if (sscanf(buf, "%" SCNu64 " %" SCNu64, &run, &wait) != 2)
		return -EINVAL;
	*ret_ns = run + wait;
	return 0;
}

/* Is the thread running, runnable or in uninterruptible sleep now (its stat's state R or D)? */
static int thread_active(int taskfd, const char *tid)
{
	char p[64], buf[512];
	if (snprintf(p, sizeof(p), "%s/stat", tid) >= (int)sizeof(p))
		return 0;
	int fd = openat(taskfd, p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* the thread ended */
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return 0;
	buf[r] = '\0';
	const char *c = strrchr(buf, ')'); /* the name may hold anything; the state follows its ')' */
	return c && c[1] == ' ' && (c[2] == 'R' || c[2] == 'D');
}

int proc_sample(pid_t pid, uint64_t *ret_ns, int *ret_active)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/task", (long)pid);
	int taskfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (taskfd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	DIR *d = fdopendir(taskfd);
	if (!d) {
		int err = -errno;
		close(taskfd);
		return err;
	}
	uint64_t sum = 0;
	int r = 0, seen = 0, active = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		if (ret_active)
			active += thread_active(taskfd, e->d_name);
		if (!ret_ns)
			continue;
		uint64_t ns = 0;
		int t = thread_busy(taskfd, e->d_name, &ns);
		if (t < 0 && t != -ESRCH) { /* -ESRCH: the thread ended while we read: skip it */
			r = t;
			break;
		}
		if (t == 0) {
			sum += ns;
			seen++;
		}
	}
	closedir(d);
	if (r < 0)
		return r;
	if (ret_ns && !seen)
		return -ESRCH;
	if (ret_ns)
		*ret_ns = sum;
	if (ret_active)
		*ret_active = active;
	return 0;
}

int proc_busy_ns(pid_t pid, uint64_t *ret_ns)
{
	return proc_sample(pid, ret_ns, NULL);
}

int proc_active_threads(pid_t pid)
{
	int n = 0, r = proc_sample(pid, NULL, &n);
	return r < 0 ? r : n;
}
