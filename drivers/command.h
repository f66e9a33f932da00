/*
 * command.h — the one way drivers start child processes (after libvirt's
 * virCommand): an argv vector, a clean environment, explicit stdio, spawned
 * with uv_spawn in its own session/process group so the whole tree can be
 * signalled. Never a shell string.
 */
#ifndef UKRUN_COMMAND_H
#define UKRUN_COMMAND_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct cmd;

/* New command running `prog` (looked up in PATH when it has no slash). */
struct cmd *cmd_new(const char *prog);
void cmd_free(struct cmd *cmd);

/* Append one argument (copied). */
void cmd_arg(struct cmd *cmd, const char *arg);
/* Append one printf-formatted argument. */
void cmd_argf(struct cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Start the child in `dir` (copied; NULL = the daemon's working directory). */
void cmd_cwd(struct cmd *cmd, const char *dir);

/* Add "NAME=value" to the child's environment. The environment starts with only
 * PATH (inherited), HOME and LANG=C.UTF-8; nothing else leaks from the daemon. */
void cmd_env(struct cmd *cmd, const char *name, const char *value);

/* Child fd `child_fd` (0..9): inherit the daemon's `fd`. Unset fds 0-2 are bound to
 * /dev/null; the daemon's other fds are never inherited (all are O_CLOEXEC). */
void cmd_stdio_fd(struct cmd *cmd, int child_fd, int fd);
/* Child fd `child_fd` becomes a new pipe read/written through `stream` (an initialised,
 * unopened uv_pipe_t). */
void cmd_stdio_pipe(struct cmd *cmd, int child_fd, uv_pipe_t *stream, int readable_by_child);

/* The child is killed (SIGKILL) when runnerd dies, even by SIGKILL, so no guest outlives a
 * crashed daemon: cmd_start sets PR_SET_PDEATHSIG in the child itself; cmd_spawn (uv_spawn)
 * runs the program under util-linux `setpriv --pdeathsig KILL` when that is installed (the
 * shown command line stays the program's own). */
void cmd_die_with_daemon(struct cmd *cmd);

/* Resource limit `resource` (RLIMIT_*) of the child: soft = hard = `value`, set between
 * fork and exec, so it holds from the program's first instruction (cmd_start, cmd_run_sync). */
void cmd_rlimit(struct cmd *cmd, int resource, unsigned long long value);

/* Run the child as `uid` and `gid` (real, effective and saved) with no supplementary
 * groups, switched between fork and exec (cmd_start, cmd_run_sync; the daemon must be root). */
void cmd_user(struct cmd *cmd, unsigned uid, unsigned gid);

/* What cmd_rlimit set for `resource`: 1 with *ret_value, else 0. */
int cmd_rlimit_get(const struct cmd *cmd, int resource, unsigned long long *ret_value);

/* What cmd_user set: 1 with *ret_uid and *ret_gid, else 0. */
int cmd_user_get(const struct cmd *cmd, unsigned *ret_uid, unsigned *ret_gid);

/* Spawn into `proc` (uninitialised) with `exit_cb`; the child leads its own process group.
 * Returns 0 or -errno with *ret_err naming the program. */
int cmd_spawn(struct cmd *cmd, uv_loop_t *loop, uv_process_t *proc, uv_exit_cb exit_cb,
              char **ret_err);

/* Start the child with a fork and exec of our own rather than uv_spawn, for what libuv
 * cannot do between the two (cmd_rlimit, cmd_user); the die-with-daemon signal is set there
 * too, after the uid change, with no program in front. Stdio: cmd_stdio_fd only. The child
 * leads its own session. Returns 0 once the program is exec'd, with *ret_pid and *ret_pidfd
 * (O_CLOEXEC; readable when the child has exited, then cmd_reap it), or -errno with *ret_err
 * naming the program and the step that failed (the child is reaped then). */
int cmd_start(struct cmd *cmd, pid_t *ret_pid, int *ret_pidfd, char **ret_err);

/* Reap child `pid` of cmd_start without blocking: 1 with its exit status (0 when killed) and
 * terminating signal (0 when it exited), 0 while it runs, or -errno. */
int cmd_reap(pid_t pid, int64_t *ret_exit_status, int *ret_term_signal);

/* SIGKILL child `pid` of cmd_start and its process group, and reap it (blocking): for a
 * child that can no longer be watched. Its status as cmd_reap's, where either pointer may be
 * NULL; one that cannot be reaped any more counts as killed (SIGKILL), never as an exit 0. */
void cmd_kill_reap(pid_t pid, int64_t *ret_exit_status, int *ret_term_signal);

/* The command line, shell-quoted for display only (logs, run records). malloc'd. */
char *cmd_to_string(const struct cmd *cmd);

/* argv as a NULL-terminated vector (borrowed). */
char *const *cmd_argv(const struct cmd *cmd);

/* Run `cmd` to completion synchronously, without a loop (probing only: daemon start-up).
 * Captures up to `cap` bytes of combined stdout+stderr into *ret_out (malloc'd, may be NULL),
 * kills it after `timeout_ms`. Returns the exit status (>= 0), 128+signal when killed by a
 * signal, or -errno (*ret_out then says why the program did not start, e.g. which of the
 * cmd_rlimit/cmd_user steps failed). */
int cmd_run_sync(struct cmd *cmd, unsigned timeout_ms, size_t cap, char **ret_out);

#endif
