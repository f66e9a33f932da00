/*
 * runner.h — the cargo-runner flow: `ukrun IMAGE ARGS...` end to end.
 *
 * Check and probe the image locally (126 before any upload for files nothing
 * can run), make sure the daemon stores it, create the run, copy the console
 * byte-exact to stdout as it arrives, then turn the final run record into
 * ukrun's exit status (DESIGN §4). An interrupt cancels the run (130).
 */
#ifndef UKRUN_CLIENT_RUNNER_H
#define UKRUN_CLIENT_RUNNER_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "httpc.h"
#include "opts.h"

/* Run `o->image` through the daemon behind `h` (interrupt flag in
 * h->abort_flag). Returns ukrun's exit status (0..255); prints its own
 * diagnostics on stderr. */
int runner_run(struct httpc *h, const struct opts *o);

/* ukrun's exit status for run record `rec`: the guest's exit_code for
 * done/timeout/cancelled (124/130 when absent), 125 for error (126 when the
 * record says so) and lost; exit codes outside 0..255 become 1. Sets
 * *ret_final to false (and returns 0) while the run is queued/starting/running. */
int runner_exit_status(const json_t *rec, bool *ret_final);

/* Is `id` a plausible run id (what goes into a URL path unescaped)? */
bool runner_id_valid(const char *id);

/* Copy run `id`'s console from *io_offset to `out_fd`; with `follow`, until
 * the run ends (reconnecting from the last byte written when the connection
 * drops). Returns 0, -EINTR (interrupted), -EPIPE (out_fd closed), -ENOENT
 * (no such run) or another negative errno, with a message printed for the
 * last two kinds. `stream`: "stdout" or "stderr" alone (a run with one console:
 * stdout is that console, stderr is empty), NULL = the console, both interleaved. */
int runner_console(struct httpc *h, const char *id, bool follow, int out_fd, uint64_t *io_offset,
		   const char *stream);

#endif
