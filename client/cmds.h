/*
 * cmds.h — ukrun's subcommands: ps/runs, show, logs, cancel, images, rm, hosts,
 * version, ping, daemon (each with --json).
 *
 * A subcommand is recognised only as the very first argument, so an image
 * file called `ps` runs as `ukrun ./ps`. Exit statuses: 0 success, 1 the
 * daemon refused (no such run, already ended), 2 usage, 125 daemon
 * unreachable or failing, 130 interrupted; `daemon status` exits 3 when
 * runnerd is not running.
 */
#ifndef UKRUN_CLIENT_CMDS_H
#define UKRUN_CLIENT_CMDS_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

/* Is `name` a subcommand? */
bool cmds_is(const char *name);

/* The subcommand closest to a mistyped `word` (one or two edits), or NULL. */
const char *cmds_suggest(const char *word);

/* One line per subcommand (name and summary) for `ukrun --help`. */
void cmds_help(FILE *out);

/* Run subcommand argv[0] with its arguments argv[1..argc-1]; `stop` is the
 * interrupt flag. Returns ukrun's exit status. */
int cmds_main(int argc, char **argv, const volatile sig_atomic_t *stop);

#endif
