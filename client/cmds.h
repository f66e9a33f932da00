/*
 * cmds.h — ukrun's subcommands: ps, show, logs, cancel, version, ping.
 *
 * A subcommand is recognised only as the very first argument, so an image
 * file called `ps` runs as `ukrun ./ps`. Exit statuses: 0 success, 1 the
 * daemon refused (no such run, already ended), 2 usage, 125 daemon
 * unreachable or failing, 130 interrupted.
 */
#ifndef UKRUN_CLIENT_CMDS_H
#define UKRUN_CLIENT_CMDS_H

#include <signal.h>
#include <stdbool.h>

/* Is `name` a subcommand? */
bool cmds_is(const char *name);

/* Run subcommand argv[0] with its arguments argv[1..argc-1]; `stop` is the
 * interrupt flag. Returns ukrun's exit status. */
int cmds_main(int argc, char **argv, const volatile sig_atomic_t *stop);

#endif
