/*
 * pidreap.c — guests a dead daemon left behind, found through the pidfiles in
 * the workdirs of its lost runs (the qemu driver's `reap`).
 */
#include "driver.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

int drv_cmdline_names(const char *cmdline, const char *dir)
{
	size_t n = strlen(dir);
	for (const char *p = strstr(cmdline, dir); p; p = strstr(p + 1, dir))
		if (p[n] == '/')
			return 1;
	return 0;
}

/* The pid in `dir`/`pidfile`, or 0. The file is opened without following a link. */
static long read_pid(const char *dir, const char *pidfile)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return 0;
	char buf[64] = "";
	int pfd = openat(dfd, pidfile, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	close(dfd);
	if (pfd < 0)
		return 0;
	ssize_t got = read(pfd, buf, sizeof(buf) - 1);
	close(pfd);
	buf[got > 0 ? got : 0] = '\0';
	return got > 0 ? strtol(buf, NULL, 10) : 0;
}

/* 1 when process `pid` is alive and its command line names `dir`. */
static int pid_names_dir(long pid, const char *dir)
{
	char cmdpath[64], cmd[8192];
	snprintf(cmdpath, sizeof(cmdpath), "/proc/%ld/cmdline", pid);
	int fd = open(cmdpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t len = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (len <= 0)
		return 0;
	for (ssize_t i = 0; i < len; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	cmd[len] = '\0';
	return drv_cmdline_names(cmd, dir);
}

int drv_reap_pidfiles(const char *runs_dir, const char *const *ids, size_t nids, const char *pidfile)
{
	int killed = 0;
	for (size_t i = 0; i < nids; i++) {
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s/%s", runs_dir, ids[i]);
		long pid = read_pid(dir, pidfile);
		if (pid > 1 && pid_names_dir(pid, dir) && kill((pid_t)pid, SIGKILL) == 0)
			killed++;
	}
	return killed;
}
